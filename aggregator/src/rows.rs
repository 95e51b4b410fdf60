//! Rows of the ClickHouse tables (field order = column order; RowBinary)
//! and how events become rows.
//!
//! Which events count as connections (`connection_counts`): one event per
//! connection, whoever saw it. A connection whose source is a pod or a host
//! (or an address in the pod ranges whose owner is not known yet) is counted
//! from its `network_connect` (the sensor on the source's node sees it); one
//! whose source is outside the cluster from its `network_accept`, the only
//! side a sensor sees. The other side's event of
//! the same connection (a pod's or a probing host's connect accepted by a
//! pod, packets showing both ends) is not counted again. Flows
//! (`network_flow`) end connections already counted.
//!
//! Its mode (the tab) is the most severe of the source's egress and the
//! destination's ingress decisions, whichever side saw it
//! (`Verdict::connection_mode`): an enforce violation, then an audit
//! violation, then an enforce allow, an audit allow, and other.
//!
//! Rows are built from borrowed views of verdicts
//! ([`tapwire_schemas::events::VerdictView`]): the stage decodes each
//! current-version message as a view, so only the strings a row keeps are
//! copied; an owned verdict (older versions, the in-memory view) is viewed
//! the same way.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;

use clickhouse::Row;
use serde::Serialize;
use tapwire_schemas::events::{
    AgentHeartbeat, EventBodyView, FinalState, InventorySnapshot, L4EventView, L4Kind, PeerKind,
    PeerView, Socket, VerdictView,
};
use xxhash_rust::xxh3::Xxh3;

/// Short text formatted on the stack (an address, an event id), written to
/// ClickHouse as a `String` column.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> Text<N> {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ever filled from `write!` of `Display` output (UTF-8).
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }

    fn format(args: std::fmt::Arguments<'_>) -> Self {
        let mut buf = [0u8; N];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        // N is the longest text of its kind; a longer one would be cut.
        let _ = cursor.write_fmt(args);
        let len = cursor.position() as u8;
        Text { buf, len }
    }
}

impl Text<45> {
    /// An address as text (an IPv6 address with an embedded IPv4 address
    /// is at most 45 characters).
    pub fn ip(ip: IpAddr) -> Self {
        Text::format(format_args!("{ip}"))
    }
}

impl Text<32> {
    /// An event id in hex.
    pub fn id(id: &tapwire_schemas::EventId) -> Self {
        Text::format(format_args!("{id}"))
    }
}

impl<const N: usize> std::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> Serialize for Text<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Seconds of a nanosecond timestamp, for `DateTime` columns.
fn secs(ns: i64) -> u32 {
    u32::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0)
}

/// An optional borrowed text as an owned column value (empty when absent).
fn o(text: Option<&str>) -> String {
    text.unwrap_or_default().to_owned()
}

/// An optional borrowed text as a column value (empty when absent).
fn u(text: Option<&str>) -> &str {
    text.unwrap_or_default()
}

/// The domain name shown for a peer outside the pods: its DNS name, or a
/// Service's `name.namespace.svc`, or the node of a host peer.
pub(crate) fn domain<'a>(p: &PeerView<'a>) -> &'a str {
    match p.kind {
        PeerKind::Pod => "",
        PeerKind::Host => p.node.unwrap_or_default(),
        _ => p.dns_name.unwrap_or_default(),
    }
}

/// A row of `connection_counts`: one per minute, partition and key.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct CountRow {
    pub minute: u32,
    pub mode: String,
    pub protocol: String,
    pub src_kind: String,
    pub src_namespace: String,
    pub src_workload: String,
    pub src_pod: String,
    pub src_ip: String,
    pub src_port: u16,
    pub src_domain: String,
    pub dst_kind: String,
    pub dst_namespace: String,
    pub dst_workload: String,
    pub dst_pod: String,
    pub dst_ip: String,
    pub dst_port: u16,
    pub dst_domain: String,
    pub connections: u64,
    pub first_seen: u32,
    pub last_seen: u32,
    pub last_seen_ns: i64,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// One row being counted, and its first time in nanoseconds.
#[derive(Debug)]
struct Counted {
    row: CountRow,
    first_ns: i64,
}

