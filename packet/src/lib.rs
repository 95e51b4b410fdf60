//! Captured frames to flows: tapwire's one decoder of link-layer, IP and
//! TCP/UDP headers, the direction-independent flow hash that keys packets on
//! Kafka, and DNS messages.
//!
//! The capture agent uses it to key `tapwire.packets.raw` by flow; the
//! recorder uses it to reassemble streams and dissect DNS. Headers are read
//! with the `etherparse` crate (strict slicing, borrowed), DNS by a reader
//! that walks every record; nothing here allocates per packet except DNS
//! texts.
//!
//! ```
//! use tapwire_packet::{parse, LINKTYPE_RAW, Transport};
//! // IPv4 + UDP 10.0.0.1:5353 -> 10.0.0.2:53, 2 payload bytes (checksums unset).
//! let frame = [
//!     0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
//!     0x14, 0xe9, 0, 53, 0, 10, 0, 0, 0xab, 0xcd,
//! ];
//! let packet = parse(LINKTYPE_RAW, &frame).unwrap();
//! assert_eq!(packet.flow.protocol, Transport::Udp);
//! assert_eq!(packet.flow.dst_port, 53);
//! assert_eq!(packet.payload, &[0xab, 0xcd]);
//! assert_eq!(packet.flow.flow_hash(), packet.flow.reversed().flow_hash());
//! ```
//!
//! # Where things live
//!
//! - `frame`: [`parse`] (a frame of a PCAP link type to a [`Packet`]), the
//!   link-type constants, [`TcpInfo`], [`PacketError`].
//! - `flow`: [`FlowKey`] (the 5-tuple), [`Transport`], and
//!   [`FlowKey::flow_hash`] with its exact byte layout.
//! - [`defrag`]: IPv4 and IPv6 fragment reassembly with memory bounds;
//!   [`parse_transport`] reads the reassembled payload.
//! - [`dns`]: DNS messages ([`dns::parse`]) and the TCP length prefix
//!   ([`dns::TcpFrames`]).
//! - [`capture_file`]: the one reader of pcap and pcapng files
//!   ([`capture_file::CaptureFile`]), for the agent's replay, investigate
//!   and tests.
//! - [`synth`]: synthetic frames (TCP sessions, refused connects, UDP and
//!   DNS exchanges, IPv4 and IPv6 fragments) for the demo, benchmarks and
//!   tests.

mod flow;
mod frame;

pub mod capture_file;
pub mod defrag;
pub mod dns;
pub mod synth;

pub use flow::{FlowKey, Transport};
pub use frame::{
    LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW, Packet, PacketError, TcpInfo, parse, parse_transport,
};
