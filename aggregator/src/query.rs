//! Reads for the console and `tapwire query`: the connections view, the
//! paged inventory reads of the API, listeners, flows and per-sensor
//! summaries. Every query runs on ClickHouse 18.16 and later.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A failed read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// ClickHouse refused or did not answer.
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// A parameter out of range (the API answers 400 with this text).
    #[error("{0}")]
    BadRequest(String),
}

/// The modes, in tab order.
pub const MODES: [&str; 3] = ["audit", "enforce", "other"];

/// One row of a connections tab.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct Connection {
    /// `audit`, `enforce` or `other`.
    pub mode: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `pod`, `host`, `external`, `service`, `unresolved`.
    pub src_kind: String,
    /// Source namespace (pods).
    pub src_namespace: String,
    /// Source workload (pods).
    pub src_workload: String,
    /// Source pod.
    pub src_pod: String,
    /// Source address.
    pub src_ip: String,
    /// Source port of the latest connection.
    pub src_port: u16,
    /// Domain name of a source outside the pods (or a host's node name).
    pub src_domain: String,
    /// Destination kind.
    pub dst_kind: String,
    /// Destination namespace (pods).
    pub dst_namespace: String,
    /// Destination workload (pods).
    pub dst_workload: String,
    /// Destination pod.
    pub dst_pod: String,
    /// Destination address.
    pub dst_ip: String,
    /// Destination port.
    pub dst_port: u16,
    /// Domain name of an external destination (or a host's node name).
    pub dst_domain: String,
    /// Connections (not unique) in the window.
    pub connections: u64,
    /// Time of the latest, epoch nanoseconds.
    pub last_seen_ns: i64,
}

impl Connection {
    /// `pod ip:port`, or `domain ip:port`, or `ip:port`.
    pub fn source(&self) -> String {
        let name = if self.src_pod.is_empty() {
            &self.src_domain
        } else {
            &self.src_pod
        };
        endpoint(name, &self.src_ip, self.src_port)
    }

    /// The destination, shown like [`Connection::source`].
    pub fn destination(&self) -> String {
        let name = if self.dst_pod.is_empty() {
            &self.dst_domain
        } else {
            &self.dst_pod
        };
        endpoint(name, &self.dst_ip, self.dst_port)
    }
}

fn endpoint(name: &str, ip: &str, port: u16) -> String {
    let addr = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    if name.is_empty() {
        addr
    } else {
        format!("{name} {addr}")
    }
}

/// Connections between two workloads, per mode.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct Edge {
    /// Source namespace ('' outside the pods).
    pub src_namespace: String,
    /// Source workload, else pod, else address.
    pub src: String,
    /// Destination namespace.
    pub dst_namespace: String,
    /// Destination workload, else pod, else domain, else address.
    pub dst: String,
    /// Audit-mode connections.
    pub audit: u64,
    /// Enforce-mode connections.
    pub enforce: u64,
    /// Other connections.
    pub other: u64,
    /// Latest, epoch nanoseconds.
    pub last_seen_ns: i64,
}

/// Connections per tab over the whole window, whatever the row limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct TabTotals {
    /// Audit-mode connections.
    pub audit: u64,
    /// Enforce-mode connections.
    pub enforce: u64,
    /// Other connections.
    pub other: u64,
}

impl TabTotals {
    /// The total of `mode`'s tab.
    pub fn of(&self, mode: &str) -> u64 {
        match mode {
            "audit" => self.audit,
            "enforce" => self.enforce,
            _ => self.other,
        }
    }
}

/// The network connections view of a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionsView {
    /// Window start (epoch seconds): exact for windows up to a day, else
    /// rounded down to the minute (see [`EXACT_WINDOW_S`]).
    pub from_s: u32,
    /// Window end (epoch seconds).
    pub until_s: u32,
    /// Connections per tab in the window: the numbers next to the tab names,
    /// counted over every row, also those a limit leaves out.
    pub totals: TabTotals,
    /// Rows per tab in the window (a tab shows at most the limit).
    pub rows: TabTotals,
    /// Audit-mode connections.
    pub audit: Vec<Connection>,
    /// Enforce-mode connections.
    pub enforce: Vec<Connection>,
    /// Other connections.
    pub other: Vec<Connection>,
    /// Per pair of workloads, connections per mode.
    pub edges: Vec<Edge>,
}

/// Window bounds as the counts table stores them: whole minutes.
fn window(until_s: u32, window_s: u32) -> (u32, u32) {
    let from = until_s.saturating_sub(window_s);
    (from - from % 60, until_s)
}

/// Windows up to this long are counted from the events themselves, so they
/// start exactly `window` before `until` (the console's "15 minutes before
/// it was opened"); longer ones from the per-minute counts, from the start
/// of the minute.
pub const EXACT_WINDOW_S: u32 = 86_400;

