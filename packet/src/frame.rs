//! [`parse`]: one captured frame of a PCAP link type to a [`Packet`].

use std::net::IpAddr;

use etherparse::err::packet::SliceError;
use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};

use crate::flow::{FlowKey, Transport};

/// PCAP link type: Ethernet II, with or without 802.1Q/802.1ad VLAN tags.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// PCAP link type: raw IPv4 or IPv6 (the version nibble tells).
pub const LINKTYPE_RAW: u32 = 101;
/// PCAP link type: Linux "cooked" capture v1 (`tcpdump -i any` on older systems).
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// PCAP link type: raw IPv4 only.
pub const LINKTYPE_IPV4: u32 = 228;
/// PCAP link type: raw IPv6 only.
pub const LINKTYPE_IPV6: u32 = 229;
/// PCAP link type: Linux "cooked" capture v2 (`-i any` on current libpcap).
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Length of a LINUX_SLL2 header: protocol type (2), reserved (2), interface
/// index (4), ARPHRD type (2), packet type (1), address length (1), address (8).
const SLL2_HEADER_LEN: usize = 20;

/// A decoded TCP or UDP packet, borrowing the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The 5-tuple in this packet's direction.
    pub flow: FlowKey,
    /// TCP header fields; `None` for UDP.
    pub tcp: Option<TcpInfo>,
    /// The transport payload (IP padding after the datagram excluded).
    pub payload: &'a [u8],
}

/// The TCP header fields stream reassembly needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when `ack` is set).
    pub ack_number: u32,
    /// SYN flag.
    pub syn: bool,
    /// ACK flag.
    pub ack: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// PSH flag.
    pub psh: bool,
    /// Receive window (unscaled).
    pub window: u16,
}

/// Why a frame did not decode to a TCP or UDP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The link type is not one [`parse`] reads.
    #[error(
        "link type {0} is not supported (1 Ethernet, 101 raw IP, 113 Linux SLL, 228/229 raw IPv4/IPv6, 276 Linux SLL2)"
    )]
    UnsupportedLinkType(u32),
    /// The frame carries something other than IPv4/IPv6 (ARP, LLDP, ...).
    #[error("not an IP packet")]
    NotIp,
    /// An IP packet of a protocol other than TCP and UDP (ICMP, ...).
    #[error("IP protocol {0} is neither TCP nor UDP")]
    UnsupportedTransport(u8),
    /// An IP fragment: the transport header is not (entirely) in this packet.
    #[error("IP fragment (fragments are not reassembled)")]
    Fragment,
    /// The frame ends before a header or the length a header announces.
    #[error("truncated frame: {layer} needs {required} bytes, {available} captured")]
    Truncated {
        /// The layer that was cut (as `etherparse` names it).
        layer: String,
        /// Bytes the layer needs.
        required: usize,
        /// Bytes there were.
        available: usize,
    },
    /// A header with invalid contents (bad IP version, TCP data offset, ...).
    #[error("malformed header")]
    Malformed(#[source] SliceError),
}

impl From<SliceError> for PacketError {
    fn from(err: SliceError) -> PacketError {
        match err {
            SliceError::Len(len) => PacketError::Truncated {
                layer: len.layer.to_string(),
                required: len.required_len,
                available: len.len,
            },
            other => PacketError::Malformed(other),
        }
    }
}

/// Decodes one frame captured with PCAP link type `link_type` down to its
/// TCP or UDP payload.
///
/// Ethernet may carry up to three VLAN/MACsec tags. IP extension headers are
/// skipped. The frame must hold the whole IP datagram its header announces
/// (a frame cut by a snap length is [`PacketError::Truncated`]); bytes after
/// the datagram (Ethernet padding) are ignored.
///
/// # Errors
///
/// A [`PacketError`] saying why the frame is not a TCP/UDP packet. Any input
/// gives a result; none panics.
pub fn parse(link_type: u32, data: &[u8]) -> Result<Packet<'_>, PacketError> {
    let sliced = slice(link_type, data)?;
    let (src_ip, dst_ip, fragmented, ip_number) = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            v4.is_payload_fragmented(),
            v4.payload_ip_number().0,
        ),
        Some(NetSlice::Ipv6(v6)) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            v6.is_payload_fragmented(),
            v6.payload().ip_number.0,
        ),
        Some(NetSlice::Arp(_)) | None => return Err(PacketError::NotIp),
    };
    match sliced
        .transport
        .as_ref()
        .and_then(|t| from_transport(src_ip, dst_ip, t))
    {
        Some(packet) => Ok(packet),
        None if fragmented => Err(PacketError::Fragment),
        None => Err(PacketError::UnsupportedTransport(ip_number)),
    }
}