/// Connection counts pre-aggregated per minute (or, for the in-memory view,
/// over the whole run).
///
/// Rows are found by a 128-bit fingerprint of their key fields, so counting
/// an event of a row that exists allocates nothing; the row's strings are
/// built once, when it is first seen.
#[derive(Debug)]
pub struct Counts {
    map: HashMap<u128, Counted>,
    by_minute: bool,
    /// Connections counted (events in, for the rows-out ratio).
    pub events: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            map: HashMap::new(),
            by_minute: true,
            events: 0,
        }
    }
}

/// How the connections view names one end of an edge: workload, else pod,
/// else domain, else address.
pub(crate) fn edge_name<'a>(p: &PeerView<'a>, addr: Option<IpAddr>) -> Cow<'a, str> {
    if let Some(w) = p.workload.filter(|w| !w.name.is_empty()) {
        return Cow::Borrowed(w.name);
    }
    if let Some(pod) = p.pod.filter(|n| !n.is_empty()) {
        return Cow::Borrowed(pod);
    }
    let name = domain(p);
    match addr {
        Some(ip) if name.is_empty() => Cow::Owned(ip.to_string()),
        _ => Cow::Borrowed(name),
    }
}

/// Whether an L4 event counts as a connection (see the module doc).
pub fn counts_as_connection(l4: &L4EventView<'_>, src: &PeerView<'_>) -> bool {
    let seen_from_inside = matches!(
        src.kind,
        PeerKind::Pod | PeerKind::Host | PeerKind::Unresolved
    );
    match l4.kind {
        L4Kind::NetworkConnect => seen_from_inside,
        L4Kind::NetworkAccept => !seen_from_inside,
        L4Kind::NetworkListen | L4Kind::NetworkFlow => false,
    }
}

/// Feeds `text` with its length, so that ("ab", "c") and ("a", "bc") differ.
fn feed(h: &mut Xxh3, text: &str) {
    h.update(&(text.len() as u32).to_le_bytes());
    h.update(text.as_bytes());
}

fn feed_ip(h: &mut Xxh3, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => h.update(&v4.octets()),
        std::net::IpAddr::V6(v6) => h.update(&v6.octets()),
    }
}

impl Counts {
    /// Counts over everything added, without minute buckets (the in-memory
    /// connections view); `minute` of every row is 0.
    pub fn whole_run() -> Self {
        Counts {
            by_minute: false,
            ..Counts::default()
        }
    }

    /// Adds the verdict's event if it counts as a connection.
    pub fn add(&mut self, v: &VerdictView<'_>, partition: u32, offset: u64) {
        let e = &v.event;
        let EventBodyView::L4(l4) = &e.body else {
            return;
        };
        if !counts_as_connection(l4, &e.src) {
            return;
        }
        let ns = l4.header.timestamp_ns;
        let minute = if self.by_minute {
            secs(ns) / 60 * 60
        } else {
            0
        };
        let mode = v.connection_mode();
        let mut h = Xxh3::new();
        h.update(&partition.to_le_bytes());
        h.update(&minute.to_le_bytes());
        for text in [mode.as_str(), l4.protocol.as_str(), e.src.kind.as_str()] {
            feed(&mut h, text);
        }
        for p in [&e.src, &e.dst] {
            feed(&mut h, p.namespace.unwrap_or_default());
            feed(&mut h, p.workload_name());
            feed(&mut h, p.pod.unwrap_or_default());
        }
        feed(&mut h, e.dst.kind.as_str());
        feed_ip(&mut h, l4.src.ip.0);
        feed_ip(&mut h, l4.dst.ip.0);
        h.update(&l4.dst.port.to_le_bytes());
        self.events += 1;
        let counted = self.map.entry(h.digest128()).or_insert_with(|| Counted {
            first_ns: ns,
            row: CountRow {
                minute,
                mode: mode.as_str().to_owned(),
                protocol: l4.protocol.as_str().to_owned(),
                src_kind: e.src.kind.as_str().to_owned(),
                src_namespace: o(e.src.namespace),
                src_workload: e.src.workload_name().to_owned(),
                src_pod: o(e.src.pod),
                src_ip: l4.src.ip.to_string(),
                src_port: l4.src.port,
                src_domain: domain(&e.src).to_owned(),
                dst_kind: e.dst.kind.as_str().to_owned(),
                dst_namespace: o(e.dst.namespace),
                dst_workload: e.dst.workload_name().to_owned(),
                dst_pod: o(e.dst.pod),
                dst_ip: l4.dst.ip.to_string(),
                dst_port: l4.dst.port,
                dst_domain: String::new(),
                connections: 0,
                first_seen: 0,
                last_seen: 0,
                last_seen_ns: ns,
                src_partition: partition,
                src_offset: offset,
            },
        });
        let row = &mut counted.row;
        // The destination's domain name is part of the row, not of the key:
        // the first name seen is kept.
        if row.dst_domain.is_empty() {
            domain(&e.dst).clone_into(&mut row.dst_domain);
        }
        row.connections += 1;
        counted.first_ns = counted.first_ns.min(ns);
        if ns >= row.last_seen_ns {
            row.last_seen_ns = ns;
            row.src_port = l4.src.port;
        }
        row.src_offset = row.src_offset.max(offset);
    }

