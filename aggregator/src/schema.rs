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
//!
//! # On a cluster
//!
//! With `aggregate.cluster` set ([`migrate_on`] with a cluster), the same
//! migrations make the tables on every server of that cluster (a name in the
//! servers' `remote_servers`); unset, the DDL is exactly the single-server
//! DDL above. On a cluster:
//!
//! - Every statement runs `ON CLUSTER <cluster>` (the database too), so the
//!   servers need ZooKeeper (or ClickHouse Keeper) and a `distributed_ddl`
//!   section, and every server must be up while migrations run: an
//!   `ON CLUSTER` statement waits for all of them (up to the server's
//!   `distributed_ddl_task_timeout`, 180 s by default).
//! - Each `MergeTree`-family table `<t>` is made as `<t>_local`, a
//!   `Replicated*MergeTree` with the original engine's parameters after
//!   `('/clickhouse/tables/{shard}/<db>/<t>_local', '{replica}')`, and a
//!   `Distributed(<cluster>, <db>, <t>_local, src_partition)` table `<t>`
//!   over it (sharded by [`SHARDING_KEY`]), so the sink, `serve` and the
//!   analysts' queries keep using `<t>`. The `{shard}` and `{replica}`
//!   macros come from each server's `macros` section; the cluster's shards
//!   need `<internal_replication>true</internal_replication>` (the replicas
//!   copy the data themselves; `Distributed` writes one replica per shard).
//! - Plain views (`scan_jobs`) are made `ON CLUSTER` as they are: they read
//!   the `Distributed` names, so each aggregates over every shard. A
//!   materialized view has no cluster form here: it would have to read the
//!   local table (an insert triggers it on the shard that stores the rows)
//!   and write a replicated local target under a `Distributed` of its own;
//!   migrating one on a cluster fails ([`SchemaError::NoClusterForm`])
//!   until that is written.
//! - A column a migration adds goes to `<t>_local` (`ALTER ... ON CLUSTER`,
//!   which ClickHouse runs once per shard and replicates), and `<t>` is
//!   dropped and made again over it: ClickHouse 18.16 refuses `ALTER ...
//!   ON CLUSTER` of a `Distributed` table on shards with
//!   `internal_replication` ("Table t isn't replicated, but shard #2 is
//!   replicated according to its cluster definition"). A `Distributed`
//!   table holds no rows of its own, so nothing is lost (with synchronous
//!   inserts, below, nothing waits in its queue); inserts and reads fail
//!   for that moment (the sink retries).
//! - The bookkeeping table `schema_migrations` is one
//!   `ReplicatedMergeTree` with every server of the cluster as a replica
//!   (`'/clickhouse/tables/all/<db>/schema_migrations'`, replica
//!   `'{shard}-{replica}'`), not sharded: each server holds every applied
//!   version, so an aggregator connected to any of them sees the same
//!   schema version. A database is made for one layout: migrating a
//!   single-server database with a cluster, or a cluster's database
//!   without one, fails ([`SchemaError::Layout`]) rather than mixing them.
//!
//! The sharding key is what keeps replays skipped per shard. The sink's
//! marks are `max(src_offset)` per `src_partition` of a table, and they say
//! what a table holds only if a batch's rows of one partition are written
//! all or not at all. `Distributed` splits an insert into one insert per
//! shard; sharded by `src_partition`, all rows of one Kafka partition in a
//! batch go to one shard in one insert, which that shard writes
//! atomically, so a partly failed batch leaves each partition either
//! written or not, and the marks read through `<t>` (the maximum over the
//! shards) stay exact. Adding shards later moves partitions to other shards
//! but keeps each partition's batch in one insert. Sharded any other way
//! (e.g. `rand()`), a failure on one shard would leave a partition's mark
//! above rows that were never written, and the replay would skip them.
//!
//! An insert into a `Distributed` table is asynchronous by default: rows
//! for other shards are queued on disk and sent later, so the insert
//! returns before they are readable, and a mark read after a restart would
//! miss them (the replay writes them twice). The sink's client must set
//! `insert_distributed_sync = 1`: the insert returns when every shard has
//! written its part (or fails). With more than one replica per shard, also
//! `insert_quorum` (the number of replicas), so a mark read from any replica
//! includes every acknowledged insert.
//!
//! Readers: `ReplacingMergeTree` replaces rows within one shard only, and
//! the readers take the newest copy with `argMax` over all shards, not
//! relying on merges. A reader's `IN (SELECT ... FROM <t>)` over a
//! `Distributed` `<t>` (the latest inventory snapshot per sensor) is refused
//! by default ("Double-distributed IN/JOIN subqueries is denied"); with
//! `distributed_product_mode = 'global'` on the reader's client it runs
//! once over all shards, which is what those queries mean.

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
    /// A migration statement has no cluster form (see the module doc).
    #[error("migration {version}: no cluster form for {statement:?}")]
    NoClusterForm {
        /// Its version.
        version: u32,
        /// The statement's first line.
        statement: String,
    },
    /// The server at the URL cannot make tables on `cluster`.
    #[error("cluster {cluster:?}: {reason}")]
    Cluster {
        /// The cluster name (`aggregate.cluster`).
        cluster: String,
        /// What is missing.
        reason: String,
    },
    /// The database was made for the other layout (one server or a
    /// cluster) than the one asked for.
    #[error("database {database}: {reason}")]
    Layout {
        /// The database.
        database: String,
        /// What it is and what was asked.
        reason: String,
    },
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

