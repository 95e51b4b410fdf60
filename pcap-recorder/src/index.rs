//! The index object written beside every PCAP slice: [`SliceIndex`].
//!
//! It is self-sufficient: `investigate` filters streams with KFL from the
//! index alone ([`crate::entry::entries`] over each [`StreamRecord`]), and
//! opens the slice only to copy the frames of the streams it keeps
//! ([`StreamRecord::frames`]).
//!
//! # Format (JSON, `format` 1)
//!
//! ```json
//! {
//!   "format": 1,
//!   "slice": "1700000000-000001-lt1.pcap",
//!   "link_type": 1,
//!   "node": {"name": "node-a", "ip": "10.0.0.5"},
//!   "first_ns": 1700000000123456789, "last_ns": 1700000004000000000,
//!   "packets": 12, "bytes": 3456,
//!   "queries": [{"name": "default", "query": "http or dns"}],
//!   "streams": [{
//!     "id": 7, "transport": "tcp",
//!     "client": {"ip": "10.1.0.4", "port": 40312, "pod": {"name": "web-1", "namespace": "shop"}},
//!     "server": {"ip": "10.1.0.9", "port": 80},
//!     "first_ns": 1700000000123456789, "last_ns": 1700000000200000000,
//!     "packets": 10, "bytes": 3300, "end": "fin",
//!     "protocol": "HTTP", "summary": "GET /x 200",
//!     "matched": ["default"],
//!     "frames": [1, 2, 3, 5, 6, 7, 8, 9, 10, 11],
//!     "exchanges": [{"http": {"request": {...}, "response": {...}}}],
//!     "tls": {"timestamp_ns": 1700000000123456789, "sni": "example.com", "alpn": ["h2"]},
//!     "reassembly": {"gaps": 0, "out_of_order": 0, "retransmitted": 0, "dropped_bytes": 0, "dropped_packets": 0}
//!   }],
//!   "pods": [{"ip": "10.1.0.4", "pod": {"name": "web-1", "namespace": "shop", "uid": "..."},
//!             "from_ns": 1699999000000000000, "until_ns": null}]
//! }
//! ```
//!
//! - Times are nanoseconds since the Unix epoch. `frames` are 1-based record
//!   numbers in the slice (tshark's `frame.number`); a stream's packets are
//!   all in the slice of their link type.
//! - `client` is the side that sent the SYN (or, without one, the first
//!   sender unless it used a well-known port towards a higher one).
//! - `exchanges` hold one element per HTTP request (with its response) or per
//!   DNS transaction; KFL sees one entry per exchange, or one entry for the
//!   stream when it has none.
//! - `tls` (optional, absent in older indexes and for streams that are not
//!   TLS) is the ClientHello that opened a TLS stream: its server name and
//!   ALPN protocols when the client sent them; such a stream has `protocol`
//!   `TLS` and no `exchanges`.
//! - `pods` is the IP-to-pod history for the slice's addresses over its time
//!   range: which pod owned an address from when until when.
//!
//! Readers ignore unknown fields; writers bump `format` when a field changes
//! meaning.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::pods::{PodInterval, PodRef};

/// The current [`SliceIndex::format`].
pub const INDEX_FORMAT: u32 = 1;

/// The index of one PCAP slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceIndex {
    /// Format version ([`INDEX_FORMAT`]).
    pub format: u32,
    /// File name of the slice this index describes (no directory).
    pub slice: String,
    /// PCAP link type of every record in the slice.
    pub link_type: u32,
    /// The node whose packets these are, when the packets said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeRef>,
    /// Timestamp of the earliest record, ns since the epoch.
    pub first_ns: i64,
    /// Timestamp of the latest record, ns since the epoch.
    pub last_ns: i64,
    /// Records in the slice.
    pub packets: u64,
    /// Sum of the records' original (on-the-wire) lengths.
    pub bytes: u64,
    /// The recording queries in force; each stream lists which matched.
    pub queries: Vec<NamedQuery>,
    /// The streams in the slice, in the order they ended.
    pub streams: Vec<StreamRecord>,
    /// IP-to-pod history for the slice's addresses and time range.
    #[serde(default)]
    pub pods: Vec<PodInterval>,
}

