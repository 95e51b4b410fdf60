//! The recorder against a real S3 API (SeaweedFS): slices land in a bucket
//! and `investigate` finds them again by KFL; the merged PCAP is what
//! tshark says it should be; an outage spools and catches up; Object Lock
//! retention is set; a full spool drops and counts; bad packet records are
//! dead-lettered.
//!
//! The shared SeaweedFS comes from `scripts/services.sh` (`TAPWIRE_S3_ENDPOINT`);
//! the outage test starts its own private `weed` on free ports so that it
//! can kill and restart it without disturbing anyone. Without SeaweedFS or
//! tshark the tests skip with the reason (and fail under `CI=true`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tapwire_pcap_recorder::index::NamedQuery;
use tapwire_pcap_recorder::investigate::{self, Criteria};
use tapwire_pcap_recorder::recorder::{Recorder, RecorderConfig};
use tapwire_pcap_recorder::spool::{Delivery, Object, Spool, Uploader};
use tapwire_pcap_recorder::stage::RecordHandler;
use tapwire_pcap_recorder::store::{S3Settings, S3Store, Store};
use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::BatchHandler;
use tapwire_plumbing::telemetry::StageMetrics;
use tapwire_schemas::events::PacketRecord;
use tapwire_tests::{env_or, free_port, require, shared_service, wait_until};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/http_dns_lo.pcap"
);

fn shared_endpoint() -> Option<String> {
    let endpoint = env_or("TAPWIRE_S3_ENDPOINT", "http://127.0.0.1:8333");
    let addr = endpoint.trim_start_matches("http://").to_owned();
    shared_service("SeaweedFS S3", &addr).map(|_| endpoint)
}

fn settings(endpoint: &str, bucket: &str) -> S3Settings {
    let mut s = S3Settings::new(bucket);
    s.endpoint = Some(endpoint.to_owned());
    s.region = Some(env_or("TAPWIRE_S3_REGION", "us-east-1"));
    s.path_style = true;
    s.max_attempts = 2;
    s.retry_initial_backoff = Duration::from_millis(50);
    s.attempt_timeout = Duration::from_secs(5);
    s.static_credentials = Some(("tapwire".into(), "tapwire-secret".into()));
    s
}

fn unique_bucket(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("tw-{what}-{}-{nanos}", std::process::id())
}

async fn create_bucket(store: &S3Store, object_lock: bool) {
    store
        .client()
        .create_bucket()
        .bucket(store.bucket())
        .object_lock_enabled_for_bucket(object_lock)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {}: {e:?}", store.bucket()));
}

/// The fixture's packets as Avro messages, as capture produces them.
fn fixture_messages() -> Vec<Message> {
    tapwire_tests::packet_records(FIXTURE, "node-a")
        .iter()
        .enumerate()
        .map(|(n, r)| message(n as i64, tapwire_schemas::encode(r).expect("encode")))
        .collect()
}

fn message(offset: i64, payload: Vec<u8>) -> Message {
    Message {
        topic: tapwire_schemas::topics::PACKETS_RAW.into(),
        partition: 0,
        offset,
        key: None,
        payload,
        headers: vec![],
    }
}

/// tshark's answer: which TCP/UDP streams a display filter selects, and how
/// many packets those streams hold.
fn tshark_streams(filter: &str) -> (usize, usize) {
    let out = Command::new("tshark")
        .args([
            "-r",
            FIXTURE,
            "-Y",
            filter,
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "udp.stream",
        ])
        .stderr(Stdio::null())
        .output()
        .expect("tshark");
    let mut tcp = std::collections::BTreeSet::new();
    let mut udp = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split('\t');
        if let Some(t) = cols.next().filter(|t| !t.is_empty()) {
            tcp.insert(t.to_owned());
        }
        if let Some(u) = cols.next().filter(|u| !u.is_empty()) {
            udp.insert(u.to_owned());
        }
    }
    let parts: Vec<String> = tcp
        .iter()
        .map(|t| format!("tcp.stream == {t}"))
        .chain(udp.iter().map(|u| format!("udp.stream == {u}")))
        .collect();
    let packets = count_packets(FIXTURE.as_ref(), Some(&parts.join(" or ")));
    (tcp.len() + udp.len(), packets)
}

