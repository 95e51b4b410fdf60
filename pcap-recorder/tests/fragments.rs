//! Issue 20: IP fragments are put together before streams are matched: a
//! DNS query and its answer sent in IPv4 and IPv6 fragments (out of order)
//! are found by `dns` as tshark finds them, and every fragment is in the
//! slice.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use tapwire_packet::synth;
use tapwire_pcap_recorder::investigate::{self, Criteria};
use tapwire_pcap_recorder::store::{LocalStore, Store};

const T0: i64 = 1_700_000_000_000_000_000;
/// IP payload bytes per fragment (a multiple of 8).
const PIECE: usize = 16;

#[tokio::test]
async fn fragmented_dns_over_ipv4_and_ipv6_is_found_as_tshark_finds_it() {
    let query = synth::dns_query(0x1111, "fragments.example.com");
    let answer = synth::dns_answer(0x1111, "fragments.example.com", [192, 0, 2, 7].into());
    let (c4, s4) = (Ipv4Addr::new(10, 0, 0, 7), Ipv4Addr::new(10, 0, 0, 53));
    let (c6, s6): (Ipv6Addr, Ipv6Addr) = ("fd00::7".parse().unwrap(), "fd00::53".parse().unwrap());
    // Each datagram's fragments last first.
    let backwards = |mut f: Vec<Vec<u8>>| {
        f.reverse();
        f
    };
    let udp = synth::udp_datagram;
    let mut frames: Vec<Vec<u8>> = Vec::new();
    frames.extend(backwards(synth::ipv4_fragments(
        c4,
        s4,
        7,
        &udp(40000, 53, &query),
        PIECE,
    )));
    frames.extend(backwards(synth::ipv4_fragments(
        s4,
        c4,
        8,
        &udp(53, 40000, &answer),
        PIECE,
    )));
    frames.extend(backwards(synth::ipv6_fragments(
        c6,
        s6,
        9,
        &udp(40001, 53, &query),
        PIECE,
    )));
    frames.extend(backwards(synth::ipv6_fragments(
        s6,
        c6,
        10,
        &udp(53, 40001, &answer),
        PIECE,
    )));
    assert!(frames.len() >= 12, "{} fragments", frames.len());

    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = tmp.path().join("fragments.pcap");
    let header = PcapHeader {
        datalink: DataLink::RAW,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&pcap).expect("file"), header)
        .expect("writer");
    for (i, f) in frames.iter().enumerate() {
        let ts = std::time::Duration::from_nanos((T0 + i as i64 * 1_000) as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .expect("packet");
    }
    drop(w);

    let dir = tmp.path().join("index");
    std::fs::create_dir_all(&dir).expect("dir");
    investigate::index_pcap_file(&pcap, &dir).expect("indexed");
    let store = Store::Local(LocalStore::new(&dir));
    let criteria = Criteria {
        filter: Some(
            tapwire_pcap_recorder::entry::compile(
                r#"dns and request.questions[0].name == "fragments.example.com" and response.code == "NOERROR""#,
            )
            .expect("kfl"),
        ),
        ..Criteria::default()
    };
    let found = investigate::search(&store, "", &criteria, false)
        .await
        .expect("search");
    assert_eq!(
        found.matches.len(),
        2,
        "one exchange over IPv4, one over IPv6"
    );
    let frames_in_slices: u64 = found.matches.iter().map(|m| m.stream.packets).sum();
    assert_eq!(
        frames_in_slices,
        frames.len() as u64,
        "every fragment is kept"
    );

    if let Some(tshark) = tapwire_tests::require(
        "tshark",
        tapwire_tests::tshark(),
        "apt-get install tshark (scripts/services.sh install)",
    ) {
        let out = Command::new(tshark)
            .arg("-r")
            .arg(&pcap)
            .args([
                "-Y",
                "dns.flags.response == 1",
                "-T",
                "fields",
                "-e",
                "dns.qry.name",
            ])
            .output()
            .expect("tshark");
        let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            answers, ["fragments.example.com"; 2],
            "tshark reassembles both"
        );
    }
}