/// Creates the database and applies the pending migrations on one server.
/// Returns the server's features and the versions applied now.
pub async fn migrate(
    client: &Client,
    db: &str,
    retention_days: u32,
) -> Result<(Features, Vec<u32>), SchemaError> {
    migrate_on(client, db, retention_days, None).await
}

/// [`migrate`], on every server of `cluster` when one is given (see the
/// module doc); `client` talks to any one of them.
pub async fn migrate_on(
    client: &Client,
    db: &str,
    retention_days: u32,
    cluster: Option<&str>,
) -> Result<(Features, Vec<u32>), SchemaError> {
    let layout = match cluster {
        Some(name) => Layout::Cluster(name),
        None => Layout::Server,
    };
    let f = features(client).await?;
    if let Layout::Cluster(name) = layout {
        check_cluster(client, name).await?;
    }
    client.query(&layout.create_database(db)).execute().await?;
    check_layout(client, db, layout).await?;
    client.query(&layout.bookkeeping(db)).execute().await?;
    let applied: Vec<u32> = client
        .query(&format!(
            "SELECT DISTINCT version FROM {db}.schema_migrations ORDER BY version"
        ))
        .fetch_all()
        .await?;
    let mut now_applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let mut statements = layout.statements(m, db, &f, retention_days)?;
        let mut missing = Vec::new();
        let mut stale = Vec::new();
        for &(table, column, definition) in m.add_columns {
            if !has_column(client, db, &layout.stored(table), column).await? {
                missing.push((table, column, definition));
            }
            if let Layout::Cluster(_) = layout
                && !stale.contains(&table)
                && !has_column(client, db, table, column).await?
            {
                stale.push(table);
            }
        }
        statements.extend(layout.add_columns(db, &missing, &stale));
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
            cluster = cluster.unwrap_or_default(),
            "migration applied"
        );
        now_applied.push(m.version);
    }
    Ok((f, now_applied))
}

async fn has_column(
    client: &Client,
    db: &str,
    table: &str,
    column: &str,
) -> Result<bool, SchemaError> {
    let present: u64 = client
        .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
        .bind(db)
        .bind(table)
        .bind(column)
        .fetch_one()
        .await?;
    Ok(present > 0)
}

/// The server knows `cluster` and has the macros the table paths use.
async fn check_cluster(client: &Client, cluster: &str) -> Result<(), SchemaError> {
    let bad = |reason: &str| SchemaError::Cluster {
        cluster: cluster.to_owned(),
        reason: reason.to_owned(),
    };
    let hosts: u64 = client
        .query("SELECT count() FROM system.clusters WHERE cluster = ?")
        .bind(cluster)
        .fetch_one()
        .await?;
    if hosts == 0 {
        return Err(bad("not in the remote_servers of the server at the URL"));
    }
    let macros: u64 = client
        .query("SELECT count() FROM system.macros WHERE macro IN ('shard', 'replica')")
        .fetch_one()
        .await?;
    if macros < 2 {
        return Err(bad(
            "the server at the URL lacks the {shard} and {replica} macros (its <macros> section)",
        ));
    }
    Ok(())
}

