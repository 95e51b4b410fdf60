//! `tapwire aggregate`: the stage ([`AggregateConfig`] declares it: its
//! topics in, ClickHouse out; the schema is migrated when it is built) and
//! its batch handler, which turns a batch of verdicts, inventory snapshots
//! and agent heartbeats into one `INSERT` per table.
//!
//! Delivery: the loop stores a batch's offsets only after every insert of the
//! batch succeeded; while ClickHouse is down the handler reports a transient
//! failure and the loop retries the same batch with backoff, so consumption
//! pauses and nothing is lost.
//!
//! Duplicates: a replay (after a crash between an insert and the offset
//! commit, or a retry after a partial failure) must not inflate counts.
//! Every row carries the Kafka partition and offset it came from, and one
//! `INSERT` is atomic in ClickHouse, so `max(src_offset)` per partition in a
//! table is exactly what that table holds. The handler knows these marks
//! per table and skips messages at or below them: it reads them from
//! ClickHouse whenever a partition's offsets do not continue where they left
//! off (a start, a rebalance, a rewind) and advances them after each insert.
//! Rows are therefore written once per table, with no reliance on background
//! merges. The mark assumes one verdicts topic, one inventory topic and one
//! agents topic per database. On a ClickHouse cluster the same holds per
//! shard: rows are sharded by their Kafka partition, so a partition's rows
//! of a batch are one insert on one shard (see [`crate::schema`]).

use std::collections::HashMap;
use std::time::Duration;

use clickhouse::{Client, Row};
use serde::Serialize;
use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::{BatchHandler, HandlerError, LoopSettings};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::stage::{BoxError, BuildContext, Stage};
use tapwire_schemas::codec::{decode_verdict_view, is_current};
use tapwire_schemas::events::VerdictView;
use tapwire_schemas::{AnyEvent, SchemaKind, decode_any};

use crate::AggregateConfig;

use crate::rows::{
    CountRow, Counts, EventRows, FlowRow, NetworkEventRow, RuntimeRow, VerdictRow, heartbeat_row,
    loss_row, pod_row, socket_rows,
};

/// The tables the handler writes, in insert order.
pub const TABLES: [&str; 14] = [
    "connection_counts",
    "network_events",
    "flows",
    "verdicts",
    "runtime_events",
    "inventory_sockets",
    "agent_heartbeats",
    "pods",
    "losses",
    "api_requests",
    "scan_status",
    "scan_findings",
    "scanner_states",
    "scan_events",
];

/// Rows written per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// Events that counted as connections.
    pub connections_counted: u64,
    /// Rows per table, in [`TABLES`] order.
    pub rows: [u64; 14],
    /// Loss records seen (passed on by the policy stage).
    pub loss_records: u64,
}

/// The aggregate handler.
pub struct AggregateStage {
    client: Client,
    /// Per table: partition -> highest offset the table holds.
    marks: Vec<HashMap<u32, u64>>,
    /// `(topic, partition)` -> the next offset expected.
    next: HashMap<String, HashMap<i32, i64>>,
    written: Written,
}

/// `client` with the database selected, no compression, no validation.
///
/// On a cluster (`aggregate.cluster`) an insert into a `Distributed` table
/// returns once every shard wrote its part (`insert_distributed_sync`), so
/// one insert per shard is as atomic as on one server, and reads of
/// distributed tables inside `IN`/`JOIN` go to each shard once
/// (`distributed_product_mode`); both are no-ops on a single server.
pub fn client(url: &str, database: &str, user: &str, password: &str) -> Client {
    Client::default()
        .with_url(url)
        .with_user(user)
        .with_password(password)
        .with_database(database)
        .with_validation(false)
        .with_setting("insert_distributed_sync", "1")
        .with_setting("distributed_product_mode", "global")
}

impl Stage for AggregateConfig {
    type Handler = AggregateStage;

    fn name(&self) -> &'static str {
        "aggregate"
    }

    fn group(&self) -> String {
        self.group.clone()
    }

    fn inputs(&self) -> Vec<String> {
        self.topics.clone()
    }

    /// One insert per table per batch: the batch size and linger are the
    /// section's own.
    fn loop_settings(&self, base: LoopSettings) -> LoopSettings {
        LoopSettings {
            batch_max_messages: self.batch_max_messages,
            batch_linger: Duration::from_millis(self.flush_interval_ms),
            ..base
        }
    }

    async fn build(self, cx: &BuildContext) -> Result<AggregateStage, BoxError> {
        self.validate()?;
        migrate(&self, &cx.stage.shutdown).await?;
        tracing::info!(url = %self.clickhouse_url, database = %self.database, group = %self.group,
            "aggregating into ClickHouse");
        Ok(AggregateStage::new(client(
            &self.clickhouse_url,
            &self.database,
            &self.user,
            &self.password,
        )))
    }
}