/// Where the connections of `[until - window, until]` are read from, shaped
/// like `connection_counts`, and the start of the window as reported.
fn counted_source(until_s: u32, window_s: u32) -> (String, u32) {
    if window_s > EXACT_WINDOW_S {
        return ("connection_counts".to_owned(), window(until_s, window_s).0);
    }
    let from = until_s.saturating_sub(window_s);
    let ns = |s: u32| i64::from(s) * 1_000_000_000;
    (
        format!(
            "(SELECT toStartOfMinute(time) AS minute, connection_mode AS mode, protocol,
                src_kind, src_namespace, src_workload, src_pod, src_ip, src_port, src_domain,
                dst_kind, dst_namespace, dst_workload, dst_pod, dst_ip, dst_port, dst_domain,
                toUInt64(1) AS connections, time_ns AS last_seen_ns
             FROM network_events
             WHERE counted = 1 AND time_ns >= {} AND time_ns <= {})",
            ns(from),
            ns(until_s) + 999_999_999
        ),
        from,
    )
}

/// One source/destination pair, named as [`Edge`] names them: namespace
/// (empty outside the pods) and workload, else pod, else domain (for a
/// destination), else address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// Source namespace.
    pub src_namespace: String,
    /// Source workload, pod or address.
    pub src: String,
    /// Destination namespace.
    pub dst_namespace: String,
    /// Destination workload, pod, domain or address.
    pub dst: String,
}

/// The columns naming an edge's ends, as [`Edge`] has them.
const EDGE_SRC: &str = "if(src_workload != '', src_workload, if(src_pod != '', src_pod,
                   if(src_domain != '', src_domain, src_ip)))";
const EDGE_DST: &str = "if(dst_workload != '', dst_workload, if(dst_pod != '', dst_pod,
                   if(dst_domain != '', dst_domain, dst_ip)))";

/// The connections view of `[until - window, until]`; `mode` keeps one tab;
/// `limit` rows per tab at most (most connections first).
pub async fn connections_view(
    client: &Client,
    until_s: u32,
    window_s: u32,
    mode: Option<&str>,
    limit: u32,
) -> Result<ConnectionsView, QueryError> {
    view_of(client, until_s, window_s, mode, None, limit).await
}

/// One edge's detail (what a console's sidebar shows when an edge is
/// clicked): the three tabs' rows and totals of `pair` only, over
/// `[until - window, until]`.
pub async fn edge_detail(
    client: &Client,
    until_s: u32,
    window_s: u32,
    pair: &Pair,
    limit: u32,
) -> Result<ConnectionsView, QueryError> {
    view_of(client, until_s, window_s, None, Some(pair), limit).await
}

/// Both sides' decisions about the connections of `pair` over
/// `[until - window, until]`: per side (egress, ingress), mode, outcome and
/// policy, how many verdicts said so.
pub async fn edge_sides(
    client: &Client,
    until_s: u32,
    window_s: u32,
    pair: &Pair,
) -> Result<Vec<serde_json::Value>, QueryError> {
    let from = until_s.saturating_sub(window_s);
    json_rows(
        client,
        &format!(
            "SELECT side, side_mode AS mode, side_outcome AS outcome, side_policy AS policy,
                count() AS verdicts
             FROM verdicts
             ARRAY JOIN side, side_mode, side_outcome, side_policy
             WHERE time >= toDateTime({from}) AND time <= toDateTime({until_s})
               AND src_namespace = {} AND src_edge = {}
               AND dst_namespace = {} AND dst_edge = {}
             GROUP BY side, side_mode, side_outcome, side_policy
             ORDER BY side, side_mode, side_outcome, side_policy",
            sql_string(&pair.src_namespace),
            sql_string(&pair.src),
            sql_string(&pair.dst_namespace),
            sql_string(&pair.dst)
        ),
    )
    .await
}

