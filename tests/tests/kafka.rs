//! The Kafka path against a real broker (Tansu): round trip between two
//! `tapwire` processes, broker crash, consumer crash, dead letters, topic
//! creation. Each test starts its own broker.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_schemas::{EventId, encode, samples, topics};
use tapwire_tests::{Broker, Lines, Storage, run_ok, tapwire, wait_until};

const EVENTS: u64 = 100_000;
/// The consumers' batch size: the most a crash may re-deliver per member.
const BATCH: usize = 2000;

fn expected_ids(run_id: &str, count: u64) -> HashSet<String> {
    (0..count)
        .map(|i| EventId::derive(&[run_id.as_bytes(), &i.to_le_bytes()]).to_hex())
        .collect()
}

/// One `tapwire topics tail --format text` line: (id, node, timestamp).
fn parse(line: &str) -> Option<(String, String, i64)> {
    let mut id = None;
    let mut node = None;
    let mut ts = None;
    for field in line.split(' ') {
        if let Some(v) = field.strip_prefix("id=") {
            id = Some(v.to_owned());
        } else if let Some(v) = field.strip_prefix("node=") {
            node = Some(v.to_owned());
        } else if let Some(v) = field.strip_prefix("ts=") {
            ts = v.parse().ok();
        }
    }
    Some((id?, node?, ts?))
}

struct Tally {
    unique: HashSet<String>,
    duplicates: usize,
    out_of_order: usize,
}

fn tally(lines: &[String]) -> Tally {
    let mut unique = HashSet::new();
    let mut duplicates = 0;
    let mut out_of_order = 0;
    let mut last_ts: HashMap<String, i64> = HashMap::new();
    for line in lines {
        let (id, node, ts) = parse(line).unwrap_or_else(|| panic!("unparsable tail line: {line}"));
        if !unique.insert(id) {
            duplicates += 1;
            continue;
        }
        let last = last_ts.entry(node).or_insert(i64::MIN);
        if ts <= *last {
            out_of_order += 1;
        }
        *last = ts;
    }
    Tally {
        unique,
        duplicates,
        out_of_order,
    }
}

fn create_topics(broker: &Broker) {
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "4"]));
}

fn tail(broker: &Broker, group: &str) -> Lines {
    Lines::spawn(
        tapwire(&broker.address())
            .args([
                "topics",
                "tail",
                topics::L4_RAW,
                "--group",
                group,
                "--format",
                "text",
            ])
            .args(["-X", "session.timeout.ms=6000"])
            .env("TAPWIRE_CONSUMER__BATCH_MAX_MESSAGES", BATCH.to_string()),
    )
}

fn generate(broker: &Broker, run_id: &str, rate: u64) -> Lines {
    Lines::spawn(tapwire(&broker.address()).args([
        "topics",
        "generate",
        "--count",
        &EVENTS.to_string(),
        "--nodes",
        "16",
        "--run-id",
        run_id,
        "--rate",
        &rate.to_string(),
        "--batch",
        "2000",
    ]))
}

fn missing(expected: &HashSet<String>, seen: &HashSet<String>) -> usize {
    expected.difference(seen).count()
}

#[test]
fn events_cross_between_two_processes_complete_and_in_order_per_key() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    create_topics(&broker);
    let consumer = tail(&broker, "round-trip");
    let (ok, _) = generate(&broker, "round-trip", 0).wait();
    assert!(ok, "generator failed; broker log:\n{}", broker.log());

    let expected = expected_ids("round-trip", EVENTS);
    assert!(
        wait_until(Duration::from_secs(120), || consumer.count()
            >= EVENTS as usize),
        "consumer saw {} of {EVENTS}; stderr:\n{}",
        consumer.count(),
        consumer.stderr()
    );
    let (clean_exit, lines) = consumer.terminate(Duration::from_secs(20));
    assert!(clean_exit, "tail did not shut down cleanly");
    let t = tally(&lines);
    assert_eq!(missing(&expected, &t.unique), 0);
    assert_eq!(t.unique.len(), EVENTS as usize);
    assert_eq!(t.duplicates, 0, "no crash, no duplicates");
    assert_eq!(t.out_of_order, 0, "events of one node must arrive in order");
}

