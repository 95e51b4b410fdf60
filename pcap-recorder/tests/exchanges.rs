//! Issue 20: investigate reads one row per exchange (an HTTP request with
//! its response), as the recording document's dashboard shows entries, with
//! the stream as a column; `--streams` keeps one row per stream.

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use tapwire_packet::synth;
use tapwire_pcap_recorder::investigate::{self, Criteria};
use tapwire_pcap_recorder::store::{LocalStore, Store};

const T0: i64 = 1_700_000_000_000_000_000;

#[tokio::test]
async fn a_keep_alive_connection_is_one_stream_of_three_exchanges() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = tmp.path().join("keepalive.pcap");
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let requests: Vec<(String, String)> = ["/a", "/b", "/c"]
        .iter()
        .map(|p| (format!("GET {p} HTTP/1.1\r\nHost: api\r\n\r\n"), ok(p)))
        .collect();
    let exchanges: Vec<(&[u8], &[u8])> = requests
        .iter()
        .map(|(q, r)| (q.as_bytes(), r.as_bytes()))
        .collect();
    let frames = synth::tcp_session(
        T0,
        "10.1.0.7:40000".parse().expect("addr"),
        "10.1.2.3:8080".parse().expect("addr"),
        &exchanges,
    );
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&pcap).expect("file"), header)
        .expect("writer");
    for f in &frames {
        let ts = std::time::Duration::from_nanos(f.ts_ns as u64);
        w.write_packet(&PcapPacket::new(ts, f.data.len() as u32, &f.data))
            .expect("packet");
    }
    drop(w);

    let dir = tmp.path().join("index");
    std::fs::create_dir_all(&dir).expect("dir");
    investigate::index_pcap_file(&pcap, &dir).expect("indexed");
    let store = Store::Local(LocalStore::new(&dir));
    let search = |kfl: &str| {
        let criteria = Criteria {
            filter: Some(tapwire_pcap_recorder::entry::compile(kfl).expect("kfl")),
            ..Criteria::default()
        };
        let store = &store;
        async move {
            let found = investigate::search(store, "", &criteria, false)
                .await
                .expect("search");
            let rows = investigate::exchanges(&found.matches, criteria.filter.as_ref());
            (found.matches.len(), rows)
        }
    };
    let (streams, rows) = search("http").await;
    assert_eq!(streams, 1);
    let summaries: Vec<&str> = rows.iter().map(|r| r.summary.as_str()).collect();
    assert_eq!(summaries, ["GET /a 200", "GET /b 200", "GET /c 200"]);
    assert!(
        rows.iter()
            .all(|r| r.stream == rows[0].stream && r.protocol == "HTTP")
    );
    assert!(
        rows.windows(2).all(|w| w[0].time_ns < w[1].time_ns),
        "by time"
    );

    // A query about one request keeps the stream and shows that exchange.
    let (streams, rows) = search(r#"http and request.path == "/b""#).await;
    assert_eq!((streams, rows.len()), (1, 1));
    assert_eq!(rows[0].summary, "GET /b 200");

    let table = investigate::render_exchanges(&rows, investigate::Format::Table);
    assert!(
        table.lines().next().expect("head").contains("STREAM"),
        "{table}"
    );
}