/// A reassembled IP payload (a whole TCP segment or UDP datagram of
/// `protocol`) between `src_ip` and `dst_ip`, as a [`Packet`].
///
/// # Errors
///
/// [`PacketError::Malformed`] for a transport header that does not parse,
/// [`PacketError::UnsupportedTransport`] for a protocol other than TCP and
/// UDP.
pub fn parse_transport(
    src_ip: IpAddr,
    dst_ip: IpAddr,
    protocol: u8,
    bytes: &[u8],
) -> Result<Packet<'_>, PacketError> {
    let transport = match protocol {
        6 => TransportSlice::Tcp(etherparse::TcpSlice::from_slice(bytes).map_err(|e| {
            PacketError::Malformed(match e {
                etherparse::err::tcp::HeaderSliceError::Len(l) => SliceError::Len(l),
                etherparse::err::tcp::HeaderSliceError::Content(c) => SliceError::Tcp(c),
            })
        })?),
        17 => TransportSlice::Udp(
            etherparse::UdpSlice::from_slice(bytes)
                .map_err(|e| PacketError::Malformed(SliceError::Len(e)))?,
        ),
        other => return Err(PacketError::UnsupportedTransport(other)),
    };
    from_transport(src_ip, dst_ip, &transport).ok_or(PacketError::UnsupportedTransport(protocol))
}

/// The packet of a TCP or UDP slice; `None` for other transports.
fn from_transport<'a>(
    src_ip: IpAddr,
    dst_ip: IpAddr,
    transport: &TransportSlice<'a>,
) -> Option<Packet<'a>> {
    let flow = |protocol, src_port, dst_port| FlowKey {
        protocol,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
    };
    Some(match transport {
        TransportSlice::Tcp(tcp) => Packet {
            flow: flow(Transport::Tcp, tcp.source_port(), tcp.destination_port()),
            tcp: Some(TcpInfo {
                seq: tcp.sequence_number(),
                ack_number: tcp.acknowledgment_number(),
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
                psh: tcp.psh(),
                window: tcp.window_size(),
            }),
            payload: tcp.payload(),
        },
        TransportSlice::Udp(udp) => Packet {
            flow: flow(Transport::Udp, udp.source_port(), udp.destination_port()),
            tcp: None,
            payload: udp.payload(),
        },
        _ => return None,
    })
}

