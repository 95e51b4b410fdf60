//! Network records: L4 connection events, DNS events, packets and the
//! /proc/net inventory.

use serde::{Deserialize, Serialize};

use super::EventHeader;
use crate::Ip;

/// One side of a connection (`endpoint.avsc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Endpoint {
    /// IPv4 or IPv6 address.
    pub ip: Ip,
    /// Port, 0 where the protocol has none.
    pub port: u16,
}

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum L4Kind {
    /// Outbound TCP connect or UDP connect attempt.
    NetworkConnect,
    /// Inbound TCP connection accepted by a listener.
    NetworkAccept,
    /// A socket entered LISTEN.
    NetworkListen,
    /// A closed connection with duration, bytes and final state.
    NetworkFlow,
}

impl L4Kind {
    /// The event kind as analysts see it (`network_connect`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            L4Kind::NetworkConnect => "network_connect",
            L4Kind::NetworkAccept => "network_accept",
            L4Kind::NetworkListen => "network_listen",
            L4Kind::NetworkFlow => "network_flow",
        }
    }
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Direction seen from the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A local process initiated.
    Egress,
    /// A local process accepted.
    Ingress,
    /// No direction (listen).
    None,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalState {
    /// Closed normally after it was established.
    Established,
    /// The handshake was reset.
    Refused,
    /// One side closed, the other did not before the socket went away.
    HalfClosed,
    /// No close seen before a timeout or the sensor's shutdown.
    Stale,
}

/// A connection lifecycle event (`l4_event.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L4Event {
    /// Common fields.
    pub header: EventHeader,
    /// Connect, accept, listen or flow.
    pub kind: L4Kind,
    /// Owning process, 0 when unknown.
    pub pid: u32,
    /// Binary name of the owning process.
    pub binary: String,
    /// Container of the owning process.
    pub container_id: Option<String>,
    /// The initiator.
    pub src: Endpoint,
    /// The accepting side.
    pub dst: Endpoint,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Seen from the node.
    pub direction: Direction,
    /// Lifetime for flows; `None` when the connection predates the sensor.
    pub duration_ns: Option<u64>,
    /// Payload bytes sent by the local side.
    pub bytes_sent: Option<u64>,
    /// Payload bytes received by the local side.
    pub bytes_received: Option<u64>,
    /// How a flow ended.
    pub final_state: Option<FinalState>,
    /// Parent of the owning process, taken in the kernel at the event.
    #[serde(default)]
    pub ppid: Option<u32>,
    /// Effective uid of the owner at the event.
    #[serde(default)]
    pub euid: Option<u32>,
    /// Effective gid of the owner at the event.
    #[serde(default)]
    pub egid: Option<u32>,
    /// Full path of the owner's executable.
    #[serde(default)]
    pub binary_path: Option<String>,
    /// The owner's arguments joined by spaces.
    #[serde(default)]
    pub command_line: Option<String>,
    /// Set only when the node's kernel refused the connection (an
    /// enforce-mode denial applied by the agent): `namespace/policy/rule`.
    #[serde(default)]
    pub blocked_by: Option<String>,
}

/// An [`L4Event`] read without copying its strings: the same schema and
/// fields, with text borrowed from the message (see
/// [`crate::codec::decode_l4_view`]). For hot paths that only look.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct L4EventView<'a> {
    pub header: EventHeaderView<'a>,
    pub kind: L4Kind,
    pub pid: u32,
    pub binary: &'a str,
    pub container_id: Option<&'a str>,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub protocol: Protocol,
    pub direction: Direction,
    pub duration_ns: Option<u64>,
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub final_state: Option<FinalState>,
    pub ppid: Option<u32>,
    pub euid: Option<u32>,
    pub egid: Option<u32>,
    pub binary_path: Option<&'a str>,
    pub command_line: Option<&'a str>,
    pub blocked_by: Option<&'a str>,
}