/// Why the schema could not be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Shutdown came before ClickHouse answered.
    #[error("stopped before ClickHouse at {0} answered")]
    Stopped(String),
    /// The migration itself failed.
    #[error("migrating the ClickHouse schema: {0}")]
    Schema(#[from] crate::schema::SchemaError),
}

/// Applies the migrations, retrying while ClickHouse is not up yet.
pub async fn migrate(
    a: &AggregateConfig,
    shutdown: &CancellationToken,
) -> Result<(), MigrateError> {
    let admin = Client::default()
        .with_url(&a.clickhouse_url)
        .with_user(&a.user)
        .with_password(&a.password)
        .with_validation(false);
    let mut delay = Duration::from_millis(500);
    loop {
        match crate::schema::migrate_on(&admin, &a.database, a.retention_days, a.cluster.as_deref())
            .await
        {
            Ok((features, applied)) => {
                tracing::info!(version = ?features.version, ?applied, database = %a.database,
                    "ClickHouse schema up to date");
                return Ok(());
            }
            Err(crate::schema::SchemaError::ClickHouse(err)) => {
                tracing::warn!(error = %err, url = %a.clickhouse_url,
                    "ClickHouse not reachable yet; retrying");
            }
            Err(err) => return Err(err.into()),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(MigrateError::Stopped(a.clickhouse_url.clone())),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

fn transient(what: &str, err: clickhouse::error::Error) -> HandlerError {
    HandlerError::Transient(format!("ClickHouse {what}: {err}"))
}

impl AggregateStage {
    /// A handler writing through `client` (its database selected; the
    /// schema migrated).
    pub fn new(client: Client) -> Self {
        AggregateStage {
            client,
            marks: vec![HashMap::new(); TABLES.len()],
            next: HashMap::new(),
            written: Written::default(),
        }
    }

    /// Rows written so far.
    pub fn written(&self) -> &Written {
        &self.written
    }

    async fn refresh_marks(&mut self) -> Result<(), HandlerError> {
        #[derive(Row, serde::Deserialize)]
        struct Mark {
            partition: u32,
            offset: u64,
        }
        for (i, table) in TABLES.iter().enumerate() {
            let marks: Vec<Mark> = self
                .client
                .query(&format!(
                    "SELECT src_partition AS partition, max(src_offset) AS offset \
                     FROM {table} GROUP BY src_partition"
                ))
                .fetch_all()
                .await
                .map_err(|e| transient("reading insert marks", e))?;
            self.marks[i] = marks.into_iter().map(|m| (m.partition, m.offset)).collect();
        }
        Ok(())
    }

    /// Whether table `t` already holds the message at `partition`/`offset`.
    fn holds(&self, t: usize, partition: u32, offset: u64) -> bool {
        self.marks[t].get(&partition).is_some_and(|&m| offset <= m)
    }

    async fn insert<T>(&mut self, t: usize, rows: Vec<T>) -> Result<(), HandlerError>
    where
        T: Row + Serialize + for<'a> Row<Value<'a> = T> + clickhouse::RowWrite + Send + Sync,
        T: HasSource,
    {
        write::<T>(&self.client, t, &rows).await?;
        self.inserted(t, &rows);
        Ok(())
    }

    /// Advances table `t`'s marks past `rows`, once they are written.
    fn inserted<T: HasSource>(&mut self, t: usize, rows: &[T]) {
        for row in rows {
            let (p, o) = row.source();
            let mark = self.marks[t].entry(p).or_insert(o);
            *mark = (*mark).max(o);
        }
        self.written.rows[t] += rows.len() as u64;
    }
}

/// One `INSERT` of `rows` into table `t` (RowBinary; nothing when there
/// are no rows). `T` names the row type; the rows may borrow (`T::Value`).
async fn write<T>(client: &Client, t: usize, rows: &[T::Value<'_>]) -> Result<(), HandlerError>
where
    T: Row + clickhouse::RowWrite,
    for<'b> T::Value<'b>: Sync,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = client
        .insert::<T>(TABLES[t])
        .await
        .map_err(|e| transient("insert", e))?;
    for row in rows {
        insert
            .write(row)
            .await
            .map_err(|e| transient("insert", e))?;
    }
    insert.end().await.map_err(|e| transient("insert", e))
}

impl AggregateStage {
    /// Counts `v` and adds its per-event rows, to the tables that do not
    /// hold its position yet.
    fn verdict_rows<'a>(
        &self,
        v: &VerdictView<'a>,
        p: u32,
        o: u64,
        counts: &mut Counts,
        events: &mut EventRows<'a>,
    ) {
        if !self.holds(0, p, o) {
            counts.add(v, p, o);
        }
        // Every per-event table is written in one go, so their marks move
        // together; after a replay, check each anyway.
        if (1..=4).all(|t| !self.holds(t, p, o)) {
            events.add(v, p, o);
            return;
        }
        let mut rows = EventRows::default();
        rows.add(v, p, o);
        if !self.holds(1, p, o) {
            events.network.append(&mut rows.network);
        }
        if !self.holds(2, p, o) {
            events.flows.append(&mut rows.flows);
        }
        if !self.holds(3, p, o) {
            events.verdicts.append(&mut rows.verdicts);
        }
        if !self.holds(4, p, o) {
            events.runtime.append(&mut rows.runtime);
        }
    }
}

/// Rows of the scan topics in one batch.
#[derive(Default)]
struct ScanRows {
    status: Vec<crate::rows::ScanStatusRow>,
    findings: Vec<crate::rows::ScanFindingRow>,
    scanners: Vec<crate::rows::ScannerRow>,
    events: Vec<crate::rows::ScanEventRow>,
}

impl AggregateStage {
    /// A message of a scan topic (JSON) to its row, unless the table holds
    /// it already.
    fn scan_row(&self, m: &Message, rows: &mut ScanRows) -> Result<(), String> {
        use tapwire_schemas::scan::{FindingRecord, ScannerState, StatusChange};
        use tapwire_schemas::topics::{SCAN_EVENTS, SCAN_FINDINGS, SCAN_SCANNERS, SCAN_STATUS};
        let (p, o) = (m.partition as u32, m.offset as u64);
        let bad = |e: serde_json::Error| format!("{}: not a scan message: {e}", m.topic);
        match m.topic.as_str() {
            SCAN_STATUS => {
                let change: StatusChange = serde_json::from_slice(&m.payload).map_err(bad)?;
                if !self.holds(10, p, o) {
                    rows.status
                        .push(crate::rows::scan_status_row(&change, p, o));
                }
            }
            SCAN_FINDINGS => {
                let record: FindingRecord = serde_json::from_slice(&m.payload).map_err(bad)?;
                if !self.holds(11, p, o) {
                    rows.findings
                        .push(crate::rows::scan_finding_row(&record, p, o));
                }
            }
            SCAN_SCANNERS => {
                let state: ScannerState = serde_json::from_slice(&m.payload).map_err(bad)?;
                if !self.holds(12, p, o) {
                    rows.scanners.push(crate::rows::scanner_row(&state, p, o));
                }
            }
            SCAN_EVENTS => {
                let event: tapwire_schemas::scan::ScanEvent =
                    serde_json::from_slice(&m.payload).map_err(bad)?;
                if !self.holds(13, p, o) {
                    rows.events.push(crate::rows::scan_event_row(&event, p, o));
                }
            }
            other => return Err(format!("{other}: aggregate does not store this scan topic")),
        }
        Ok(())
    }
}

/// Where a row came from in Kafka.
pub trait HasSource {
    /// `(partition, offset)`.
    fn source(&self) -> (u32, u64);
}

macro_rules! has_source {
    ($($t:ty),*) => {$(
        impl HasSource for $t {
            fn source(&self) -> (u32, u64) {
                (self.src_partition, self.src_offset)
            }
        }
    )*};
}
has_source!(
    crate::rows::CountRow,
    crate::rows::NetworkEventRow<'_>,
    crate::rows::FlowRow<'_>,
    crate::rows::VerdictRow<'_>,
    crate::rows::RuntimeRow<'_>,
    crate::rows::SocketRow,
    crate::rows::HeartbeatRow,
    crate::rows::PodRow,
    crate::rows::LossRow,
    crate::rows::ApiRow,
    crate::rows::ScanStatusRow,
    crate::rows::ScanFindingRow,
    crate::rows::ScannerRow,
    crate::rows::ScanEventRow
);

impl BatchHandler for AggregateStage {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        // A partition that does not continue where it left off: read what
        // the tables hold before deciding what to skip.
        let mut jumped = false;
        for m in batch {
            // A topic's name is copied once, when it is first seen.
            let partitions = match self.next.get_mut(m.topic.as_str()) {
                Some(p) => p,
                None => self.next.entry(m.topic.clone()).or_default(),
            };
            let expected = partitions.insert(m.partition, m.offset + 1);
            jumped |= expected != Some(m.offset);
        }
        if jumped {
            self.refresh_marks().await?;
        }

        let mut rejections = Vec::new();
        // Verdicts of older schema versions, decoded owned: their rows
        // borrow from here, like the others' from the batch.
        let mut older = Vec::new();
        let mut counts = Counts::default();
        let mut events = EventRows::default();
        let mut sockets = Vec::new();
        let mut heartbeats = Vec::new();
        let mut pods = Vec::new();
        let mut losses = Vec::new();
        let mut api = Vec::new();
        let mut scans = ScanRows::default();
        for (index, m) in batch.iter().enumerate() {
            let (p, o) = (m.partition as u32, m.offset as u64);
            if m.topic.starts_with("tapwire.scan.") {
                if let Err(reason) = self.scan_row(m, &mut scans) {
                    rejections.push(Rejection {
                        index,
                        error: "bad_scan_message",
                        reason,
                    });
                }
                continue;
            }
            // Verdicts of the current version are read as borrowed views.
            if is_current(&m.payload, SchemaKind::Verdict) {
                match decode_verdict_view(&m.payload) {
                    Ok(v) => self.verdict_rows(&v, p, o, &mut counts, &mut events),
                    Err(err) => rejections.push(Rejection::undecodable(index, &err)),
                }
                continue;
            }
            match decode_any(&m.payload) {
                Ok(AnyEvent::Verdict(v)) => older.push((p, o, v)),
                Ok(AnyEvent::InventorySnapshot(inv)) => {
                    if !self.holds(5, p, o) {
                        sockets.extend(socket_rows(&inv, p, o));
                    }
                }
                Ok(AnyEvent::AgentHeartbeat(hb)) => {
                    if !self.holds(6, p, o) {
                        heartbeats.push(heartbeat_row(&hb, p, o));
                    }
                }
                Ok(AnyEvent::PodMetadata(pod)) => {
                    if !self.holds(7, p, o) {
                        pods.push(pod_row(&pod, p, o));
                    }
                }
                // Nodes and Services share the pod topic; the console's
                // pod detail needs only pods.
                Ok(AnyEvent::NodeMetadata(_) | AnyEvent::ServiceMetadata(_)) => {}
                Ok(AnyEvent::LossRecord(loss)) => {
                    // Passed along by the policy stage: what a hop lost, a
                    // row next to the events it concerns.
                    self.written.loss_records += 1;
                    if !self.holds(8, p, o) {
                        losses.push(loss_row(&loss, p, o));
                    }
                }
                Ok(AnyEvent::ApiRequest(r)) => {
                    if !self.holds(9, p, o) {
                        api.push(crate::rows::api_row(&r, p, o));
                    }
                }
                Ok(other) => rejections.push(Rejection::wrong_schema(
                    index,
                    "aggregate reads verdicts, inventory snapshots, agent heartbeats, pod records and API requests",
                    other.kind(),
                )),
                Err(err) => rejections.push(Rejection::undecodable(index, &err)),
            }
        }
        for (p, o, v) in &older {
            self.verdict_rows(&v.view(), *p, *o, &mut counts, &mut events);
        }
        self.written.connections_counted += counts.events;
        // The per-event tables and the counts are most of the rows: their
        // inserts run side by side. Marks move only once all succeeded; after
        // a failure the retried batch reads them from ClickHouse again, so
        // an insert that went through is not repeated.
        let counts = counts.rows();
        tokio::try_join!(
            write::<CountRow>(&self.client, 0, &counts),
            write::<NetworkEventRow<'static>>(&self.client, 1, &events.network),
            write::<FlowRow<'static>>(&self.client, 2, &events.flows),
            write::<VerdictRow<'static>>(&self.client, 3, &events.verdicts),
            write::<RuntimeRow<'static>>(&self.client, 4, &events.runtime),
        )?;
        self.inserted(0, &counts);
        self.inserted(1, &events.network);
        self.inserted(2, &events.flows);
        self.inserted(3, &events.verdicts);
        self.inserted(4, &events.runtime);
        self.insert(5, sockets).await?;
        self.insert(6, heartbeats).await?;
        self.insert(7, pods).await?;
        self.insert(8, losses).await?;
        self.insert(9, api).await?;
        self.insert(10, scans.status).await?;
        self.insert(11, scans.findings).await?;
        self.insert(12, scans.scanners).await?;
        self.insert(13, scans.events).await?;
        Ok(rejections)
    }

    fn report(&self) -> String {
        let w = &self.written;
        format!(
            "{} connections counted into {} rows, {} events, {} flows, {} verdicts, {} runtime events, {} inventory sockets, {} agent heartbeats, {} pod records, {} loss records, {} API requests, {} scan statuses, {} scan findings, {} scanner heartbeats, {} scan events",
            w.connections_counted,
            w.rows[0],
            w.rows[1],
            w.rows[2],
            w.rows[3],
            w.rows[4],
            w.rows[5],
            w.rows[6],
            w.rows[7],
            w.rows[8],
            w.rows[9],
            w.rows[10],
            w.rows[11],
            w.rows[12],
            w.rows[13]
        )
    }
}
