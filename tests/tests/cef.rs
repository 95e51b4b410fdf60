//! `tapwire cef` against a real syslog-ng: verdicts from Tansu reach the
//! receiver over UDP, TCP and TLS, read back by the strict CEF parser with the
//! source events' fields; a receiver that is down for 30 s loses nothing over
//! TCP or TLS.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_schemas::events::*;
use tapwire_schemas::{encode, samples, topics};
use tapwire_tests::cef::{CefMessage, parse_line};
use tapwire_tests::{Broker, Lines, Storage, SyslogNg, run_ok, tapwire, wait_until};

/// `count` verdicts whose ids start at `first`: flows over IPv4 and IPv6,
/// and file events with hostile paths and command lines.
fn verdicts(run: &str, first: u64, count: u64) -> Vec<Verdict> {
    (first..first + count)
        .map(|i| {
            let header = samples::header(
                run,
                "cef-test",
                i,
                1_700_000_000_000_000_000 + i as i64 * 1_000_000,
            );
            if i % 5 == 4 {
                let mut e = samples::file_rename(header);
                e.path = Some(format!("/data/{i}/a|b=c\\d é ☃"));
                e.command_line = Some(format!("mv x=1\ny\r {i}"));
                samples::verdict(
                    EnrichedEvent {
                        body: EventBody::Runtime(e),
                        src: samples::pod_peer("web-1", "shop"),
                        dst: PeerContext::of_kind(PeerKind::None),
                    },
                    Mode::Audit,
                    Outcome::Audited,
                )
            } else {
                samples::flow_verdict(header, i)
            }
        })
        .collect()
}

async fn produce(broker: &Broker, verdicts: &[Verdict]) {
    let sink = KafkaSink::new(&KafkaConfig {
        brokers: broker.address(),
        ..KafkaConfig::default()
    })
    .expect("producer");
    let records = verdicts
        .iter()
        .map(|v| OutRecord::new(topics::VERDICTS, None, encode(v).expect("encode")))
        .collect();
    sink.send_batch(records).await.expect("produce verdicts");
}

fn forwarder(broker: &Broker, target: &str, group: &str, run: &str, receiver: &SyslogNg) -> Lines {
    let mut cmd = tapwire(&broker.address());
    cmd.args([
        "cef",
        "--target",
        target,
        "--group",
        group,
        "--cluster-name",
        run,
    ]);
    if target.starts_with("tls://") {
        cmd.arg("--ca-file").arg(receiver.ca_file());
    }
    cmd.env("TAPWIRE_CONSUMER__RETRY_BACKOFF_MAX_MS", "2000");
    Lines::spawn(&mut cmd)
}

/// Messages of this run received on `transport`, by event id.
fn received(
    receiver: &SyslogNg,
    transport: &str,
    run: &str,
) -> (HashMap<String, CefMessage>, usize) {
    let marker = format!("cs1={run} ");
    let mut by_id = HashMap::new();
    let mut total = 0;
    for line in receiver
        .received(transport)
        .iter()
        .filter(|l| l.contains(&marker))
    {
        let m = parse_line(line)
            .unwrap_or_else(|e| panic!("{transport}: strict parser rejects {line:?}: {e}"));
        let id = m.get("externalId").expect("externalId").to_owned();
        by_id.insert(id, m);
        total += 1;
    }
    (by_id, total)
}

fn assert_fields(m: &CefMessage, v: &Verdict) {
    let e = &v.event;
    assert_eq!(m.version, 0);
    assert_eq!(m.signature_id, v.signature_id);
    assert_eq!(m.severity, v.severity.to_string());
    assert_eq!(
        m.get("outcome"),
        Some(if v.mode == Mode::Audit {
            "Audit"
        } else {
            "Other"
        })
    );
    if let EventBody::L4(l4) = &e.body {
        let (src_key, dst_key) = if l4.src.ip.0.is_ipv4() {
            ("src", "dst")
        } else {
            ("c6a2", "c6a3")
        };
        assert_eq!(m.get(src_key), Some(l4.src.ip.to_string().as_str()));
        assert_eq!(m.get(dst_key), Some(l4.dst.ip.to_string().as_str()));
        assert_eq!(m.get("spt"), Some(l4.src.port.to_string().as_str()));
        assert_eq!(m.get("dpt"), Some(l4.dst.port.to_string().as_str()));
        assert_eq!(m.get("dproc"), Some(l4.binary.as_str()));
        assert_eq!(m.get("source"), e.src.pod.as_deref());
        assert_eq!(m.get("dhost"), e.dst.dns_name.as_deref());
    }
    if let EventBody::Runtime(r) = &e.body {
        assert_eq!(m.get("filePath"), r.path.as_deref());
        assert_eq!(m.get("oldFilePath"), r.old_path.as_deref());
        assert_eq!(m.get("cs4"), r.command_line.as_deref());
        assert_eq!(m.get("dpid"), Some(r.pid.to_string().as_str()));
        assert_eq!(m.get("cs5"), e.src.pod.as_deref());
    }
}

