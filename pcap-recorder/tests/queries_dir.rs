//! Issue 20: recording queries in a watched directory change without a
//! restart; an invalid change is reported and the previous queries stay;
//! no query at all records nothing and keeps reading.

use std::time::Duration;

use tapwire_pcap_recorder::recorder::Recorder;
use tapwire_pcap_recorder::spool::{Spool, Uploader};
use tapwire_pcap_recorder::stage::RecordHandler;
use tapwire_pcap_recorder::store::{LocalStore, Store};
use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::BatchHandler;
use tapwire_plumbing::telemetry::StageMetrics;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/http_dns_lo.pcap"
);

/// The fixture's packets as `tapwire.packets.raw` messages.
fn messages() -> Vec<Message> {
    tapwire_tests::packet_records(FIXTURE, "node-a")
        .iter()
        .enumerate()
        .map(|(n, r)| Message {
            topic: tapwire_schemas::topics::PACKETS_RAW.into(),
            partition: 0,
            offset: n as i64,
            key: None,
            payload: tapwire_schemas::encode(r).expect("encode"),
            headers: vec![],
        })
        .collect()
}

/// The protocols of the streams in the slice indexes written so far.
fn recorded(dir: &std::path::Path) -> Vec<String> {
    let mut protocols = Vec::new();
    for entry in walk(dir) {
        if entry.to_string_lossy().ends_with(".index.json") {
            let index: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&entry).expect("index")).expect("json");
            for s in index["streams"].as_array().expect("streams") {
                protocols.push(s["protocol"].as_str().unwrap_or("").to_owned());
            }
        }
    }
    protocols.sort();
    protocols.dedup();
    protocols
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_query_changed_on_disk_applies_without_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (queries, store_dir) = (tmp.path().join("queries"), tmp.path().join("store"));
    std::fs::create_dir_all(&queries).expect("dir");
    let metrics = StageMetrics::new("record-queries-dir");
    let spool = Spool::open(tmp.path().join("spool"), 1 << 30).expect("spool");
    let uploader = Uploader::new(
        Store::Local(LocalStore::new(&store_dir)),
        spool,
        metrics.clone(),
    );
    // No query yet: recording is off, packets are read.
    let recorder = Recorder::idle(Default::default());
    let health = tapwire_plumbing::telemetry::Health::default();
    let mut handler = RecordHandler::new(
        recorder,
        uploader,
        "rec",
        Duration::from_secs(3600),
        metrics,
    )
    .watching(Default::default(), Some(queries.clone()))
    .reporting_to(health.clone());
    assert_eq!(
        health.reply(),
        (
            true,
            "ok: recording is off: no recording query\n".to_owned()
        ),
        "/healthz says recording is off"
    );
    let batch = messages();
    assert!(handler.handle(&batch).await.expect("handled").is_empty());
    handler.checkpoint().await.expect("checkpoint");
    assert!(
        recorded(&store_dir).is_empty(),
        "nothing recorded while off"
    );

    // A DNS query appears on disk: the next tick applies it.
    std::fs::write(queries.join("dns.kfl"), "# DNS only\ndns\n").expect("write");
    handler.tick().await.expect("tick");
    assert_eq!(
        health.reply(),
        (true, "ok\n".to_owned()),
        "recording is on again"
    );
    handler.handle(&batch).await.expect("handled");
    handler.checkpoint().await.expect("checkpoint");
    assert_eq!(recorded(&store_dir), ["DNS"]);

    // An invalid change is refused; DNS stays in force, HTTP is not added.
    std::fs::write(queries.join("web.kfl"), "http and (").expect("write");
    handler.tick().await.expect("tick");
    let _ = std::fs::remove_dir_all(&store_dir);
    handler.handle(&batch).await.expect("handled");
    handler.checkpoint().await.expect("checkpoint");
    assert_eq!(recorded(&store_dir), ["DNS"]);

    // Fixed: HTTP joins.
    std::fs::write(queries.join("web.kfl"), "http").expect("write");
    handler.tick().await.expect("tick");
    handler.handle(&batch).await.expect("handled");
    handler.checkpoint().await.expect("checkpoint");
    assert_eq!(recorded(&store_dir), ["DNS", "HTTP"]);

    // Every query removed: recording is off again, and /healthz says so.
    std::fs::remove_file(queries.join("dns.kfl")).expect("rm");
    std::fs::remove_file(queries.join("web.kfl")).expect("rm");
    handler.tick().await.expect("tick");
    assert_eq!(
        health.reply(),
        (
            true,
            "ok: recording is off: no recording query\n".to_owned()
        )
    );
    let _ = std::fs::remove_dir_all(&store_dir);
    handler.handle(&batch).await.expect("handled");
    handler.checkpoint().await.expect("checkpoint");
    assert!(
        recorded(&store_dir).is_empty(),
        "nothing recorded while off"
    );
}
