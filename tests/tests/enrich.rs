//! `tapwire enrich` against a real broker: IP reuse resolved by time (also
//! with late metadata), the wait window and the unresolved marker, DNS names
//! for external peers, and a restarted enricher that rebuilds its state from
//! the compacted pods topic and enriches a fixture stream exactly as before.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;
use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_schemas::events::*;
use tapwire_schemas::{Ip, Record, encode, samples, topics};
use tapwire_tests::{Broker, Lines, Storage, run_ok, tapwire, wait_until};

const S: i64 = 1_000_000_000;

struct Bus {
    sink: KafkaSink,
}

impl Bus {
    fn new(broker: &Broker) -> Bus {
        let sink = KafkaSink::new(&KafkaConfig {
            brokers: broker.address(),
            ..KafkaConfig::default()
        })
        .expect("producer");
        Bus { sink }
    }

    async fn send<T: Record>(&self, topic: &str, key: &str, records: &[T]) {
        let records = records
            .iter()
            .map(|r| {
                OutRecord::new(
                    topic,
                    Some(key.as_bytes().to_vec()),
                    encode(r).expect("encode"),
                )
            })
            .collect();
        self.sink.send_batch(records).await.expect("produce");
    }

    async fn pods(&self, pods: &[PodMetadata]) {
        for p in pods {
            self.send(topics::PODS, &p.uid, std::slice::from_ref(p))
                .await;
        }
    }
}

fn pod(name: &str, ip: &str, start_s: i64, end_s: Option<i64>) -> PodMetadata {
    let mut p = samples::pod(
        samples::header("node-a", "watch", 0, start_s * S),
        name,
        "shop",
        ip.parse().expect("ip"),
    );
    p.uid = format!("uid-{name}");
    p.containers[0].id = format!("ctr-{name}");
    p.start_ns = Some(start_s * S);
    p.end_ns = end_s.map(|e| e * S);
    p
}

/// A connection from `src` to `dst` at `at_s` seconds, egress from `src`'s side.
fn conn(seq: u64, at_s: i64, src: &str, dst: &str) -> L4Event {
    let mut e = samples::l4_flow(samples::header("node-a", "sensor", seq, at_s * S), seq);
    e.src.ip = Ip(src.parse::<IpAddr>().expect("ip"));
    e.dst.ip = Ip(dst.parse::<IpAddr>().expect("ip"));
    e.container_id = None;
    e
}

fn enricher(broker: &Broker, group: &str, wait_ms: u64) -> Lines {
    Lines::spawn(tapwire(&broker.address()).args([
        "enrich",
        "--group",
        group,
        "--metadata-wait-ms",
        &wait_ms.to_string(),
    ]))
}

fn tail(broker: &Broker, topic: &str, group: &str) -> Lines {
    Lines::spawn(tapwire(&broker.address()).args(["topics", "tail", topic, "--group", group]))
}

/// Enriched events seen, by event id.
fn by_id(lines: &[String]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).expect("json line");
        let event = v["event"].clone();
        // `body` holds one event, under its record name.
        let header = event["body"]
            .as_object()
            .and_then(|body| body.values().next())
            .and_then(|e| e.get("header").cloned())
            .expect("an enriched event with a header");
        let id = header["id"].as_str().expect("id").to_owned();
        out.entry(id).or_default().push(event);
    }
    out
}

fn id_of(h: &EventHeader) -> String {
    h.id.to_hex()
}

