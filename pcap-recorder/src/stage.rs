//! The record stage: [`RecordConfig`] declares it (`tapwire.packets.raw`
//! in, KFL-matched streams out as PCAP slices with their indexes, uploaded
//! to the object store or spooled) and builds [`RecordHandler`], with pod
//! names from the cluster's owner index, fed by `tapwire.pods`.
//!
//! # Offsets and checkpoints (the at-least-once choice)
//!
//! A packet is "done" only when the slice holding it is stored (uploaded or
//! durably spooled), or when its stream ended without matching. Packets of
//! streams that are still open live only in memory, so a batch is not
//! durable when the handler returns; the handler tells the consumer loop
//! which batches are ([`BatchHandler::durable_batches`]) and the loop holds
//! the other batches' offsets back:
//!
//! - Every `checkpoint_interval` (the slice age), a **checkpoint** ends every
//!   open stream, closes every slice, and delivers them (upload, else a
//!   durable spool write, else a counted drop when the spool is full). Every
//!   batch handled before it is then durable.
//! - The loop's periodic tick ([`BatchHandler::tick`]) expires idle streams,
//!   retries the spool and takes the checkpoint when due, also while no
//!   packets arrive.
//! - Stopping is a checkpoint too ([`BatchHandler::finish`]), so a clean
//!   stop loses nothing and re-reads nothing.
//!
//! After a crash, at most one checkpoint interval of packets is read again
//! (their streams are recorded again; duplicates, never gaps). The price: a
//! stream longer than the interval is recorded in pieces, each matched on
//! its own (a piece that starts in the middle of an HTTP body may not match
//! `http`).
//!
//! # Scan jobs
//!
//! With `record.scan_slices` (the default), every slice that reaches the
//! store, directly or from the spool, becomes a scan job on
//! `tapwire.scan.jobs` (with its `Pending` status) for the scanners.
//!
//! # Bad input
//!
//! A message that is not an Avro `PacketRecord`, whose lengths disagree
//! with its bytes, or whose frame has an unsupported link type, a malformed
//! or truncated header goes to `tapwire.dlq` with the reason. Frames that are
//! fine but not recordable (ARP, ICMP, IP fragments) are counted by the
//! recorder (`tapwire_messages_dropped_total{reason="not_tcp_udp"}`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tapwire_cluster::OwnerIndex;
use tapwire_cluster::feed::ClusterFeed;
use tapwire_packet::PacketError;
use tapwire_plumbing::bus::{Message, OutRecord, Sink};
use tapwire_plumbing::consumer::{BatchHandler, HandlerError, decode_batch};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::stage::{BoxError, BuildContext, BusSink, Stage};
use tapwire_plumbing::telemetry::{Health, StageMetrics};
use tapwire_schemas::events::PacketRecord;
use tapwire_schemas::scan::{ScanJob, ScanObject};
use tapwire_schemas::topics;

use crate::config::RecordConfig;
use crate::recorder::{Recorder, RecorderError};
use crate::slice::FinishedSlice;
use crate::spool::{Delivery, Object, Spool, SpoolError, Uploader};
use crate::store::Store;

impl Stage for RecordConfig {
    type Handler = RecordHandler;