async fn view_of(
    client: &Client,
    until_s: u32,
    window_s: u32,
    mode: Option<&str>,
    pair: Option<&Pair>,
    limit: u32,
) -> Result<ConnectionsView, QueryError> {
    let pair_filter = match pair {
        Some(_) => format!(
            "AND src_namespace = ? AND {EDGE_SRC} = ? AND dst_namespace = ? AND {EDGE_DST} = ?"
        ),
        None => String::new(),
    };
    let with_pair = |q: clickhouse::query::Query| match pair {
        Some(p) => q
            .bind(p.src_namespace.as_str())
            .bind(p.src.as_str())
            .bind(p.dst_namespace.as_str())
            .bind(p.dst.as_str()),
        None => q,
    };
    if let Some(m) = mode
        && !MODES.contains(&m)
    {
        return Err(QueryError::BadRequest(format!(
            "mode must be audit, enforce or other, not {m:?}"
        )));
    }
    let (from, until) = window(until_s, window_s);
    let (source, from_s) = counted_source(until_s, window_s);
    #[derive(Row, Deserialize)]
    struct Tabs {
        audit: u64,
        enforce: u64,
        other: u64,
        audit_rows: u64,
        enforce_rows: u64,
        other_rows: u64,
    }
    let tabs: Tabs = with_pair(
        client
            .query(&format!(
                "SELECT sumIf(n, mode = 'audit') AS audit, sumIf(n, mode = 'enforce') AS enforce,
                sumIf(n, mode = 'other') AS other, countIf(mode = 'audit') AS audit_rows,
                countIf(mode = 'enforce') AS enforce_rows, countIf(mode = 'other') AS other_rows
             FROM (SELECT mode, sum(connections) AS n
                   FROM {source}
                   WHERE minute >= toDateTime(?) AND minute <= toDateTime(?) {pair_filter}
                   GROUP BY mode, protocol, src_kind, src_namespace, src_workload, src_pod,
                      src_ip, dst_kind, dst_namespace, dst_workload, dst_pod, dst_ip, dst_port)"
            ))
            .bind(from)
            .bind(until),
    )
    .fetch_one()
    .await?;
    let mut view = ConnectionsView {
        from_s,
        until_s: until,
        totals: TabTotals {
            audit: tabs.audit,
            enforce: tabs.enforce,
            other: tabs.other,
        },
        rows: TabTotals {
            audit: tabs.audit_rows,
            enforce: tabs.enforce_rows,
            other: tabs.other_rows,
        },
        audit: Vec::new(),
        enforce: Vec::new(),
        other: Vec::new(),
        edges: Vec::new(),
    };
    for m in MODES.iter().filter(|m| mode.is_none_or(|x| x == **m)) {
        let rows: Vec<Connection> = with_pair(
            client
                .query(&format!(
                    "SELECT mode, protocol, src_kind, src_namespace, src_workload, src_pod, src_ip,
                    argMax(src_port, last_seen_ns) AS last_port, max(src_domain) AS src_name,
                    dst_kind, dst_namespace, dst_workload, dst_pod, dst_ip, dst_port,
                    max(dst_domain) AS domain,
                    sum(connections) AS n, max(last_seen_ns) AS last_ns
                 FROM {source}
                 WHERE minute >= toDateTime(?) AND minute <= toDateTime(?) AND mode = ?
                    {pair_filter}
                 GROUP BY mode, protocol, src_kind, src_namespace, src_workload, src_pod, src_ip,
                    dst_kind, dst_namespace, dst_workload, dst_pod, dst_ip, dst_port
                 ORDER BY n DESC, last_ns DESC, src_pod, dst_ip, dst_port
                 LIMIT ?"
                ))
                .bind(from)
                .bind(until)
                .bind(*m),
        )
        .bind(limit)
        .fetch_all()
        .await?;
        match *m {
            "audit" => view.audit = rows,
            "enforce" => view.enforce = rows,
            _ => view.other = rows,
        }
    }
    view.edges = with_pair(
        client
            .query(&format!(
                "SELECT src_namespace, {EDGE_SRC} AS src, dst_namespace, {EDGE_DST} AS dst,
                sumIf(connections, mode = 'audit') AS audit,
                sumIf(connections, mode = 'enforce') AS enforce,
                sumIf(connections, mode = 'other') AS other,
                max(last_seen_ns) AS last_ns
             FROM {source}
             WHERE minute >= toDateTime(?) AND minute <= toDateTime(?) {pair_filter}
             GROUP BY src_namespace, src, dst_namespace, dst
             ORDER BY audit + enforce + other DESC, src, dst
             LIMIT ?"
            ))
            .bind(from)
            .bind(until),
    )
    .bind(limit)
    .fetch_all()
    .await?;
    Ok(view)
}

/// A socket of the latest inventory snapshot of its sensor.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct InventorySocket {
    /// Sensor.
    pub sensor_id: String,
    /// Node.
    pub node: String,
    /// Local address.
    pub local_ip: String,
    /// Local port.
    pub local_port: u16,
    /// Remote address ('' for listeners).
    pub remote_ip: String,
    /// Remote port (0 for listeners).
    pub remote_port: u16,
    /// Kernel TCP state ('' for UDP).
    pub state: String,
    /// Owning process, when resolved.
    pub pid: Option<u32>,
    /// Its process name (`/proc/PID/comm`).
    pub binary: Option<String>,
    /// Its executable's path (`/proc/PID/exe`), when the agent could read it.
    pub binary_path: Option<String>,
    /// Age seen by the sensor; null when it predates the sensor.
    pub duration_ns: Option<i64>,
    /// The snapshot's time, epoch nanoseconds.
    pub snapshot_ns: i64,
}

/// A completed flow.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct Flow {
    /// The flow event's id (the cursor of the v2 pages).
    pub event_id: String,
    /// Sensor.
    pub sensor_id: String,
    /// Close time, epoch nanoseconds.
    pub time_ns: i64,
    /// Process binary.
    pub binary: String,
    /// Process id.
    pub pid: u32,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Source address.
    pub src_ip: String,
    /// Source port.
    pub src_port: u16,
    /// Destination address.
    pub dst_ip: String,
    /// Destination port.
    pub dst_port: u16,
    /// Duration; null when unknown.
    pub duration_ns: Option<i64>,
    /// Bytes sent by the source.
    pub bytes_sent: u64,
    /// Bytes received by the source.
    pub bytes_received: u64,
    /// `established`, `refused`, `half_closed`, `stale`.
    pub final_state: String,
}

/// `socket_kind` of the inventory rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// Established TCP connections.
    TcpConnection,
    /// TCP listeners.
    TcpListener,
    /// UDP listeners.
    UdpListener,
}

impl SocketKind {
    fn as_str(self) -> &'static str {
        match self {
            SocketKind::TcpConnection => "tcp_connection",
            SocketKind::TcpListener => "tcp_listener",
            SocketKind::UdpListener => "udp_listener",
        }
    }
}

