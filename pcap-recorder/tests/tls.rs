//! Issue 20: `tls.sni` selects the streams tshark's
//! `tls.handshake.extensions_server_name` selects.
//!
//! The fixture `fixtures/tls_lo.pcap` is real TLS on loopback (openssl
//! s_server on 127.0.0.88:443; s_client and curl with several server names,
//! one without; a ClientHello split over six TCP segments by a relay; a
//! plain-text request to the TLS port), made by `fixtures/make_tls.sh`.
//! Tests need tshark: without it they print why they skip, and fail under
//! `CI=true`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use pcap_file::pcap::PcapReader;
use tapwire_pcap_recorder::index::SliceIndex;
use tapwire_pcap_recorder::{FinishedSlice, NamedQuery, NoPods, Recorder, RecorderConfig};
use tapwire_schemas::events::{EventHeader, PacketRecord};
use tapwire_schemas::{EventId, Ip};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls_lo.pcap")
}

/// A TCP connection: (lower endpoint, higher endpoint).
type Tuple = ((IpAddr, u16), (IpAddr, u16));

fn tuple(a: (IpAddr, u16), b: (IpAddr, u16)) -> Tuple {
    if a <= b { (a, b) } else { (b, a) }
}

/// The TCP connections with a frame matching tshark's display `filter`.
fn tshark_streams(tshark: &Path, file: &Path, filter: &str) -> BTreeSet<Tuple> {
    let out = Command::new(tshark)
        .args(["-r", file.to_str().unwrap(), "-Y", filter, "-T", "fields"])
        .args(["-E", "separator=/t", "-e", "ip.src", "-e", "tcp.srcport"])
        .args(["-e", "ip.dst", "-e", "tcp.dstport"])
        .env("LC_ALL", "C")
        .output()
        .expect("run tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark -Y {filter}: {stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let end = |ip: &str, port: &str| (ip.parse().unwrap(), port.parse().unwrap());
            tuple(end(f[0], f[1]), end(f[2], f[3]))
        })
        .collect()
}

fn record(file: &Path, queries: &[(&str, &str)]) -> Vec<FinishedSlice> {
    let bytes = std::fs::read(file).unwrap();
    let mut reader = PcapReader::new(&bytes[..]).unwrap();
    let link = u32::from(reader.header().datalink);
    let queries = queries
        .iter()
        .map(|(name, query)| NamedQuery {
            name: (*name).into(),
            query: (*query).into(),
        })
        .collect();
    let mut recorder = Recorder::new(RecorderConfig::default(), queries).unwrap();
    let mut n = 0u8;
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        n = n.wrapping_add(1);
        let ts = i64::try_from(p.timestamp.as_nanos()).unwrap();
        let data = p.data.into_owned();
        let record = PacketRecord {
            header: EventHeader {
                id: EventId([n; 16]),
                timestamp_ns: ts,
                node: "node-a".into(),
                sensor_id: "test".into(),
                node_ip: Some(Ip("192.0.2.10".parse().unwrap())),
            },
            link_type: link,
            captured_len: u32::try_from(data.len()).unwrap(),
            original_len: p.orig_len,
            flow_hash: 0,
            data,
            interface: Some("lo".into()),
        };
        recorder.push(record, &NoPods).unwrap();
    }
    recorder.flush(&NoPods).unwrap();
    assert_eq!(recorder.stats().undecodable_total(), 0);
    recorder.take_finished()
}

fn recorded(slices: &[FinishedSlice], query: &str) -> BTreeSet<Tuple> {
    slices
        .iter()
        .flat_map(|s| &s.index.streams)
        .filter(|st| st.matched.iter().any(|m| m == query))
        .map(|st| {
            tuple(
                (st.client.ip, st.client.port),
                (st.server.ip, st.server.port),
            )
        })
        .collect()
}

#[test]
fn tls_sni_selects_the_streams_tshark_selects() {
    let Some(tshark) = tapwire_tests::tshark() else {
        return;
    };
    let source = fixture();
    let queries = [
        ("sni", r#"tls.sni == "example.com""#),
        ("sub", r#"tls.sni.endsWith(".example.com")"#),
        ("split", r#"tls.sni == "split.example.com""#),
        ("tls", "tls"),
        ("nosni", "tls and tls.sni == nil"),
        ("plain", "!tls"),
        ("all", ""),
    ];
    let slices = record(&source, &queries);
    let sni = "tls.handshake.extensions_server_name";
    for (name, display_filter, streams) in [
        ("sni", format!(r#"{sni} == "example.com""#), 3),
        ("sub", format!(r#"{sni} matches "\\.example\\.com$""#), 3),
        ("split", format!(r#"{sni} == "split.example.com""#), 2),
        ("tls", "tls.handshake.type == 1".to_owned(), 8),
        ("nosni", format!("tls.handshake.type == 1 and !{sni}"), 1),
        ("all", "tcp".to_owned(), 9),
    ] {
        let expected = tshark_streams(&tshark, &source, &display_filter);
        assert_eq!(expected.len(), streams, "{name}: the fixture as made");
        assert_eq!(recorded(&slices, name), expected, "query {name}");
    }
    // `!tls`: the connections without a ClientHello (tshark's filters are
    // per frame, so: all connections but the TLS ones).
    let tls = tshark_streams(&tshark, &source, "tls.handshake.type == 1");
    let plain: BTreeSet<Tuple> = tshark_streams(&tshark, &source, "tcp")
        .difference(&tls)
        .copied()
        .collect();
    assert_eq!(plain.len(), 1);
    assert_eq!(recorded(&slices, "plain"), plain);

    // The index says what the stream is, reads back, and `investigate`'s
    // verdicts on it are the recorder's.
    let dir = tempfile::tempdir().unwrap();
    let mut summaries = BTreeSet::new();
    for slice in &slices {
        let (_, index_path) = slice.write_to_dir(dir.path()).unwrap();
        let index = SliceIndex::from_json(&std::fs::read(index_path).unwrap()).unwrap();
        assert_eq!(index, slice.index);
        for st in &index.streams {
            summaries.insert((st.protocol.clone(), st.summary.clone()));
            for q in &index.queries {
                let filter = tapwire_pcap_recorder::entry::compile(&q.query).unwrap();
                assert_eq!(
                    tapwire_pcap_recorder::stream_matches(&filter, st, 0),
                    st.matched.contains(&q.name),
                    "stream {} query {}",
                    st.id,
                    q.name
                );
            }
        }
    }
    let tls = |s: &str| (Some("TLS".to_owned()), s.to_owned());
    let want: BTreeSet<_> = [
        tls("TLS example.com"),
        tls("TLS api.example.com"),
        tls("TLS www.example.org"),
        tls("TLS split.example.com"),
        tls("TLS"),
        (Some("HTTP".to_owned()), "GET /".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(summaries, want);
}
