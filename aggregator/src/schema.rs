//! The ClickHouse schema, as versioned migrations applied at start.
//!
//! Every migration is a list of idempotent statements (`IF NOT EXISTS`); the
//! versions applied are recorded in `<db>.schema_migrations`, so a restart
//! (or two aggregators starting at once) applies nothing twice, and a start
//! interrupted mid-migration finishes it on the next run.
//!
//! The same DDL runs on ClickHouse 18.16 and on current releases: the server
//! version decides the extras ([`Features`]). 18.16 gets plain `String`
//! columns, no TTL; 20.1 and later get `LowCardinality(String)` for the
//! repetitive columns, a TTL of `retention_days`, and materialized `IPv6`
//! columns (`src_ip6`, `dst_ip6`; IPv4 as `::ffff:a.b.c.d`) next to the text
//! addresses, for range queries. Queries only use the columns every version
//! has.
//!
//! Every table carries `src_partition` and `src_offset`: where in Kafka the
//! row came from (for counts, the highest offset that contributed). One
//! batch is one `INSERT` per table, which ClickHouse writes atomically, so
//! the highest offset per partition in a table says what that table already
//! holds; see `sink` for how replays skip it.

use clickhouse::Client;

/// What the server supports, from its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `major.minor` of `SELECT version()`.
    pub version: (u32, u32),
    /// `LowCardinality(String)` without experimental settings.
    pub low_cardinality: bool,
    /// Table TTL.
    pub ttl: bool,
    /// `IPv6` type and `toIPv6`.
    pub ip_types: bool,
}

impl Features {
    /// Features of a server reporting `version` (e.g. `18.16.1`).
    pub fn from_version(version: &str) -> Result<Features, SchemaError> {
        let mut parts = version.trim().split('.').map(str::parse::<u32>);
        let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
            return Err(SchemaError::Version(version.to_owned()));
        };
        let modern = major >= 20;
        Ok(Features {
            version: (major, minor),
            low_cardinality: modern,
            ttl: modern,
            ip_types: modern,
        })
    }
}

/// Schema setup failures.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The server did not answer or refused a statement.
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// `version()` is not `major.minor...`.
    #[error("unexpected ClickHouse version {0:?}")]
    Version(String),
    /// A migration statement failed.
    #[error("migration {version} ({description}) failed on {statement:?}: {source}")]
    Migration {
        /// Its version.
        version: u32,
        /// What it does.
        description: &'static str,
        /// The statement's first line.
        statement: String,
        /// The server's reply.
        #[source]
        source: clickhouse::error::Error,
    },
}

/// One schema change.
pub struct Migration {
    /// Applied in ascending order.
    pub version: u32,
    /// What it does.
    pub description: &'static str,
    /// The statements for database `db` on a server with `features`.
    pub statements: fn(db: &str, features: &Features, retention_days: u32) -> Vec<String>,
    /// Columns added to existing tables: (table, column, type and default).
    /// Each is added only when missing (18.16 has no `ADD COLUMN IF NOT
    /// EXISTS`), so the migration stays idempotent.
    pub add_columns: &'static [(&'static str, &'static str, &'static str)],
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "connection counts, network events, flows, verdicts, runtime events, inventory",
        statements: initial,
        add_columns: &[],
    },
    Migration {
        version: 2,
        description: "agent heartbeats",
        statements: agent_heartbeats,
        add_columns: &[],
    },
    Migration {
        version: 3,
        description: "the domain name of a source outside the pods in connection counts",
        statements: |_, _, _| Vec::new(),
        add_columns: &[("connection_counts", "src_domain", "String DEFAULT ''")],
    },
    Migration {
        version: 4,
        description: "pod records (the pod detail a console opens)",
        statements: pods,
        add_columns: &[],
    },
    Migration {
        version: 5,
        description: "the executable's path of a socket's process (/proc/PID/exe)",
        statements: |_, _, _| Vec::new(),
        add_columns: &[("inventory_sockets", "binary_path", "Nullable(String)")],
    },
    Migration {
        version: 6,
        description: "connections per event (exact windows for the connections view)",
        statements: |_, _, _| Vec::new(),
        add_columns: &[
            ("network_events", "counted", "UInt8 DEFAULT 0"),
            ("network_events", "connection_mode", "String DEFAULT ''"),
            ("network_events", "src_workload", "String DEFAULT ''"),
            ("network_events", "dst_workload", "String DEFAULT ''"),
            ("network_events", "src_domain", "String DEFAULT ''"),
        ],
    },
    Migration {
        version: 7,
        description: "both sides' decisions of a connection's verdict",
        statements: |_, _, _| Vec::new(),
        add_columns: &[
            ("verdicts", "side", "Array(String)"),
            ("verdicts", "side_mode", "Array(String)"),
            ("verdicts", "side_outcome", "Array(String)"),
            ("verdicts", "side_policy", "Array(String)"),
            ("verdicts", "side_rule", "Array(String)"),
            ("verdicts", "connection_mode", "String DEFAULT ''"),
            ("verdicts", "src_edge", "String DEFAULT ''"),
            ("verdicts", "dst_edge", "String DEFAULT ''"),
        ],
    },
    Migration {
        version: 8,
        description: "loss records (events a hop lost, next to the events)",
        statements: losses,
        add_columns: &[],
    },
    Migration {
        version: 9,
        description: "API requests (the console's and the API's audit trail)",
        statements: api_requests,
        add_columns: &[],
    },
    Migration {
        version: 10,
        description: "object scans: job statuses (and the jobs' latest), findings, scanner heartbeats",
        statements: scans,
        add_columns: &[],
    },
    Migration {
        version: 11,
        description: "what happened after scans: risk accepted, expired, threat removed, image compliance",
        statements: scan_events,
        add_columns: &[],
    },
];

