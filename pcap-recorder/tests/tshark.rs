//! The recorder against tshark, the arbiter for every PCAP tapwire writes.
//!
//! The fixture `fixtures/http_dns_lo.pcap` is real traffic on loopback
//! (curl -> python3 http.server on port 18765, dig -> dnsmasq over UDP and
//! TCP), made by `fixtures/make_http_dns.sh`. Tests need tshark: without it
//! they print why they skip, and fail under `CI=true`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use pcap_file::pcap::PcapReader;
use tapwire_pcap_recorder::index::SliceIndex;
use tapwire_pcap_recorder::{
    FinishedSlice, NamedQuery, NoPods, Recorder, RecorderConfig, stream_matches,
};
use tapwire_schemas::events::{EventHeader, PacketRecord};
use tapwire_schemas::{EventId, Ip};

const HTTP_PORT: &str = "18765";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs tshark and returns its lines; panics on failure or complaints.
fn run(tshark: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new(tshark)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("run tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark {args:?} failed: {stderr}");
    for bad in ["cut short", "damaged", "corrupt", "isn't", "appears to be"] {
        assert!(!stderr.contains(bad), "tshark {args:?}: {stderr}");
    }
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A canonical 5-tuple: (transport, lower endpoint, higher endpoint).
type Tuple = (String, (IpAddr, u16), (IpAddr, u16));

fn tuple(transport: &str, a: (IpAddr, u16), b: (IpAddr, u16)) -> Tuple {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (transport.to_owned(), lo, hi)
}

/// Per frame of `file`: its number and canonical 5-tuple (frames without
/// TCP/UDP are left out).
fn tshark_tuples(tshark: &Path, file: &Path, filter: &str) -> BTreeMap<u64, Tuple> {
    let mut args = vec!["-r", file.to_str().unwrap(), "-d"];
    let decode = format!("tcp.port=={HTTP_PORT},http");
    args.push(&decode);
    if !filter.is_empty() {
        args.extend(["-Y", filter]);
    }
    args.extend([
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-e",
        "frame.number",
        "-e",
        "ip.src",
        "-e",
        "ipv6.src",
        "-e",
        "ip.dst",
        "-e",
        "ipv6.dst",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "udp.srcport",
        "-e",
        "udp.dstport",
    ]);
    let mut out = BTreeMap::new();
    for line in run(tshark, &args) {
        let f: Vec<&str> = line.split('\t').collect();
        let ip = |a: &str, b: &str| -> IpAddr { if a.is_empty() { b } else { a }.parse().unwrap() };
        let (src, dst) = (ip(f[1], f[2]), ip(f[3], f[4]));
        let (transport, sp, dp) = if !f[5].is_empty() {
            ("tcp", f[5], f[6])
        } else if !f[7].is_empty() {
            ("udp", f[7], f[8])
        } else {
            continue;
        };
        out.insert(
            f[0].parse().unwrap(),
            tuple(
                transport,
                (src, sp.parse().unwrap()),
                (dst, dp.parse().unwrap()),
            ),
        );
    }
    out
}

/// Per frame: (original length, captured length, capture time in ns).
fn tshark_frames(tshark: &Path, file: &Path) -> Vec<(u64, u64, i128)> {
    run(
        tshark,
        &[
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
            "-e",
            "frame.time_epoch",
        ],
    )
    .iter()
    .map(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        let (secs, frac) = f[2].split_once('.').unwrap_or((f[2], ""));
        let frac = format!("{frac:0<9}");
        let ns = secs.parse::<i128>().unwrap() * 1_000_000_000 + frac[..9].parse::<i128>().unwrap();
        (f[0].parse().unwrap(), f[1].parse().unwrap(), ns)
    })
    .collect()
}

/// Every record of a classic pcap file: (timestamp ns, original length, bytes).
fn read_pcap(bytes: &[u8]) -> (u32, Vec<(i64, u32, Vec<u8>)>) {
    let mut reader = PcapReader::new(bytes).unwrap();
    let link = u32::from(reader.header().datalink);
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        out.push((
            i64::try_from(p.timestamp.as_nanos()).unwrap(),
            p.orig_len,
            p.data.into_owned(),
        ));
    }
    (link, out)
}

fn header(ts: i64, n: u64) -> EventHeader {
    EventHeader {
        id: EventId([n as u8; 16]),
        timestamp_ns: ts,
        node: "node-a".into(),
        sensor_id: "test".into(),
        node_ip: Some(Ip("192.0.2.10".parse().unwrap())),
    }
}

fn record_file(path: &Path, queries: &[(&str, &str)]) -> (Vec<FinishedSlice>, Recorder) {
    let bytes = std::fs::read(path).unwrap();
    let (link, packets) = read_pcap(&bytes);
    let queries = queries
        .iter()
        .map(|(name, q)| NamedQuery {
            name: (*name).into(),
            query: (*q).into(),
        })
        .collect();
    let mut recorder = Recorder::new(RecorderConfig::default(), queries).unwrap();
    for (n, (ts, orig, data)) in packets.into_iter().enumerate() {
        let record = PacketRecord {
            header: header(ts, n as u64),
            link_type: link,
            captured_len: data.len() as u32,
            original_len: orig,
            flow_hash: 0,
            data,
            interface: Some("lo".into()),
        };
        recorder.push(record, &NoPods).unwrap();
    }
    recorder.flush(&NoPods).unwrap();
    (recorder.take_finished(), recorder)
}

fn recorded_tuples(slices: &[FinishedSlice], query: &str) -> BTreeSet<Tuple> {
    slices
        .iter()
        .flat_map(|s| &s.index.streams)
        .filter(|st| st.matched.iter().any(|m| m == query))
        .map(|st| {
            tuple(
                st.transport.as_str(),
                (st.client.ip, st.client.port),
                (st.server.ip, st.server.port),
            )
        })
        .collect()
}