/// `schema_migrations`, when it exists, says which layout the database was
/// made for: it must be the one asked for.
async fn check_layout(client: &Client, db: &str, layout: Layout<'_>) -> Result<(), SchemaError> {
    let engines: Vec<String> = client
        .query("SELECT engine FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
        .bind(db)
        .fetch_all()
        .await?;
    let Some(engine) = engines.first() else {
        return Ok(());
    };
    let replicated = engine.starts_with("Replicated");
    let reason = match layout {
        Layout::Cluster(name) if !replicated => format!(
            "made on one server (schema_migrations is not replicated); \
             it cannot be migrated on cluster {name}: make the tables in a new database"
        ),
        Layout::Server if replicated => "made on a cluster (schema_migrations is replicated); \
             set aggregate.cluster to that cluster"
            .to_owned(),
        _ => return Ok(()),
    };
    Err(SchemaError::Layout {
        database: db.to_owned(),
        reason,
    })
}

/// Where the tables are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout<'a> {
    /// One server, plain `MergeTree` tables.
    Server,
    /// Every server of the named cluster (see the module doc).
    Cluster(&'a str),
}

/// The column every `Distributed` table shards by: the Kafka partition a
/// row came from, so one partition's rows of a batch are one insert on one
/// shard (see the module doc).
pub const SHARDING_KEY: &str = "src_partition";

/// The table on each server under the `Distributed` table `table`.
pub fn local_table(table: &str) -> String {
    format!("{table}_local")
}

impl Layout<'_> {
    /// ` ON CLUSTER <name>`, or nothing.
    fn on(&self) -> String {
        match self {
            Layout::Server => String::new(),
            Layout::Cluster(name) => format!(" ON CLUSTER {name}"),
        }
    }

    fn create_database(&self, db: &str) -> String {
        format!("CREATE DATABASE IF NOT EXISTS {db}{}", self.on())
    }

    /// The table of applied versions: on a cluster, one replicated table
    /// with every server a replica (not sharded).
    fn bookkeeping(&self, db: &str) -> String {
        let engine = match self {
            Layout::Server => "MergeTree()".to_owned(),
            Layout::Cluster(_) => format!(
                "ReplicatedMergeTree('/clickhouse/tables/all/{db}/schema_migrations', '{{shard}}-{{replica}}')"
            ),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations{on} (
  version UInt32, description String, applied_at DateTime
) ENGINE = {engine} ORDER BY version",
            on = self.on()
        )
    }

    /// The table that stores `table`'s rows on each server.
    fn stored(&self, table: &str) -> String {
        match self {
            Layout::Server => table.to_owned(),
            Layout::Cluster(_) => local_table(table),
        }
    }

    /// `m`'s statements.
    fn statements(
        &self,
        m: &Migration,
        db: &str,
        f: &Features,
        days: u32,
    ) -> Result<Vec<String>, SchemaError> {
        let statements = (m.statements)(db, f, days);
        let Layout::Cluster(cluster) = *self else {
            return Ok(statements);
        };
        let mut out = Vec::new();
        for statement in statements {
            out.extend(on_cluster(&statement, db, cluster).ok_or_else(|| {
                SchemaError::NoClusterForm {
                    version: m.version,
                    statement: statement.lines().next().unwrap_or_default().to_owned(),
                }
            })?);
        }
        Ok(out)
    }

    /// Adds the `missing` columns (table, column, type and default) to the
    /// tables that store rows; on a cluster, then makes the `Distributed`
    /// tables of `stale` again over their local tables.
    fn add_columns(&self, db: &str, missing: &[(&str, &str, &str)], stale: &[&str]) -> Vec<String> {
        let on = self.on();
        let mut out: Vec<String> = missing
            .iter()
            .map(|(table, column, definition)| {
                format!(
                    "ALTER TABLE {db}.{}{on} ADD COLUMN {column} {definition}",
                    self.stored(table)
                )
            })
            .collect();
        if let Layout::Cluster(cluster) = *self {
            for table in stale {
                out.push(format!("DROP TABLE IF EXISTS {db}.{table}{on}"));
                out.push(distributed(db, table, cluster));
            }
        }
        out
    }
}

/// The `Distributed` table `table` over its local tables on `cluster`.
fn distributed(db: &str, table: &str, cluster: &str) -> String {
    let local = local_table(table);
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {cluster} AS {db}.{local}
ENGINE = Distributed({cluster}, {db}, {local}, {SHARDING_KEY})"
    )
}