/// An [`EventHeader`] with borrowed text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct EventHeaderView<'a> {
    pub id: crate::EventId,
    pub timestamp_ns: i64,
    pub node: &'a str,
    pub sensor_id: &'a str,
    pub node_ip: Option<Ip>,
}

/// Kinds of DNS observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsKind {
    /// A query on the wire.
    DnsQuery,
    /// An application-level resolution.
    DnsLookup,
    /// A name correlated with the IP a process then connected to.
    DnsResolution,
}

impl DnsKind {
    /// The event kind as analysts see it.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsKind::DnsQuery => "dns_query",
            DnsKind::DnsLookup => "dns_lookup",
            DnsKind::DnsResolution => "dns_resolution",
        }
    }
}

/// A DNS event (`dns_event.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsEvent {
    /// Common fields.
    pub header: EventHeader,
    /// Query, lookup or resolution.
    pub kind: DnsKind,
    /// Asking process, 0 when unknown.
    pub pid: u32,
    /// Binary name of the asking process.
    pub binary: String,
    /// Container of the asking process.
    pub container_id: Option<String>,
    /// Queried name without the trailing dot.
    pub name: String,
    /// A, AAAA, CNAME, ...
    pub query_type: String,
    /// Answer data as text.
    pub answers: Vec<String>,
    /// The DNS server asked.
    pub resolver: Option<Endpoint>,
    /// NOERROR, NXDOMAIN, ...; `None` before an answer.
    pub response_code: Option<String>,
    /// Who asked: the query's source address and port (for a resolution,
    /// the connection's source).
    #[serde(default)]
    pub client: Option<Endpoint>,
    /// For a resolution: the connect event the name led to.
    #[serde(default)]
    pub connection: Option<crate::EventId>,
}

/// One captured packet (`packet_record.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketRecord {
    /// Common fields; the timestamp is the capture time.
    pub header: EventHeader,
    /// PCAP link type (1 Ethernet, 101 raw, 113 SLL, 276 SLL2).
    pub link_type: u32,
    /// Bytes captured.
    pub captured_len: u32,
    /// Bytes on the wire.
    pub original_len: u32,
    /// The captured bytes.
    #[serde(with = "serde_bytes_vec")]
    pub data: Vec<u8>,
    /// Direction-independent 5-tuple hash; all 64 bits are used, so on the
    /// wire (an Avro `long`) it is the same bits read as signed.
    #[serde(with = "u64_bits_as_long")]
    pub flow_hash: u64,
    /// Capture interface.
    pub interface: Option<String>,
}

/// A socket in the /proc/net inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Socket {
    /// Local address.
    pub local: Endpoint,
    /// Remote address, `None` for listeners.
    pub remote: Option<Endpoint>,
    /// Kernel TCP state name; empty for UDP.
    pub state: String,
    /// Socket inode.
    pub inode: u64,
    /// Owning process, when one holds the inode.
    pub pid: Option<u32>,
    /// Its process name (`/proc/PID/comm`).
    pub binary: Option<String>,
    /// Its executable's path (`/proc/PID/exe`), when readable.
    #[serde(default)]
    pub binary_path: Option<String>,
    /// Age seen by the sensor; `None` when it predates the sensor.
    pub duration_ns: Option<u64>,
}

/// A /proc/net heartbeat of one node (`inventory_snapshot.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventorySnapshot {
    /// Common fields.
    pub header: EventHeader,
    /// Established TCP connections.
    pub tcp_connections: Vec<Socket>,
    /// TCP listeners.
    pub tcp_listeners: Vec<Socket>,
    /// UDP listeners.
    pub udp_listeners: Vec<Socket>,
}

/// Serde for a `u64` carried bit for bit in an Avro `long`.
mod u64_bits_as_long {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(*v as i64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        i64::deserialize(d).map(|v| v as u64)
    }
}

/// Serde for `Vec<u8>` as Avro `bytes` rather than an array of ints.
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}
