//! Regression tests of issue 13 (one stage contract): `tapwire run` and the
//! standalone commands run the same stage declarations, so for the same
//! input they send the same CEF; a loss record travels to the end in both
//! and is counted, not dead-lettered; a relative-time CEF filter uses the
//! wall clock in both.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_schemas::events::LossRecord;
use tapwire_schemas::{encode, samples, topics};
use tapwire_tests::{Broker, Lines, Storage, run_ok, tapwire, wait_until};

const REQUESTS: &str = "20";

/// Node, sensor and cluster name shared by both runs: event ids and CEF
/// fields derive from them.
fn same_identity(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env("TAPWIRE_CAPTURE__NODE_NAME", "node-a")
        .env("TAPWIRE_CAPTURE__SENSOR_ID", "contract-sensor")
        .env("TAPWIRE_CEF__CLUSTER_NAME", "contract")
        .env("TAPWIRE_ENRICH__METADATA_WAIT_MS", "0")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_the_standalone_stages_send_the_same_cef() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    run_ok(
        tapwire("127.0.0.1:1")
            .args(["demo", "--events", REQUESTS, "--out"])
            .arg(dir.path()),
    );
    let (pcap, policies) = (
        dir.path().join("node-a.pcap"),
        dir.path().join("policies.yaml"),
    );

    // In one process, over the in-memory bus.
    let in_memory = dir.path().join("run-cef.log");
    let report = run_ok(
        same_identity(&mut tapwire("127.0.0.1:1"))
            .args(["run", "--pcap"])
            .arg(&pcap)
            .arg("--policies")
            .arg(&policies)
            .arg("--cef-out")
            .arg(&in_memory),
    );
    let want = lines(&in_memory);
    assert!(want.len() > 20, "{report}");
    assert!(report.contains("0 events lost upstream"), "{report}");

    // Each stage its own process, over Tansu; a capture agent's loss record
    // on the raw topic ahead of the traffic.
    let brokers = broker.address();
    run_ok(tapwire(&brokers).args(["topics", "create", "--partitions", "2"]));
    let loss = LossRecord {
        header: samples::header("node-a", "contract-sensor", 0, 1),
        source: "ringbuf".into(),
        lost: 5,
    };
    KafkaSink::new(&KafkaConfig {
        brokers: brokers.clone(),
        ..KafkaConfig::default()
    })
    .expect("producer")
    .send_batch(vec![OutRecord::new(
        topics::L4_RAW,
        Some(b"node-a".to_vec()),
        encode(&loss).expect("encode"),
    )])
    .await
    .expect("loss record");
    let over_kafka = dir.path().join("kafka-cef.log");
    let stages = [
        Lines::spawn(same_identity(&mut tapwire(&brokers)).args(["enrich"])),
        Lines::spawn(
            same_identity(&mut tapwire(&brokers))
                .arg("policy")
                .arg("--policies")
                .arg(&policies),
        ),
        Lines::spawn(
            same_identity(&mut tapwire(&brokers))
                .args(["cef", "--target"])
                .arg(format!("file:{}", over_kafka.display())),
        ),
    ];
    run_ok(
        same_identity(&mut tapwire(&brokers))
            .args(["capture", "--source"])
            .arg(format!("pcap:{}", pcap.display())),
    );
    let arrived = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(90), || {
            lines(&over_kafka).len() > want.len()
        })
    });
    let logs = || {
        stages
            .iter()
            .map(Lines::stderr)
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    assert!(
        arrived,
        "{} of {} CEF lines over Kafka; logs:\n{}",
        lines(&over_kafka).len(),
        want.len(),
        logs()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The loss record on the Kafka side is one AG-003 (events lost) message.
    let (lost, kafka_lines): (Vec<String>, Vec<String>) = lines(&over_kafka)
        .into_iter()
        .partition(|l| l.contains("|AG-003|"));
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].contains("cn1=5 "), "{}", lost[0]);
    // Partitions interleave differently; the messages are the same.
    let got: BTreeSet<String> = kafka_lines.iter().cloned().collect();
    let want_set: BTreeSet<String> = want.iter().cloned().collect();
    assert_eq!(kafka_lines.len(), want.len(), "no message twice");
    assert_eq!(got, want_set);

    let dead = tapwire_tests::read_topic(&brokers, topics::DLQ, Duration::from_secs(2), |_| false);
    assert!(dead.is_empty(), "nothing is bad data: {dead:?}");
    let [enrich, policy, cef] = stages;
    for stage in [enrich, policy] {
        let (clean, _) = stage.terminate(Duration::from_secs(15));
        assert!(clean);
    }
    let log = cef.stderr();
    assert!(
        log.contains("events were lost upstream") && log.contains("lost=5"),
        "the loss is counted and logged where it ends:\n{log}"
    );
    let (clean, _) = cef.terminate(Duration::from_secs(15));
    assert!(clean, "{log}");
}

#[test]
fn a_relative_time_cef_filter_uses_the_wall_clock_in_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_ok(
        tapwire("127.0.0.1:1")
            .args(["demo", "--events", REQUESTS, "--out"])
            .arg(dir.path()),
    );
    let pcap = dir.path().join("node-a.pcap");
    // The demo's traffic happened on 2026-11-23: more than five hours ago,
    // less than a hundred years ago.
    let sent = |filter: &str, name: &str| {
        let out = dir.path().join(name);
        run_ok(
            tapwire("127.0.0.1:1")
                .env("TAPWIRE_CEF__FILTER", filter)
                .args(["run", "--pcap"])
                .arg(&pcap)
                .arg("--cef-out")
                .arg(&out),
        );
        lines(&out).len()
    };
    assert_eq!(sent("timestamp >= hours(-5)", "recent.log"), 0);
    assert!(sent("timestamp >= days(-36500)", "century.log") > 20);
}