/// A column type that is `LowCardinality(String)` where supported.
fn lc(f: &Features) -> &'static str {
    if f.low_cardinality {
        "LowCardinality(String)"
    } else {
        "String"
    }
}

fn ip_columns(f: &Features, columns: &[&str]) -> String {
    if !f.ip_types {
        return String::new();
    }
    columns
        .iter()
        .map(|c| format!(",\n  {c}6 IPv6 MATERIALIZED toIPv6({c})"))
        .collect()
}

fn ttl(f: &Features, column: &str, days: u32) -> String {
    if f.ttl && days > 0 {
        format!("\nTTL {column} + INTERVAL {days} DAY")
    } else {
        String::new()
    }
}

/// The common Kafka-position columns.
const SOURCE: &str = "src_partition UInt32,\n  src_offset UInt64";

fn initial(db: &str, f: &Features, days: u32) -> Vec<String> {
    let lc = lc(f);
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.connection_counts (
  minute DateTime,
  mode {lc},
  protocol {lc},
  src_kind {lc},
  src_namespace {lc},
  src_workload String,
  src_pod String,
  src_ip String,
  src_port UInt16,
  dst_kind {lc},
  dst_namespace {lc},
  dst_workload String,
  dst_pod String,
  dst_ip String,
  dst_port UInt16,
  dst_domain String,
  connections UInt64,
  first_seen DateTime,
  last_seen DateTime,
  last_seen_ns Int64,
  {SOURCE}{ips}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, mode, src_namespace, src_pod, dst_namespace, dst_pod, dst_ip, dst_port){ttl}",
            ips = ip_columns(f, &["src_ip", "dst_ip"]),
            ttl = ttl(f, "minute", days),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.network_events (
  time DateTime,
  time_ns Int64,
  event_id String,
  kind {lc},
  node {lc},
  sensor_id {lc},
  pid UInt32,
  binary String,
  container_id String,
  protocol {lc},
  direction {lc},
  src_ip String,
  src_port UInt16,
  dst_ip String,
  dst_port UInt16,
  src_kind {lc},
  src_namespace {lc},
  src_pod String,
  dst_kind {lc},
  dst_namespace {lc},
  dst_pod String,
  dst_domain String,
  dns_name String,
  dns_type {lc},
  dns_answers Array(String),
  dns_rcode {lc},
  mode {lc},
  outcome {lc},
  {SOURCE}{ips}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (kind, time){ttl}",
            ips = ip_columns(f, &["src_ip", "dst_ip"]),
            ttl = ttl(f, "time", days),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.flows (
  time DateTime,
  time_ns Int64,
  event_id String,
  node {lc},
  sensor_id {lc},
  pid UInt32,
  binary String,
  protocol {lc},
  src_ip String,
  src_port UInt16,
  dst_ip String,
  dst_port UInt16,
  src_namespace {lc},
  src_pod String,
  dst_namespace {lc},
  dst_pod String,
  dst_domain String,
  duration_ns Nullable(Int64),
  bytes_sent UInt64,
  bytes_received UInt64,
  final_state {lc},
  mode {lc},
  {SOURCE}{ips}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (sensor_id, time){ttl}",
            ips = ip_columns(f, &["src_ip", "dst_ip"]),
            ttl = ttl(f, "time", days),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.verdicts (
  time DateTime,
  time_ns Int64,
  event_id String,
  kind {lc},
  node {lc},
  mode {lc},
  outcome {lc},
  policy String,
  rule String,
  signature_id {lc},
  severity UInt8,
  src_namespace {lc},
  src_pod String,
  dst_namespace {lc},
  dst_pod String,
  dst_domain String,
  {SOURCE}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (mode, outcome, time){ttl}",
            ttl = ttl(f, "time", days),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.runtime_events (
  time DateTime,
  time_ns Int64,
  event_id String,
  kind {lc},
  node {lc},
  sensor_id {lc},
  pid UInt32,
  ppid UInt32,
  uid UInt32,
  binary String,
  command_line String,
  container_id String,
  path String,
  old_path String,
  namespace {lc},
  pod String,
  mode {lc},
  outcome {lc},
  {SOURCE}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (kind, time){ttl}",
            ttl = ttl(f, "time", days),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.inventory_sockets (
  snapshot_time DateTime,
  snapshot_ns Int64,
  node {lc},
  sensor_id {lc},
  socket_kind {lc},
  local_ip String,
  local_port UInt16,
  remote_ip String,
  remote_port UInt16,
  state {lc},
  inode UInt64,
  pid Nullable(UInt32),
  binary Nullable(String),
  duration_ns Nullable(Int64),
  {SOURCE}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(snapshot_time)
ORDER BY (sensor_id, snapshot_ns, socket_kind){ttl}",
            ttl = ttl(f, "snapshot_time", days),
        ),
    ]
}

/// Issue 15: one row per capture agent heartbeat (`tapwire.agents`), the
/// sensors' liveness (`crate::liveness`). Losses are two parallel arrays
/// (counter name, events lost since the previous heartbeat) and their sum.
fn agent_heartbeats(db: &str, f: &Features, days: u32) -> Vec<String> {
    let lc = lc(f);
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {db}.agent_heartbeats (
  time DateTime,
  time_ns Int64,
  event_id String,
  node {lc},
  sensor_id {lc},
  agent_version {lc},
  started_ns Int64,
  sequence UInt64,
  interval_ms UInt64,
  sources Array(String),
  loss_sources Array(String),
  loss_counts Array(UInt64),
  lost UInt64,
  stopping UInt8,
  {SOURCE}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (sensor_id, time_ns){ttl}",
        ttl = ttl(f, "time", days),
    )]
}

fn losses(db: &str, f: &Features, days: u32) -> Vec<String> {
    let lc = lc(f);
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {db}.losses (
  time DateTime,
  time_ns Int64,
  event_id String,
  node {lc},
  sensor_id {lc},
  source {lc},
  lost UInt64,
  {SOURCE}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (node, time_ns){ttl}",
        ttl = ttl(f, "time", days),
    )]
}

/// Issue 17: every request to the API (`tapwire.audit`): who, from where,
/// what, the status.
fn api_requests(db: &str, f: &Features, days: u32) -> Vec<String> {
    let lc = lc(f);
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {db}.api_requests (
  time DateTime,
  time_ns Int64,
  event_id String,
  node {lc},
  instance {lc},
  user {lc},
  role {lc},
  source_ip String,
  method {lc},
  route String,
  query String,
  status UInt16,
  duration_ns Int64,
  {SOURCE}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (user, time_ns){ttl}",
        ttl = ttl(f, "time", days),
    )]
}

