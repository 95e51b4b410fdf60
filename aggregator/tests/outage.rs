//! ClickHouse stopped for 30 s in the middle of ingest: the consumer loop
//! pauses on the failing insert, retries with backoff, and once the server
//! is back every connection is counted exactly once.

use std::time::Duration;

use tapwire_aggregator::schema;
use tapwire_aggregator::sink::{AggregateStage, client};
use tapwire_plumbing::bus::memory::MemoryBus;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::consumer::{self, LoopSettings, StageContext};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::{encode, topics};

mod common;
use common::*;

async fn produce(bus: &MemoryBus, verdicts: &[tapwire_schemas::events::Verdict]) {
    let records = verdicts
        .iter()
        .map(|v| {
            OutRecord::new(
                topics::VERDICTS,
                Some(b"node-a".to_vec()),
                encode(v).expect("encode"),
            )
        })
        .collect();
    bus.sink().send_batch(records).await.expect("produce");
}

async fn total(c: &clickhouse::Client) -> Option<u64> {
    c.query("SELECT sum(connections) FROM connection_counts")
        .fetch_one()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_outage_loses_and_duplicates_nothing() {
    let Some(mut server) = tapwire_tests::clickhouse::ClickHouse::start() else {
        return;
    };
    let url = server.url();
    let admin = clickhouse::Client::default()
        .with_url(&url)
        .with_validation(false);
    schema::migrate(&admin, "tapwire", 30)
        .await
        .expect("migrate");
    let c = client(&url, "tapwire", "default", "");

    let f = fixture(now_ns() - 600_000_000_000);
    let expected: u64 = f.expected.values().map(|v| v.0).sum();
    let thirds = f.verdicts.len() / 3;

    let bus = MemoryBus::new();
    bus.create_topic(topics::VERDICTS, 2);
    bus.create_topic(topics::DLQ, 1);
    let settings = LoopSettings {
        batch_max_messages: 10,
        batch_linger: Duration::from_millis(20),
        retry_backoff_initial: Duration::from_millis(100),
        retry_backoff_max: Duration::from_secs(2),
    };
    let shutdown = CancellationToken::new();
    let ctx = StageContext::new("aggregate", settings, shutdown.clone());
    let source = bus
        .source("aggregate", &[topics::VERDICTS])
        .expect("source");
    let dlq = bus.sink();
    let mut stage = AggregateStage::new(c.clone());
    let health = ctx.health.clone();
    let run = tokio::spawn(async move {
        let summary = consumer::run(&ctx, source, &dlq, &mut stage).await;
        (summary, stage.written().clone())
    });

    produce(&bus, &f.verdicts[..thirds]).await;
    assert!(
        wait(Duration::from_secs(30), || async {
            bus.lag("aggregate", topics::VERDICTS) == 0
        })
        .await,
        "the first third is ingested"
    );
    let first = total(&c).await.expect("counts");
    assert!(first > 0 && first < expected);

    server.stop();
    produce(&bus, &f.verdicts[thirds..2 * thirds]).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        bus.lag("aggregate", topics::VERDICTS) > 0,
        "consumption pauses while ClickHouse is down"
    );
    let failure = health
        .failure()
        .expect("the stage reports itself unhealthy meanwhile");
    assert!(failure.contains("ClickHouse"), "{failure}");
    server.restart();
    produce(&bus, &f.verdicts[2 * thirds..]).await;

    assert!(
        wait(Duration::from_secs(60), || async {
            bus.lag("aggregate", topics::VERDICTS) == 0
        })
        .await,
        "everything is ingested after the outage"
    );
    assert_eq!(total(&c).await, Some(expected), "every connection once");
    let verdicts: u64 = c
        .query("SELECT count() FROM verdicts")
        .fetch_one()
        .await
        .expect("count");
    assert_eq!(verdicts, f.verdicts.len() as u64);
    shutdown.cancel();
    let (summary, _written) = run.await.expect("join");
    let summary = summary.expect("loop");
    assert_eq!(summary.messages, f.verdicts.len() as u64);
    assert_eq!(summary.dead_lettered, 0);
}

async fn wait<F, Fut>(timeout: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