    /// The rows counted so far.
    pub fn iter(&self) -> impl Iterator<Item = CountRow> + '_ {
        self.map.values().map(|c| CountRow {
            first_seen: secs(c.first_ns),
            last_seen: secs(c.row.last_seen_ns),
            ..c.row.clone()
        })
    }

    /// The rows.
    pub fn rows(self) -> Vec<CountRow> {
        self.map
            .into_values()
            .map(|c| CountRow {
                first_seen: secs(c.first_ns),
                last_seen: secs(c.row.last_seen_ns),
                ..c.row
            })
            .collect()
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A row of `network_events` (L4 and DNS events).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct NetworkEventRow<'a> {
    pub time: u32,
    pub time_ns: i64,
    pub event_id: Text<32>,
    pub kind: &'a str,
    pub node: &'a str,
    pub sensor_id: &'a str,
    pub pid: u32,
    pub binary: &'a str,
    pub container_id: &'a str,
    pub protocol: &'a str,
    pub direction: &'a str,
    pub src_ip: Text<45>,
    pub src_port: u16,
    pub dst_ip: Text<45>,
    pub dst_port: u16,
    pub src_kind: &'a str,
    pub src_namespace: &'a str,
    pub src_pod: &'a str,
    pub dst_kind: &'a str,
    pub dst_namespace: &'a str,
    pub dst_pod: &'a str,
    pub dst_domain: &'a str,
    pub dns_name: &'a str,
    pub dns_type: &'a str,
    pub dns_answers: Vec<&'a str>,
    pub dns_rcode: &'a str,
    pub mode: &'a str,
    pub outcome: &'a str,
    pub src_partition: u32,
    pub src_offset: u64,
    /// 1 when the event counts as a connection (see the module doc).
    pub counted: u8,
    /// The connection's mode (its tab), the most severe of its sides.
    pub connection_mode: &'a str,
    pub src_workload: &'a str,
    pub dst_workload: &'a str,
    pub src_domain: &'a str,
}

/// A row of `flows` (`network_flow` events).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct FlowRow<'a> {
    pub time: u32,
    pub time_ns: i64,
    pub event_id: Text<32>,
    pub node: &'a str,
    pub sensor_id: &'a str,
    pub pid: u32,
    pub binary: &'a str,
    pub protocol: &'a str,
    pub src_ip: Text<45>,
    pub src_port: u16,
    pub dst_ip: Text<45>,
    pub dst_port: u16,
    pub src_namespace: &'a str,
    pub src_pod: &'a str,
    pub dst_namespace: &'a str,
    pub dst_pod: &'a str,
    pub dst_domain: &'a str,
    pub duration_ns: Option<i64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub final_state: &'a str,
    pub mode: &'a str,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// A row of `verdicts`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct VerdictRow<'a> {
    pub time: u32,
    pub time_ns: i64,
    pub event_id: Text<32>,
    pub kind: &'a str,
    pub node: &'a str,
    pub mode: &'a str,
    pub outcome: &'a str,
    pub policy: &'a str,
    pub rule: &'a str,
    pub signature_id: &'a str,
    pub severity: u8,
    pub src_namespace: &'a str,
    pub src_pod: &'a str,
    pub dst_namespace: &'a str,
    pub dst_pod: &'a str,
    pub dst_domain: &'a str,
    pub src_partition: u32,
    pub src_offset: u64,
    /// Both sides' decisions of a connection (`egress`/`ingress`), in order.
    pub side: Vec<&'a str>,
    pub side_mode: Vec<&'a str>,
    pub side_outcome: Vec<&'a str>,
    pub side_policy: Vec<&'a str>,
    pub side_rule: Vec<&'a str>,
    /// The connection's mode (its tab).
    pub connection_mode: &'a str,
    /// The ends as the connections view names an edge (workload, else pod,
    /// else domain, else address).
    pub src_edge: Cow<'a, str>,
    pub dst_edge: Cow<'a, str>,
}