fn pods(db: &str, f: &Features, _days: u32) -> Vec<String> {
    let lc = lc(f);
    // Every record of a pod is kept (its IPs and end over time); the latest
    // per uid is the pod now.
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {db}.pods (
  time DateTime,
  time_ns Int64,
  uid String,
  name String,
  namespace {lc},
  node {lc},
  ips Array(String),
  host_network UInt8,
  labels_json String,
  workload_kind {lc},
  workload_name String,
  containers_json String,
  start_ns Int64,
  end_ns Int64,
  {SOURCE}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (namespace, name, time_ns)"
    )]
}

/// The server's features (`SELECT version()`).
pub async fn features(client: &Client) -> Result<Features, SchemaError> {
    let version: String = client.query("SELECT version()").fetch_one().await?;
    Features::from_version(&version)
}

/// Creates the database and applies the pending migrations. Returns the
/// server's features and the versions applied now.
pub async fn migrate(
    client: &Client,
    db: &str,
    retention_days: u32,
) -> Result<(Features, Vec<u32>), SchemaError> {
    let f = features(client).await?;
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .execute()
        .await?;
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
  version UInt32, description String, applied_at DateTime
) ENGINE = MergeTree() ORDER BY version"
        ))
        .execute()
        .await?;
    let applied: Vec<u32> = client
        .query(&format!(
            "SELECT DISTINCT version FROM {db}.schema_migrations ORDER BY version"
        ))
        .fetch_all()
        .await?;
    let mut now_applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let mut statements = (m.statements)(db, &f, retention_days);
        for (table, column, definition) in m.add_columns {
            let present: u64 = client
                .query(
                    "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
                )
                .bind(db)
                .bind(*table)
                .bind(*column)
                .fetch_one()
                .await?;
            if present == 0 {
                statements.push(format!(
                    "ALTER TABLE {db}.{table} ADD COLUMN {column} {definition}"
                ));
            }
        }
        for statement in statements {
            client
                .query(&statement)
                .execute()
                .await
                .map_err(|source| SchemaError::Migration {
                    version: m.version,
                    description: m.description,
                    statement: statement.lines().next().unwrap_or_default().to_owned(),
                    source,
                })?;
        }
        client
            .query(&format!(
                "INSERT INTO {db}.schema_migrations (version, description, applied_at) \
                 SELECT ?, ?, now()"
            ))
            .bind(m.version)
            .bind(m.description)
            .execute()
            .await?;
        tracing::info!(
            version = m.version,
            description = m.description,
            "migration applied"
        );
        now_applied.push(m.version);
    }
    Ok((f, now_applied))
}