    fn name(&self) -> &'static str {
        "record"
    }

    fn group(&self) -> String {
        self.group.clone()
    }

    fn inputs(&self) -> Vec<String> {
        vec![topics::PACKETS_RAW.into()]
    }

    fn outputs(&self) -> Vec<String> {
        if self.scan_slices {
            vec![topics::SCAN_STATUS.into(), topics::SCAN_JOBS.into()]
        } else {
            Vec::new()
        }
    }

    /// Opens the store and the spool, compiles the queries, and loads the
    /// pod history from `tapwire.pods` before the first packet.
    async fn build(self, cx: &BuildContext) -> Result<RecordHandler, BoxError> {
        self.validate()?;
        let store = self.store().await?;
        let metrics = cx.stage.metrics.clone();
        let spool = Spool::open(&self.spool_dir, self.spool_max_bytes)
            .map_err(|e| format!("opening the spool {}: {e}", self.spool_dir.display()))?;
        let uploader = Uploader::new(store.clone(), spool, metrics.clone());
        let queries = self.current_queries()?;
        let recorder = if queries.is_empty() {
            tracing::warn!(
                "recording is off: no recording query (RECORDING_KFL, --kfl, [record.queries] \
                 or a NAME.kfl file in record.queries_dir); packets are read and not recorded"
            );
            Recorder::idle(self.recorder_config())
        } else {
            Recorder::new(self.recorder_config(), named(&queries))?
        };
        let health = cx.stage.health.clone();
        let shutdown = &cx.stage.shutdown;
        let mut feed = ClusterFeed::open(&cx.bus, shutdown.child_token())?;
        let mut pods = OwnerIndex::new(self.max_pods, self.max_owners_per_ip);
        let loaded = feed
            .load(
                |record| {
                    pods.apply_record(record);
                },
                shutdown,
            )
            .await?
            .ok_or("stopped before the pod metadata was loaded")?;
        tracing::info!(
            records = loaded,
            "pod metadata loaded from {}",
            topics::PODS
        );
        let shown: Vec<String> = queries.iter().map(|(n, q)| format!("{n}: {q}")).collect();
        tracing::info!(store = %store.describe(), prefix = %self.prefix, queries = ?shown,
            queries_dir = ?self.queries_dir, group = %self.group, "recording matching streams");
        let mut handler = RecordHandler::new(
            recorder,
            uploader,
            &self.prefix,
            Duration::from_millis(self.slice_max_age_ms),
            metrics,
        )
        .with_pods(pods, feed)
        .watching(self.queries.clone(), self.queries_dir.clone())
        .reporting_to(health);
        if self.scan_slices {
            handler.scans = Some(ScanQueue {
                sink: cx.output.clone(),
                waiting: Vec::new(),
            });
        }
        handler.tick_every = Duration::from_millis(
            self.spool_retry_interval_ms
                .min(self.slice_max_age_ms)
                .clamp(1, 1000),
        );
        Ok(handler)
    }
}

/// Stage failures that stop it.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The recorder could not write a slice.
    #[error(transparent)]
    Recorder(#[from] RecorderError),
    /// The spool disk failed: nothing can be kept safely.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// An index could not be serialized.
    #[error("slice index: {0}")]
    Index(String),
}

/// What the stage did, for the summary line and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StageTally {
    /// Slices uploaded directly.
    pub uploaded: u64,
    /// Slices spooled.
    pub spooled: u64,
    /// Slices dropped because the spool was full.
    pub dropped: u64,
    /// Checkpoints taken.
    pub checkpoints: u64,
}

/// The queries as the recorder names them.
fn named(queries: &std::collections::BTreeMap<String, String>) -> Vec<crate::index::NamedQuery> {
    queries
        .iter()
        .map(|(name, query)| crate::index::NamedQuery {
            name: name.clone(),
            query: query.clone(),
        })
        .collect()
}

/// Where the queries come from while recording: the configured ones and a
/// watched directory.
struct QuerySource {
    configured: std::collections::BTreeMap<String, String>,
    dir: PathBuf,
    stamp: Vec<(PathBuf, Option<std::time::SystemTime>, u64)>,
}

/// The record stage's batch handler: the recorder, the uploader and the
/// pod history, with the checkpoints that make batches durable.
pub struct RecordHandler {
    recorder: Recorder,
    queries: Option<QuerySource>,
    uploader: Uploader,
    pods: OwnerIndex,
    feed: Option<ClusterFeed>,
    prefix: String,
    metrics: StageMetrics,
    checkpoint_interval: Duration,
    last_checkpoint: Instant,
    tick_every: Duration,
    /// Batches handled so far.
    handled: u64,
    /// Of those, the ones whose packets are stored (see the module docs).
    durable: u64,
    tally: StageTally,
    reported_undecodable: u64,
    /// Where "recording is off" is said beside `ok`.
    health: Option<Health>,
    /// Scan jobs for stored slices (`record.scan_slices`).
    scans: Option<ScanQueue>,
}

/// Stored slices waiting to be queued as scan jobs.
struct ScanQueue {
    sink: BusSink,
    /// Object names (`s3://bucket/key`, or a path) not yet queued.
    waiting: Vec<String>,
}