const SOCKET_COLUMNS: &str = "sensor_id, node, local_ip, local_port, remote_ip, remote_port, \
     state, pid, binary, binary_path, duration_ns, snapshot_ns";

/// Rows of the latest snapshot per sensor (optionally one sensor).
fn latest(kind: SocketKind, sensor: bool, skip: &[String]) -> String {
    let skip = if skip.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = skip.iter().map(String::as_str).map(sql_string).collect();
        format!(" AND sensor_id NOT IN ({})", quoted.join(", "))
    };
    format!(
        "FROM inventory_sockets
         WHERE socket_kind = '{kind}'{only}{skip}
           AND (sensor_id, snapshot_ns) IN
             (SELECT sensor_id, max(snapshot_ns) FROM inventory_sockets{where_sensor}
              GROUP BY sensor_id)",
        kind = kind.as_str(),
        only = if sensor { " AND sensor_id = ?" } else { "" },
        where_sensor = if sensor { " WHERE sensor_id = ?" } else { "" },
    )
}

const SOCKET_ORDER: &str = "ORDER BY sensor_id, local_ip, local_port, remote_ip, remote_port";

/// One page of the v1 connections read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionsPage {
    /// Active TCP connections of this page.
    pub connections: Vec<InventorySocket>,
    /// The most recent completed flows (at most `page_size`, newest first).
    pub flows: Vec<Flow>,
    /// Active connections in all pages.
    pub total: u64,
    /// Pages of `page_size`.
    pub page_count: u64,
    /// This page (from 1).
    pub current_page: u64,
    /// Rows per page.
    pub page_size: u64,
}

/// Checks `page` (from 1) and `page_size` (1-500).
pub fn check_page(page: u64, page_size: u64) -> Result<(), QueryError> {
    if page == 0 {
        return Err(QueryError::BadRequest("page starts at 1".to_owned()));
    }
    if !(1..=500).contains(&page_size) {
        return Err(QueryError::BadRequest(format!(
            "page_size must be between 1 and 500, not {page_size}"
        )));
    }
    Ok(())
}

/// Active TCP connections from the latest heartbeat of each sensor (but the
/// `skip`ped ones: disconnected sensors have no active connections), a page
/// at a time, with the latest flows.
pub async fn connections_page(
    client: &Client,
    sensor_id: Option<&str>,
    skip: &[String],
    page: u64,
    page_size: u64,
) -> Result<ConnectionsPage, QueryError> {
    check_page(page, page_size)?;
    let from = latest(SocketKind::TcpConnection, sensor_id.is_some(), skip);
    let mut total = client.query(&format!("SELECT count() {from}"));
    if let Some(s) = sensor_id {
        total = total.bind(s).bind(s);
    }
    let total: u64 = total.fetch_one().await?;
    let mut rows = client.query(&format!(
        "SELECT {SOCKET_COLUMNS} {from} {SOCKET_ORDER} LIMIT ?, ?"
    ));
    if let Some(s) = sensor_id {
        rows = rows.bind(s).bind(s);
    }
    let connections = rows
        .bind((page - 1) * page_size)
        .bind(page_size)
        .fetch_all()
        .await?;
    Ok(ConnectionsPage {
        connections,
        flows: flows(client, sensor_id, Some(page_size)).await?,
        total,
        page_count: total.div_ceil(page_size),
        current_page: page,
        page_size,
    })
}

/// Listeners (TCP or UDP) of the latest heartbeat of each sensor.
pub async fn listeners(
    client: &Client,
    kind: SocketKind,
    sensor_id: Option<&str>,
) -> Result<Vec<InventorySocket>, QueryError> {
    let from = latest(kind, sensor_id.is_some(), &[]);
    let mut q = client.query(&format!("SELECT {SOCKET_COLUMNS} {from} {SOCKET_ORDER}"));
    if let Some(s) = sensor_id {
        q = q.bind(s).bind(s);
    }
    Ok(q.fetch_all().await?)
}

/// Completed flows, newest first; the `limit` most recent, or every one.
pub async fn flows(
    client: &Client,
    sensor_id: Option<&str>,
    limit: Option<u64>,
) -> Result<Vec<Flow>, QueryError> {
    let q = format!(
        "SELECT event_id, sensor_id, time_ns, binary, pid, protocol, src_ip, src_port, dst_ip,
            dst_port, duration_ns, bytes_sent, bytes_received, final_state
         FROM flows{} ORDER BY time_ns DESC, event_id{}",
        if sensor_id.is_some() {
            " WHERE sensor_id = ?"
        } else {
            ""
        },
        if limit.is_some() { " LIMIT ?" } else { "" }
    );
    let mut q = client.query(&q);
    if let Some(s) = sensor_id {
        q = q.bind(s);
    }
    if let Some(limit) = limit {
        q = q.bind(limit);
    }
    Ok(q.fetch_all().await?)
}

/// One page of the v2 (cursor) connections read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CursorPage {
    /// Active TCP connections of this page.
    pub connections: Vec<InventorySocket>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A cursor: a row's sort key (tab-separated fields), hex-encoded.
