//! `tapwire record` and `tapwire investigate` against real services: packet
//! records from a private Tansu broker to slices in SeaweedFS, found again
//! offline by KFL (tshark agrees on the streams and the packets of the
//! merged PCAP), bad records in the dead-letter topic, and offsets stored
//! once the slices were uploaded (a restarted recorder records nothing
//! twice).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_schemas::events::PacketRecord;
use tapwire_schemas::{encode, samples, topics};
use tapwire_tests::{Broker, Lines, Storage, env_or, run_ok, shared_service, tapwire, wait_until};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../pcap-recorder/tests/fixtures/http_dns_lo.pcap"
);

/// The fixture's frames as packet records of node-a.
fn fixture_records() -> Vec<PacketRecord> {
    tapwire_tests::packet_records(FIXTURE, "node-a")
}

/// Streams tshark selects with `filter`, and the packets they hold.
fn tshark_streams(filter: &str) -> (usize, usize) {
    let out = Command::new("tshark")
        .args(["-r", FIXTURE, "-Y", filter, "-T", "fields"])
        .args(["-e", "tcp.stream", "-e", "udp.stream"])
        .stderr(Stdio::null())
        .output()
        .expect("tshark");
    let mut streams = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split('\t');
        if let Some(t) = cols.next().filter(|t| !t.is_empty()) {
            streams.insert(format!("tcp.stream == {t}"));
        }
        if let Some(u) = cols.next().filter(|u| !u.is_empty()) {
            streams.insert(format!("udp.stream == {u}"));
        }
    }
    let filter = streams.iter().cloned().collect::<Vec<_>>().join(" or ");
    (
        streams.len(),
        count_packets(Path::new(FIXTURE), Some(&filter)),
    )
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

fn investigate(
    endpoint: &str,
    location: &str,
    kfl: &str,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let out = run_ok(
        tapwire_tests::s3_env(&mut tapwire("127.0.0.1:1"))
            .args([
                "investigate",
                location,
                "--kfl",
                kfl,
                "--format",
                "json",
                "--streams",
            ])
            .args(["--endpoint", endpoint, "--path-style"])
            .args(extra),
    );
    out.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn recorder(broker: &Broker, endpoint: &str, bucket: &str, spool: &Path) -> Lines {
    Lines::spawn(
        tapwire_tests::s3_env(&mut tapwire(&broker.address()))
            .args([
                "record",
                "--bucket",
                bucket,
                "--endpoint",
                endpoint,
                "--path-style",
            ])
            .args(["--kfl", "http or dns", "--group", "rec-test"])
            .arg("--spool-dir")
            .arg(spool)
            // Checkpoint (and so upload) every 2 s.
            .env("TAPWIRE_RECORD__SLICE_MAX_AGE_MS", "2000")
            .env("TAPWIRE_RECORD__SPOOL_RETRY_INTERVAL_MS", "500"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_streams_reach_s3_and_investigate_finds_them_offline() {
    let Some(address) = shared_service(
        "SeaweedFS S3",
        env_or("TAPWIRE_S3_ENDPOINT", "http://127.0.0.1:8333").trim_start_matches("http://"),
    ) else {
        return;
    };
    let Some(_) = tapwire_tests::tshark() else {
        return;
    };
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let endpoint = format!("http://{address}");
    let bucket = format!("tw-record-{}", std::process::id());
    tapwire_tests::create_bucket(&endpoint, &bucket);
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "2"]));

    let sink = KafkaSink::new(&KafkaConfig {
        brokers: broker.address(),
        ..KafkaConfig::default()
    })
    .expect("producer");
    // The fixture's DNS server address belongs to a pod: the index names it.
    let mut dns_pod = samples::pod(
        samples::header("node-a", "watch", 0, 0),
        "coredns",
        "kube-system",
        "127.0.0.77".parse().expect("ip"),
    );
    dns_pod.start_ns = Some(0);
    dns_pod.end_ns = None;
    dns_pod.host_network = false;
    sink.send_batch(vec![OutRecord::new(
        topics::PODS,
        Some(dns_pod.uid.clone().into_bytes()),
        encode(&dns_pod).expect("encode"),
    )])
    .await
    .expect("produce pod");
    let records = fixture_records();
    let mut out: Vec<OutRecord> = records
        .iter()
        .map(|r| {
            OutRecord::new(
                topics::PACKETS_RAW,
                Some(b"flow".to_vec()),
                encode(r).expect("encode"),
            )
        })
        .collect();
    out.push(OutRecord::new(
        topics::PACKETS_RAW,
        Some(b"flow".to_vec()),
        b"not a packet record".to_vec(),
    ));
    sink.send_batch(out).await.expect("produce");

    let spool = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let rec = recorder(&broker, &endpoint, &bucket, spool.path());
    let dlq = Lines::spawn(tapwire(&broker.address()).args([
        "topics",
        "tail",
        topics::DLQ,
        "--group",
        "rec-dlq",
    ]));

    let location = format!("s3://{bucket}/tapwire");
    let (dns_streams, _) = tshark_streams("dns");
    let found = wait_until(Duration::from_secs(60), || {
        investigate(&endpoint, &location, "dns", &[]).len() == dns_streams
    });
    assert!(found, "record stderr:\n{}", rec.stderr());

    for (kfl, display) in [
        ("dns", "dns"),
        (
            r#"http and request.method == "GET""#,
            r#"http.request.method == "GET""#,
        ),
    ] {
        let (streams, packets) = tshark_streams(display);
        let merged = work.path().join("merged.pcap");
        let rows = investigate(
            &endpoint,
            &location,
            kfl,
            &["--write", merged.to_str().expect("utf8")],
        );
        assert_eq!(rows.len(), streams, "{kfl}: {rows:?}");
        assert!(rows.iter().all(|r| r["node"] == "node-a"), "{rows:?}");
        if kfl == "dns" {
            assert!(
                rows.iter().all(|r| r["destination"]
                    .as_str()
                    .is_some_and(|d| d.ends_with("(kube-system/coredns)"))),
                "the DNS server is named by its pod: {rows:?}"
            );
        }
        assert_eq!(
            count_packets(&merged, None),
            packets,
            "{kfl}: tshark reads the merged PCAP"
        );
    }

    assert!(
        wait_until(Duration::from_secs(30), || dlq.count() >= 1),
        "no dead letter; record stderr:\n{}",
        rec.stderr()
    );
    let dead = dlq.snapshot().join("\n");
    assert!(dead.contains("record"), "{dead}");

    // The offsets were stored after the upload: a restarted recorder in the
    // same group reads nothing again, so no new slice appears.
    let objects = || {
        run_ok(
            tapwire_tests::s3_env(&mut tapwire("127.0.0.1:1"))
                .args(["investigate", &location, "--format", "json", "--streams"])
                .args(["--endpoint", &endpoint, "--path-style"]),
        )
        .lines()
        .count()
    };
    let before = objects();
    let (stopped, _) = rec.terminate(Duration::from_secs(30));
    assert!(stopped, "record did not stop cleanly");
    let rec = recorder(&broker, &endpoint, &bucket, spool.path());
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(objects(), before, "record stderr:\n{}", rec.stderr());
    drop(rec);
    drop(dlq);
}