/// Issue 18: `tapwire.scan.events`, one row per event (a copy replaces
/// itself: same id).
fn scan_events(db: &str, f: &Features, days: u32) -> Vec<String> {
    let lc = lc(f);
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {db}.scan_events (
  time DateTime,
  at_ns Int64,
  id String,
  event {lc},
  finding_id String,
  kind {lc},
  rule {lc},
  object String,
  user {lc},
  until_ns Int64,
  reason String,
  success UInt8,
  {SOURCE}
) ENGINE = ReplacingMergeTree(at_ns)
PARTITION BY toYYYYMM(time)
ORDER BY (id){ttl}",
        ttl = ttl(f, "time", days),
    )]
}

/// Issue 18: the scan job queue. `scan_status` keeps every transition;
/// `scan_jobs` is each job's latest; `scan_findings` is keyed by the
/// finding's id (the same finding from a retried job replaces itself: read
/// it with `FINAL` for exact counts); `scanner_states` the heartbeats.
fn scans(db: &str, f: &Features, days: u32) -> Vec<String> {
    let lc = lc(f);
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.scan_status (
  time DateTime,
  time_ns Int64,
  job_id String,
  object String,
  object_kind {lc},
  status {lc},
  attempt UInt32,
  scanner {lc},
  reason String,
  findings UInt64,
  bytes UInt64,
  {SOURCE}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (job_id, time_ns){ttl}",
            ttl = ttl(f, "time", days),
        ),
        format!(
            "CREATE VIEW IF NOT EXISTS {db}.scan_jobs AS
SELECT
  job_id,
  any(object) AS object,
  any(object_kind) AS object_kind,
  argMax(status, time_ns) AS status,
  max(attempt) AS attempts,
  argMax(scanner, time_ns) AS scanner,
  argMax(reason, time_ns) AS reason,
  argMax(findings, time_ns) AS findings,
  min(time_ns) AS created_ns,
  max(time_ns) AS updated_ns
FROM {db}.scan_status
GROUP BY job_id"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.scan_findings (
  time DateTime,
  time_ns Int64,
  finding_id String,
  job_id String,
  attempt UInt32,
  kind {lc},
  rule {lc},
  severity {lc},
  object String,
  location String,
  offset Int64,
  frame Int64,
  excerpt String,
  {SOURCE}
) ENGINE = ReplacingMergeTree(time_ns)
PARTITION BY toYYYYMM(time)
ORDER BY (finding_id){ttl}",
            ttl = ttl(f, "time", days),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.scanner_states (
  time DateTime,
  time_ns Int64,
  scanner {lc},
  status {lc},
  job_id String,
  finished UInt64,
  rules UInt64,
  {SOURCE}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (scanner, time_ns){ttl}",
            ttl = ttl(f, "time", days),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_decide_the_extras() {
        let old = Features::from_version("18.16.1").expect("18.16");
        assert!(!old.ttl && !old.low_cardinality && !old.ip_types);
        let new = Features::from_version("24.8.4.13").expect("24.8");
        assert!(new.ttl && new.low_cardinality && new.ip_types);
        assert!(Features::from_version("nightly").is_err());

        let ddl_old = initial("db", &old, 30).join("\n");
        assert!(!ddl_old.contains("LowCardinality") && !ddl_old.contains("TTL"));
        assert!(!ddl_old.contains("IPv6"));
        let ddl_new = initial("db", &new, 30).join("\n");
        assert!(ddl_new.contains("mode LowCardinality(String)"));
        assert!(ddl_new.contains("TTL minute + INTERVAL 30 DAY"));
        assert!(ddl_new.contains("src_ip6 IPv6 MATERIALIZED toIPv6(src_ip)"));
        assert!(
            !initial("db", &new, 0).join("\n").contains("TTL"),
            "0 keeps rows"
        );
        let beats_old = agent_heartbeats("db", &old, 30).join("\n");
        assert!(!beats_old.contains("LowCardinality") && !beats_old.contains("TTL"));
        assert!(agent_heartbeats("db", &new, 30)[0].contains("TTL time + INTERVAL 30 DAY"));
    }
}