fn to_cursor(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The sort key inside a cursor [`to_cursor`] made; any other text is a 400.
fn from_cursor(cursor: &str) -> Result<String, QueryError> {
    let bad = bad_cursor;
    if !cursor.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// The 400 for a cursor this server did not make.
fn bad_cursor() -> QueryError {
    QueryError::BadRequest("cursor is not one this server handed out".to_owned())
}

/// A string literal for ClickHouse SQL built by hand (reads that are not
/// bound parameters: `json_rows`, lists).
pub(crate) fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The cursor of a socket row.
fn encode_cursor(s: &InventorySocket) -> String {
    to_cursor(&format!(
        "{}\t{}\t{}\t{}\t{}",
        s.sensor_id, s.local_ip, s.local_port, s.remote_ip, s.remote_port
    ))
}

type CursorKey = (String, String, u16, String, u16);

fn decode_cursor(cursor: &str) -> Result<CursorKey, QueryError> {
    let bad = bad_cursor;
    let text = from_cursor(cursor)?;
    let parts: Vec<&str> = text.split('\t').collect();
    let [sensor, lip, lport, rip, rport] = parts[..] else {
        return Err(bad());
    };
    Ok((
        sensor.to_owned(),
        lip.to_owned(),
        lport.parse().map_err(|_| bad())?,
        rip.to_owned(),
        rport.parse().map_err(|_| bad())?,
    ))
}

/// Active TCP connections after `cursor` (keyset pagination: stable and
/// cheap however deep the page). Pages follow the latest heartbeats, so a
/// heartbeat arriving between pages shows in the later pages.
pub async fn connections_after(
    client: &Client,
    sensor_id: Option<&str>,
    skip: &[String],
    cursor: Option<&str>,
    limit: u64,
) -> Result<CursorPage, QueryError> {
    let (connections, next_cursor) = sockets_after(
        client,
        SocketKind::TcpConnection,
        sensor_id,
        skip,
        cursor,
        limit,
    )
    .await?;
    Ok(CursorPage {
        connections,
        next_cursor,
    })
}

/// Sockets of `kind` of the latest heartbeat of each sensor (but the
/// `skip`ped ones), `limit` at a time after `cursor`, in a stable order;
/// with the cursor of the next page, if any.
pub async fn sockets_after(
    client: &Client,
    kind: SocketKind,
    sensor_id: Option<&str>,
    skip: &[String],
    cursor: Option<&str>,
    limit: u64,
) -> Result<(Vec<InventorySocket>, Option<String>), QueryError> {
    if !(1..=5000).contains(&limit) {
        return Err(QueryError::BadRequest(format!(
            "limit must be between 1 and 5000, not {limit}"
        )));
    }
    let after = cursor.map(decode_cursor).transpose()?;
    let from = latest(kind, sensor_id.is_some(), skip);
    // (a, b, c, d, e) > (A, B, C, D, E), spelled out for servers without
    // tuple comparison.
    let keyset = " AND (sensor_id > ? OR sensor_id = ? AND (local_ip > ? OR local_ip = ? AND \
         (local_port > ? OR local_port = ? AND (remote_ip > ? OR remote_ip = ? AND remote_port > ?))))";
    let mut q = client.query(&format!(
        "SELECT {SOCKET_COLUMNS} {from}{} {SOCKET_ORDER} LIMIT ?",
        if after.is_some() { keyset } else { "" }
    ));
    if let Some(s) = sensor_id {
        q = q.bind(s).bind(s);
    }
    if let Some((s, lip, lport, rip, rport)) = &after {
        q = q
            .bind(s)
            .bind(s)
            .bind(lip)
            .bind(lip)
            .bind(lport)
            .bind(lport)
            .bind(rip)
            .bind(rip)
            .bind(rport);
    }
    let rows: Vec<InventorySocket> = q.bind(limit).fetch_all().await?;
    let next_cursor = (rows.len() as u64 == limit)
        .then(|| rows.last().map(encode_cursor))
        .flatten();
    Ok((rows, next_cursor))
}

/// Per-sensor figures for a fleet dashboard.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SensorSummary {
    /// Sensor.
    pub sensor_id: String,
    /// Its node.
    pub node: String,
    /// Latest heartbeat, epoch nanoseconds.
    pub snapshot_ns: i64,
    /// Active TCP connections in it.
    pub tcp_connections: u64,
    /// TCP listeners in it.
    pub tcp_listeners: u64,
    /// UDP listeners in it.
    pub udp_listeners: u64,
}

/// The latest heartbeat of every sensor, counted.
pub async fn summary(client: &Client) -> Result<Vec<SensorSummary>, QueryError> {
    Ok(client
        .query(
            "SELECT sensor_id, any(node) AS node_name, max(snapshot_ns) AS latest_ns,
                countIf(socket_kind = 'tcp_connection') AS tcp_connections,
                countIf(socket_kind = 'tcp_listener') AS tcp_listeners,
                countIf(socket_kind = 'udp_listener') AS udp_listeners
             FROM inventory_sockets
             WHERE (sensor_id, snapshot_ns) IN
               (SELECT sensor_id, max(snapshot_ns) FROM inventory_sockets GROUP BY sensor_id)
             GROUP BY sensor_id ORDER BY sensor_id",
        )
        .fetch_all()
        .await?)
}

/// Completed flows, newest first, `limit` at a time after `cursor` (the
/// close time and event id of the last flow of the previous page); with the
/// cursor of the next page, if any.
pub async fn flows_after(
    client: &Client,
    sensor_id: Option<&str>,
    cursor: Option<&str>,
    limit: u64,
) -> Result<(Vec<Flow>, Option<String>), QueryError> {
    if !(1..=5000).contains(&limit) {
        return Err(QueryError::BadRequest(format!(
            "limit must be between 1 and 5000, not {limit}"
        )));
    }
    let after = cursor.map(decode_event_cursor).transpose()?;
    let mut conditions = Vec::new();
    if sensor_id.is_some() {
        conditions.push("sensor_id = ?");
    }
    if after.is_some() {
        conditions.push("(time_ns < ? OR time_ns = ? AND event_id < ?)");
    }
    let sql = format!(
        "SELECT event_id, sensor_id, time_ns, binary, pid, protocol, src_ip, src_port, dst_ip,
            dst_port, duration_ns, bytes_sent, bytes_received, final_state
         FROM flows{} ORDER BY time_ns DESC, event_id DESC LIMIT ?",
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        }
    );
    let mut q = client.query(&sql);
    if let Some(s) = sensor_id {
        q = q.bind(s);
    }
    if let Some((t, id)) = &after {
        q = q.bind(t).bind(t).bind(id.as_str());
    }
    let flows: Vec<Flow> = q.bind(limit).fetch_all().await?;
    let next = (flows.len() as u64 == limit)
        .then(|| {
            flows
                .last()
                .map(|f| encode_event_cursor(f.time_ns, &f.event_id))
        })
        .flatten();
    Ok((flows, next))
}