/// A row of `runtime_events`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct RuntimeRow<'a> {
    pub time: u32,
    pub time_ns: i64,
    pub event_id: Text<32>,
    pub kind: &'a str,
    pub node: &'a str,
    pub sensor_id: &'a str,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub binary: &'a str,
    pub command_line: &'a str,
    pub container_id: &'a str,
    pub path: &'a str,
    pub old_path: &'a str,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub mode: &'a str,
    pub outcome: &'a str,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// A row of `inventory_sockets`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct SocketRow {
    pub snapshot_time: u32,
    pub snapshot_ns: i64,
    pub node: String,
    pub sensor_id: String,
    pub socket_kind: String,
    pub local_ip: String,
    pub local_port: u16,
    pub remote_ip: String,
    pub remote_port: u16,
    pub state: String,
    pub inode: u64,
    pub pid: Option<u32>,
    pub binary: Option<String>,
    pub binary_path: Option<String>,
    pub duration_ns: Option<i64>,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// The per-event rows of verdicts, borrowing their text from the verdicts.
#[derive(Debug, Default)]
pub struct EventRows<'a> {
    /// `network_events`.
    pub network: Vec<NetworkEventRow<'a>>,
    /// `flows`.
    pub flows: Vec<FlowRow<'a>>,
    /// `verdicts`.
    pub verdicts: Vec<VerdictRow<'a>>,
    /// `runtime_events`.
    pub runtime: Vec<RuntimeRow<'a>>,
}

