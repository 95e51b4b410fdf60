//! The whole pipeline, each stage its own process: the demo's traffic
//! replayed by `tapwire capture` into Tansu, then `enrich`, `policy`,
//! `aggregate` (ClickHouse), `cef` (syslog-ng) and `record` (SeaweedFS).
//! Asserts exact connection counts in ClickHouse, a CEF message at the
//! receiver for every verdict, and the recorded streams in S3.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_schemas::events::*;
use tapwire_schemas::{Ip, encode, samples, topics};
use tapwire_tests::{
    Broker, Lines, Storage, SyslogNg, env_or, run_ok, shared_service, tapwire, wait_until,
};

const S: i64 = 1_000_000_000;
/// The demo's clock: its traffic starts at 2026-11-23 10:00:00 UTC.
const T0: i64 = 1_795_428_000 * S;
const REQUESTS: u64 = 60;

/// The demo's cluster, as k8s-watch would publish it.
fn cluster() -> Vec<OutRecord> {
    let pod = |name: &str, namespace: &str, ip: &str| {
        let mut p = samples::pod(
            samples::header("node-a", "k8s-watch", 0, T0 - 3600 * S),
            name,
            namespace,
            ip.parse::<IpAddr>().expect("ip"),
        );
        p.uid = format!("uid-{namespace}-{name}");
        p.start_ns = Some(T0 - 3600 * S);
        OutRecord::new(
            topics::PODS,
            Some(p.uid.clone().into_bytes()),
            encode(&p).expect("encode"),
        )
    };
    let service = ServiceMetadata {
        header: samples::header("", "k8s-watch", 0, T0 - 3600 * S),
        uid: "kube-dns-uid".into(),
        name: "kube-dns".into(),
        namespace: "kube-system".into(),
        cluster_ips: vec![Ip(IpAddr::from([10, 96, 0, 10]))],
        ports: vec![53],
        selector: BTreeMap::new(),
        start_ns: Some(T0 - 86_400 * S),
        end_ns: None,
    };
    vec![
        pod("web-1", "shop", "10.1.0.7"),
        pod("api-0", "shop", "10.1.2.3"),
        pod("db-0", "shop", "10.1.5.5"),
        pod("tool-0", "dev", "10.2.0.9"),
        OutRecord::new(
            topics::PODS,
            Some(b"kube-dns-uid".to_vec()),
            encode(&service).expect("encode"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_traffic_through_every_stage_as_separate_processes() {
    let Some(ch) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let Some(s3) = shared_service(
        "SeaweedFS S3",
        env_or("TAPWIRE_S3_ENDPOINT", "http://127.0.0.1:8333").trim_start_matches("http://"),
    ) else {
        return;
    };
    let Some(receiver) = SyslogNg::start() else {
        return;
    };
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://{s3}");
    let id = std::process::id();
    let (db, bucket) = (format!("tapwire_e2e_{id}"), format!("tw-e2e-{id}"));
    tapwire_tests::create_bucket(&endpoint, &bucket);

    // The demo writes its traffic and policies; its own run checks itself.
    run_ok(
        tapwire("127.0.0.1:1")
            .args(["demo", "--events", &REQUESTS.to_string(), "--out"])
            .arg(dir.path()),
    );
    let (pcap, policies) = (
        dir.path().join("node-a.pcap"),
        dir.path().join("policies.yaml"),
    );

    let brokers = broker.address();
    run_ok(tapwire(&brokers).args(["topics", "create", "--partitions", "2"]));
    let sink = KafkaSink::new(&KafkaConfig {
        brokers: brokers.clone(),
        ..KafkaConfig::default()
    })
    .expect("producer");
    sink.send_batch(cluster()).await.expect("pods");

    let stages = [
        Lines::spawn(tapwire(&brokers).args(["enrich", "--group", "e2e-enrich"])),
        Lines::spawn(
            tapwire(&brokers)
                .args(["policy", "--group", "e2e-policy", "--policies"])
                .arg(&policies),
        ),
        Lines::spawn(
            tapwire(&brokers)
                .args([
                    "aggregate",
                    "--clickhouse-url",
                    &ch,
                    "--database",
                    &db,
                    "--group",
                    "e2e-aggregate",
                ])
                .env("TAPWIRE_AGGREGATE__FLUSH_INTERVAL_MS", "100"),
        ),
        Lines::spawn(tapwire(&brokers).args([
            "cef",
            "--target",
            &format!("tcp://127.0.0.1:{}", receiver.tcp_port),
            "--group",
            "e2e-cef",
            "--cluster-name",
            "e2e",
        ])),
        Lines::spawn(
            tapwire_tests::s3_env(&mut tapwire(&brokers))
                .args([
                    "record",
                    "--bucket",
                    &bucket,
                    "--endpoint",
                    &endpoint,
                    "--path-style",
                ])
                .args([
                    "--kfl",
                    "http or dns",
                    "--group",
                    "e2e-record",
                    "--spool-dir",
                ])
                .arg(dir.path().join("spool"))
                .env("TAPWIRE_RECORD__SLICE_MAX_AGE_MS", "2000"),
        ),
    ];
    let captured = run_ok(
        tapwire(&brokers)
            .args(["capture", "--source"])
            .arg(format!("pcap:{}", pcap.display()))
            .args(["--node-name", "node-a", "--sensor-id", "e2e-sensor"]),
    );
    eprintln!("capture: {captured}");

    // Connections per tab, as the traffic implies them (see `tapwire demo`).
    let counted = |mode: &str, src: &str, dst_port: u16| {
        tapwire_tests::clickhouse::scalar(
            &ch,
            &db,
            &format!(
                "SELECT sum(connections) AS n FROM tapwire.connection_counts \
                 WHERE mode = '{mode}' AND src_pod = '{src}' AND dst_port = {dst_port}"
            ),
        )
    };
    let want = [
        ("enforce", "web-1", 8080, REQUESTS),
        ("audit", "api-0", 5432, REQUESTS.div_ceil(5)),
        // db-0's audit-mode ingress policy decides (no egress policy covers tool-0).
        ("audit", "tool-0", 5432, REQUESTS.div_ceil(50)),
        ("enforce", "web-1", 443, REQUESTS.div_ceil(50)),
        ("enforce", "web-1", 80, REQUESTS.div_ceil(100)),
    ];
    let all_there = || want.iter().all(|(m, s, p, n)| counted(m, s, *p) >= *n);
    let ok = tokio::task::block_in_place(|| wait_until(Duration::from_secs(120), all_there));
    let logs: String = stages
        .iter()
        .map(Lines::stderr)
        .collect::<Vec<_>>()
        .join("\n---\n");
    assert!(ok, "the counts arrive in ClickHouse; stage logs:\n{logs}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (mode, src, port, n) in want {
        assert_eq!(counted(mode, src, port), n, "{mode} {src} -> :{port}");
    }

    // The analyst query "top DNS names, by how many pods" names the pod that
    // asked, from the packets' client address alone (as of the traffic's
    // last hour: the demo's clock is in the past).
    let query = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../aggregator/queries/06_top_dns_names.sql"
    ))
    .expect("analyst query")
    .replace("now()", &format!("toDateTime({})", T0 / S + 3600));
    let out = run_ok(tapwire("127.0.0.1:1").args([
        "query",
        "sql",
        "--clickhouse-url",
        &ch,
        "--database",
        &db,
        // The query opens with an SQL comment (`-- ...`).
        "--",
        &query,
    ]));
    let names: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    let example = names
        .iter()
        .find(|r| r["dns_name"] == "example.com")
        .unwrap_or_else(|| panic!("example.com among {names:?}"));
    let number = |v: &serde_json::Value| v.as_u64().or_else(|| v.as_str()?.parse().ok());
    assert_eq!(number(&example["queries"]), Some(REQUESTS.div_ceil(50)));
    assert_eq!(number(&example["pods"]), Some(1), "{example}");
    assert_eq!(
        tapwire_tests::clickhouse::scalar(
            &ch,
            &db,
            "SELECT count() AS n FROM tapwire.network_events \
             WHERE kind = 'dns_query' AND dns_name = 'example.com' AND src_pod = 'web-1'"
        ),
        REQUESTS.div_ceil(50),
        "every query of example.com is web-1's"
    );

    // Every verdict reached the SIEM, blocked ones with the violation family.
    let verdicts =
        tapwire_tests::clickhouse::scalar(&ch, &db, "SELECT count() AS n FROM tapwire.verdicts");
    // The recorder queues a scan job per slice: the SIEM hears those as
    // SJ-001, besides the verdicts.
    let verdict_lines = || -> Vec<String> {
        receiver
            .received("tcp")
            .into_iter()
            .filter(|l| !l.contains("|SJ-00"))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(60), || verdict_lines().len() as u64
            >= verdicts),
        "CEF at the receiver: {} of {verdicts}",
        verdict_lines().len()
    );
    let cef = verdict_lines();
    assert_eq!(cef.len() as u64, verdicts, "one CEF message per verdict");
    assert!(
        receiver
            .received("tcp")
            .iter()
            .any(|l| l.contains("|SJ-001|Scan job|")),
        "the recorded slices were queued for scanning"
    );
    let blocked = cef
        .iter()
        .filter(|l| l.contains("|FNT-001|") && l.contains("dst=169.254.169.254"))
        .count();
    assert_eq!(
        blocked as u64,
        REQUESTS.div_ceil(100),
        "blocked metadata calls"
    );
    assert!(cef.iter().all(|l| l.contains("cs1=e2e")));

    // The recorded streams are in S3: every HTTP call and DNS lookup.
    let location = format!("s3://{bucket}/tapwire");
    let streams = |kfl: &str| {
        let out = run_ok(
            tapwire_tests::s3_env(&mut tapwire("127.0.0.1:1"))
                .args([
                    "investigate",
                    &location,
                    "--kfl",
                    kfl,
                    "--format",
                    "json",
                    "--streams",
                ])
                .args(["--endpoint", &endpoint, "--path-style"]),
        );
        out.lines().count() as u64
    };
    let http = REQUESTS + REQUESTS.div_ceil(100);
    assert!(
        tokio::task::block_in_place(
            || wait_until(Duration::from_secs(60), || streams("http") >= http)
        ),
        "HTTP streams in S3: {} of {http}; record:\n{}",
        streams("http"),
        stages[4].stderr()
    );
    assert_eq!(streams("http"), http);
    assert_eq!(streams("dns"), REQUESTS.div_ceil(50));
    assert_eq!(
        streams(r#"http and request.path == "/latest/meta-data/iam/""#),
        REQUESTS.div_ceil(100)
    );
    for stage in stages {
        let (clean, _) = stage.terminate(Duration::from_secs(15));
        assert!(clean, "every stage stops cleanly on SIGTERM");
    }
}