/// A connection that is open: connected (or accepted) and not closed yet
/// (no `network_flow` of its addresses and ports since).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ActiveFlow {
    /// Sensor.
    pub sensor_id: String,
    /// When it was opened, epoch nanoseconds.
    pub time_ns: i64,
    /// `network_connect` or `network_accept`.
    pub kind: String,
    /// Process binary.
    pub binary: String,
    /// Process id.
    pub pid: u32,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Source address.
    pub src_ip: String,
    /// Source port.
    pub src_port: u16,
    /// Destination address.
    pub dst_ip: String,
    /// Destination port.
    pub dst_port: u16,
}

/// Open connections, newest first: every connect or accept whose
/// addresses and ports have no `network_flow` (the close) at or after it,
/// from the agents' trackers.
pub async fn active_flows(
    client: &Client,
    sensor_id: Option<&str>,
    limit: Option<u64>,
) -> Result<Vec<ActiveFlow>, QueryError> {
    let only = if sensor_id.is_some() {
        " AND sensor_id = ?"
    } else {
        ""
    };
    let q = format!(
        "SELECT sensor_id, time_ns, kind, binary, pid, protocol, src_ip, src_port, dst_ip, dst_port
         FROM network_events
         WHERE kind IN ('network_connect', 'network_accept'){only}
           AND (sensor_id, src_ip, src_port, dst_ip, dst_port) NOT IN
             (SELECT sensor_id, src_ip, src_port, dst_ip, dst_port FROM network_events
              WHERE kind = 'network_flow')
         ORDER BY time_ns DESC, event_id{}",
        if limit.is_some() { " LIMIT ?" } else { "" }
    );
    let mut q = client.query(&q);
    if let Some(s) = sensor_id {
        q = q.bind(s);
    }
    if let Some(limit) = limit {
        q = q.bind(limit);
    }
    Ok(q.fetch_all().await?)
}

/// A pod as a console's pod page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodDetail {
    /// The latest record: uid, name, namespace, node, labels, workload,
    /// containers with image and digest, start and end.
    pub pod: serde_json::Value,
    /// Its addresses over time, one entry per record that changed them.
    pub ips: Vec<serde_json::Value>,
    /// Its connections of the window (either side), per edge and mode.
    pub edges: Vec<Edge>,
    /// Its verdicts of the window (either side), per mode and outcome.
    pub verdicts: Vec<serde_json::Value>,
}