#[test]
fn a_broker_crash_mid_run_loses_nothing() {
    let Some(mut broker) = Broker::start(Storage::Sqlite) else {
        return;
    };
    create_topics(&broker);
    let consumer = tail(&broker, "broker-crash");
    let producer = generate(&broker, "broker-crash", 20_000);
    assert!(
        wait_until(Duration::from_secs(60), || consumer.count() >= 20_000),
        "consumer saw {} before the crash; stderr:\n{}",
        consumer.count(),
        consumer.stderr()
    );
    broker.kill();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart();
    let (produced, _) = producer.wait();
    assert!(produced, "the producer must ride out the broker restart");

    let expected = expected_ids("broker-crash", EVENTS);
    let complete = wait_until(Duration::from_secs(180), || {
        missing(&expected, &tally(&consumer.snapshot()).unique) == 0
    });
    let (_, lines) = consumer.terminate(Duration::from_secs(20));
    let t = tally(&lines);
    assert!(
        complete,
        "{} ids missing after the broker restart",
        missing(&expected, &t.unique)
    );
    eprintln!("broker crash: {} duplicates delivered", t.duplicates);
    assert!(
        t.duplicates <= BATCH,
        "{} duplicates: more than one uncommitted batch ({BATCH})",
        t.duplicates
    );
}

