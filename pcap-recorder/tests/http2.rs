//! Issue 20: `http2` selects the cleartext HTTP/2 streams (h2c with prior
//! knowledge) that tshark decodes as HTTP/2, and nothing else; `grpc`,
//! `amqp`, `kafka`, `redis` stay refused instead of matching nothing.

use std::path::Path;
use std::process::Command;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use tapwire_packet::synth;
use tapwire_pcap_recorder::investigate::{self, Criteria};
use tapwire_pcap_recorder::store::{LocalStore, Store};

const T0: i64 = 1_700_000_000_000_000_000;
/// The client preface, then an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
/// The server's SETTINGS and the ack of the client's.
const SERVER: &[u8] = b"\0\0\0\x04\0\0\0\0\0\0\0\0\x04\x01\0\0\0\0";

fn write_pcap(path: &Path) {
    let mut frames = Vec::new();
    for (i, port) in [50051u16, 8080].iter().enumerate() {
        frames.extend(synth::tcp_session(
            T0 + i as i64 * 1_000_000_000,
            format!("10.1.0.7:{}", 40000 + i).parse().expect("addr"),
            format!("10.1.2.3:{port}").parse().expect("addr"),
            &[(PREFACE, SERVER)],
        ));
    }
    // And a plain HTTP/1.1 exchange.
    frames.extend(synth::tcp_session(
        T0 + 3_000_000_000,
        "10.1.0.7:40100".parse().expect("addr"),
        "10.1.2.3:80".parse().expect("addr"),
        &[(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        )],
    ));
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(path).expect("file"), header)
        .expect("writer");
    for f in &frames {
        let ts = std::time::Duration::from_nanos(f.ts_ns as u64);
        w.write_packet(&PcapPacket::new(ts, f.data.len() as u32, &f.data))
            .expect("packet");
    }
}

/// TCP streams tshark shows HTTP/2 frames on. Its HTTP/2 heuristic runs
/// only where HTTP does (8080 here): gRPC's port is named with decode-as,
/// where tapwire goes by content alone.
fn tshark_http2_streams(tshark: &Path, file: &Path) -> usize {
    let out = Command::new(tshark)
        .arg("-r")
        .arg(file)
        .args(["-d", "tcp.port==50051,http2"])
        .args(["-Y", "http2", "-T", "fields", "-e", "tcp.stream"])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streams: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    streams.len()
}

#[tokio::test]
async fn http2_selects_the_streams_tshark_decodes_as_http2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = tmp.path().join("h2c.pcap");
    write_pcap(&pcap);
    let dir = tmp.path().join("index");
    std::fs::create_dir_all(&dir).expect("dir");
    investigate::index_pcap_file(&pcap, &dir).expect("indexed");
    let store = Store::Local(LocalStore::new(&dir));
    let streams = |kfl: &str| {
        let criteria = Criteria {
            filter: Some(tapwire_pcap_recorder::entry::compile(kfl).expect("kfl")),
            ..Criteria::default()
        };
        let store = &store;
        async move {
            investigate::search(store, "", &criteria, false)
                .await
                .expect("search")
                .matches
                .len()
        }
    };
    assert_eq!(streams("http2").await, 2, "both h2c streams, on any port");
    assert_eq!(streams(r#"protocol.abbr == "HTTP/2""#).await, 2);
    assert_eq!(streams("http").await, 1, "HTTP/1.1 only");
    assert_eq!(streams("http2 and dst.port == 8080").await, 1);
    if let Some(tshark) = tapwire_tests::require(
        "tshark",
        tapwire_tests::tshark(),
        "apt-get install tshark (scripts/services.sh install)",
    ) {
        assert_eq!(tshark_http2_streams(&tshark, &pcap), 2, "tshark agrees");
    }
    for name in ["grpc", "amqp", "kafka", "redis"] {
        let err = tapwire_pcap_recorder::entry::compile(name).expect_err(name);
        assert!(err.render(name).contains(name), "{name}: {err}");
    }
}