impl<'a> EventRows<'a> {
    /// Adds the rows of `v` (read at `partition`/`offset`).
    pub fn add(&mut self, v: &VerdictView<'a>, partition: u32, offset: u64) {
        let e = &v.event;
        let h = e.header();
        let (time, time_ns, event_id) = (secs(h.timestamp_ns), h.timestamp_ns, Text::id(&h.id));
        let mode = v.mode.as_str();
        let outcome = v.outcome.as_str();
        let kind = match &e.body {
            EventBodyView::L4(l) => l.kind.as_str(),
            EventBodyView::Dns(d) => d.kind.as_str(),
            EventBodyView::Runtime(r) => r.kind.as_str(),
        };
        let (src_addr, dst_addr) = match &e.body {
            EventBodyView::L4(l) => (Some(l.src.ip.0), Some(l.dst.ip.0)),
            EventBodyView::Dns(_) | EventBodyView::Runtime(_) => (None, None),
        };
        let connection_mode = v.connection_mode().as_str();
        self.verdicts.push(VerdictRow {
            time,
            time_ns,
            event_id,
            kind,
            node: h.node,
            mode,
            outcome,
            policy: u(v.policy),
            rule: u(v.rule),
            signature_id: v.signature_id,
            severity: u8::try_from(v.severity).unwrap_or(u8::MAX),
            src_namespace: u(e.src.namespace),
            src_pod: u(e.src.pod),
            dst_namespace: u(e.dst.namespace),
            dst_pod: u(e.dst.pod),
            dst_domain: domain(&e.dst),
            src_partition: partition,
            src_offset: offset,
            side: v
                .sides
                .iter()
                .map(|d| match d.side {
                    tapwire_schemas::events::Side::Egress => "egress",
                    tapwire_schemas::events::Side::Ingress => "ingress",
                })
                .collect(),
            side_mode: v.sides.iter().map(|d| d.mode.as_str()).collect(),
            side_outcome: v.sides.iter().map(|d| d.outcome.as_str()).collect(),
            side_policy: v.sides.iter().map(|d| u(d.policy)).collect(),
            side_rule: v.sides.iter().map(|d| u(d.rule)).collect(),
            connection_mode,
            src_edge: edge_name(&e.src, src_addr),
            dst_edge: edge_name(&e.dst, dst_addr),
        });
        let (l4, dns, protocol, direction, src, dst) = match &e.body {
            EventBodyView::L4(l) => (
                Some(l),
                None,
                l.protocol.as_str(),
                l.direction.as_str(),
                Some(l.src),
                Some(l.dst),
            ),
            EventBodyView::Dns(d) => (None, Some(d), "udp", "egress", d.client, d.resolver),
            EventBodyView::Runtime(r) => {
                self.runtime.push(RuntimeRow {
                    time,
                    time_ns,
                    event_id,
                    kind,
                    node: h.node,
                    sensor_id: h.sensor_id,
                    pid: r.pid,
                    ppid: r.ppid,
                    uid: r.uid,
                    binary: r.binary,
                    command_line: u(r.command_line),
                    container_id: u(r.container_id),
                    path: u(r.path),
                    old_path: u(r.old_path),
                    namespace: u(e.src.namespace),
                    pod: u(e.src.pod),
                    mode,
                    outcome,
                    src_partition: partition,
                    src_offset: offset,
                });
                return;
            }
        };
        let (pid, binary, container_id) = (
            e.body.pid(),
            e.body.binary(),
            e.body.container_id().unwrap_or_default(),
        );
        let ep = |x: Option<tapwire_schemas::events::Endpoint>| {
            x.map_or((Text::format(format_args!("")), 0), |x| {
                (Text::ip(x.ip.0), x.port)
            })
        };
        let ((src_ip, src_port), (dst_ip, dst_port)) = (ep(src), ep(dst));
        let flow = l4.filter(|l| l.kind == L4Kind::NetworkFlow);
        if let Some(l) = flow {
            self.flows.push(FlowRow {
                time,
                time_ns,
                event_id,
                node: h.node,
                sensor_id: h.sensor_id,
                pid,
                binary,
                protocol,
                src_ip,
                src_port,
                dst_ip,
                dst_port,
                src_namespace: u(e.src.namespace),
                src_pod: u(e.src.pod),
                dst_namespace: u(e.dst.namespace),
                dst_pod: u(e.dst.pod),
                dst_domain: domain(&e.dst),
                duration_ns: l.duration_ns.map(|d| d as i64),
                bytes_sent: l.bytes_sent.unwrap_or(0),
                bytes_received: l.bytes_received.unwrap_or(0),
                final_state: l.final_state.map(FinalState::as_str).unwrap_or(""),
                mode,
                src_partition: partition,
                src_offset: offset,
            });
        }
        self.network.push(NetworkEventRow {
            time,
            time_ns,
            event_id,
            kind,
            node: h.node,
            sensor_id: h.sensor_id,
            pid,
            binary,
            container_id,
            protocol,
            direction,
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            src_kind: e.src.kind.as_str(),
            src_namespace: u(e.src.namespace),
            src_pod: u(e.src.pod),
            dst_kind: e.dst.kind.as_str(),
            dst_namespace: u(e.dst.namespace),
            dst_pod: u(e.dst.pod),
            dst_domain: domain(&e.dst),
            dns_name: u(dns.map(|d| d.name)),
            dns_type: u(dns.map(|d| d.query_type)),
            dns_answers: dns.map(|d| d.answers.clone()).unwrap_or_default(),
            dns_rcode: u(dns.and_then(|d| d.response_code)),
            mode,
            outcome,
            src_partition: partition,
            src_offset: offset,
            counted: u8::from(l4.is_some_and(|l| counts_as_connection(l, &e.src))),
            connection_mode,
            src_workload: e.src.workload_name(),
            dst_workload: e.dst.workload_name(),
            src_domain: domain(&e.src),
        });
    }
}

/// The rows of one inventory snapshot.
pub fn socket_rows(inv: &InventorySnapshot, partition: u32, offset: u64) -> Vec<SocketRow> {
    let h = &inv.header;
    let row = |kind: &str, sock: &Socket| SocketRow {
        snapshot_time: secs(h.timestamp_ns),
        snapshot_ns: h.timestamp_ns,
        node: h.node.clone(),
        sensor_id: h.sensor_id.clone(),
        socket_kind: kind.to_owned(),
        local_ip: sock.local.ip.to_string(),
        local_port: sock.local.port,
        remote_ip: sock.remote.map(|r| r.ip.to_string()).unwrap_or_default(),
        remote_port: sock.remote.map_or(0, |r| r.port),
        state: sock.state.clone(),
        inode: sock.inode,
        pid: sock.pid,
        binary: sock.binary.clone(),
        binary_path: sock.binary_path.clone(),
        duration_ns: sock.duration_ns.map(|d| d as i64),
        src_partition: partition,
        src_offset: offset,
    };
    let mut rows = Vec::new();
    rows.extend(inv.tcp_connections.iter().map(|s| row("tcp_connection", s)));
    rows.extend(inv.tcp_listeners.iter().map(|s| row("tcp_listener", s)));
    rows.extend(inv.udp_listeners.iter().map(|s| row("udp_listener", s)));
    rows
}

