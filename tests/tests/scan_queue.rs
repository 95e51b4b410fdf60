//! Issue 18: the scan job queue over Tansu, with recorded slices in
//! SeaweedFS and results in ClickHouse: the recorder queues a job per
//! slice, scanners of one group share the jobs, a job whose object hangs
//! goes through three attempts to Error, a scanner killed mid-job leaves
//! its job to another, and statuses come in the documented order.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_schemas::scan::{ScanJob, ScanObject, enqueue_records};
use tapwire_schemas::{encode, topics};
use tapwire_tests::{
    Broker, Lines, Storage, env_or, planted, run_ok, s3_env, shared_service, tapwire, wait_until,
};

/// Every record of `topic` from its start, as JSON; returns when
/// `done(records)` holds (checked while the topic is quiet) or after
/// `limit`.
fn read_json(
    broker: &str,
    topic: &str,
    limit: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    use rdkafka::Message;

    let deadline = Instant::now() + limit;
    loop {
        let consumer = tapwire_tests::from_the_start(broker, topic);
        let mut out = Vec::new();
        let mut idle_since = Instant::now();
        // Until quiet, or (a topic that is never quiet, like heartbeats)
        // the deadline.
        while idle_since.elapsed() < Duration::from_millis(800) && Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.expect("consume");
                let value = serde_json::from_slice(m.payload().unwrap_or_default())
                    .unwrap_or(serde_json::Value::Null);
                out.push(value);
                idle_since = Instant::now();
            }
        }
        if done(&out) || Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Statuses of each job in topic order (one job's messages share a key,
/// so a partition, so their order is the order they were written).
fn by_job(statuses: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut jobs: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for s in statuses {
        jobs.entry(s["job_id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(s.clone());
    }
    jobs
}

fn names(statuses: &[serde_json::Value]) -> Vec<String> {
    statuses
        .iter()
        .map(|s| format!("{}#{}", s["status"].as_str().unwrap_or("?"), s["attempt"]))
        .collect()
}

fn finished(statuses: &[serde_json::Value]) -> usize {
    statuses
        .iter()
        .filter(|s| s["status"] == "Finished")
        .count()
}

async fn send(broker: &str, records: Vec<OutRecord>) {
    let sink = KafkaSink::new(&KafkaConfig {
        brokers: broker.to_owned(),
        ..KafkaConfig::default()
    })
    .expect("producer");
    sink.send_batch(records).await.expect("send");
}

async fn enqueue(broker: &str, jobs: &[ScanJob]) {
    for batch in enqueue_records(jobs) {
        let records = batch
            .into_iter()
            .map(|(topic, key, payload)| OutRecord::new(topic, Some(key), payload))
            .collect();
        send(broker, records).await;
    }
}

/// A scanner of `broker`'s queue (with the configuration file `config`, if
/// not empty), waiting until it says it is ready.
fn scanner(broker: &str, id: &str, extra: &[&str], config: &str) -> Lines {
    let mut cmd = tapwire(broker);
    if !config.is_empty() {
        cmd.args(["--config", config]);
    }
    s3_env(&mut cmd)
        .args(["scanner", "--id", id])
        .args(extra)
        .env("TAPWIRE_SCAN__HEARTBEAT_INTERVAL_MS", "500");
    let lines = Lines::spawn(&mut cmd);
    assert!(
        wait_until(Duration::from_secs(60), || lines.stderr().contains("ready")),
        "scanner {id} not ready: {}",
        lines.stderr()
    );
    lines
}

fn s3_address() -> Option<String> {
    shared_service(
        "SeaweedFS S3",
        env_or("TAPWIRE_S3_ENDPOINT", "http://127.0.0.1:8333").trim_start_matches("http://"),
    )
}

fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sf"])
        .args(args)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {args:?}: {}", out.status);
    out.stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_slice_yields_exactly_the_planted_findings_in_clickhouse() {
    let Some(address) = s3_address() else {
        return;
    };
    let Some(ch) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let brokers = broker.address();
    let endpoint = format!("http://{address}");
    let bucket = format!("tw-scan-{}", std::process::id());
    tapwire_tests::create_bucket(&endpoint, &bucket);
    run_ok(tapwire(&brokers).args(["topics", "create", "--partitions", "2"]));

    // The planted traffic, as the capture agent publishes packets.
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("planted.pcap");
    let (frames, planted_things) = planted::frames(1_700_000_000_000_000_000);
    planted::write_pcap(&pcap, &frames);
    let records = tapwire_tests::packet_records(pcap.to_str().expect("utf-8"), "node-a")
        .into_iter()
        .map(|p| {
            OutRecord::new(
                topics::PACKETS_RAW,
                Some(b"node-a".to_vec()),
                encode(&p).expect("encode"),
            )
        })
        .collect();
    send(&brokers, records).await;

    let s3 = ["--endpoint", &endpoint, "--path-style"];
    let scanner = scanner(&brokers, "scanner-a", &s3, "");
    let spool = dir.path().join("spool");
    let mut record = tapwire(&brokers);
    s3_env(&mut record)
        .args(["record", "--bucket", &bucket])
        .args(s3)
        .args(["--kfl", "tcp or udp", "--group", "scan-rec", "--spool-dir"])
        .arg(&spool)
        .env("TAPWIRE_RECORD__SLICE_MAX_AGE_MS", "1000");
    let record = Lines::spawn(&mut record);

    // The recorder queued the slice; the scanner finished it.
    let statuses = read_json(
        &brokers,
        topics::SCAN_STATUS,
        Duration::from_secs(90),
        |s| finished(s) >= 1,
    );
    let jobs = by_job(&statuses);
    assert_eq!(
        jobs.len(),
        1,
        "one slice, one job: {statuses:#?}\n{}\n{}",
        record.stderr(),
        scanner.stderr()
    );
    let (job_id, job) = jobs.iter().next().expect("a job");
    assert_eq!(
        names(job),
        [
            "Pending#1",
            "In progress#1",
            "Parsing results#1",
            "Finished#1"
        ],
        "{job:#?}"
    );
    assert_eq!(job[0]["scanner"], "", "Pending is the recorder's");
    assert_eq!(job[1]["scanner"], "scanner-a");
    let object = job[0]["object"].as_str().expect("object").to_owned();
    assert!(
        object.starts_with(&format!("s3://{bucket}/")) && object.ends_with(".pcap"),
        "{object}"
    );
    assert_eq!(job[3]["findings"], planted_things.len());

    // Exactly the planted findings, each at a frame of the stored slice
    // that holds it, no secret in an excerpt.
    let findings = read_json(
        &brokers,
        topics::SCAN_FINDINGS,
        Duration::from_secs(30),
        |f| f.len() >= planted_things.len(),
    );
    assert!(findings.iter().all(|f| f["job_id"] == *job_id));
    let found: Vec<serde_json::Value> = findings.iter().map(|f| f["finding"].clone()).collect();
    let key = object.trim_start_matches(&format!("s3://{bucket}/"));
    let slice = dir.path().join("slice.pcap");
    std::fs::write(&slice, curl(&[&format!("{endpoint}/{bucket}/{key}")])).expect("write");
    planted::assert_exactly(&found, &planted_things, &slice);

    // ClickHouse: the job Finished, the findings once each.
    let db = format!("scan_{}", std::process::id());
    let aggregate = Lines::spawn(tapwire(&brokers).args([
        "aggregate",
        "--clickhouse-url",
        &ch,
        "--database",
        &db,
        "--group",
        "scan-agg",
    ]));
    let count = |sql: &str| {
        let sql = sql.to_owned();
        let ch = ch.clone();
        let db = db.clone();
        std::panic::catch_unwind(move || tapwire_tests::clickhouse::scalar(&ch, &db, &sql)).ok()
    };
    assert!(
        wait_until(Duration::from_secs(30), || count(
            "SELECT count() AS n FROM tapwire.scan_jobs WHERE status = 'Finished'"
        ) == Some(1)),
        "{}",
        aggregate.stderr()
    );
    // The findings published again (a scanner that died after publishing
    // them): still stored once each.
    let again: Vec<OutRecord> = findings
        .iter()
        .map(|f| {
            OutRecord::new(
                topics::SCAN_FINDINGS,
                Some(job_id.clone().into_bytes()),
                serde_json::to_vec(f).expect("json"),
            )
        })
        .collect();
    send(&brokers, again).await;
    assert!(wait_until(Duration::from_secs(30), || count(
        "SELECT count() AS n FROM tapwire.scan_findings"
    ) == Some(
        2 * planted_things.len() as u64
    )));
    assert_eq!(
        count("SELECT count() AS n FROM tapwire.scan_findings FINAL"),
        Some(planted_things.len() as u64)
    );
    assert_eq!(
        count(
            "SELECT uniqExact(finding_id) AS n FROM tapwire.scan_findings WHERE kind = 'sensitive_data' AND excerpt LIKE '%AKIAIOSFODNN7EXAMPLE%'"
        ),
        Some(0)
    );
    actions_reach_clickhouse_and_the_siem(&brokers, &ch, &db, &findings);
    aggregate.terminate(Duration::from_secs(15));
    record.terminate(Duration::from_secs(15));
    scanner.terminate(Duration::from_secs(15));
}

/// `curl` POST with a bearer token: the status and the body.
fn post(addr: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (
        status.trim().parse().expect("status"),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// The Scans API of `tapwire serve` over what the queue stored: the queue
/// view and findings; an admin accepts one finding's risk (briefly, so it
/// expires), marks another removed; a viewer may not; the SIEM hears the
/// scanner (SJ) and the actions (MLW/SD with suser and fname), ClickHouse
/// keeps them.
fn actions_reach_clickhouse_and_the_siem(
    brokers: &str,
    ch: &str,
    db: &str,
    findings: &[serde_json::Value],
) {
    let Some(receiver) = tapwire_tests::SyslogNg::start() else {
        return;
    };
    let port = tapwire_tests::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tapwire.toml");
    std::fs::write(
        &config,
        format!(
            "[aggregate]\nlisten = \"127.0.0.1:{port}\"\nclickhouse_url = \"{ch}\"\ndatabase = \"{db}\"\n\
             tokens = [{{name = \"lead\", role = \"admin\", token = \"lead-secret-0123456789\"}},\
             {{name = \"soc\", role = \"viewer\", token = \"soc-secret-0123456789\"}}]\n"
        ),
    )
    .expect("config");
    let serve = Lines::spawn(tapwire(brokers).arg("-c").arg(&config).arg("serve"));
    assert!(
        wait_until(Duration::from_secs(20), || serve
            .stderr()
            .contains("serving the console")),
        "{}",
        serve.stderr()
    );
    let cef = Lines::spawn(tapwire(brokers).args([
        "cef",
        "--target",
        &format!("tcp://127.0.0.1:{}", receiver.tcp_port),
        "--group",
        "scan-cef",
    ]));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let viewer = Some("soc-secret-0123456789");
    let (status, queue) = tapwire_tests::http_get_json_as(addr, "/api/v1/scans/queue", viewer);
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["statuses"]["Finished"], 1, "{queue}");
    assert_eq!(queue["scanners"][0]["scanner"], "scanner-a", "{queue}");
    let (status, listed) = tapwire_tests::http_get_json_as(addr, "/api/v1/scans/findings", viewer);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["findings"].as_array().map(Vec::len),
        Some(findings.len())
    );
    let id_of = |rule: &str| {
        findings
            .iter()
            .find(|f| f["finding"]["rule"] == rule)
            .and_then(|f| f["finding"]["id"].as_str())
            .expect("finding")
            .to_owned()
    };
    let (eicar, card, aws) = (
        id_of("eicar_test_file"),
        id_of("card-number"),
        id_of("aws-access-key"),
    );
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(
        post(
            &addr,
            &format!("/api/v1/admin/scans/findings/{eicar}/accept?days=30&reason=test%20file"),
            "soc-secret-0123456789"
        )
        .0,
        403,
        "a viewer may not accept a risk"
    );
    let (status, accepted) = post(
        &addr,
        &format!("/api/v1/admin/scans/findings/{eicar}/accept?days=30&reason=test%20file"),
        "lead-secret-0123456789",
    );
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["event"]["user"], "lead");
    // Expires within seconds.
    let (status, _) = post(
        &addr,
        &format!("/api/v1/admin/scans/findings/{card}/accept?days=0.00005"),
        "lead-secret-0123456789",
    );
    assert_eq!(status, 200);
    let (status, _) = post(
        &addr,
        &format!("/api/v1/admin/scans/findings/{aws}/remove?reason=key%20rotated"),
        "lead-secret-0123456789",
    );
    assert_eq!(status, 200);
    assert_eq!(
        post(
            &addr,
            "/api/v1/admin/scans/findings/nope/remove",
            "lead-secret-0123456789"
        )
        .0,
        400
    );
    let addr: std::net::SocketAddr = addr.parse().expect("addr");
    let state_of = |id: &str| {
        let (_, listed) = tapwire_tests::http_get_json_as(addr, "/api/v1/scans/findings", viewer);
        listed["findings"]
            .as_array()
            .and_then(|all| all.iter().find(|f| f["finding_id"] == id))
            .map(|f| f["state"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(30), || state_of(&eicar) == "accepted"
            && state_of(&aws) == "removed"),
        "{} {}",
        state_of(&eicar),
        state_of(&aws)
    );
    // The short acceptance expires: open again, and an SD-002 at the SIEM.
    assert!(
        wait_until(Duration::from_secs(40), || receiver
            .received("tcp")
            .iter()
            .any(|l| l.contains("|SD-002|"))),
        "{:#?}\n{}",
        receiver.received("tcp"),
        serve.stderr()
    );
    assert!(wait_until(Duration::from_secs(20), || state_of(&card) == "open"));
    let lines = receiver.received("tcp");
    let line = |sig: &str| {
        lines
            .iter()
            .find(|l| l.contains(sig))
            .unwrap_or_else(|| panic!("no {sig} line: {lines:#?}"))
            .clone()
    };
    let mlw = line("|MLW-001|Malware|5|");
    assert!(
        mlw.contains("suser=lead")
            && mlw.contains("outcome=Success")
            && mlw.contains("reason=test file"),
        "{mlw}"
    );
    assert!(mlw.contains("fname=s3://"), "{mlw}");
    let removed = line("|SD-003|");
    assert!(removed.contains("reason=key rotated"), "{removed}");
    let finished = line("|SJ-003|Scan job|5|");
    assert!(finished.contains("dvchost=scanner-a"), "{finished}");
    line("|SJ-001|Scan job|3|");
    assert!(!lines.iter().any(|l| l.contains("AKIAIOSFODNN7EXAMPLE")));
    let stored = || {
        tapwire_tests::clickhouse::scalar(
            ch,
            db,
            "SELECT count() AS n FROM tapwire.scan_events FINAL \
             WHERE event IN ('risk_accepted', 'threat_removed', 'risk_expired')",
        )
    };
    assert!(
        wait_until(Duration::from_secs(20), || stored() >= 4),
        "accepted twice, removed, expired: {}",
        stored()
    );
    let expired = tapwire_tests::clickhouse::scalar(
        ch,
        db,
        "SELECT count() AS n FROM tapwire.scan_events FINAL WHERE event = 'risk_expired'",
    );
    assert_eq!(expired, 1, "one expiry, however often it was checked");
    scans_page(addr, &listed_findings(addr, viewer));
    cef.terminate(Duration::from_secs(15));
    serve.terminate(Duration::from_secs(15));
}

/// The findings the API lists (all states).
fn listed_findings(addr: std::net::SocketAddr, token: Option<&str>) -> serde_json::Value {
    let (status, listed) = tapwire_tests::http_get_json_as(addr, "/api/v1/scans/findings", token);
    assert_eq!(status, 200, "{listed}");
    listed
}

/// The console's Scans page in headless Chromium: the queue's counts and
/// scanners, the findings with their states as the API gives them; an
/// admin accepts an open finding's risk from the page.
fn scans_page(addr: std::net::SocketAddr, listed: &serde_json::Value) {
    if tapwire_tests::browser::chromium().is_none() {
        return;
    }
    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    let b = tapwire_tests::browser::Browser::start(&shots).expect("browser");
    b.goto(&format!(
        "http://{addr}/?token=lead-secret-0123456789#/scans"
    ));
    b.wait_for(
        "the Scans page",
        "return document.body.dataset.loaded === 'scans'",
    );
    let finished = b.eval(
        "return document.querySelector('#scan-statuses [data-status=\"Finished\"]').textContent",
        serde_json::json!([]),
    );
    assert_eq!(finished, "Finished: 1");
    let scanner = b.eval(
        "return document.querySelector('#scan-scanners tr[data-scanner=\"scanner-a\"]') !== null",
        serde_json::json!([]),
    );
    assert_eq!(scanner, true);
    let shown = b.eval(
        "return [...document.querySelectorAll('#scan-findings tbody tr')].map(r => \
         [r.dataset.finding, r.querySelector('.state').textContent.split(' ')[0]])",
        serde_json::json!([]),
    );
    let mut want: Vec<serde_json::Value> = listed["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| serde_json::json!([f["finding_id"], f["state"]]))
        .collect();
    let mut got = shown.as_array().expect("rows").clone();
    want.sort_by_key(serde_json::Value::to_string);
    got.sort_by_key(serde_json::Value::to_string);
    assert_eq!(got, want, "the page shows the API's findings and states");
    b.screenshot("scans-01-queue-and-findings");
    let open = b.eval(
        "const row = document.querySelector('#scan-findings tr[data-rule=\"http-basic-auth\"]'); \
         row.querySelector('button.accept').click(); return row.dataset.finding",
        serde_json::json!([]),
    );
    let id = open.as_str().expect("finding id").to_owned();
    b.wait_for(
        "the action's answer",
        "return document.querySelector('#scan-note').dataset.status === '200'",
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            listed_findings(addr, Some("soc-secret-0123456789"))["findings"]
                .as_array()
                .and_then(|all| all.iter().find(|f| f["finding_id"] == id.as_str()))
                .is_some_and(|f| f["state"] == "accepted")
        }),
        "accepted from the page"
    );
    b.goto(&format!("http://{addr}/#/scans"));
    b.wait_for(
        "the Scans page again",
        "return document.body.dataset.loaded === 'scans'",
    );
    b.screenshot("scans-02-accepted");
    assert!(b.console_errors().is_empty(), "{:?}", b.console_errors());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_scanners_share_200_jobs_and_each_is_finished_once_in_order() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let brokers = broker.address();
    run_ok(tapwire(&brokers).args(["topics", "create", "--partitions", "4"]));
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..200u16 {
        let body = if i % 10 == 0 {
            planted::eicar()
        } else {
            format!("order {i} shipped")
        };
        let frames = tapwire_packet::synth::tcp_session(
            1_700_000_000_000_000_000 + i64::from(i) * 1_000_000,
            format!("10.1.0.4:{}", 30_000 + i).parse().expect("addr"),
            "10.1.0.9:8080".parse().expect("addr"),
            &[(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", body.as_bytes())],
        );
        planted::write_pcap(&dir.path().join(format!("job-{i:03}.pcap")), &frames);
    }
    // One after the other: Tansu 0.6 can leave a group whose members join
    // at the same moment without assignments (real Kafka rebalances).
    let one = scanner(&brokers, "scanner-1", &[], "");
    std::thread::sleep(Duration::from_secs(6));
    let two = scanner(&brokers, "scanner-2", &[], "");
    // Both in the group before the jobs come.
    std::thread::sleep(Duration::from_secs(6));
    let queued = run_ok(
        tapwire(&brokers)
            .args(["scan", "--enqueue", "--no-progress"])
            .arg(dir.path()),
    );
    assert_eq!(queued.lines().count(), 200);

    let statuses = read_json(
        &brokers,
        topics::SCAN_STATUS,
        Duration::from_secs(180),
        |s| by_job(s).values().filter(|j| finished(j) >= 1).count() >= 200,
    );
    let jobs = by_job(&statuses);
    assert_eq!(jobs.len(), 200);
    let mut per_scanner: BTreeMap<String, usize> = BTreeMap::new();
    for (id, job) in &jobs {
        assert_eq!(
            names(job),
            [
                "Pending#1",
                "In progress#1",
                "Parsing results#1",
                "Finished#1"
            ],
            "job {id}: each job once, in the documented order"
        );
        *per_scanner
            .entry(job[3]["scanner"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    eprintln!("jobs per scanner: {per_scanner:?}");
    assert_eq!(
        per_scanner.keys().cloned().collect::<Vec<_>>(),
        ["scanner-1", "scanner-2"],
        "both scanners took jobs: {per_scanner:?}"
    );
    let findings = read_json(
        &brokers,
        topics::SCAN_FINDINGS,
        Duration::from_secs(20),
        |f| f.len() >= 20,
    );
    let eicar: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f["finding"]["rule"] == "eicar_test_file")
        .filter_map(|f| f["finding"]["object"].as_str())
        .collect();
    assert_eq!(eicar.len(), 20, "every tenth capture holds the test string");
    assert!(eicar.iter().all(|o| o.ends_with("0.pcap")), "{eicar:?}");
    // Heartbeats: both scanners said Busy and Free.
    let beats = read_json(
        &brokers,
        topics::SCAN_SCANNERS,
        Duration::from_secs(5),
        |_| true,
    );
    for id in ["scanner-1", "scanner-2"] {
        for status in ["Busy", "Free"] {
            assert!(
                beats
                    .iter()
                    .any(|b| b["scanner"] == id && b["status"] == status),
                "{id} never said {status}"
            );
        }
    }
    let (_, _) = one.terminate(Duration::from_secs(15));
    let (_, _) = two.terminate(Duration::from_secs(15));
}

/// A TCP server that accepts and never answers: an object store that hangs.
fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = stream.read(&mut buf);
            held.push(stream);
        }
    });
    (port, handle)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_object_hangs_goes_through_three_attempts_to_error() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let brokers = broker.address();
    run_ok(tapwire(&brokers).args(["topics", "create", "--partitions", "2"]));
    let (port, _hole) = black_hole();
    let endpoint = format!("http://127.0.0.1:{port}");
    let scanner = scanner(
        &brokers,
        "scanner-h",
        &[
            "--endpoint",
            &endpoint,
            "--path-style",
            "--job-timeout",
            "1",
        ],
        "",
    );
    let job = ScanJob::new(
        ScanObject::Slice {
            url: "s3://hanging/slice.pcap".into(),
        },
        "test",
        1,
    );
    enqueue(&brokers, std::slice::from_ref(&job)).await;
    let statuses = read_json(
        &brokers,
        topics::SCAN_STATUS,
        Duration::from_secs(60),
        |s| s.iter().any(|c| c["status"] == "Error"),
    );
    let jobs = by_job(&statuses);
    let seen = &jobs[&job.id];
    assert_eq!(
        names(seen),
        [
            "Pending#1",
            "In progress#1",
            "Pending#1",
            "In progress#2",
            "Pending#2",
            "In progress#3",
            "Error#3"
        ],
        "{seen:#?}\n{}",
        scanner.stderr()
    );
    for retry in [&seen[2], &seen[4]] {
        assert!(
            retry["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("E-TIMEOUT")),
            "{retry}"
        );
    }
    let reason = seen[6]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("E-TIMEOUT") && reason.contains("attempt 3 of 3"),
        "{reason}"
    );
    // The scanner goes on: a malformed capture is Error at once, with why.
    let bad_dir = tempfile::tempdir().expect("tempdir");
    let bad = bad_dir.path().join("bad.pcap");
    std::fs::write(&bad, b"definitely not a capture").expect("write");
    let bad_job = ScanJob::new(
        ScanObject::File {
            path: bad.display().to_string(),
        },
        "test",
        2,
    );
    enqueue(&brokers, std::slice::from_ref(&bad_job)).await;
    let statuses = read_json(
        &brokers,
        topics::SCAN_STATUS,
        Duration::from_secs(30),
        |s| {
            by_job(s)
                .get(&bad_job.id)
                .is_some_and(|j| j.iter().any(|c| c["status"] == "Error"))
        },
    );
    let seen = &by_job(&statuses)[&bad_job.id];
    assert_eq!(names(seen), ["Pending#1", "In progress#1", "Error#1"]);
    assert!(
        seen[2]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("E-MALFORMED")),
        "{}",
        seen[2]
    );
    // A message that is not a job goes to the dead-letter topic.
    send(
        &brokers,
        vec![OutRecord::new(
            topics::SCAN_JOBS,
            Some(b"x".to_vec()),
            b"{not json".to_vec(),
        )],
    )
    .await;
    let dlq = read_json(&brokers, topics::DLQ, Duration::from_secs(20), |d| {
        !d.is_empty()
    });
    assert_eq!(dlq.len(), 1, "the bad job was dead-lettered");
    scanner.terminate(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scanner_killed_mid_job_leaves_the_job_to_another() {
    let Some(address) = s3_address() else {
        return;
    };
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let brokers = broker.address();
    run_ok(tapwire(&brokers).args(["topics", "create", "--partitions", "1"]));
    let endpoint = format!("http://{address}");
    let bucket = format!("tw-scan-kill-{}", std::process::id());
    tapwire_tests::create_bucket(&endpoint, &bucket);
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("planted.pcap");
    let (frames, planted_things) = planted::frames(1_700_000_000_000_000_000);
    planted::write_pcap(&pcap, &frames);
    curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", pcap.display()),
        &format!("{endpoint}/{bucket}/node-a/planted.pcap"),
    ]);

    // A dead member leaves the group when its session times out; the
    // rebalance then waits for the others at most max.poll.interval.ms.
    let config = dir.path().join("tapwire.toml");
    std::fs::write(
        &config,
        "[kafka.options]\n\"session.timeout.ms\" = \"6000\"\n\"max.poll.interval.ms\" = \"20000\"\n",
    )
    .expect("write");
    let config = config.display().to_string();
    // Scanner A's store hangs: it is mid-job when it is killed.
    let (port, _hole) = black_hole();
    let hole = format!("http://127.0.0.1:{port}");
    let a = scanner(
        &brokers,
        "scanner-a",
        &["--endpoint", &hole, "--path-style", "--job-timeout", "15"],
        &config,
    );
    let job = ScanJob::new(
        ScanObject::Slice {
            url: format!("s3://{bucket}/node-a/planted.pcap"),
        },
        "test",
        1,
    );
    enqueue(&brokers, std::slice::from_ref(&job)).await;
    read_json(
        &brokers,
        topics::SCAN_STATUS,
        Duration::from_secs(30),
        |s| s.iter().any(|c| c["status"] == "In progress"),
    );
    a.kill();
    // Tansu hands a dead member's partitions over once its session timed
    // out, to members that join after that.
    std::thread::sleep(Duration::from_secs(10));

    let b = scanner(
        &brokers,
        "scanner-b",
        &[
            "--endpoint",
            &endpoint,
            "--path-style",
            "--job-timeout",
            "15",
        ],
        &config,
    );
    let statuses = read_json(
        &brokers,
        topics::SCAN_STATUS,
        Duration::from_secs(90),
        |s| finished(s) >= 1,
    );
    let seen = &by_job(&statuses)[&job.id];
    assert_eq!(
        names(seen),
        [
            "Pending#1",
            "In progress#1",
            "In progress#2",
            "Parsing results#2",
            "Finished#2"
        ],
        "{seen:#?}\n{}",
        b.stderr()
    );
    assert_eq!(seen[1]["scanner"], "scanner-a");
    assert_eq!(seen[4]["scanner"], "scanner-b");
    let findings = read_json(
        &brokers,
        topics::SCAN_FINDINGS,
        Duration::from_secs(20),
        |f| f.len() >= planted_things.len(),
    );
    let found: Vec<serde_json::Value> = findings.iter().map(|f| f["finding"].clone()).collect();
    planted::assert_exactly(&found, &planted_things, &pcap);
    b.terminate(Duration::from_secs(15));
}

/// A root filesystem with `/bin/sleep` (and the libraries it links) for a
/// chrooted container process, and the planted files.
fn container_root(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    let sleep = std::fs::canonicalize("/bin/sleep").expect("sleep");
    let ldd = Command::new("ldd").arg(&sleep).output().expect("ldd");
    let mut files = vec![sleep.clone()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(path) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(std::path::PathBuf::from)
        {
            files.push(path);
        }
    }
    for file in files {
        let target = root.join(file.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&file, &target).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    if !root.join("bin/sleep").exists() {
        std::fs::copy(&sleep, root.join("bin/sleep")).expect("copy sleep");
    }
    std::fs::create_dir_all(root.join("etc/app")).expect("mkdir");
    std::fs::write(
        root.join("etc/app/key.pem"),
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\n",
    )
    .expect("write");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    std::fs::write(root.join("tmp/payload.com"), planted::eicar()).expect("write");
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_scanner_finds_a_planted_key_in_a_container_and_a_privileged_pod() {
    let Some(mut node) = tapwire_tests::node::Node::create("node-scan") else {
        return;
    };
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let brokers = broker.address();
    run_ok(tapwire(&brokers).args(["topics", "create", "--partitions", "2"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = container_root(dir.path());
    let pod = node.add_pod("shop", "web");
    let root_arg = root.display().to_string();
    let pid = node.spawn(&pod, &["chroot", &root_arg, "/bin/sleep", "600"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == root)
        }),
        "the container process runs in its root"
    );

    // The pod as the API would show it, privileged.
    let mut listing: serde_json::Value = serde_json::from_str(&node.listing()).expect("listing");
    for item in listing["items"].as_array_mut().expect("items") {
        if item["kind"] == "Pod" {
            item["spec"]["containers"][0]["securityContext"] =
                serde_json::json!({"privileged": true});
        }
    }
    let records: Vec<OutRecord> =
        tapwire_cluster::k8s::records_from_listing(&listing.to_string(), 1)
            .expect("records")
            .iter()
            .map(|r| r.to_out_record().expect("record"))
            .collect();
    send(&brokers, records).await;

    let scanner = scanner(&brokers, "scanner-node", &["--node", &node.name], "");
    let statuses = read_json(
        &brokers,
        topics::SCAN_STATUS,
        Duration::from_secs(60),
        |s| by_job(s).values().filter(|j| finished(j) == 1).count() >= 2,
    );
    let jobs = by_job(&statuses);
    let kinds: BTreeMap<String, Vec<String>> = jobs
        .values()
        .map(|j| {
            (
                j[0]["object_kind"].as_str().unwrap_or("?").to_owned(),
                names(j),
            )
        })
        .collect();
    assert_eq!(
        kinds.get("container").map(Vec::as_slice),
        Some(
            &[
                "Pending#1",
                "In progress#1",
                "Parsing results#1",
                "Finished#1"
            ]
            .map(String::from)[..]
        ),
        "{statuses:#?}\n{}",
        scanner.stderr()
    );
    assert_eq!(
        kinds.get("pod").map(Vec::as_slice),
        Some(
            &[
                "Pending#1",
                "In progress#1",
                "Parsing results#1",
                "Finished#1"
            ]
            .map(String::from)[..]
        )
    );
    let findings = read_json(
        &brokers,
        topics::SCAN_FINDINGS,
        Duration::from_secs(20),
        |f| f.len() >= 4,
    );
    let container_object = format!("container:{}", pod.container_id);
    let mut in_container: Vec<(String, String)> = findings
        .iter()
        .map(|f| &f["finding"])
        .filter(|f| f["object"] == container_object.as_str())
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or("").to_owned(),
                f["location"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    in_container.sort();
    assert_eq!(
        in_container,
        [
            ("eicar_test_file".to_owned(), "/tmp/payload.com".to_owned()),
            ("private-key".to_owned(), "/etc/app/key.pem".to_owned())
        ]
    );
    let pod_object = format!("pod:{}/{}", pod.namespace, pod.name);
    let privileged = findings
        .iter()
        .map(|f| &f["finding"])
        .find(|f| f["object"] == pod_object.as_str() && f["rule"] == "privileged-container")
        .expect("the privileged container is a misconfiguration");
    assert_eq!(privileged["kind"], "misconfiguration");
    assert_eq!(privileged["severity"], "critical");
    assert!(
        findings
            .iter()
            .map(|f| &f["finding"])
            .any(|f| f["rule"] == "NCMP-001"
                && f["object"] == "image:registry.local/app:1"
                && f["excerpt"]
                    .as_str()
                    .is_some_and(|e| e.contains("critical"))),
        "the image is non-compliant because of it: {findings:#?}"
    );
    scanner.terminate(Duration::from_secs(15));
}