fn count_packets(file: &Path, filter: Option<&str>) -> usize {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file);
    if let Some(f) = filter {
        cmd.args(["-Y", f]);
    }
    let out = cmd.stderr(Stdio::null()).output().expect("tshark");
    assert!(out.status.success(), "tshark refused {}", file.display());
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn handler(store: Store, spool_dir: &Path, spool_max: u64, stage: &str) -> RecordHandler {
    let recorder = Recorder::new(
        RecorderConfig::default(),
        vec![NamedQuery {
            name: "default".into(),
            query: "http or dns".into(),
        }],
    )
    .expect("recorder");
    let metrics = StageMetrics::new(stage);
    let spool = Spool::open(spool_dir, spool_max).expect("spool");
    let uploader = Uploader::new(store, spool, metrics.clone());
    RecordHandler::new(
        recorder,
        uploader,
        "rec",
        Duration::from_secs(3600),
        metrics,
    )
}

#[tokio::test]
async fn slices_land_in_seaweedfs_and_investigate_finds_them_by_kfl() {
    let Some(endpoint) = shared_endpoint() else {
        return;
    };
    let Some(_) = tapwire_tests::tshark() else {
        return;
    };
    let s3 = S3Store::connect(&settings(&endpoint, &unique_bucket("find"))).await;
    create_bucket(&s3, false).await;
    let store = Store::S3(s3);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut handler = handler(store.clone(), &dir.path().join("spool"), 1 << 30, "s3-find");

    // The fixture, plus bad input: not Avro, and a frame of an unknown link type.
    let mut batch = fixture_messages();
    let good = batch.len();
    batch.push(message(good as i64, b"\x00garbage".to_vec()));
    let mut odd = PacketRecord {
        header: tapwire_schemas::samples::header("node-a", "capture", 999, 1),
        link_type: 4242,
        captured_len: 40,
        original_len: 40,
        data: vec![0x45; 40],
        flow_hash: 0,
        interface: None,
    };
    batch.push(message(
        good as i64 + 1,
        tapwire_schemas::encode(&odd).expect("encode"),
    ));
    odd.link_type = 1;
    odd.captured_len = 7; // disagrees with the data
    batch.push(message(
        good as i64 + 2,
        tapwire_schemas::encode(&odd).expect("encode"),
    ));

    let rejections = handler.handle(&batch).await.expect("handled");
    let rejected: Vec<(usize, &str)> = rejections.iter().map(|r| (r.index, r.error)).collect();
    assert_eq!(rejected.len(), 3, "{rejections:?}");
    assert_eq!(rejected[0].0, good, "the garbage message");
    assert_eq!(rejected[1], (good + 1, "bad_link_type"));
    assert_eq!(rejected[2], (good + 2, "bad_length"));
    assert!(rejections.iter().all(|r| !r.reason.is_empty()));
    handler.checkpoint().await.expect("checkpoint");
    assert_eq!(handler.tally().uploaded, 1, "one slice (one link type)");

    let objects = store.list("rec/node-a/").await.expect("list");
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(objects.iter().any(|o| o.key.ends_with(".pcap")));
    assert!(objects.iter().any(|o| o.key.ends_with(".index.json")));

    for (kfl, display) in [
        ("dns", "dns"),
        (
            r#"http and request.method == "GET""#,
            r#"http.request.method == "GET""#,
        ),
    ] {
        let criteria = Criteria {
            filter: Some(tapwire_kfl::compile(kfl).expect("kfl")),
            ..Criteria::default()
        };
        let found = investigate::search(&store, "rec/", &criteria, false)
            .await
            .expect("search");
        let (streams, packets) = tshark_streams(display);
        assert!(streams > 0, "the fixture has {display} traffic");
        assert_eq!(found.matches.len(), streams, "{kfl}: {:?}", found.matches);
        let out = dir.path().join("merged.pcap");
        let written = investigate::write_pcap(&store, &found.matches, &out, false)
            .await
            .expect("write");
        assert_eq!(written as usize, packets, "{kfl}");
        assert_eq!(
            count_packets(&out, None),
            packets,
            "tshark reads {kfl}'s PCAP"
        );
    }
    // A time range before the capture selects nothing.
    let early = Criteria {
        until_ns: Some(1_000_000_000),
        ..Criteria::default()
    };
    assert!(
        investigate::search(&store, "rec/", &early, false)
            .await
            .expect("search")
            .matches
            .is_empty()
    );
}