/// The pod `namespace/name` (its latest record; a name reused by a new pod
/// is the new pod) with its addresses over time, and its connections and
/// verdicts over `[until - window, until]`. `None` when no record names it.
pub async fn pod_detail(
    client: &Client,
    namespace: &str,
    name: &str,
    until_s: u32,
    window_s: u32,
) -> Result<Option<PodDetail>, QueryError> {
    let (ns, n) = (sql_string(namespace), sql_string(name));
    let records = json_rows(
        client,
        &format!(
            "SELECT uid, name, namespace, node, ips, host_network, labels_json, workload_kind,
                workload_name, containers_json, start_ns, end_ns, time_ns
             FROM pods WHERE namespace = {ns} AND name = {n} ORDER BY time_ns"
        ),
    )
    .await?;
    let Some(latest) = records.last() else {
        return Ok(None);
    };
    let parse = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let int = |v: &serde_json::Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
            .filter(|n| *n != 0)
    };
    let pod = json!({
        "uid": latest["uid"],
        "name": latest["name"],
        "namespace": latest["namespace"],
        "node": latest["node"],
        "host_network": latest["host_network"] == 1,
        "labels": parse(&latest["labels_json"]),
        "workload": {"kind": latest["workload_kind"], "name": latest["workload_name"]},
        "containers": parse(&latest["containers_json"]),
        "start_ns": int(&latest["start_ns"]),
        "end_ns": int(&latest["end_ns"]),
    });
    let mut ips: Vec<serde_json::Value> = Vec::new();
    for r in &records {
        if ips
            .last()
            .is_none_or(|last| last["ips"] != r["ips"] || last["uid"] != r["uid"])
        {
            ips.push(json!({
                "uid": r["uid"], "ips": r["ips"],
                "start_ns": int(&r["start_ns"]), "end_ns": int(&r["end_ns"]),
            }));
        }
    }
    let (from, until) = window(until_s, window_s);
    let edges: Vec<Edge> = client
        .query(&format!(
            "SELECT src_namespace, {EDGE_SRC} AS src, dst_namespace, {EDGE_DST} AS dst,
                sumIf(connections, mode = 'audit') AS audit,
                sumIf(connections, mode = 'enforce') AS enforce,
                sumIf(connections, mode = 'other') AS other,
                max(last_seen_ns) AS last_ns
             FROM connection_counts
             WHERE minute >= toDateTime(?) AND minute <= toDateTime(?)
               AND (src_namespace = ? AND src_pod = ? OR dst_namespace = ? AND dst_pod = ?)
             GROUP BY src_namespace, src, dst_namespace, dst
             ORDER BY audit + enforce + other DESC, src, dst"
        ))
        .bind(from)
        .bind(until)
        .bind(namespace)
        .bind(name)
        .bind(namespace)
        .bind(name)
        .fetch_all()
        .await?;
    let verdicts = json_rows(
        client,
        &format!(
            "SELECT mode, outcome, count() AS events FROM verdicts
             WHERE time >= toDateTime({from}) AND time <= toDateTime({until})
               AND (src_namespace = {ns} AND src_pod = {n} OR dst_namespace = {ns} AND dst_pod = {n})
             GROUP BY mode, outcome ORDER BY mode, outcome"
        ),
    )
    .await?;
    Ok(Some(PodDetail {
        pod,
        ips,
        edges,
        verdicts,
    }))
}

/// What the Investigate view asks for: events of a window, newest first.
#[derive(Debug, Clone, Copy)]
pub struct EventsQuery<'a> {
    /// One sensor only.
    pub sensor_id: Option<&'a str>,
    /// One kind only (`network_connect`, `dns_query`, `process_exec`, ...).
    pub kind: Option<&'a str>,
    /// Window start, epoch nanoseconds (inclusive).
    pub since_ns: i64,
    /// Window end, epoch nanoseconds (exclusive).
    pub until_ns: i64,
    /// Events per page.
    pub limit: u64,
    /// Where the previous page ended ([`EventsPage::next_cursor`]).
    pub cursor: Option<&'a str>,
    /// Only events this KFL query matches, over the event's columns.
    pub filter: Option<&'a tapwire_kfl::Filter>,
}

/// A page of events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventsPage {
    /// The events, newest first: a row of `network_events` or
    /// `runtime_events` with `family` (`network` or `runtime`).
    pub events: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent when the window is done.
    pub next_cursor: Option<String>,
    /// Rows read for this page (more than the events when a filter is set).
    pub scanned: u64,
}

/// At most this many rows are read for one page; a sparse filter returns a
/// short page with a cursor, and the caller asks again.
const EVENTS_SCAN_MAX: u64 = 50_000;