/// A row of `losses`: one loss record (events a hop lost).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct LossRow {
    pub time: u32,
    pub time_ns: i64,
    pub event_id: String,
    pub node: String,
    pub sensor_id: String,
    pub source: String,
    pub lost: u64,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// The row of one loss record.
pub fn loss_row(l: &tapwire_schemas::events::LossRecord, partition: u32, offset: u64) -> LossRow {
    LossRow {
        time: secs(l.header.timestamp_ns),
        time_ns: l.header.timestamp_ns,
        event_id: l.header.id.to_string(),
        node: l.header.node.clone(),
        sensor_id: l.header.sensor_id.clone(),
        source: l.source.clone(),
        lost: l.lost,
        src_partition: partition,
        src_offset: offset,
    }
}

/// A row of `api_requests`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct ApiRow {
    pub time: u32,
    pub time_ns: i64,
    pub event_id: String,
    pub node: String,
    pub instance: String,
    pub user: String,
    pub role: String,
    pub source_ip: String,
    pub method: String,
    pub route: String,
    pub query: String,
    pub status: u16,
    pub duration_ns: i64,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// The row of one API request.
pub fn api_row(r: &tapwire_schemas::events::ApiRequest, partition: u32, offset: u64) -> ApiRow {
    ApiRow {
        time: secs(r.header.timestamp_ns),
        time_ns: r.header.timestamp_ns,
        event_id: r.header.id.to_string(),
        node: r.header.node.clone(),
        instance: r.header.sensor_id.clone(),
        user: r.user.clone(),
        role: r.role.clone(),
        source_ip: r.source_ip.map(|ip| ip.0.to_string()).unwrap_or_default(),
        method: r.method.clone(),
        route: r.route.clone(),
        query: r.query.clone(),
        status: u16::try_from(r.status).unwrap_or(0),
        duration_ns: r.duration_ns,
        src_partition: partition,
        src_offset: offset,
    }
}

/// A row of `scan_status`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct ScanStatusRow {
    pub time: u32,
    pub time_ns: i64,
    pub job_id: String,
    pub object: String,
    pub object_kind: String,
    pub status: String,
    pub attempt: u32,
    pub scanner: String,
    pub reason: String,
    pub findings: u64,
    pub bytes: u64,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// The row of one status change.
pub fn scan_status_row(
    c: &tapwire_schemas::scan::StatusChange,
    partition: u32,
    offset: u64,
) -> ScanStatusRow {
    ScanStatusRow {
        time: secs(c.at_ns),
        time_ns: c.at_ns,
        job_id: c.job_id.clone(),
        object: c.object.clone(),
        object_kind: c.object_kind.clone(),
        status: c.status.as_str().to_owned(),
        attempt: c.attempt,
        scanner: c.scanner.clone(),
        reason: c.reason.clone().unwrap_or_default(),
        findings: c.findings.unwrap_or(0),
        bytes: c.bytes.unwrap_or(0),
        src_partition: partition,
        src_offset: offset,
    }
}

/// A row of `scan_findings` (-1 for an unknown offset or frame).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct ScanFindingRow {
    pub time: u32,
    pub time_ns: i64,
    pub finding_id: String,
    pub job_id: String,
    pub attempt: u32,
    pub kind: String,
    pub rule: String,
    pub severity: String,
    pub object: String,
    pub location: String,
    pub offset: i64,
    pub frame: i64,
    pub excerpt: String,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// The row of one finding.
pub fn scan_finding_row(
    r: &tapwire_schemas::scan::FindingRecord,
    partition: u32,
    offset: u64,
) -> ScanFindingRow {
    let f = &r.finding;
    let signed = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok()).unwrap_or(-1);
    ScanFindingRow {
        time: secs(r.at_ns),
        time_ns: r.at_ns,
        finding_id: f.id.clone(),
        job_id: r.job_id.clone(),
        attempt: r.attempt,
        kind: f.kind.as_str().to_owned(),
        rule: f.rule.clone(),
        severity: f.severity.as_str().to_owned(),
        object: f.object.clone(),
        location: f.location.clone(),
        offset: signed(f.offset),
        frame: signed(f.frame),
        excerpt: f.excerpt.clone(),
        src_partition: partition,
        src_offset: offset,
    }
}