#[test]
fn kfl_selects_the_streams_tshark_selects_and_slices_reopen_in_tshark() {
    let Some(tshark) = tapwire_tests::tshark() else {
        return;
    };
    let source = fixture("http_dns_lo.pcap");
    let (slices, recorder) = record_file(
        &source,
        &[
            ("dns", "dns"),
            ("get", r#"http and request.method == "GET""#),
            ("all", ""),
        ],
    );
    assert_eq!(recorder.stats().undecodable_total(), 0);
    assert!(!slices.is_empty());

    // 1. The same streams as tshark's display filters.
    for (name, display_filter) in [("dns", "dns"), ("get", r#"http.request.method == "GET""#)] {
        let expected: BTreeSet<Tuple> = tshark_tuples(&tshark, &source, display_filter)
            .into_values()
            .collect();
        assert!(!expected.is_empty(), "the fixture has {name} traffic");
        assert_eq!(recorded_tuples(&slices, name), expected, "query {name}");
    }
    // The empty query records every stream tshark sees.
    let all: BTreeSet<Tuple> = tshark_tuples(&tshark, &source, "").into_values().collect();
    assert_eq!(recorded_tuples(&slices, "all"), all);

    // 2. Every slice opens in tshark with exactly the source packets of its
    // streams: count, lengths, times and bytes.
    let dir = tempfile::tempdir().unwrap();
    let source_frames = tshark_frames(&tshark, &source);
    let source_tuples = tshark_tuples(&tshark, &source, "");
    let (_, source_packets) = read_pcap(&std::fs::read(&source).unwrap());
    for slice in &slices {
        let (pcap_path, index_path) = slice.write_to_dir(dir.path()).unwrap();
        let streams: BTreeSet<Tuple> = slice
            .index
            .streams
            .iter()
            .map(|st| {
                tuple(
                    st.transport.as_str(),
                    (st.client.ip, st.client.port),
                    (st.server.ip, st.server.port),
                )
            })
            .collect();
        let wanted: Vec<usize> = source_tuples
            .iter()
            .filter(|(_, t)| streams.contains(t))
            .map(|(n, _)| *n as usize - 1)
            .collect();
        let got = tshark_frames(&tshark, &pcap_path);
        let want: Vec<_> = wanted.iter().map(|&i| source_frames[i]).collect();
        assert_eq!(got, want, "slice {}", slice.name);
        let (link, packets) = read_pcap(&slice.pcap);
        assert_eq!(link, slice.index.link_type);
        let want_bytes: Vec<_> = wanted.iter().map(|&i| source_packets[i].clone()).collect();
        assert_eq!(packets, want_bytes, "original bytes, lengths and times");
        assert_eq!(slice.index.packets, packets.len() as u64);

        // 3. The index reads back and numbers each stream's frames as tshark
        // does; its entries give the same verdicts offline.
        let index = SliceIndex::from_json(&std::fs::read(index_path).unwrap()).unwrap();
        assert_eq!(index, slice.index);
        let slice_tuples = tshark_tuples(&tshark, &pcap_path, "");
        for st in &index.streams {
            let t = tuple(
                st.transport.as_str(),
                (st.client.ip, st.client.port),
                (st.server.ip, st.server.port),
            );
            let frames: Vec<u64> = slice_tuples
                .iter()
                .filter(|(_, x)| **x == t)
                .map(|(n, _)| *n)
                .collect();
            assert_eq!(st.frames, frames, "stream {}", st.id);
            for q in &index.queries {
                let filter = tapwire_kfl::compile(&q.query).unwrap();
                assert_eq!(
                    stream_matches(&filter, st, 0),
                    st.matched.contains(&q.name),
                    "stream {} query {}",
                    st.id,
                    q.name
                );
            }
        }
    }
}

#[test]
fn dissection_agrees_with_tshark_on_methods_statuses_and_names() {
    let Some(tshark) = tapwire_tests::tshark() else {
        return;
    };
    let source = fixture("http_dns_lo.pcap");
    let (slices, _) = record_file(&source, &[("all", "")]);
    let mut ours: Vec<String> = Vec::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for st in slices.iter().flat_map(|s| &s.index.streams) {
        for e in &st.exchanges {
            match e {
                tapwire_pcap_recorder::index::Exchange::Http(h) => {
                    ours.push(format!("{} {}", h.request.method, h.request.target));
                    if let Some(r) = &h.response {
                        ours.push(r.status.to_string());
                    }
                }
                tapwire_pcap_recorder::index::Exchange::Dns(d) => {
                    for m in d.request.iter().chain(&d.response) {
                        names.extend(m.questions.iter().map(|q| q.name.clone()));
                    }
                }
            }
        }
    }
    let decode = format!("tcp.port=={HTTP_PORT},http");
    let mut theirs: Vec<String> = Vec::new();
    for line in run(
        &tshark,
        &[
            "-r",
            source.to_str().unwrap(),
            "-d",
            &decode,
            "-Y",
            "http",
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-e",
            "http.request.method",
            "-e",
            "http.request.uri",
            "-e",
            "http.response.code",
        ],
    ) {
        let f: Vec<&str> = line.split('\t').collect();
        if !f[0].is_empty() {
            theirs.push(format!("{} {}", f[0], f[1]));
        } else {
            theirs.push(f[2].to_owned());
        }
    }
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    let tshark_names: BTreeSet<String> = run(
        &tshark,
        &[
            "-r",
            source.to_str().unwrap(),
            "-Y",
            "dns",
            "-T",
            "fields",
            "-e",
            "dns.qry.name",
        ],
    )
    .into_iter()
    .collect();
    assert_eq!(names, tshark_names);
}
