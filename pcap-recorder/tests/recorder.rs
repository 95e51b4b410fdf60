//! The recorder on deterministic traffic built frame by frame: reordered and
//! retransmitted segments, several link types, slice rotation, undecodable
//! packets, pod names; and a property test that no input panics. Slices are
//! checked with tshark where it is installed (skip printed otherwise, failure
//! under `CI=true`).

use std::path::Path;
use std::process::Command;

use etherparse::PacketBuilder;
use proptest::prelude::*;
use tapwire_pcap_recorder::index::{EndReason, Exchange};
use tapwire_pcap_recorder::{
    FinishedSlice, NamedQuery, NoPods, PodInterval, PodRef, Recorder, RecorderConfig, SliceConfig,
};
use tapwire_schemas::EventId;
use tapwire_schemas::events::{EventHeader, PacketRecord};

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];

/// An Ethernet (link 1), SLL2 (276) or raw IP (101) frame of a TCP segment.
fn frame(
    link: u32,
    client_port: u16,
    from_client: bool,
    seq: u32,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst, sp, dp) = if from_client {
        (CLIENT, SERVER, client_port, 80)
    } else {
        (SERVER, CLIENT, 80, client_port)
    };
    let mut ip = Vec::new();
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, seq, 65000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(1);
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    b.write(&mut ip, payload).unwrap();
    match link {
        1 => {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
            f.extend(ip);
            f
        }
        276 => {
            let mut f = vec![
                0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0,
            ];
            f.extend(ip);
            f
        }
        _ => ip,
    }
}

/// One HTTP exchange on `client_port`; the client's request arrives in two
/// segments out of order, and the first one again.
fn http_stream(link: u32, client_port: u16, path: &str, t0: i64) -> Vec<(i64, u32, Vec<u8>)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let (a, b) = req.as_bytes().split_at(10);
    let resp = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let f = |c, seq, flags: &str, p: &[u8]| frame(link, client_port, c, seq, flags, p);
    let seqs = (1000u32, 5000u32);
    let frames = vec![
        f(true, seqs.0, "S", b""),
        f(false, seqs.1, "SA", b""),
        f(true, seqs.0 + 1, "A", b""),
        f(true, seqs.0 + 11, "A", b),
        f(true, seqs.0 + 1, "A", a),
        f(true, seqs.0 + 1, "A", a),
        f(false, seqs.1 + 1, "A", resp),
        f(true, seqs.0 + 1 + req.len() as u32, "AF", b""),
        f(false, seqs.1 + 1 + resp.len() as u32, "AF", b""),
        f(true, seqs.0 + 2 + req.len() as u32, "A", b""),
    ];
    frames
        .into_iter()
        .enumerate()
        .map(|(i, data)| (t0 + i as i64 * 1_000_000, link, data))
        .collect()
}

fn record(ts: i64, link: u32, data: Vec<u8>) -> PacketRecord {
    PacketRecord {
        header: EventHeader {
            id: EventId([0; 16]),
            timestamp_ns: ts,
            node: "node-a".into(),
            sensor_id: "t".into(),
            node_ip: None,
        },
        link_type: link,
        captured_len: data.len() as u32,
        original_len: data.len() as u32,
        data,
        flow_hash: 0,
        interface: None,
    }
}

fn queries(q: &str) -> Vec<NamedQuery> {
    vec![NamedQuery {
        name: "q".into(),
        query: q.into(),
    }]
}