impl SliceIndex {
    /// The index as JSON bytes.
    ///
    /// # Errors
    ///
    /// Only if serialization fails, which it does not for these types.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Reads an index from JSON.
    ///
    /// # Errors
    ///
    /// When the bytes are not an index of a known format.
    pub fn from_json(bytes: &[u8]) -> Result<SliceIndex, IndexError> {
        let index: SliceIndex = serde_json::from_slice(bytes).map_err(IndexError::Json)?;
        if index.format != INDEX_FORMAT {
            return Err(IndexError::Format(index.format));
        }
        Ok(index)
    }
}

/// An index that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Not JSON of the index's shape.
    #[error("not a slice index")]
    Json(#[source] serde_json::Error),
    /// A format this build does not know.
    #[error("slice index format {0} is not supported (this build reads {INDEX_FORMAT})")]
    Format(u32),
}

/// A node name and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    /// Kubernetes node name.
    pub name: String,
    /// The node's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
}

/// A recording query: its name (from the configuration) and KFL text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedQuery {
    /// Name of the query (`default` for `RECORDING_KFL`).
    pub name: String,
    /// The KFL text.
    pub query: String,
}

/// One L4 stream (a TCP connection or a UDP 5-tuple flow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Recorder-local id, unique within a recorder run.
    pub id: u64,
    /// `tcp` or `udp`.
    pub transport: TransportName,
    /// The initiating side.
    pub client: EndpointRecord,
    /// The accepting side.
    pub server: EndpointRecord,
    /// First packet, ns since the epoch.
    pub first_ns: i64,
    /// Last packet, ns since the epoch.
    pub last_ns: i64,
    /// Packets of the stream (in this slice).
    pub packets: u64,
    /// Sum of their original lengths.
    pub bytes: u64,
    /// Why the stream ended.
    pub end: EndReason,
    /// Application protocol abbreviation (`HTTP`, `DNS`, `TLS`), if one was
    /// dissected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// One line for tables: `GET /x 200`, `A example.com NOERROR`, `TLS
    /// example.com`, or empty.
    #[serde(default)]
    pub summary: String,
    /// Names of the recording queries that matched.
    #[serde(default)]
    pub matched: Vec<String>,
    /// 1-based record numbers of the stream's packets in the slice.
    #[serde(default)]
    pub frames: Vec<u64>,
    /// Application exchanges, in order.
    #[serde(default)]
    pub exchanges: Vec<Exchange>,
    /// The ClientHello that opened the stream, when it is TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsHello>,
    /// What reassembly saw and dropped.
    #[serde(default)]
    pub reassembly: ReassemblyStats,
    /// The node that captured the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeRef>,
}

/// `tcp` or `udp` as it appears in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportName {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl TransportName {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportName::Tcp => "tcp",
            TransportName::Udp => "udp",
        }
    }
}

/// One side of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// The pod that held the address during the stream, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Both sides sent FIN.
    Fin,
    /// A side sent RST.
    Rst,
    /// No packet for the idle timeout.
    Idle,
    /// A new connection (SYN) reused the 5-tuple.
    Reused,
    /// The recorder was flushed (shutdown, end of input).
    Flush,
    /// Ended early to stay within the stream-count bound.
    Evicted,
    /// Ended early to stay within the per-stream packet/byte bound.
    Limit,
}

impl EndReason {
    /// The reason as in the index (`fin`, `rst`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Idle => "idle",
            EndReason::Reused => "reused",
            EndReason::Flush => "flush",
            EndReason::Evicted => "evicted",
            EndReason::Limit => "limit",
        }
    }
}

/// Counters of one stream's reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReassemblyStats {
    /// Holes in the byte streams never filled (data missing from the capture).
    pub gaps: u64,
    /// Segments that arrived ahead of a hole and were buffered.
    pub out_of_order: u64,
    /// Segments whose bytes had all been seen already.
    pub retransmitted: u64,
    /// Payload bytes not kept for dissection (buffer bounds, gaps).
    pub dropped_bytes: u64,
    /// Packets not kept for the PCAP (per-stream packet bound).
    pub dropped_packets: u64,
}