/// The `/healthz` note of a recorder without any query.
pub const RECORDING_OFF: &str = "recording is off: no recording query";

impl RecordHandler {
    /// A handler recording with `recorder` into `uploader` under `prefix`,
    /// taking a checkpoint every `checkpoint_interval`.
    pub fn new(
        recorder: Recorder,
        uploader: Uploader,
        prefix: &str,
        checkpoint_interval: Duration,
        metrics: StageMetrics,
    ) -> RecordHandler {
        RecordHandler {
            recorder,
            queries: None,
            uploader,
            pods: OwnerIndex::new(1, 1),
            feed: None,
            prefix: prefix.trim_matches('/').to_owned(),
            metrics,
            checkpoint_interval,
            last_checkpoint: Instant::now(),
            tick_every: Duration::from_secs(1),
            handled: 0,
            durable: 0,
            tally: StageTally::default(),
            reported_undecodable: 0,
            health: None,
            scans: None,
        }
    }

    /// Names stream endpoints from `pods`, kept current by `feed` (the
    /// `tapwire.pods` follower).
    pub fn with_pods(mut self, pods: OwnerIndex, feed: ClusterFeed) -> RecordHandler {
        self.pods = pods;
        self.feed = Some(feed);
        self
    }

    /// Says on `/healthz` (a note beside `ok`) when recording is off, now
    /// and whenever the watched queries change.
    pub fn reporting_to(mut self, health: Health) -> RecordHandler {
        self.health = Some(health);
        self.report_recording();
        self
    }

    fn report_recording(&self) {
        if let Some(health) = &self.health {
            let off = self.recorder.queries().next().is_none();
            health.set_note(off.then(|| RECORDING_OFF.to_owned()));
        }
    }

    /// Watches `dir` (when set) for recording queries that join
    /// `configured`: checked at every tick.
    pub fn watching(
        mut self,
        configured: std::collections::BTreeMap<String, String>,
        dir: Option<PathBuf>,
    ) -> RecordHandler {
        self.queries = dir.map(|dir| QuerySource {
            configured,
            stamp: crate::config::queries_dir_stamp(&dir),
            dir,
        });
        self
    }

    /// Applies a changed queries directory: valid queries replace the ones
    /// in force, an invalid set is reported and the previous one stays.
    fn reload_queries(&mut self) {
        let Some(source) = &mut self.queries else {
            return;
        };
        let stamp = crate::config::queries_dir_stamp(&source.dir);
        if stamp == source.stamp {
            return;
        }
        source.stamp = stamp;
        let mut all = source.configured.clone();
        let read = crate::config::read_queries_dir(&source.dir).map(|found| {
            all.extend(found);
            all
        });
        let applied = read.map_err(|e| e.to_string()).and_then(|all| {
            match self.recorder.set_queries(named(&all)) {
                Ok(()) => Ok(all),
                Err(crate::recorder::RecorderError::Query { name, source }) => {
                    let text = all.get(&name).map_or("", String::as_str);
                    Err(format!("record query {name}: {}", source.render(text)))
                }
                Err(e) => Err(e.to_string()),
            }
        });
        match applied {
            Ok(all) if all.is_empty() => tracing::warn!(dir = %source.dir.display(),
                "recording is off: no recording query left; packets are read and not recorded"),
            Ok(all) => {
                let shown: Vec<String> = all.iter().map(|(n, q)| format!("{n}: {q}")).collect();
                tracing::info!(dir = %source.dir.display(), queries = ?shown,
                    "recording queries changed; streams that end from now on are matched against them");
            }
            Err(reason) => tracing::error!(dir = %source.dir.display(), %reason,
                "recording queries changed but are not valid; the previous queries stay in force"),
        }
        self.report_recording();
    }

    /// Counters.
    pub fn tally(&self) -> StageTally {
        self.tally
    }

    /// The recorder (for its statistics).
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The uploader (for its spool).
    pub fn uploader(&self) -> &Uploader {
        &self.uploader
    }

    fn drain_pods(&mut self) {
        if let Some(feed) = &mut self.feed {
            let pods = &mut self.pods;
            feed.drain(|record| {
                pods.apply_record(record);
            });
        }
    }