/// A row of `scan_events` (0 for no acceptance end).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct ScanEventRow {
    pub time: u32,
    pub at_ns: i64,
    pub id: String,
    pub event: String,
    pub finding_id: String,
    pub kind: String,
    pub rule: String,
    pub object: String,
    pub user: String,
    pub until_ns: i64,
    pub reason: String,
    pub success: u8,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// The row of one scan event.
pub fn scan_event_row(
    e: &tapwire_schemas::scan::ScanEvent,
    partition: u32,
    offset: u64,
) -> ScanEventRow {
    ScanEventRow {
        time: secs(e.at_ns),
        at_ns: e.at_ns,
        id: e.id.clone(),
        event: e.event.as_str().to_owned(),
        finding_id: e.finding_id.clone(),
        kind: e.kind.map(|k| k.as_str().to_owned()).unwrap_or_default(),
        rule: e.rule.clone(),
        object: e.object.clone(),
        user: e.user.clone(),
        until_ns: e.until_ns.unwrap_or(0),
        reason: e.reason.clone(),
        success: u8::from(e.success),
        src_partition: partition,
        src_offset: offset,
    }
}

/// A row of `scanner_states`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct ScannerRow {
    pub time: u32,
    pub time_ns: i64,
    pub scanner: String,
    pub status: String,
    pub job_id: String,
    pub finished: u64,
    pub rules: u64,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// The row of one scanner heartbeat.
pub fn scanner_row(
    s: &tapwire_schemas::scan::ScannerState,
    partition: u32,
    offset: u64,
) -> ScannerRow {
    ScannerRow {
        time: secs(s.at_ns),
        time_ns: s.at_ns,
        scanner: s.scanner.clone(),
        status: match s.status {
            tapwire_schemas::scan::ScannerStatus::Free => "Free",
            tapwire_schemas::scan::ScannerStatus::Busy => "Busy",
        }
        .to_owned(),
        job_id: s.job_id.clone().unwrap_or_default(),
        finished: s.finished,
        rules: s.rules,
        src_partition: partition,
        src_offset: offset,
    }
}