/// The headers of a frame of `link_type`, sliced.
pub(crate) fn slice(link_type: u32, data: &[u8]) -> Result<SlicedPacket<'_>, PacketError> {
    Ok(match link_type {
        LINKTYPE_ETHERNET => SlicedPacket::from_ethernet(data)?,
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => SlicedPacket::from_ip(data)?,
        LINKTYPE_LINUX_SLL => SlicedPacket::from_linux_sll(data)?,
        LINKTYPE_LINUX_SLL2 => {
            if data.len() < SLL2_HEADER_LEN {
                return Err(PacketError::Truncated {
                    layer: "Linux Cooked Capture v2 header".to_owned(),
                    required: SLL2_HEADER_LEN,
                    available: data.len(),
                });
            }
            let ether_type = EtherType(u16::from_be_bytes([data[0], data[1]]));
            SlicedPacket::from_ether_type(ether_type, &data[SLL2_HEADER_LEN..])?
        }
        other => return Err(PacketError::UnsupportedLinkType(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        ArpHardwareId, LinuxSllHeader, LinuxSllPacketType, LinuxSllProtocolType, PacketBuilder,
    };

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    fn tcp_ipv4(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ipv4(A, B, 64)
            .tcp(40000, 80, 1000, 512)
            .syn()
            .ack(77)
            .psh();
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    fn check_tcp(packet: &Packet<'_>, payload: &[u8]) {
        assert_eq!(packet.flow.protocol, Transport::Tcp);
        assert_eq!(packet.flow.src_ip, IpAddr::from(A));
        assert_eq!(packet.flow.dst_ip, IpAddr::from(B));
        assert_eq!((packet.flow.src_port, packet.flow.dst_port), (40000, 80));
        let tcp = packet.tcp.unwrap();
        assert_eq!(tcp.seq, 1000);
        assert_eq!(tcp.ack_number, 77);
        assert!(tcp.syn && tcp.ack && tcp.psh && !tcp.fin && !tcp.rst);
        assert_eq!(tcp.window, 512);
        assert_eq!(packet.payload, payload);
    }

    #[test]
    fn raw_ip_tcp() {
        let frame = tcp_ipv4(b"GET / HTTP/1.1\r\n\r\n");
        check_tcp(
            &parse(LINKTYPE_RAW, &frame).unwrap(),
            b"GET / HTTP/1.1\r\n\r\n",
        );
        check_tcp(
            &parse(LINKTYPE_IPV4, &frame).unwrap(),
            b"GET / HTTP/1.1\r\n\r\n",
        );
    }

    #[test]
    fn ethernet_with_vlan_and_padding() {
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .single_vlan(etherparse::VlanId::try_new(42).unwrap())
            .ipv4(A, B, 64)
            .tcp(40000, 80, 1000, 512)
            .syn()
            .ack(77)
            .psh();
        let mut frame = Vec::new();
        builder.write(&mut frame, b"x").unwrap();
        // Ethernet pads short frames; the padding is not payload.
        frame.extend_from_slice(&[0; 12]);
        check_tcp(&parse(LINKTYPE_ETHERNET, &frame).unwrap(), b"x");
    }

    #[test]
    fn linux_sll_and_sll2() {
        let ip = tcp_ipv4(b"abc");
        let sll = LinuxSllHeader {
            packet_type: LinuxSllPacketType::OUTGOING,
            arp_hrd_type: ArpHardwareId::ETHERNET,
            sender_address_valid_length: 6,
            sender_address: [1, 2, 3, 4, 5, 6, 0, 0],
            protocol_type: LinuxSllProtocolType::EtherType(EtherType::IPV4),
        };
        let mut frame = sll.to_bytes().to_vec();
        frame.extend_from_slice(&ip);
        check_tcp(&parse(LINKTYPE_LINUX_SLL, &frame).unwrap(), b"abc");

        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 4, 6];
        sll2.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0]);
        assert_eq!(sll2.len(), SLL2_HEADER_LEN);
        sll2.extend_from_slice(&ip);
        check_tcp(&parse(LINKTYPE_LINUX_SLL2, &sll2).unwrap(), b"abc");
        assert!(matches!(
            parse(LINKTYPE_LINUX_SLL2, &sll2[..10]),
            Err(PacketError::Truncated { required: 20, .. })
        ));
    }

    #[test]
    fn ipv6_udp() {
        let src = [0x20, 0x01, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0x20, 0x01, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut frame = Vec::new();
        PacketBuilder::ipv6(src, dst, 64)
            .udp(5353, 53)
            .write(&mut frame, b"dns!")
            .unwrap();
        let p = parse(LINKTYPE_RAW, &frame).unwrap();
        assert_eq!(p.flow.protocol, Transport::Udp);
        assert_eq!(p.flow.src_ip, IpAddr::from(src));
        assert_eq!(p.flow.dst_port, 53);
        assert_eq!(p.tcp, None);
        assert_eq!(p.payload, b"dns!");
        assert_eq!(parse(LINKTYPE_IPV6, &frame).unwrap(), p);
    }

    #[test]
    fn errors_say_why() {
        assert_eq!(parse(999, &[]), Err(PacketError::UnsupportedLinkType(999)));
        let frame = tcp_ipv4(b"0123456789");
        assert!(matches!(
            parse(LINKTYPE_RAW, &frame[..frame.len() - 3]),
            Err(PacketError::Truncated { .. })
        ));
        let mut icmp = Vec::new();
        PacketBuilder::ipv4(A, B, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut icmp, b"ping")
            .unwrap();
        assert_eq!(
            parse(LINKTYPE_RAW, &icmp),
            Err(PacketError::UnsupportedTransport(1))
        );
        // An ARP frame (ether type 0x0806) over Ethernet.
        let mut arp = vec![2; 6];
        arp.extend_from_slice(&[1; 6]);
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&[1; 6]);
        arp.extend_from_slice(&A);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&B);
        assert_eq!(parse(LINKTYPE_ETHERNET, &arp), Err(PacketError::NotIp));
        assert!(matches!(
            parse(LINKTYPE_RAW, &[0x75, 0, 0]),
            Err(PacketError::Malformed(_) | PacketError::Truncated { .. })
        ));
    }

    #[test]
    fn later_fragments_are_reported_as_fragments() {
        let mut frame = tcp_ipv4(b"0123456789");
        // Fragment offset 8 (in 8-byte units), more-fragments clear.
        frame[6] = 0;
        frame[7] = 8;
        // The IPv4 header checksum is not verified by the decoder.
        assert_eq!(parse(LINKTYPE_RAW, &frame), Err(PacketError::Fragment));
    }
}