fn ids(verdicts: &[Verdict]) -> HashSet<String> {
    verdicts
        .iter()
        .map(|v| v.event.header().id.to_hex())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_arrives_over_udp_tcp_and_tls_with_its_fields() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let Some(receiver) = SyslogNg::start() else {
        return;
    };
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "2"]));
    let run = "run-transports";
    let sent = verdicts(run, 0, 60);
    produce(&broker, &sent).await;

    let targets = [
        ("udp", format!("udp://127.0.0.1:{}", receiver.udp_port)),
        ("tcp", format!("tcp://127.0.0.1:{}", receiver.tcp_port)),
        ("tls", format!("tls://127.0.0.1:{}", receiver.tls_port)),
    ];
    let forwarders: Vec<Lines> = targets
        .iter()
        .map(|(transport, target)| {
            forwarder(&broker, target, &format!("cef-{transport}"), run, &receiver)
        })
        .collect();
    let want = ids(&sent);
    for (transport, _) in &targets {
        let complete = wait_until(Duration::from_secs(60), || {
            received(&receiver, transport, run).0.len() >= want.len()
        });
        let (got, _) = received(&receiver, transport, run);
        assert!(
            complete,
            "{transport}: {} of {} messages arrived",
            got.len(),
            want.len()
        );
        assert_eq!(
            got.keys().cloned().collect::<HashSet<_>>(),
            want,
            "{transport}"
        );
        for v in &sent {
            let id = v.event.header().id.to_hex();
            assert_fields(&got[&id], v);
        }
    }
    for f in forwarders {
        let (ok, _) = f.terminate(Duration::from_secs(20));
        assert!(ok, "forwarder did not stop cleanly");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_down_for_30_seconds_loses_nothing_over_tcp_or_tls() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let Some(mut receiver) = SyslogNg::start() else {
        return;
    };
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "2"]));
    let run = "run-outage";
    let tcp = forwarder(
        &broker,
        &format!("tcp://127.0.0.1:{}", receiver.tcp_port),
        "outage-tcp",
        run,
        &receiver,
    );
    let tls = forwarder(
        &broker,
        &format!("tls://127.0.0.1:{}", receiver.tls_port),
        "outage-tls",
        run,
        &receiver,
    );

    let before = verdicts(run, 0, 50);
    produce(&broker, &before).await;
    for transport in ["tcp", "tls"] {
        assert!(
            wait_until(Duration::from_secs(60), || received(
                &receiver, transport, run
            )
            .0
            .len()
                >= 50),
            "{transport}: first batch did not arrive"
        );
    }

    receiver.stop();
    let during = verdicts(run, 50, 50);
    produce(&broker, &during).await;
    std::thread::sleep(Duration::from_secs(30));
    receiver.restart();

    let mut want = ids(&before);
    want.extend(ids(&during));
    for transport in ["tcp", "tls"] {
        let complete = wait_until(Duration::from_secs(90), || {
            let got = received(&receiver, transport, run).0;
            want.iter().all(|id| got.contains_key(id))
        });
        let (got, total) = received(&receiver, transport, run);
        let missing = want.iter().filter(|id| !got.contains_key(*id)).count();
        assert!(
            complete,
            "{transport}: {missing} messages lost across the receiver outage"
        );
        eprintln!(
            "{transport}: {} messages, {} duplicates after the outage",
            total,
            total - got.len()
        );
    }
    for f in [tcp, tls] {
        let (ok, _) = f.terminate(Duration::from_secs(20));
        assert!(ok, "forwarder did not stop cleanly");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kfl_filter_selects_what_is_sent() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let Some(receiver) = SyslogNg::start() else {
        return;
    };
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "2"]));
    let run = "run-filter";
    let sent = verdicts(run, 0, 40);
    produce(&broker, &sent).await;
    let mut cmd = tapwire(&broker.address());
    cmd.args([
        "cef",
        "--target",
        &format!("tcp://127.0.0.1:{}", receiver.tcp_port),
    ])
    .args([
        "--group",
        "filter",
        "--cluster-name",
        run,
        "--filter",
        r#"mode == "audit" and path.contains("/data/")"#,
    ]);
    let forwarder = Lines::spawn(&mut cmd);
    let want: HashSet<String> = sent
        .iter()
        .filter(|v| v.mode == Mode::Audit)
        .map(|v| v.event.header().id.to_hex())
        .collect();
    assert_eq!(want.len(), 8);
    assert!(
        wait_until(Duration::from_secs(60), || received(&receiver, "tcp", run)
            .0
            .len()
            >= want.len()),
        "{}",
        forwarder.stderr()
    );
    // Give the rest time to arrive, should the filter let it through.
    std::thread::sleep(Duration::from_secs(2));
    let (got, _) = received(&receiver, "tcp", run);
    assert_eq!(got.keys().cloned().collect::<HashSet<_>>(), want);
    let (ok, _) = forwarder.terminate(Duration::from_secs(20));
    assert!(ok);
}