    /// The object keys of a slice: `PREFIX/NODE/YYYY-MM-DD/NAME` and its
    /// index beside it.
    fn keys(&self, slice: &FinishedSlice) -> (String, String) {
        let node = slice
            .index
            .node
            .as_ref()
            .map_or("unknown-node", |n| n.name.as_str());
        let node: String = node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let day = crate::investigate::format_time(slice.index.first_ns);
        let day = &day[..10];
        let dir = if self.prefix.is_empty() {
            format!("{node}/{day}")
        } else {
            format!("{}/{node}/{day}", self.prefix)
        };
        (
            format!("{dir}/{}", slice.name),
            format!("{dir}/{}", slice.index_name()),
        )
    }

    /// Delivers every finished slice.
    async fn deliver_finished(&mut self) -> Result<(), StageError> {
        for slice in self.recorder.take_finished() {
            let (pcap_key, index_key) = self.keys(&slice);
            let index = slice
                .index
                .to_json()
                .map_err(|e| StageError::Index(e.to_string()))?;
            let packets = slice.index.packets;
            let objects = vec![
                Object {
                    key: pcap_key.clone(),
                    body: slice.pcap,
                },
                Object {
                    key: index_key,
                    body: index,
                },
            ];
            match self.uploader.deliver(objects, packets).await? {
                Delivery::Uploaded => {
                    self.tally.uploaded += 1;
                    self.metrics.messages_out.inc_by(packets);
                    tracing::info!(key = %pcap_key, packets, "slice uploaded");
                }
                Delivery::Spooled => {
                    self.tally.spooled += 1;
                    self.metrics.marked("spooled", packets);
                    tracing::info!(key = %pcap_key, packets, "slice spooled");
                }
                Delivery::Dropped => self.tally.dropped += 1,
            }
        }
        let undecodable = self.recorder.stats().undecodable_total();
        if undecodable > self.reported_undecodable {
            self.metrics
                .dropped("not_tcp_udp", undecodable - self.reported_undecodable);
            self.reported_undecodable = undecodable;
        }
        Ok(())
    }