async fn setup() -> Option<(Broker, Bus)> {
    let broker = Broker::start(Storage::Memory)?;
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "2"]));
    let bus = Bus::new(&broker);
    Some((broker, bus))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_ip_is_attributed_by_time_even_when_the_new_owner_is_announced_late() {
    let Some((broker, bus)) = setup().await else {
        return;
    };
    // A owns 10.1.0.7 from 1000 s to 2000 s; B from 3000 s, announced late.
    bus.pods(&[pod("a", "10.1.0.7", 1000, Some(2000))]).await;
    let stage = enricher(&broker, "reuse", 8000);
    let out = tail(&broker, topics::L4_ENRICHED, "reuse-out");
    let before = conn(1, 1500, "10.1.0.7", "10.1.5.5");
    let after = conn(2, 3500, "10.1.0.7", "10.1.5.5");
    // The peer 10.1.5.5 is a pod that exists throughout.
    bus.pods(&[pod("db", "10.1.5.5", 0, None)]).await;
    bus.send(topics::L4_RAW, "node-a", &[before.clone(), after.clone()])
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    bus.pods(&[pod("b", "10.1.0.7", 3000, None)]).await;

    assert!(
        wait_until(Duration::from_secs(60), || out.count() >= 2),
        "enriched: {:?}\nenrich stderr:\n{}",
        out.snapshot(),
        stage.stderr()
    );
    let got = by_id(&out.snapshot());
    let src = |e: &L4Event| got[&id_of(&e.header)][0]["src"].clone();
    assert_eq!(src(&before)["pod"], "a");
    assert_eq!(src(&before)["pod_uid"], "uid-a");
    assert_eq!(
        src(&after)["pod"],
        "b",
        "B's late metadata arrived within the window"
    );
    assert_eq!(src(&after)["pod_uid"], "uid-b");
    assert_eq!(got[&id_of(&after.header)][0]["dst"]["pod"], "db");
    drop(stage);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_later_than_the_window_leaves_the_event_unresolved() {
    let Some((broker, bus)) = setup().await else {
        return;
    };
    let stage = enricher(&broker, "late", 1000);
    let out = tail(&broker, topics::L4_ENRICHED, "late-out");
    let early = conn(1, 100, "10.1.0.9", "8.8.8.8");
    bus.send(topics::L4_RAW, "node-a", std::slice::from_ref(&early))
        .await;
    assert!(
        wait_until(Duration::from_secs(60), || out.count() >= 1),
        "{}",
        stage.stderr()
    );
    // The metadata comes after the window: the event is already out.
    bus.pods(&[pod("c", "10.1.0.9", 50, None)]).await;
    // The address timed out, so it is not waited for again until a pod
    // claims it: let the enricher read c's record first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = conn(2, 100, "10.1.0.9", "8.8.8.8");
    bus.send(topics::L4_RAW, "node-a", std::slice::from_ref(&later))
        .await;
    assert!(
        wait_until(Duration::from_secs(60), || out.count() >= 2),
        "{}",
        stage.stderr()
    );

    let got = by_id(&out.snapshot());
    let first = &got[&id_of(&early.header)][0];
    assert_eq!(first["src"]["kind"], "unresolved");
    assert_eq!(
        first["dst"]["kind"], "external",
        "8.8.8.8 is outside the pod ranges"
    );
    let second = &got[&id_of(&later.header)][0];
    assert_eq!(second["src"]["pod"], "c");
    drop(stage);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_ip_gets_the_name_a_dns_answer_gave_it() {
    let Some((broker, bus)) = setup().await else {
        return;
    };
    bus.pods(&[pod("web", "10.1.0.20", 0, None)]).await;
    let stage = enricher(&broker, "dns", 2000);
    let out = tail(&broker, topics::L4_ENRICHED, "dns-out");
    let mut answer = samples::dns_resolution(samples::header("node-a", "sensor", 1, 10 * S));
    answer.container_id = Some("ctr-web".into());
    answer.answers = vec!["93.184.215.14".into()];
    bus.send(topics::L4_RAW, "node-a", std::slice::from_ref(&answer))
        .await;
    let flow = conn(2, 11, "10.1.0.20", "93.184.215.14");
    bus.send(topics::L4_RAW, "node-a", std::slice::from_ref(&flow))
        .await;
    assert!(
        wait_until(Duration::from_secs(60), || out.count() >= 2),
        "{}",
        stage.stderr()
    );

    let got = by_id(&out.snapshot());
    let enriched = &got[&id_of(&flow.header)][0];
    assert_eq!(enriched["dst"]["kind"], "external");
    assert_eq!(enriched["dst"]["dns_name"], "example.com");
    assert_eq!(enriched["src"]["pod"], "web");
    let dns = &got[&id_of(&answer.header)][0];
    assert_eq!(
        dns["src"]["pod"], "web",
        "the DNS event's pod comes from its container id"
    );
    assert_eq!(dns["src"]["container"], "app");
    drop(stage);
}

/// Pods and a stream exercising every rule: reuse, host, external with and
/// without a name, runtime events by container id, host processes.
fn fixture() -> (
    Vec<PodMetadata>,
    Vec<L4Event>,
    Vec<DnsEvent>,
    Vec<RuntimeEvent>,
) {
    let mut agent = pod("agent", "192.168.10.11", 0, None);
    agent.host_network = true;
    let pods = vec![
        pod("a", "10.1.0.7", 1000, Some(2000)),
        pod("b", "10.1.0.7", 3000, None),
        pod("db", "10.1.5.5", 0, None),
        agent,
    ];
    let mut answer = samples::dns_resolution(samples::header("node-a", "sensor", 10, 1200 * S));
    answer.container_id = Some("ctr-a".into());
    let l4 = vec![
        conn(11, 1500, "10.1.0.7", "10.1.5.5"),
        conn(12, 1600, "10.1.0.7", "93.184.215.14"),
        conn(13, 3500, "10.1.0.7", "10.1.5.5"),
        conn(14, 3600, "10.1.0.7", "203.0.113.50"),
        conn(15, 3700, "192.168.10.11", "10.1.5.5"),
        conn(16, 3750, "192.168.10.12", "10.96.0.10"),
    ];
    let mut exec = samples::file_rename(samples::header("node-a", "sensor", 20, 3800 * S));
    exec.kind = RuntimeKind::ProcessExec;
    exec.container_id = Some("ctr-b".into());
    let mut host = samples::file_rename(samples::header("node-a", "sensor", 21, 3900 * S));
    host.container_id = None;
    (pods, l4, vec![answer], vec![exec, host])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_enricher_rebuilds_its_state_and_enriches_like_the_first() {
    let Some((broker, bus)) = setup().await else {
        return;
    };
    let (pods, l4, dns, runtime) = fixture();
    bus.pods(&pods).await;
    // A node and a Service: the node's address is a named host, the
    // Service's cluster IP (the DNS resolver) a service.
    let node = samples::node("node-b", "192.168.10.12".parse().expect("ip"));
    bus.send(topics::PODS, &node.uid, std::slice::from_ref(&node))
        .await;
    let service = samples::kube_dns();
    bus.send(topics::PODS, &service.uid, std::slice::from_ref(&service))
        .await;
    bus.send(topics::L4_RAW, "node-a", &dns).await;
    bus.send(topics::L4_RAW, "node-a", &l4).await;
    bus.send(topics::RUNTIME_RAW, "node-a", &runtime).await;
    let total = dns.len() + l4.len() + runtime.len();

    let out = Lines::spawn(tapwire(&broker.address()).args([
        "topics",
        "tail",
        topics::L4_ENRICHED,
        topics::RUNTIME_ENRICHED,
        "--group",
        "golden-out",
    ]));
    let first = enricher(&broker, "golden-1", 1000);
    assert!(
        wait_until(Duration::from_secs(60), || out.count() >= total),
        "{}",
        first.stderr()
    );
    let (ok, _) = first.terminate(Duration::from_secs(20));
    assert!(ok, "the first enricher stops cleanly");

    // A fresh process and group: state comes only from the compacted topic.
    let second = enricher(&broker, "golden-2", 1000);
    assert!(
        wait_until(Duration::from_secs(60), || out.count() >= 2 * total),
        "{}",
        second.stderr()
    );
    drop(second);

    let got = by_id(&out.snapshot());
    assert_eq!(got.len(), total);
    for (id, events) in &got {
        assert_eq!(events.len(), 2, "{id}");
        assert_eq!(
            events[0], events[1],
            "the restarted enricher differs on {id}"
        );
    }

    // And both equal the committed golden output.
    let golden_path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/enrich_fixture.json");
    let first_run: BTreeMap<&String, &Value> = got.iter().map(|(id, e)| (id, &e[0])).collect();
    let text = serde_json::to_string_pretty(&first_run).expect("json");
    if std::env::var_os("TAPWIRE_REGENERATE_GOLDEN").is_some() {
        std::fs::write(golden_path, format!("{text}\n")).expect("write golden");
    }
    let golden = std::fs::read_to_string(golden_path).expect("golden file");
    // As JSON values: key order is serde_json's choice (sorted, or as
    // written when a dependency enables `preserve_order`), not ours.
    let golden_value: Value = serde_json::from_str(&golden).expect("golden JSON");
    let got_value = serde_json::to_value(&first_run).expect("json");
    assert!(
        got_value == golden_value,
        "enrichment differs from {golden_path}:\n{text}"
    );
}
