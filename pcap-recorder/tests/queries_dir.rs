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
use tapwire_schemas::events::PacketRecord;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/http_dns_lo.pcap"
);

/// The fixture's packets as `tapwire.packets.raw` messages.
fn messages() -> Vec<Message> {
    let file = std::fs::File::open(FIXTURE).expect("fixture");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap");
    let link_type = u32::from(reader.header().datalink);
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.expect("packet");
        let data = p.data.into_owned();
        let record = PacketRecord {
            header: tapwire_schemas::samples::header(
                "node-a",
                "capture",
                out.len() as u64,
                p.timestamp.as_nanos() as i64,
            ),
            link_type,
            captured_len: data.len() as u32,
            original_len: p.orig_len,
            data,
            flow_hash: 0,
            interface: None,
        };
        out.push(Message {
            topic: tapwire_schemas::topics::PACKETS_RAW.into(),
            partition: 0,
            offset: out.len() as i64,
            key: None,
            payload: tapwire_schemas::encode(&record).expect("encode"),
            headers: vec![],
        });
    }
    out
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
    let mut handler = RecordHandler::new(
        recorder,
        uploader,
        "rec",
        Duration::from_secs(3600),
        metrics,
    )
    .watching(Default::default(), Some(queries.clone()));
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
}