    /// Ends every stream, closes every slice and delivers them: every batch
    /// handled so far is durable.
    pub async fn checkpoint(&mut self) -> Result<(), StageError> {
        self.drain_pods();
        self.recorder.flush(&self.pods)?;
        self.deliver_finished().await?;
        self.durable = self.handled;
        self.tally.checkpoints += 1;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Periodic work: idle streams, slice age, spool retries, and the
    /// checkpoint when due.
    async fn periodic(&mut self) -> Result<(), StageError> {
        self.reload_queries();
        self.drain_pods();
        self.recorder.tick(wall_ns(), &self.pods)?;
        self.deliver_finished().await?;
        self.uploader.drain().await?;
        if self.last_checkpoint.elapsed() >= self.checkpoint_interval {
            self.checkpoint().await?;
        }
        self.queue_scans().await;
        Ok(())
    }

    /// Queues a scan job for every slice stored since the last call. A bus
    /// failure keeps them for the next tick (a slice is never lost to the
    /// scanners, though a restart in between forgets the waiting ones).
    async fn queue_scans(&mut self) {
        let stored = self.uploader.take_stored();
        let Some(scans) = &mut self.scans else {
            return;
        };
        let name = match self.uploader.store() {
            Store::S3(s3) => format!("s3://{}/", s3.bucket()),
            Store::Local(local) => format!("{}/", local.root().display()),
        };
        scans
            .waiting
            .extend(stored.into_iter().map(|key| format!("{name}{key}")));
        if scans.waiting.is_empty() {
            return;
        }
        let now = wall_ns();
        let jobs: Vec<ScanJob> = scans
            .waiting
            .iter()
            .map(|url| ScanJob::new(ScanObject::capture(url.clone()), "record", now))
            .collect();
        for batch in tapwire_schemas::scan::enqueue_records(&jobs) {
            let records = batch
                .into_iter()
                .map(|(topic, key, payload)| OutRecord::new(topic, Some(key), payload))
                .collect();
            if let Err(err) = scans.sink.send_batch(records).await {
                tracing::warn!(error = %err, slices = jobs.len(),
                    "scan jobs not queued; trying again at the next tick");
                return;
            }
        }
        tracing::info!(slices = jobs.len(), "scan jobs queued");
        scans.waiting.clear();
    }
}

/// A recorder or spool failure stops the stage.
fn fatal(err: StageError) -> HandlerError {
    HandlerError::Fatal(err.to_string())
}

fn wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Why a decoded packet record is bad data (not merely unrecordable).
fn bad_frame(record: &PacketRecord) -> Option<(&'static str, String)> {
    if record.captured_len as usize != record.data.len() {
        return Some((
            "bad_length",
            format!(
                "captured_len {} but {} bytes of data",
                record.captured_len,
                record.data.len()
            ),
        ));
    }
    if record.original_len < record.captured_len {
        return Some((
            "bad_length",
            format!(
                "original_len {} is less than captured_len {}",
                record.original_len, record.captured_len
            ),
        ));
    }
    match tapwire_packet::parse(record.link_type, &record.data) {
        Err(err @ PacketError::UnsupportedLinkType(_)) => Some(("bad_link_type", err.to_string())),
        Err(err @ PacketError::Truncated { .. }) => Some(("bad_frame", err.to_string())),
        Err(err @ PacketError::Malformed(_)) => {
            let mut reason = err.to_string();
            if let Some(source) = std::error::Error::source(&err) {
                reason.push_str(": ");
                reason.push_str(&source.to_string());
            }
            Some(("bad_frame", reason))
        }
        _ => None,
    }
}

impl BatchHandler for RecordHandler {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        self.drain_pods();
        let (records, mut rejections) = decode_batch::<PacketRecord>(batch);
        for (index, record) in records {
            if let Some((error, reason)) = bad_frame(&record) {
                rejections.push(Rejection {
                    index,
                    error,
                    reason,
                });
                continue;
            }
            self.recorder
                .push(record, &self.pods)
                .map_err(|e| fatal(e.into()))?;
        }
        self.handled += 1;
        self.deliver_finished().await.map_err(fatal)?;
        if self.last_checkpoint.elapsed() >= self.checkpoint_interval {
            self.checkpoint().await.map_err(fatal)?;
        }
        Ok(rejections)
    }

    fn durable_batches(&self) -> Option<u64> {
        Some(self.durable)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.tick_every)
    }

    async fn tick(&mut self) -> Result<(), HandlerError> {
        self.periodic().await.map_err(fatal)
    }

    async fn finish(&mut self) -> Result<(), HandlerError> {
        self.checkpoint().await.map_err(fatal)?;
        self.queue_scans().await;
        Ok(())
    }

    fn report(&self) -> String {
        let (tally, stats) = (self.tally, self.recorder.stats());
        format!(
            "{} streams recorded, {} not matching; slices: {} uploaded, {} spooled, {} dropped (spool full); {} slices still spooled",
            stats.streams_recorded,
            stats.streams_dropped,
            tally.uploaded,
            tally.spooled,
            tally.dropped,
            self.uploader.spool().len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(link_type: u32, data: Vec<u8>) -> PacketRecord {
        PacketRecord {
            header: tapwire_schemas::samples::header("node-a", "s", 0, 1),
            link_type,
            captured_len: data.len() as u32,
            original_len: data.len() as u32,
            data,
            flow_hash: 0,
            interface: None,
        }
    }

    #[test]
    fn bad_frames_are_named_and_unrecordable_ones_are_not_bad() {
        let mut r = record(1, vec![0; 4]);
        assert_eq!(bad_frame(&r).map(|b| b.0), Some("bad_frame"));
        r.captured_len = 99;
        assert_eq!(bad_frame(&r).map(|b| b.0), Some("bad_length"));
        let r = record(4242, vec![0x45; 40]);
        let (error, reason) = bad_frame(&r).expect("bad link type");
        assert_eq!(error, "bad_link_type");
        assert!(reason.contains("4242"), "{reason}");
        // ARP over Ethernet: fine, just not TCP/UDP.
        let mut arp = vec![0xff; 12];
        arp.extend([0x08, 0x06]);
        arp.extend([0; 28]);
        assert_eq!(bad_frame(&record(1, arp)), None);
    }
}