/// One application exchange of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exchange {
    /// An HTTP/1.x request and its response.
    Http(HttpExchange),
    /// A DNS query and its response (paired by transaction id).
    Dns(DnsExchange),
}

impl Exchange {
    /// When the exchange started (its request, else its response), ns.
    pub fn timestamp_ns(&self) -> Option<i64> {
        match self {
            Exchange::Http(h) => Some(h.request.timestamp_ns),
            Exchange::Dns(d) => d
                .request
                .as_ref()
                .or(d.response.as_ref())
                .map(|m| m.timestamp_ns),
        }
    }

    /// One line: `GET /x 200` or `A example.com NOERROR`.
    pub fn summary(&self) -> String {
        match self {
            Exchange::Http(h) => match &h.response {
                Some(r) => format!("{} {} {}", h.request.method, h.request.path, r.status),
                None => format!("{} {}", h.request.method, h.request.path),
            },
            Exchange::Dns(d) => {
                let m = d.request.as_ref().or(d.response.as_ref());
                let q = m.and_then(|m| m.questions.first());
                let mut s = match q {
                    Some(q) => format!("{} {}", q.qtype, q.name),
                    None => "DNS".to_owned(),
                };
                if let Some(r) = &d.response {
                    s.push(' ');
                    s.push_str(&r.rcode);
                }
                s
            }
        }
    }
}

/// The TLS ClientHello that opened a stream ([`crate::tls`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TlsHello {
    /// When its first byte was captured, ns.
    pub timestamp_ns: i64,
    /// The server name the client asked for (SNI `host_name`), if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The application protocols the client offered (ALPN), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

impl TlsHello {
    /// One line: `TLS example.com`, or `TLS` without a server name.
    pub fn summary(&self) -> String {
        match &self.sni {
            Some(name) => format!("TLS {name}"),
            None => "TLS".to_owned(),
        }
    }
}

/// An HTTP request and, when seen, its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpExchange {
    /// The request.
    pub request: HttpRequest,
    /// The response, if the stream carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
}

/// An HTTP/1.x request head and its body size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// When its first byte was captured, ns.
    pub timestamp_ns: i64,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent (`/a/b?c=d`).
    pub target: String,
    /// The path part of the target (before `?`).
    pub path: String,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Query-string parameters in order (not percent-decoded).
    #[serde(default)]
    pub query: Vec<(String, String)>,
    /// Body bytes seen.
    pub body_bytes: u64,
}

impl HttpRequest {
    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        header(&self.headers, "host")
    }
}

/// An HTTP/1.x response head and its body size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// When its first byte was captured, ns.
    pub timestamp_ns: i64,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body bytes seen.
    pub body_bytes: u64,
}

/// The first header named `name` (ASCII case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A DNS query and its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsExchange {
    /// The query, if seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<DnsRecordMessage>,
    /// The response, if seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<DnsRecordMessage>,
}

/// A DNS message as kept in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordMessage {
    /// When it was captured, ns.
    pub timestamp_ns: i64,
    /// Transaction id.
    pub id: u16,
    /// Response code mnemonic (`NOERROR`, `NXDOMAIN`, ...).
    pub rcode: String,
    /// Questions.
    pub questions: Vec<DnsQuestionRecord>,
    /// Answers.
    #[serde(default)]
    pub answers: Vec<DnsAnswerRecord>,
}

/// A DNS question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsQuestionRecord {
    /// Name, without the trailing dot.
    pub name: String,
    /// Type mnemonic.
    #[serde(rename = "type")]
    pub qtype: String,
}

/// A DNS answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAnswerRecord {
    /// Owner name.
    pub name: String,
    /// Type mnemonic.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Data in presentation form.
    pub data: String,
    /// Time to live, seconds.
    pub ttl: u32,
}
