//! `tapwire policy` against a real broker: a verdict for every enriched event,
//! and a policy file changed under the running stage takes effect with no
//! event lost or judged twice.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_schemas::{encode, samples, topics};
use tapwire_tests::{Broker, Lines, Storage, run_ok, tapwire, wait_until};

fn policy(mode: &str) -> String {
    format!(
        "apiVersion: tapwire.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web, namespace: shop}}\nspec:\n  mode: {mode}\n  selector: {{matchLabels: {{app: web-1}}}}\n  egress:\n    - name: only-db\n      to: [{{pod: {{matchLabels: {{app: db-0}}}}}}]\n"
    )
}

async fn produce(sink: &KafkaSink, first: u64, count: u64) {
    let records = (first..first + count)
        .map(|i| {
            let v = samples::flow_verdict(samples::header("node-a", "policy-test", i, i as i64), i);
            OutRecord::new(
                topics::L4_ENRICHED,
                Some(b"node-a".to_vec()),
                encode(&v.event).expect("encode"),
            )
        })
        .collect();
    sink.send_batch(records).await.expect("produce");
}

/// Verdicts seen: event id -> (mode, outcome), and how many in all.
fn verdicts(lines: &[String]) -> (HashMap<String, (String, String)>, usize) {
    let mut by_id = HashMap::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).expect("json");
        let e = &v["event"];
        let id = e["event"]["body"]["L4Event"]["header"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        by_id.insert(
            id,
            (
                e["mode"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            ),
        );
    }
    (by_id, lines.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_policy_file_takes_effect_without_losing_or_repeating_events() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "2"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, policy("audit")).expect("write policy");

    let stage = Lines::spawn(
        tapwire(&broker.address())
            .args(["policy", "--reload-check-ms", "100", "--policies"])
            .arg(&file),
    );
    let out = Lines::spawn(tapwire(&broker.address()).args([
        "topics",
        "tail",
        topics::VERDICTS,
        "--group",
        "verdicts",
    ]));
    let sink = KafkaSink::new(&KafkaConfig {
        brokers: broker.address(),
        ..KafkaConfig::default()
    })
    .expect("producer");

    produce(&sink, 0, 200).await;
    assert!(
        wait_until(Duration::from_secs(60), || out.count() >= 200),
        "{}",
        stage.stderr()
    );
    // A new version of the file, an invalid one first: the old policy stays.
    std::fs::write(
        &file,
        "apiVersion: tapwire.io/v1\nkind: NetworkPolicy\nspec: {}\n",
    )
    .expect("write");
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(&sink, 200, 100).await;
    assert!(
        wait_until(Duration::from_secs(60), || out.count() >= 300),
        "{}",
        stage.stderr()
    );
    std::fs::write(&file, policy("enforce")).expect("write");
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(&sink, 300, 200).await;
    assert!(
        wait_until(Duration::from_secs(60), || out.count() >= 500),
        "{}",
        stage.stderr()
    );
    std::thread::sleep(Duration::from_secs(1));

    let (by_id, total) = verdicts(&out.snapshot());
    assert_eq!(
        (by_id.len(), total),
        (500, 500),
        "one verdict per event, none twice"
    );
    let id = |i: u64| {
        samples::header("node-a", "policy-test", i, i as i64)
            .id
            .to_hex()
    };
    for i in 0..300 {
        // Flows to an external peer violate the allow-list.
        assert_eq!(
            by_id[&id(i)],
            ("audit".to_owned(), "audited".to_owned()),
            "event {i}"
        );
    }
    for i in 300..500 {
        assert_eq!(
            by_id[&id(i)],
            // No node enforced it: a violation that went through.
            ("enforce".to_owned(), "not_prevented".to_owned()),
            "event {i}"
        );
    }
    assert!(
        stage.stderr().contains("previous policies stay in force"),
        "{}",
        stage.stderr()
    );
}