#[test]
fn a_killed_consumer_is_replaced_without_a_gap() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    create_topics(&broker);
    let first = tail(&broker, "consumer-crash");
    let producer = generate(&broker, "consumer-crash", 25_000);
    assert!(
        wait_until(Duration::from_secs(60), || first.count() >= 30_000),
        "first consumer saw {}; stderr:\n{}",
        first.count(),
        first.stderr()
    );
    let before = first.kill();
    // Tansu 0.6 gives a member that joins before the dead member's session
    // expires an empty assignment (see design.md); real Kafka rebalances.
    std::thread::sleep(Duration::from_secs(7));
    let second = tail(&broker, "consumer-crash");
    let (produced, _) = producer.wait();
    assert!(produced);

    let expected = expected_ids("consumer-crash", EVENTS);
    let seen_before = tally(&before).unique;
    let complete = wait_until(Duration::from_secs(120), || {
        let mut all = seen_before.clone();
        all.extend(tally(&second.snapshot()).unique);
        missing(&expected, &all) == 0
    });
    let (_, after) = second.terminate(Duration::from_secs(20));
    let mut lines = before;
    lines.extend(after);
    let t = tally(&lines);
    assert!(
        complete,
        "{} ids missing after the consumer was replaced",
        missing(&expected, &t.unique)
    );
    eprintln!("consumer crash: {} duplicates re-delivered", t.duplicates);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_go_to_the_dead_letter_topic_and_consumption_goes_on() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    create_topics(&broker);
    let kafka = KafkaConfig {
        brokers: broker.address(),
        ..KafkaConfig::default()
    };
    let sink = KafkaSink::new(&kafka).expect("producer");
    let event = |seq: u64| {
        encode(&samples::l4_flow(
            samples::header("node-dlq", "test", seq, seq as i64),
            seq,
        ))
        .expect("encode")
    };
    let valid = event(1);
    let mut unknown = valid.clone();
    unknown[2..10].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1]);
    let truncated = valid[..valid.len() - 6].to_vec();
    let key = Some(b"one-partition".to_vec());
    let payloads = [
        valid,
        b"garbage, not avro".to_vec(),
        unknown,
        truncated,
        event(2),
    ];
    sink.send_batch(
        payloads
            .iter()
            .map(|p| OutRecord::new(topics::L4_RAW, key.clone(), p.clone()))
            .collect(),
    )
    .await
    .expect("produce");

    let consumer = tail(&broker, "dlq-test");
    assert!(
        wait_until(Duration::from_secs(60), || consumer.count() >= 2),
        "stderr:\n{}",
        consumer.stderr()
    );
    let dead = Lines::spawn(tapwire(&broker.address()).args([
        "topics",
        "tail",
        topics::DLQ,
        "--group",
        "dlq-reader",
    ]));
    assert!(
        wait_until(Duration::from_secs(60), || dead.count() >= 3),
        "dead letters seen: {:?}; stderr:\n{}",
        dead.snapshot(),
        dead.stderr()
    );
    let (_, good) = consumer.terminate(Duration::from_secs(20));
    let (_, dead) = dead.terminate(Duration::from_secs(20));

    let ids: Vec<String> = good
        .iter()
        .filter_map(|l| parse(l))
        .map(|(id, ..)| id)
        .collect();
    let want: Vec<String> = [1u64, 2]
        .iter()
        .map(|&s| samples::header("node-dlq", "test", s, 0).id.to_hex())
        .collect();
    assert_eq!(
        ids, want,
        "both valid events, the second after the three bad ones"
    );

    let letters: Vec<serde_json::Value> = dead
        .iter()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let errors: Vec<&str> = letters
        .iter()
        .map(|l| l["dead_letter"]["error"].as_str().expect("error kind"))
        .collect();
    assert_eq!(errors, ["bad_magic", "unknown_fingerprint", "bad_body"]);
    let offsets: Vec<i64> = letters
        .iter()
        .map(|l| l["dead_letter"]["source_offset"].as_i64().expect("offset"))
        .collect();
    let first = offsets[0];
    assert_eq!(
        offsets,
        [first, first + 1, first + 2],
        "source offsets of the bad messages"
    );
    for l in &letters {
        assert_eq!(l["dead_letter"]["source_topic"], topics::L4_RAW);
        assert_eq!(l["dead_letter"]["stage"], "tail");
        assert!(
            !l["dead_letter"]["reason"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
    }
    assert!(
        letters[1]["dead_letter"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("deadbeef00000001")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_topics_twice_succeeds_and_leaves_the_same_topics() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let first = run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "3"]));
    let listed_once = run_ok(tapwire(&broker.address()).args(["topics", "list"]));
    let second = run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "3"]));
    let listed_twice = run_ok(tapwire(&broker.address()).args(["topics", "list"]));

    for spec in topics::ALL {
        let row = |out: &str| {
            out.lines()
                .find(|l| l.split_whitespace().next() == Some(spec.name))
                .map(str::to_owned)
        };
        let created = row(&first).unwrap_or_else(|| panic!("{} missing from:\n{first}", spec.name));
        assert!(created.ends_with("created"), "{created}");
        let again = row(&second).unwrap_or_else(|| panic!("{} missing from:\n{second}", spec.name));
        assert!(again.ends_with("exists"), "{again}");
        let cleanup = if spec.compacted { "compact" } else { "delete" };
        assert!(created.contains(cleanup) && again.contains(cleanup));
        let listed =
            row(&listed_once).unwrap_or_else(|| panic!("{} not listed:\n{listed_once}", spec.name));
        assert_eq!(listed.split_whitespace().nth(1), Some("3"), "{listed}");
    }
    assert_eq!(listed_once, listed_twice);

    // The broker itself says which topics are compacted.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .create()
        .expect("admin client");
    let resources: Vec<ResourceSpecifier<'_>> = topics::ALL
        .iter()
        .map(|t| ResourceSpecifier::Topic(t.name))
        .collect();
    let described = admin
        .describe_configs(&resources, &AdminOptions::new())
        .await
        .expect("describe configs");
    for (spec, result) in topics::ALL.iter().zip(described) {
        let resource = result.unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        let policy = resource.get("cleanup.policy").and_then(|e| e.value.clone());
        let want = if spec.compacted { "compact" } else { "delete" };
        assert_eq!(policy.as_deref().unwrap_or("delete"), want, "{}", spec.name);
    }
}