/// One migration statement made on `cluster`: a `MergeTree`-family table
/// becomes its replicated local table and a `Distributed` table over it; a
/// plain view gets `ON CLUSTER`. `None` for any other statement (it has no
/// cluster form yet).
fn on_cluster(statement: &str, db: &str, cluster: &str) -> Option<Vec<String>> {
    let on = format!(" ON CLUSTER {cluster}");
    if let Some(rest) = statement.strip_prefix(&format!("CREATE VIEW IF NOT EXISTS {db}.")) {
        let (name, select) = rest.split_once(" AS\n")?;
        return Some(vec![format!(
            "CREATE VIEW IF NOT EXISTS {db}.{name}{on} AS\n{select}"
        )]);
    }
    let rest = statement.strip_prefix(&format!("CREATE TABLE IF NOT EXISTS {db}."))?;
    let (name, body) = rest.split_once(" (\n")?;
    let (columns, after) = body.split_once("\n) ENGINE = ")?;
    let (engine, params) = after.split_once('(')?;
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return None;
    }
    let (params, settings) = params.split_once(')')?;
    if params.contains('(') {
        return None;
    }
    let local = local_table(name);
    let path = format!("'/clickhouse/tables/{{shard}}/{db}/{local}', '{{replica}}'");
    let params = if params.is_empty() {
        path
    } else {
        format!("{path}, {params}")
    };
    Some(vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{local}{on} (\n{columns}\n) ENGINE = Replicated{engine}({params}){settings}"
        ),
        distributed(db, name, cluster),
    ])
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

    /// Every migration's statements for both server generations.
    fn all_statements(layout: Layout<'_>, f: &Features) -> Vec<String> {
        MIGRATIONS
            .iter()
            .flat_map(|m| layout.statements(m, "db", f, 30).expect("a cluster form"))
            .collect()
    }

    fn generations() -> [Features; 2] {
        [
            Features::from_version("18.16.1").expect("18.16"),
            Features::from_version("24.8.4.13").expect("24.8"),
        ]
    }

    #[test]
    fn without_a_cluster_the_ddl_is_unchanged() {
        let server = Layout::Server;
        assert_eq!(
            server.create_database("db"),
            "CREATE DATABASE IF NOT EXISTS db"
        );
        assert_eq!(
            server.bookkeeping("db"),
            "CREATE TABLE IF NOT EXISTS db.schema_migrations (
  version UInt32, description String, applied_at DateTime
) ENGINE = MergeTree() ORDER BY version"
        );
        for f in generations() {
            for m in MIGRATIONS {
                assert_eq!(
                    server.statements(m, "db", &f, 30).expect("server"),
                    (m.statements)("db", &f, 30),
                    "migration {}",
                    m.version
                );
            }
        }
        assert_eq!(
            server.add_columns(
                "db",
                &[
                    ("verdicts", "side", "Array(String)"),
                    ("verdicts", "src_edge", "String DEFAULT ''"),
                ],
                &["verdicts"],
            ),
            [
                "ALTER TABLE db.verdicts ADD COLUMN side Array(String)",
                "ALTER TABLE db.verdicts ADD COLUMN src_edge String DEFAULT ''",
            ]
        );
        assert_eq!(server.stored("verdicts"), "verdicts");
    }

    #[test]
    fn on_a_cluster_every_statement_runs_on_it() {
        let cluster = Layout::Cluster("tw");
        assert_eq!(
            cluster.create_database("db"),
            "CREATE DATABASE IF NOT EXISTS db ON CLUSTER tw"
        );
        for f in generations() {
            for statement in all_statements(cluster, &f) {
                let first = statement.lines().next().expect("a line");
                assert!(
                    first.starts_with("CREATE TABLE IF NOT EXISTS db.")
                        || first.starts_with("CREATE VIEW IF NOT EXISTS db."),
                    "{first}"
                );
                let name = first.split(' ').nth(5).expect("a name");
                assert!(first.contains(&format!("{name} ON CLUSTER tw ")), "{first}");
            }
        }
        let added = cluster.add_columns(
            "db",
            &[
                ("network_events", "counted", "UInt8 DEFAULT 0"),
                ("network_events", "src_domain", "String DEFAULT ''"),
            ],
            &["network_events"],
        );
        assert_eq!(
            added,
            [
                "ALTER TABLE db.network_events_local ON CLUSTER tw ADD COLUMN counted UInt8 DEFAULT 0",
                "ALTER TABLE db.network_events_local ON CLUSTER tw ADD COLUMN src_domain String DEFAULT ''",
                "DROP TABLE IF EXISTS db.network_events ON CLUSTER tw",
                "CREATE TABLE IF NOT EXISTS db.network_events ON CLUSTER tw AS db.network_events_local
ENGINE = Distributed(tw, db, network_events_local, src_partition)",
            ],
            "columns go to the local table, then the Distributed table is made again over it"
        );
        assert_eq!(cluster.stored("verdicts"), "verdicts_local");
    }

    #[test]
    fn each_table_is_replicated_under_a_distributed_table_sharded_by_partition() {
        for f in generations() {
            let single = all_statements(Layout::Server, &f);
            let clustered = all_statements(Layout::Cluster("tw"), &f);
            let mut out = clustered.iter();
            let mut tables = Vec::new();
            for statement in &single {
                let first = statement.lines().next().expect("a line");
                if first.starts_with("CREATE VIEW") {
                    let view = out.next().expect("the view");
                    assert_eq!(
                        view.replacen(" ON CLUSTER tw AS\n", " AS\n", 1),
                        *statement,
                        "a view is the same view on the cluster"
                    );
                    assert!(
                        !view.contains("_local"),
                        "views read the Distributed tables"
                    );
                    continue;
                }
                let name = first
                    .strip_prefix("CREATE TABLE IF NOT EXISTS db.")
                    .and_then(|r| r.strip_suffix(" ("))
                    .expect("a table");
                let (columns, engine) = statement.split_once("\n) ENGINE = ").expect("engine");
                let (engine, rest) = engine.split_once('(').expect("params");
                let (params, clauses) = rest.split_once(')').expect("params end");
                assert!(columns.contains("\n  src_partition UInt32,"), "{name}");

                let local = out.next().expect("the local table");
                let path = format!("'/clickhouse/tables/{{shard}}/db/{name}_local', '{{replica}}'");
                let params = if params.is_empty() {
                    path
                } else {
                    format!("{path}, {params}")
                };
                assert_eq!(
                    *local,
                    format!(
                        "{}\n) ENGINE = Replicated{engine}({params}){clauses}",
                        columns.replacen(
                            &format!("db.{name} ("),
                            &format!("db.{name}_local ON CLUSTER tw ("),
                            1
                        )
                    ),
                    "the same columns, partitioning, order and TTL, replicated"
                );
                assert_eq!(
                    *out.next().expect("the Distributed table"),
                    format!(
                        "CREATE TABLE IF NOT EXISTS db.{name} ON CLUSTER tw AS db.{name}_local
ENGINE = Distributed(tw, db, {name}_local, src_partition)"
                    )
                );
                tables.push(name.to_owned());
            }
            assert!(out.next().is_none(), "nothing more");
            for table in crate::sink::TABLES {
                assert!(tables.iter().any(|t| t == table), "{table} is distributed");
            }
            let ddl = clustered.join("\n");
            assert!(ddl.contains(
                "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/connection_counts_local', '{replica}')\n"
            ));
            assert!(ddl.contains(
                "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/scan_findings_local', '{replica}', time_ns)\n"
            ));
            assert!(ddl.contains("FROM db.scan_status\nGROUP BY job_id"));
            assert_eq!(ddl.contains("TTL time + INTERVAL 30 DAY"), f.ttl);
        }
    }

    #[test]
    fn the_bookkeeping_table_is_on_every_server_of_the_cluster() {
        assert_eq!(
            Layout::Cluster("tw").bookkeeping("db"),
            "CREATE TABLE IF NOT EXISTS db.schema_migrations ON CLUSTER tw (
  version UInt32, description String, applied_at DateTime
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/db/schema_migrations', '{shard}-{replica}') ORDER BY version"
        );
    }

    #[test]
    fn statements_without_a_cluster_form_are_refused() {
        for statement in [
            "CREATE MATERIALIZED VIEW IF NOT EXISTS db.per_minute\nENGINE = SummingMergeTree() ORDER BY minute AS\nSELECT 1",
            "CREATE TABLE IF NOT EXISTS db.scratch (\n  x UInt8\n) ENGINE = Log",
            "CREATE TABLE IF NOT EXISTS db.r (\n  x UInt8\n) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY x",
            "CREATE TABLE IF NOT EXISTS db.n (\n  x UInt8\n) ENGINE = ReplacingMergeTree(tuple(x)) ORDER BY x",
        ] {
            assert_eq!(on_cluster(statement, "db", "tw"), None, "{statement}");
        }
        let m = Migration {
            version: 99,
            description: "a materialized view",
            statements: |db, _, _| {
                vec![format!(
                    "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.mv AS\nSELECT 1"
                )]
            },
            add_columns: &[],
        };
        let f = Features::from_version("18.16.1").expect("18.16");
        assert!(matches!(
            Layout::Cluster("tw").statements(&m, "db", &f, 30),
            Err(SchemaError::NoClusterForm { version: 99, .. })
        ));
        assert!(Layout::Server.statements(&m, "db", &f, 30).is_ok());
    }
}