fn tshark_count(tshark: &Path, file: &Path, filter: &str) -> usize {
    let out = Command::new(tshark)
        .args(["-o", "tcp.reassemble_out_of_order:TRUE", "-r"])
        .arg(file)
        .args(["-Y", filter])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn reordered_retransmitted_streams_of_three_link_types() {
    const T0: i64 = 1_700_000_000_000_000_000;
    let pods = vec![PodInterval {
        ip: "10.0.0.1".parse().unwrap(),
        pod: PodRef {
            name: "web-1".into(),
            namespace: "shop".into(),
            uid: None,
        },
        from_ns: Some(0),
        until_ns: None,
    }];
    let mut input = Vec::new();
    input.extend(http_stream(1, 40001, "/eth", T0));
    input.extend(http_stream(276, 40002, "/sll2", T0 + 100_000_000));
    input.extend(http_stream(101, 40003, "/raw", T0 + 200_000_000));
    input.extend(http_stream(1, 40004, "/other", T0 + 300_000_000));
    // Not TCP/UDP: an ARP frame and a truncated IP header.
    input.push((T0 + 400_000_000, 1, {
        let mut arp = vec![0xff; 6];
        arp.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend([0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend([0; 20]);
        arp
    }));
    input.push((T0 + 400_000_001, 101, vec![0x45, 0, 0, 60]));
    let total_http = input.len() - 2;

    let mut recorder = Recorder::new(
        RecorderConfig::default(),
        queries(r#"http and response.status == 404 and src.pod.name == "web-1" and request.path != "/other""#),
    )
    .unwrap();
    for (ts, link, data) in input.iter().cloned() {
        recorder.push(record(ts, link, data), &pods).unwrap();
    }
    recorder.flush(&pods).unwrap();
    let slices = recorder.take_finished();
    let stats = recorder.stats().clone();
    assert_eq!(stats.undecodable.get("not_ip"), Some(&1));
    assert_eq!(stats.undecodable.get("truncated"), Some(&1));
    assert_eq!(stats.streams, 4);
    assert_eq!((stats.streams_recorded, stats.streams_dropped), (3, 1));
    assert_eq!(
        stats.packets_recorded + stats.packets_dropped,
        total_http as u64
    );
    assert_eq!(stats.reassembly.out_of_order, 4);
    assert_eq!(stats.reassembly.retransmitted, 4);

    // One slice per link type, each stream whole, reassembled correctly.
    let mut links: Vec<u32> = slices.iter().map(|s| s.index.link_type).collect();
    links.sort();
    assert_eq!(links, [1, 101, 276]);
    for s in &slices {
        assert_eq!(s.index.streams.len(), 1);
        let st = &s.index.streams[0];
        assert_eq!(st.packets, 10);
        assert_eq!(st.end, EndReason::Fin);
        assert_eq!(st.client.pod.as_ref().unwrap().name, "web-1");
        assert_eq!(st.summary.split(' ').nth(2), Some("404"));
        let Exchange::Http(h) = &st.exchanges[0] else {
            panic!("HTTP expected")
        };
        assert_eq!(h.request.host(), Some("example.com"));
        assert!(
            !s.index.pods.is_empty(),
            "the index carries the pod history"
        );
    }

    let Some(tshark) = tapwire_tests::tshark() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for s in &slices {
        let (path, _) = s.write_to_dir(dir.path()).unwrap();
        assert_eq!(tshark_count(&tshark, &path, "frame"), 10, "{}", s.name);
        assert_eq!(
            tshark_count(&tshark, &path, "http.request.method == \"GET\""),
            1
        );
        assert_eq!(tshark_count(&tshark, &path, "http.response.code == 404"), 1);
    }
}

fn slices_for(config: RecorderConfig, streams: usize, spacing_ns: i64) -> Vec<FinishedSlice> {
    let mut recorder = Recorder::new(config, queries("http")).unwrap();
    for i in 0..streams {
        for (ts, link, data) in http_stream(1, 41000 + i as u16, "/x", spacing_ns * i as i64) {
            recorder.push(record(ts, link, data), &NoPods).unwrap();
        }
    }
    recorder.flush(&NoPods).unwrap();
    recorder.take_finished()
}

#[test]
fn slices_rotate_by_size_and_age_without_splitting_streams() {
    let by_size = slices_for(
        RecorderConfig {
            slice: SliceConfig {
                max_bytes: 2_500,
                ..SliceConfig::default()
            },
            ..RecorderConfig::default()
        },
        5,
        1_000_000_000,
    );
    assert!(by_size.len() > 1, "{} slices", by_size.len());
    assert_eq!(
        by_size.iter().map(|s| s.index.streams.len()).sum::<usize>(),
        5
    );
    for s in &by_size {
        assert!(s.index.streams.iter().all(|st| st.frames.len() == 10));
    }
    let mut names: Vec<&str> = by_size.iter().map(|s| s.name.as_str()).collect();
    names.dedup();
    assert_eq!(names.len(), by_size.len(), "names are unique");

    // Streams two seconds apart (each ends a linger after its FINs, when a
    // later packet shows the time), slices at most 3 s old: rotated by age.
    let by_age = slices_for(
        RecorderConfig {
            slice: SliceConfig {
                max_age_ns: 3_000_000_000,
                ..SliceConfig::default()
            },
            ..RecorderConfig::default()
        },
        6,
        2_000_000_000,
    );
    assert_eq!(
        by_age.iter().map(|s| s.index.streams.len()).sum::<usize>(),
        6
    );
    assert!(by_age.len() >= 2, "{} slices", by_age.len());
}

#[test]
fn an_invalid_query_or_none_is_an_error() {
    assert!(Recorder::new(RecorderConfig::default(), vec![]).is_err());
    let err = Recorder::new(RecorderConfig::default(), queries("http and (")).unwrap_err();
    assert!(err.to_string().contains("\"q\""), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_input_panics(packets in proptest::collection::vec(
        (prop_oneof![Just(1u32), Just(101), Just(113), Just(276), any::<u32>()],
         proptest::collection::vec(any::<u8>(), 0..120),
         0i64..5_000_000_000),
        0..40))
    {
        let mut recorder = Recorder::new(RecorderConfig::default(), queries("")).unwrap();
        for (link, data, ts) in packets {
            recorder.push(record(ts, link, data), &NoPods).unwrap();
        }
        recorder.flush(&NoPods).unwrap();
        let slices = recorder.take_finished();
        let recorded: u64 = slices.iter().map(|s| s.index.packets).sum();
        prop_assert_eq!(recorded, recorder.stats().packets_recorded);
    }
}
