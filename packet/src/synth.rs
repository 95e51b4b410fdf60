//! Synthetic traffic: well-formed Ethernet frames of TCP sessions, refused
//! connects and UDP exchanges, and DNS messages, with timestamps. For the
//! demo's bundled traffic, benchmarks and tests that need packets without a
//! network; everything decodes with [`parse`](crate::parse) and opens in
//! Wireshark.

use std::net::{IpAddr, SocketAddr};

use etherparse::PacketBuilder;

/// One captured frame (link type [`LINKTYPE_ETHERNET`](crate::LINKTYPE_ETHERNET)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Capture time, epoch nanoseconds.
    pub ts_ns: i64,
    /// Ethernet II frame.
    pub data: Vec<u8>,
}

/// Microseconds between the frames of one conversation.
const STEP_NS: i64 = 50_000;

fn mac(ip: IpAddr) -> [u8; 6] {
    let o = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets()[12..].to_vec(),
    };
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// TCP flags of one segment.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
    psh: bool,
}

fn tcp(from: SocketAddr, to: SocketAddr, seq: u32, ack: u32, f: Flags, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(mac(from.ip()), mac(to.ip()));
    let ip = match (from.ip(), to.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
        (a, b) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            eth.ipv6(v6(a), v6(b), 64)
        }
    };
    let mut b = ip.tcp(from.port(), to.port(), seq, 64_240);
    if f.syn {
        b = b.syn();
    }
    if f.ack {
        b = b.ack(ack);
    }
    if f.fin {
        b = b.fin();
    }
    if f.rst {
        b = b.rst();
    }
    if f.psh {
        b = b.psh();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    // Writing to a Vec cannot fail; checksums are computed.
    let _ = b.write(&mut out, payload);
    out
}

fn udp(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(mac(from.ip()), mac(to.ip()));
    let b = match (from.ip(), to.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
        (a, b) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            eth.ipv6(v6(a), v6(b), 64)
        }
    }
    .udp(from.port(), to.port());
    let mut out = Vec::with_capacity(b.size(payload.len()));
    let _ = b.write(&mut out, payload);
    out
}

/// A whole TCP connection from `client` to `server` starting at `t0_ns`:
/// handshake, then for each `(request, response)` the request from the
/// client and the response from the server (each acknowledged), then the
/// client's FIN and the server's FIN.
pub fn tcp_session(
    t0_ns: i64,
    client: SocketAddr,
    server: SocketAddr,
    exchanges: &[(&[u8], &[u8])],
) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut t = t0_ns;
    let mut push = |data: Vec<u8>| {
        frames.push(Frame { ts_ns: t, data });
        t += STEP_NS;
    };
    // Initial sequence numbers differ per connection, as a kernel's do: a
    // SYN with the same number is a copy of the same connection's.
    let (mut cs, mut ss) = (1_000_u32.wrapping_add((t0_ns / 1_000) as u32), 5_000_u32);
    let ack = Flags {
        ack: true,
        ..Flags::default()
    };
    let data = Flags {
        ack: true,
        psh: true,
        ..Flags::default()
    };
    let fin = Flags {
        ack: true,
        fin: true,
        ..Flags::default()
    };
    let syn = Flags {
        syn: true,
        ..Flags::default()
    };
    push(tcp(client, server, cs, 0, syn, &[]));
    push(tcp(
        server,
        client,
        ss,
        cs + 1,
        Flags { ack: true, ..syn },
        &[],
    ));
    cs += 1;
    ss += 1;
    push(tcp(client, server, cs, ss, ack, &[]));
    for (request, response) in exchanges {
        if !request.is_empty() {
            push(tcp(client, server, cs, ss, data, request));
            cs = cs.wrapping_add(request.len() as u32);
            push(tcp(server, client, ss, cs, ack, &[]));
        }
        if !response.is_empty() {
            push(tcp(server, client, ss, cs, data, response));
            ss = ss.wrapping_add(response.len() as u32);
            push(tcp(client, server, cs, ss, ack, &[]));
        }
    }
    push(tcp(client, server, cs, ss, fin, &[]));
    cs += 1;
    push(tcp(server, client, ss, cs, fin, &[]));
    ss += 1;
    push(tcp(client, server, cs, ss, ack, &[]));
    frames
}

/// A connect to a closed port: the SYN and the server's RST.
pub fn tcp_refused(t0_ns: i64, client: SocketAddr, server: SocketAddr) -> Vec<Frame> {
    let syn = Flags {
        syn: true,
        ..Flags::default()
    };
    let rst = Flags {
        rst: true,
        ack: true,
        ..Flags::default()
    };
    vec![
        Frame {
            ts_ns: t0_ns,
            data: tcp(client, server, 1_000, 0, syn, &[]),
        },
        Frame {
            ts_ns: t0_ns + STEP_NS,
            data: tcp(server, client, 0, 1_001, rst, &[]),
        },
    ]
}

