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

fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(src_port.to_be_bytes());
    u.extend(dst_port.to_be_bytes());
    u.extend((8 + payload.len() as u16).to_be_bytes());
    u.extend([0, 0]); // no checksum (IPv4); tshark does not check it
    u.extend(payload);
    u
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Raw IPv4 frames carrying `datagram` (a UDP datagram) in fragments, last
/// first.
fn ipv4_fragments(src: Ipv4Addr, dst: Ipv4Addr, id: u16, datagram: &[u8]) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = datagram
        .chunks(PIECE)
        .enumerate()
        .map(|(i, chunk)| {
            let more = (i + 1) * PIECE < datagram.len();
            let flags_offset = (u16::from(more) << 13) | ((i * PIECE / 8) as u16);
            let mut ip = vec![0x45, 0];
            ip.extend((20 + chunk.len() as u16).to_be_bytes());
            ip.extend(id.to_be_bytes());
            ip.extend(flags_offset.to_be_bytes());
            ip.extend([64, 17, 0, 0]);
            ip.extend(src.octets());
            ip.extend(dst.octets());
            let sum = checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            ip.extend(chunk);
            ip
        })
        .collect();
    frames.reverse();
    frames
}

/// Raw IPv6 frames carrying `datagram` in fragments (fragment header),
/// last first.
fn ipv6_fragments(src: Ipv6Addr, dst: Ipv6Addr, id: u32, datagram: &[u8]) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = datagram
        .chunks(PIECE)
        .enumerate()
        .map(|(i, chunk)| {
            let more = (i + 1) * PIECE < datagram.len();
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend((8 + chunk.len() as u16).to_be_bytes());
            ip.extend([44, 64]); // next: fragment header; hop limit
            ip.extend(src.octets());
            ip.extend(dst.octets());
            ip.extend([17, 0]);
            ip.extend((((i * PIECE / 8) as u16) << 3 | u16::from(more)).to_be_bytes());
            ip.extend(id.to_be_bytes());
            ip.extend(chunk);
            ip
        })
        .collect();
    frames.reverse();
    frames
}

#[tokio::test]
async fn fragmented_dns_over_ipv4_and_ipv6_is_found_as_tshark_finds_it() {
    let query = synth::dns_query(0x1111, "fragments.example.com");
    let answer = synth::dns_answer(0x1111, "fragments.example.com", [192, 0, 2, 7].into());
    let (c4, s4) = (Ipv4Addr::new(10, 0, 0, 7), Ipv4Addr::new(10, 0, 0, 53));
    let (c6, s6): (Ipv6Addr, Ipv6Addr) = ("fd00::7".parse().unwrap(), "fd00::53".parse().unwrap());
    let mut frames: Vec<Vec<u8>> = Vec::new();
    frames.extend(ipv4_fragments(c4, s4, 7, &udp(40000, 53, &query)));
    frames.extend(ipv4_fragments(s4, c4, 8, &udp(53, 40000, &answer)));
    frames.extend(ipv6_fragments(c6, s6, 9, &udp(40001, 53, &query)));
    frames.extend(ipv6_fragments(s6, c6, 10, &udp(53, 40001, &answer)));
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