/// A row of `pods`: one record of `tapwire.pods` (0 for an unknown start or
/// end).
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct PodRow {
    pub time: u32,
    pub time_ns: i64,
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node: String,
    pub ips: Vec<String>,
    pub host_network: u8,
    pub labels_json: String,
    pub workload_kind: String,
    pub workload_name: String,
    pub containers_json: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// The row of one pod record.
pub fn pod_row(p: &tapwire_schemas::events::PodMetadata, partition: u32, offset: u64) -> PodRow {
    let containers: Vec<serde_json::Value> = p
        .containers
        .iter()
        .map(|c| {
            serde_json::json!({"id": c.id, "name": c.name, "image": c.image, "image_digest": c.image_digest})
        })
        .collect();
    PodRow {
        time: secs(p.header.timestamp_ns),
        time_ns: p.header.timestamp_ns,
        uid: p.uid.clone(),
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        node: p.header.node.clone(),
        ips: p.ips.iter().map(|ip| ip.to_string()).collect(),
        host_network: u8::from(p.host_network),
        labels_json: serde_json::to_string(&p.labels).unwrap_or_default(),
        workload_kind: p
            .workload
            .as_ref()
            .map_or(String::new(), |w| w.kind.clone()),
        workload_name: p
            .workload
            .as_ref()
            .map_or(String::new(), |w| w.name.clone()),
        containers_json: serde_json::Value::Array(containers).to_string(),
        start_ns: p.start_ns.unwrap_or(0),
        end_ns: p.end_ns.unwrap_or(0),
        src_partition: partition,
        src_offset: offset,
    }
}

/// A row of `agent_heartbeats`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
#[allow(missing_docs)]
pub struct HeartbeatRow {
    pub time: u32,
    pub time_ns: i64,
    pub event_id: String,
    pub node: String,
    pub sensor_id: String,
    pub agent_version: String,
    pub started_ns: i64,
    pub sequence: u64,
    pub interval_ms: u64,
    pub sources: Vec<String>,
    pub loss_sources: Vec<String>,
    pub loss_counts: Vec<u64>,
    pub lost: u64,
    pub stopping: u8,
    pub src_partition: u32,
    pub src_offset: u64,
}

/// The row of one agent heartbeat.
pub fn heartbeat_row(hb: &AgentHeartbeat, partition: u32, offset: u64) -> HeartbeatRow {
    let h = &hb.header;
    HeartbeatRow {
        time: secs(h.timestamp_ns),
        time_ns: h.timestamp_ns,
        event_id: h.id.to_string(),
        node: h.node.clone(),
        sensor_id: h.sensor_id.clone(),
        agent_version: hb.agent_version.clone(),
        started_ns: hb.started_ns,
        sequence: hb.sequence,
        interval_ms: hb.interval_ms,
        sources: hb.sources.clone(),
        loss_sources: hb.losses.iter().map(|l| l.source.clone()).collect(),
        loss_counts: hb.losses.iter().map(|l| l.lost).collect(),
        lost: hb.lost(),
        stopping: u8::from(hb.stopping),
        src_partition: partition,
        src_offset: offset,
    }
}

#[cfg(test)]
mod tests {
    use tapwire_schemas::codec::decode_verdict_view;
    use tapwire_schemas::events::{EnrichedEvent, EventBody, Mode, Outcome, Verdict};
    use tapwire_schemas::{encode, samples};

    use super::*;

    fn verdicts() -> Vec<Verdict> {
        let h = |i| samples::header("node-a", "sensor-a", i, 1_700_000_000_000_000_000);
        let mut dns_src = samples::pod_peer("web-1", "shop");
        dns_src.workload = None;
        [
            EventBody::L4(samples::l4_flow(h(1), 1)),
            EventBody::Dns(samples::dns_resolution(h(2))),
            EventBody::Runtime(samples::file_rename(h(3))),
        ]
        .into_iter()
        .map(|body| {
            samples::verdict(
                EnrichedEvent {
                    body,
                    src: dns_src.clone(),
                    dst: samples::pod_peer("db-0", "data"),
                },
                Mode::Audit,
                Outcome::Audited,
            )
        })
        .collect()
    }

    /// The stage reads current verdicts as views of the message and older
    /// ones as views of the owned record: both give the same rows.
    #[test]
    fn rows_from_a_message_and_from_an_owned_verdict_are_the_same() {
        let verdicts = verdicts();
        let messages: Vec<Vec<u8>> = verdicts
            .iter()
            .map(|v| encode(v).expect("encode"))
            .collect();
        let (mut owned, mut read) = (EventRows::default(), EventRows::default());
        let (mut owned_counts, mut read_counts) = (Counts::default(), Counts::default());
        for (i, (v, m)) in verdicts.iter().zip(&messages).enumerate() {
            let view = decode_verdict_view(m).expect("view");
            owned.add(&v.view(), 0, i as u64);
            read.add(&view, 0, i as u64);
            owned_counts.add(&v.view(), 0, i as u64);
            read_counts.add(&view, 0, i as u64);
        }
        assert_eq!(owned.network, read.network);
        assert_eq!(owned.flows, read.flows);
        assert_eq!(owned.verdicts, read.verdicts);
        assert_eq!(owned.runtime, read.runtime);
        assert_eq!((owned.network.len(), owned.runtime.len()), (2, 1));
        assert_eq!(owned.verdicts.len(), 3);
        let (mut a, mut b) = (owned_counts.rows(), read_counts.rows());
        a.sort_by_key(|r| r.src_offset);
        b.sort_by_key(|r| r.src_offset);
        assert_eq!(a, b);
        // The text columns as written: addresses and ids formatted in full.
        let row = &read.network[0];
        assert_eq!(
            row.event_id.as_str(),
            verdicts[0].event.header().id.to_hex()
        );
        let EventBody::L4(l4) = &verdicts[0].event.body else {
            unreachable!()
        };
        assert_eq!(row.src_ip.as_str(), l4.src.ip.to_string());
        let v6 = Text::ip(
            "fd00:1234:5678:9abc:def0:1234:5678:9abc"
                .parse()
                .expect("v6"),
        );
        assert_eq!(v6.as_str(), "fd00:1234:5678:9abc:def0:1234:5678:9abc");
        let mapped = Text::ip("::ffff:255.255.255.255".parse().expect("mapped"));
        assert_eq!(mapped.as_str(), "::ffff:255.255.255.255");
    }
}