/// One page of events of `[since, until)`, across network and runtime
/// events, newest first, cursor-paged by (time, event id).
pub async fn events(client: &Client, q: EventsQuery<'_>) -> Result<EventsPage, QueryError> {
    if !(1..=5000).contains(&q.limit) {
        return Err(QueryError::BadRequest(format!(
            "limit must be between 1 and 5000, not {}",
            q.limit
        )));
    }
    let families: &[(&str, &str)] = match q.kind {
        None => &[("network", "network_events"), ("runtime", "runtime_events")],
        Some(k) if !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
            return Err(QueryError::BadRequest(format!(
                "kind {k:?} is not an event kind (e.g. network_connect, dns_query, process_exec)"
            )));
        }
        Some(k) if k.starts_with("network_") || k.starts_with("dns_") => {
            &[("network", "network_events")]
        }
        Some(k) if k.starts_with("process_") || k.starts_with("file_") => {
            &[("runtime", "runtime_events")]
        }
        Some(k) => {
            return Err(QueryError::BadRequest(format!(
                "kind {k:?} is not an event kind: network_*, dns_*, process_* or file_*"
            )));
        }
    };
    let mut after = q.cursor.map(decode_event_cursor).transpose()?;
    let batch = (q.limit * 4).clamp(500, 5000);
    let mut page = Vec::new();
    let mut scanned = 0u64;
    let mut exhausted = false;
    while (page.len() as u64) < q.limit && scanned < EVENTS_SCAN_MAX {
        let mut rows: Vec<(i64, String, serde_json::Value)> = Vec::new();
        for (family, table) in families {
            let mut sql = format!(
                "SELECT * FROM {table} WHERE time_ns >= {} AND time_ns < {}",
                q.since_ns, q.until_ns
            );
            if let Some(s) = q.sensor_id {
                sql.push_str(&format!(" AND sensor_id = {}", sql_string(s)));
            }
            if let Some(k) = q.kind {
                sql.push_str(&format!(" AND kind = {}", sql_string(k)));
            }
            if let Some((t, id)) = &after {
                sql.push_str(&format!(
                    " AND (time_ns < {t} OR time_ns = {t} AND event_id < {})",
                    sql_string(id)
                ));
            }
            sql.push_str(&format!(
                " ORDER BY time_ns DESC, event_id DESC LIMIT {batch}"
            ));
            for mut row in json_rows(client, &sql).await? {
                let time = row["time_ns"]
                    .as_i64()
                    .or_else(|| row["time_ns"].as_str().and_then(|t| t.parse().ok()))
                    .unwrap_or(0);
                let id = row["event_id"].as_str().unwrap_or_default().to_owned();
                if let Some(map) = row.as_object_mut() {
                    map.insert("family".into(), json!(family));
                    // 64-bit integers may come quoted: give the time as a number.
                    map.insert("time_ns".into(), json!(time));
                }
                rows.push((time, id, row));
            }
        }
        // Newest first across the tables; only the first `batch` are safe
        // to take (a table may have more just below its last row).
        rows.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        exhausted = (rows.len() as u64) < batch;
        rows.truncate(batch as usize);
        if rows.is_empty() {
            exhausted = true;
            break;
        }
        for (time, id, row) in rows {
            scanned += 1;
            after = Some((time, id));
            if q.filter.is_none_or(|f| f.matches(&row, 0)) {
                page.push(row);
                if page.len() as u64 == q.limit {
                    break;
                }
            }
        }
        if exhausted && page.len() as u64 >= q.limit {
            exhausted = false; // the cursor may still have rows after it
        }
        if exhausted {
            break;
        }
    }
    let next_cursor = (!exhausted)
        .then(|| after.as_ref().map(|(t, id)| encode_event_cursor(*t, id)))
        .flatten();
    Ok(EventsPage {
        events: page,
        next_cursor,
        scanned,
    })
}

/// The cursor of an event (or flow) row: its time and id.
fn encode_event_cursor(time_ns: i64, event_id: &str) -> String {
    to_cursor(&format!("{time_ns}\t{event_id}"))
}

fn decode_event_cursor(cursor: &str) -> Result<(i64, String), QueryError> {
    let text = from_cursor(cursor)?;
    let (time, id) = text.split_once('\t').ok_or_else(bad_cursor)?;
    Ok((time.parse().map_err(|_| bad_cursor())?, id.to_owned()))
}

/// Runs any `SELECT` and returns its rows as JSON objects (for ad-hoc and
/// analyst SQL; the typed reads above are faster).
pub async fn json_rows(client: &Client, sql: &str) -> Result<Vec<serde_json::Value>, QueryError> {
    // Raw: a `?` in the SQL (a regex, a literal) is the SQL's own.
    let mut cursor = client.query_raw(sql).fetch_bytes("JSONEachRow")?;
    let mut text = Vec::new();
    while let Some(chunk) = cursor.next().await? {
        text.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| QueryError::BadRequest(format!("unreadable row {l:?}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let s = InventorySocket {
            sensor_id: "node-a".into(),
            node: "node-a".into(),
            local_ip: "10.0.0.1".into(),
            local_port: 443,
            remote_ip: "10.0.0.2".into(),
            remote_port: 51000,
            state: "ESTABLISHED".into(),
            pid: None,
            binary: None,
            binary_path: None,
            duration_ns: None,
            snapshot_ns: 0,
        };
        let key = decode_cursor(&encode_cursor(&s)).expect("round trip");
        assert_eq!(
            key,
            (
                "node-a".into(),
                "10.0.0.1".into(),
                443,
                "10.0.0.2".into(),
                51000
            )
        );
        // "é" and "1é1" are even-length but not ASCII: byte slicing them
        // would panic, a forged cursor must only be a 400.
        for bad in ["zz", "abc", "6e6f", "", "\u{e9}", "1\u{e9}1"] {
            assert!(
                matches!(decode_cursor(bad), Err(QueryError::BadRequest(_))),
                "{bad}"
            );
            assert!(
                matches!(decode_event_cursor(bad), Err(QueryError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn pages_are_checked() {
        assert!(check_page(1, 100).is_ok());
        assert!(check_page(0, 100).is_err());
        assert!(check_page(1, 0).is_err());
        assert!(check_page(1, 501).is_err());
        assert!(check_page(7, 500).is_ok());
    }

    #[test]
    fn endpoints_read_like_the_console() {
        assert_eq!(endpoint("web-1", "10.0.0.1", 80), "web-1 10.0.0.1:80");
        assert_eq!(endpoint("", "fd00::1", 443), "[fd00::1]:443");
    }
}