#[tokio::test]
async fn object_lock_buckets_get_retention_on_every_object() {
    let Some(endpoint) = shared_endpoint() else {
        return;
    };
    let mut s = settings(&endpoint, &unique_bucket("lock"));
    s.retention_days = 2;
    let s3 = S3Store::connect(&s).await;
    create_bucket(&s3, true).await;
    assert!(s3.object_lock_enabled().await.expect("lock check"));
    let store = Store::S3(s3.clone());
    store
        .put("rec/a.pcap", b"pcap".to_vec())
        .await
        .expect("put");
    let retention = s3
        .client()
        .get_object_retention()
        .bucket(s3.bucket())
        .key("rec/a.pcap")
        .send()
        .await
        .expect("retention");
    let r = retention.retention().expect("a retention is set");
    assert_eq!(
        r.mode(),
        Some(&aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
    );
    let until = r.retain_until_date().expect("until").secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (until - now - 2 * 86_400).abs() < 600,
        "retain until {until}, now {now}"
    );
    let versions = s3
        .client()
        .list_object_versions()
        .bucket(s3.bucket())
        .send()
        .await
        .expect("versions");
    let version = versions.versions()[0]
        .version_id()
        .expect("version")
        .to_owned();
    let deleted = s3
        .client()
        .delete_object()
        .bucket(s3.bucket())
        .key("rec/a.pcap")
        .version_id(version)
        .send()
        .await;
    assert!(deleted.is_err(), "a locked version cannot be deleted");

    // A bucket without Object Lock: written without retention, no error.
    let plain = S3Store::connect(&settings(&endpoint, &unique_bucket("nolock"))).await;
    create_bucket(&plain, false).await;
    assert!(!plain.object_lock_enabled().await.expect("lock check"));
}

/// A private SeaweedFS that a test can kill and start again on the same
/// ports and data.
struct Weed {
    dir: tempfile::TempDir,
    ports: [u16; 4],
    child: Option<Child>,
}

/// A port `p` with `p + 10000` also free (SeaweedFS's gRPC ports).
fn port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

