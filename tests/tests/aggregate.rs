//! `tapwire aggregate` as its own process between a real broker and a real
//! ClickHouse: killed with SIGKILL in the middle of ingest and started
//! again, it leaves every connection counted exactly once.

use std::time::Duration;

use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_schemas::events::L4Kind;
use tapwire_schemas::{encode, samples, topics};
use tapwire_tests::{Broker, Lines, Storage, run_ok, tapwire, wait_until};

/// `count` connect verdicts, sequence numbers from `first`, spread over two
/// nodes (so both partitions are used) and 30 distinct pairs.
async fn produce(sink: &KafkaSink, first: u64, count: u64, base_ns: i64) {
    let records = (first..first + count)
        .map(|i| {
            let node = if i % 2 == 0 { "node-a" } else { "node-b" };
            let mut v = samples::flow_verdict(
                samples::header(node, "agg-test", i, base_ns + i as i64 * 1_000_000),
                i % 30,
            );
            v.event.body.as_l4_mut().expect("l4").kind = L4Kind::NetworkConnect;
            OutRecord::new(
                topics::VERDICTS,
                Some(node.as_bytes().to_vec()),
                encode(&v).expect("encode"),
            )
        })
        .collect();
    sink.send_batch(records).await.expect("produce");
}

fn aggregator(broker: &Broker, ch: &str, db: &str) -> Lines {
    Lines::spawn(
        tapwire(&broker.address())
            .args(["aggregate", "--clickhouse-url", ch, "--database", db])
            .args(["--group", "agg-kill", "-X", "session.timeout.ms=6000"])
            .env("TAPWIRE_AGGREGATE__BATCH_MAX_MESSAGES", "100")
            .env("TAPWIRE_AGGREGATE__FLUSH_INTERVAL_MS", "20"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_ingest_and_restarted_counts_every_connection_once() {
    let Some(ch) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let Some(broker) = Broker::start(Storage::Sqlite) else {
        return;
    };
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "2"]));
    let db = format!("tapwire_kill_{}", std::process::id());
    let sink = KafkaSink::new(&KafkaConfig {
        brokers: broker.address(),
        ..KafkaConfig::default()
    })
    .expect("producer");
    let base_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
        - 300_000_000_000;
    let total = 6000;

    let first = aggregator(&broker, &ch, &db);
    for chunk in 0..3 {
        produce(&sink, chunk * 1000, 1000, base_ns).await;
    }
    let verdicts = "SELECT count() AS n FROM tapwire.verdicts";
    assert!(
        wait_until(Duration::from_secs(60), || {
            tokio::task::block_in_place(|| tapwire_tests::clickhouse::scalar(&ch, &db, verdicts))
                >= 1500
        }),
        "the first aggregator ingests; stderr:\n{}",
        first.stderr()
    );
    // Mid-ingest: batches of 100 are being inserted, offsets not yet
    // committed for the latest of them.
    first.kill();
    produce(&sink, 3000, 3000, base_ns).await;
    // Tansu hands the dead member's partitions over after its session.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let second = aggregator(&broker, &ch, &db);
    assert!(
        wait_until(Duration::from_secs(90), || {
            tokio::task::block_in_place(|| tapwire_tests::clickhouse::scalar(&ch, &db, verdicts))
                >= total
        }),
        "the restarted aggregator catches up; stderr:\n{}",
        second.stderr()
    );
    // Give a replay the chance to show up if it were going to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connections = tapwire_tests::clickhouse::scalar(
        &ch,
        &db,
        "SELECT sum(connections) AS n FROM tapwire.connection_counts",
    );
    let rows = tapwire_tests::clickhouse::scalar(
        &ch,
        &db,
        "SELECT count() AS n FROM tapwire.connection_counts",
    );
    let stored = tapwire_tests::clickhouse::scalar(&ch, &db, verdicts);
    let (stopped, _) = second.terminate(Duration::from_secs(10));
    assert!(stopped, "a clean stop on SIGTERM");
    assert_eq!(stored, total, "every verdict stored once");
    assert_eq!(connections, total, "every connection counted once");
    // Batches of 100 over 30 pairs: rows are per batch, pair and minute.
    assert!(rows < total / 2, "counts are pre-aggregated: {rows} rows");
}