/// A UDP request from `client` and its response.
pub fn udp_exchange(
    t0_ns: i64,
    client: SocketAddr,
    server: SocketAddr,
    request: &[u8],
    response: &[u8],
) -> Vec<Frame> {
    vec![
        Frame {
            ts_ns: t0_ns,
            data: udp(client, server, request),
        },
        Frame {
            ts_ns: t0_ns + STEP_NS,
            data: udp(server, client, response),
        },
    ]
}

/// A DNS query for the A record of `name`.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, TYPE};
    let mut p = Packet::new_query(id);
    p.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.build_bytes_vec().unwrap_or_default()
}

/// The answer to [`dns_query`]: `name` is `address`.
pub fn dns_answer(id: u16, name: &str, address: std::net::Ipv4Addr) -> Vec<u8> {
    use simple_dns::rdata::{A, RData};
    use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, ResourceRecord, TYPE};
    let mut p = Packet::new_reply(id);
    p.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.answers.push(ResourceRecord::new(
        Name::new_unchecked(name),
        CLASS::IN,
        300,
        RData::A(A {
            address: u32::from(address),
        }),
    ));
    p.build_bytes_vec().unwrap_or_default()
}

/// A UDP datagram (header and payload; no checksum, which IPv4 allows).
pub fn udp_datagram(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend(src_port.to_be_bytes());
    u.extend(dst_port.to_be_bytes());
    u.extend((8 + payload.len() as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    u
}

/// The IPv4 header checksum of `header`.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Raw IPv4 frames (link type 101) carrying `datagram` (a UDP datagram,
/// protocol 17) in fragments of `piece` bytes of IP payload (a multiple of
/// 8), in order.
pub fn ipv4_fragments(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    id: u16,
    datagram: &[u8],
    piece: usize,
) -> Vec<Vec<u8>> {
    datagram
        .chunks(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let more = (i + 1) * piece < datagram.len();
            let flags_offset = (u16::from(more) << 13) | ((i * piece / 8) as u16);
            let mut ip = vec![0x45, 0];
            ip.extend((20 + chunk.len() as u16).to_be_bytes());
            ip.extend(id.to_be_bytes());
            ip.extend(flags_offset.to_be_bytes());
            ip.extend([64, 17, 0, 0]);
            ip.extend(src.octets());
            ip.extend(dst.octets());
            let sum = ipv4_checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            ip.extend(chunk);
            ip
        })
        .collect()
}

/// Raw IPv6 frames carrying `datagram` (UDP) in fragments of `piece` bytes
/// (a multiple of 8) behind a fragment header, in order.
pub fn ipv6_fragments(
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    id: u32,
    datagram: &[u8],
    piece: usize,
) -> Vec<Vec<u8>> {
    datagram
        .chunks(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let more = (i + 1) * piece < datagram.len();
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend((8 + chunk.len() as u16).to_be_bytes());
            ip.extend([44, 64]); // next: fragment header; hop limit
            ip.extend(src.octets());
            ip.extend(dst.octets());
            ip.extend([17, 0]);
            ip.extend(((((i * piece / 8) as u16) << 3) | u16::from(more)).to_be_bytes());
            ip.extend(id.to_be_bytes());
            ip.extend(chunk);
            ip
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LINKTYPE_ETHERNET, Transport, dns, parse};

    #[test]
    fn sessions_decode_with_the_right_flags_and_payloads() {
        let c: SocketAddr = "10.1.0.7:40000".parse().expect("addr");
        let s: SocketAddr = "10.1.2.3:8080".parse().expect("addr");
        let frames = tcp_session(
            1,
            c,
            s,
            &[(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n")],
        );
        assert_eq!(frames.len(), 3 + 4 + 3);
        let first = parse(LINKTYPE_ETHERNET, &frames[0].data).expect("syn");
        assert!(first.tcp.expect("tcp").syn && first.flow.dst_port == 8080);
        let request = parse(LINKTYPE_ETHERNET, &frames[3].data).expect("request");
        assert_eq!(request.payload, b"GET / HTTP/1.1\r\n\r\n");
        assert!(frames.windows(2).all(|w| w[0].ts_ns < w[1].ts_ns));
        let refused = tcp_refused(1, c, s);
        assert!(
            parse(LINKTYPE_ETHERNET, &refused[1].data)
                .expect("rst")
                .tcp
                .expect("tcp")
                .rst
        );

        let r: SocketAddr = "10.96.0.10:53".parse().expect("addr");
        let ex = udp_exchange(
            1,
            c,
            r,
            &dns_query(7, "example.com"),
            &dns_answer(7, "example.com", [93, 184, 215, 14].into()),
        );
        let answer = parse(LINKTYPE_ETHERNET, &ex[1].data).expect("udp");
        assert_eq!(answer.flow.protocol, Transport::Udp);
        let m = dns::parse(answer.payload).expect("dns");
        assert!(m.is_response && m.id == 7);
        assert_eq!(m.answers[0].data, "93.184.215.14");
    }
}