impl Weed {
    fn start() -> Option<Weed> {
        let found = Command::new("weed")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        require(
            "the weed binary",
            found.then_some(()),
            "scripts/services.sh install",
        )?;
        let mut weed = Weed {
            dir: tempfile::tempdir().expect("tempdir"),
            ports: [port_pair(), port_pair(), port_pair(), port_pair()],
            child: None,
        };
        std::fs::write(
            weed.dir.path().join("master.toml"),
            "[master.volume_growth]\ncopy_1 = 1\ncopy_other = 1\n",
        )
        .expect("master.toml");
        weed.spawn();
        Some(weed)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    fn spawn(&mut self) {
        let [master, volume, filer, s3] = self.ports;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .expect("log");
        let child = Command::new("weed")
            .current_dir(self.dir.path())
            .args([
                "server",
                "-s3",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                &format!("-dir={}", self.dir.path().display()),
                &format!("-master.port={master}"),
                &format!("-volume.port={volume}"),
                &format!("-filer.port={filer}"),
                &format!("-s3.port={s3}"),
                "-volume.max=20",
                "-master.volumeSizeLimitMB=64",
                "-master.telemetry=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-volume.preStopSeconds=0",
                "-master.electionTimeout=1s",
            ])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn weed");
        self.child = Some(child);
        let status = format!("http://127.0.0.1:{master}/dir/status");
        let up = wait_until(Duration::from_secs(90), || {
            let s3_up = std::net::TcpStream::connect(("127.0.0.1", s3)).is_ok();
            let nodes = Command::new("curl")
                .args(["-s", "-m", "2", &status])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"DataNodes\":[{"));
            s3_up && nodes
        });
        assert!(
            up,
            "private weed did not start; see {}",
            self.log_path().display()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

fn slice(name: &str, size: usize) -> Vec<Object> {
    vec![
        Object {
            key: format!("rec/{name}.pcap"),
            body: vec![0xd4; size],
        },
        Object {
            key: format!("rec/{name}.index.json"),
            body: b"{}".to_vec(),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_30_s_spools_slices_and_they_are_uploaded_after_it() {
    let Some(mut weed) = Weed::start() else {
        return;
    };
    let bucket = unique_bucket("outage");
    let s3 = S3Store::connect(&settings(&weed.endpoint(), &bucket)).await;
    create_bucket(&s3, false).await;
    let store = Store::S3(s3);
    let dir = tempfile::tempdir().expect("tempdir");
    let spool_dir = dir.path().join("spool");
    let metrics = StageMetrics::new("s3-outage");
    let mut up = Uploader::new(
        store.clone(),
        Spool::open(&spool_dir, 1 << 20).expect("spool"),
        metrics.clone(),
    );
    assert_eq!(
        up.deliver(slice("0", 100), 1).await.expect("deliver"),
        Delivery::Uploaded
    );

    weed.kill();
    let outage = std::time::Instant::now();
    let mut spooled = 0;
    let mut n = 1;
    while outage.elapsed() < Duration::from_secs(30) {
        let d = up
            .deliver(slice(&n.to_string(), 100), 1)
            .await
            .expect("deliver");
        assert_eq!(d, Delivery::Spooled, "slice {n} during the outage");
        spooled += 1;
        n += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert!(spooled >= 5, "{spooled}");
    assert_eq!(up.spool().len(), spooled);
    // The process restarts during the outage: the spool is found again.
    drop(up);
    let mut up = Uploader::new(
        store.clone(),
        Spool::open(&spool_dir, 1 << 20).expect("spool"),
        metrics,
    );
    assert_eq!(up.spool().len(), spooled, "the spool survives a restart");
    assert_eq!(up.drain().await.expect("drain"), 0, "S3 is still down");

    weed.spawn();
    let drained = wait_for_drain(&mut up).await;
    assert!(drained, "the spool did not drain after S3 came back");
    let keys: Vec<String> = store
        .list("rec/")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    for i in 0..n {
        assert!(
            keys.contains(&format!("rec/{i}.pcap")),
            "slice {i} missing: {keys:?}"
        );
        assert!(
            keys.contains(&format!("rec/{i}.index.json")),
            "index {i} missing"
        );
    }
    assert_eq!(store.get("rec/3.pcap").await.expect("get"), vec![0xd4; 100]);
    assert_eq!(std::fs::read_dir(&spool_dir).expect("dir").count(), 0);
}

async fn wait_for_drain(up: &mut Uploader) -> bool {
    for _ in 0..60 {
        up.drain().await.expect("spool disk");
        if up.spool().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    false
}

#[tokio::test]
async fn a_full_spool_while_s3_is_down_drops_and_counts() {
    // Nothing listens on this port: S3 is down for the whole test.
    let down = format!("http://127.0.0.1:{}", free_port());
    let store = Store::S3(S3Store::connect(&settings(&down, "absent")).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Uploader::new(
        store,
        Spool::open(dir.path(), 250).expect("spool"),
        StageMetrics::new("s3-full-spool"),
    );
    assert_eq!(
        up.deliver(slice("a", 100), 10).await.expect("deliver"),
        Delivery::Spooled
    );
    assert_eq!(
        up.deliver(slice("b", 100), 20).await.expect("deliver"),
        Delivery::Spooled
    );
    assert_eq!(
        up.deliver(slice("c", 100), 30).await.expect("deliver"),
        Delivery::Dropped
    );
    assert_eq!(
        up.deliver(slice("d", 100), 40).await.expect("deliver"),
        Delivery::Dropped
    );
    let stats = up.spool().stats();
    assert_eq!((stats.spooled, stats.dropped), (2, 2));
    let metrics = tapwire_plumbing::telemetry::render_metrics();
    let line = metrics
        .lines()
        .find(|l| l.contains("s3-full-spool") && l.contains("spool_full"))
        .unwrap_or_else(|| panic!("no drop counter:\n{metrics}"));
    assert!(
        line.ends_with(" 70"),
        "packets of the two dropped slices: {line}"
    );
}
