//! Traffic with planted secrets and the EICAR test string, written as a
//! classic PCAP, and what a scanner must find in it: the scan tests' one
//! source of truth for "exactly the planted findings".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use tapwire_packet::synth::{Frame, tcp_session, udp_exchange};

/// One planted thing: the rule or detector that must find it, and bytes
/// that must never appear in a finding (the secret) or that the finding's
/// frame must hold (the match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planted {
    /// Detector or YARA rule name.
    pub rule: &'static str,
    /// The secret (or, for malware, the matched string).
    pub value: &'static str,
    /// Whether `value` is a secret that no excerpt may show.
    pub secret: bool,
}

/// The EICAR anti-virus test string, split so that this source file is
/// not itself flagged by scanners.
pub fn eicar() -> String {
    [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    ]
    .concat()
}

/// The capture's frames: two HTTP sessions and a UDP exchange between
/// `10.1.0.4` (client) and `10.1.0.9` / `10.1.0.10`, starting at `t0_ns`;
/// returns the frames and what is planted in them.
pub fn frames(t0_ns: i64) -> (Vec<Frame>, Vec<Planted>) {
    let client: SocketAddr = "10.1.0.4:40312".parse().expect("addr");
    let api: SocketAddr = "10.1.0.9:8080".parse().expect("addr");
    let other: SocketAddr = "10.1.0.4:40313".parse().expect("addr");
    let db: SocketAddr = "10.1.0.10:9000".parse().expect("addr");
    let request =
        b"GET /orders HTTP/1.1\r\nHost: api\r\nAuthorization: Basic dXNlcjpodW50ZXIy\r\n\r\n";
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
        eicar().len(),
        eicar()
    );
    let body =
        "{\"aws_access_key_id\": \"AKIAIOSFODNN7EXAMPLE\", \"card\": \"4111 1111 1111 1111\"}";
    let post = format!(
        "POST /upload HTTP/1.1\r\nHost: api\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut out = tcp_session(t0_ns, client, api, &[(request, response.as_bytes())]);
    out.extend(tcp_session(
        t0_ns + 10_000_000,
        other,
        api,
        &[(post.as_bytes(), b"HTTP/1.1 204 No Content\r\n\r\n")],
    ));
    out.extend(udp_exchange(
        t0_ns + 20_000_000,
        "10.1.0.4:51000".parse().expect("addr"),
        db,
        b"CONNECT postgres://app:s3cr3tpw@db:5432/orders\n",
        b"OK\n",
    ));
    let planted = vec![
        Planted {
            rule: "http-basic-auth",
            value: "dXNlcjpodW50ZXIy",
            secret: true,
        },
        Planted {
            rule: "eicar_test_file",
            value: "EICAR-STANDARD-ANTIVIRUS-TEST-FILE",
            secret: false,
        },
        Planted {
            rule: "aws-access-key",
            value: "AKIAIOSFODNN7EXAMPLE",
            secret: true,
        },
        Planted {
            rule: "card-number",
            value: "4111 1111 1111 1111",
            secret: true,
        },
        Planted {
            rule: "url-credentials",
            value: "s3cr3tpw",
            secret: true,
        },
    ];
    (out, planted)
}

/// Writes `frames` as a classic Ethernet PCAP with nanosecond times.
pub fn write_pcap(path: &Path, frames: &[Frame]) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(file, header).expect("pcap header");
    for f in frames {
        let ts = std::time::Duration::from_nanos(f.ts_ns as u64);
        writer
            .write_packet(&PcapPacket::new(ts, f.data.len() as u32, &f.data))
            .expect("write packet");
    }
}

/// Frame `number` (1-based) of the classic PCAP `path`.
pub fn frame(path: &Path, number: u64) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap");
    let mut n = 0;
    while let Some(p) = reader.next_packet() {
        n += 1;
        let p = p.expect("packet");
        if n == number {
            return p.data.into_owned();
        }
    }
    panic!("{} has no frame {number}", path.display());
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every planted thing is found once, at a frame that holds it, and no
/// excerpt shows a secret; nothing else is found.
pub fn assert_exactly(findings: &[serde_json::Value], planted: &[Planted], pcap: &Path) {
    let mut by_rule: BTreeMap<&str, Vec<&serde_json::Value>> = BTreeMap::new();
    for f in findings {
        by_rule
            .entry(f["rule"].as_str().expect("rule"))
            .or_default()
            .push(f);
    }
    let mut expected: Vec<&str> = planted.iter().map(|p| p.rule).collect();
    expected.sort_unstable();
    let found: Vec<&str> = by_rule.keys().copied().collect();
    assert_eq!(found, expected, "findings: {findings:#?}");
    for p in planted {
        let hits = &by_rule[p.rule];
        assert_eq!(hits.len(), 1, "{}: {hits:#?}", p.rule);
        let f = hits[0];
        let number = f["frame"].as_u64().expect("frame number");
        assert!(
            contains(&frame(pcap, number), p.value.as_bytes()),
            "{}: frame {number} does not hold {:?}",
            p.rule,
            p.value
        );
        let excerpt = f["excerpt"].as_str().expect("excerpt");
        if p.secret {
            assert!(
                !excerpt.contains(p.value),
                "{}: excerpt {excerpt:?} shows the secret",
                p.rule
            );
        } else {
            assert!(excerpt.contains(p.value), "{}: {excerpt:?}", p.rule);
        }
        let kind = if p.secret {
            "sensitive_data"
        } else {
            "malware"
        };
        assert_eq!(f["kind"], kind, "{f}");
        let location = f["location"].as_str().expect("location");
        assert!(
            location.starts_with("tcp 10.1.0.4:") || location.starts_with("udp 10.1.0.4:"),
            "{location}"
        );
    }
}
