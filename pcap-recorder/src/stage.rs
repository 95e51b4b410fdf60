//! `tapwire record` as a consumer-loop stage: `tapwire.packets.raw` in,
//! KFL-matched streams out as PCAP slices with their indexes, uploaded to
//! the object store or spooled.
//!
//! # Offsets and checkpoints (the at-least-once choice)
//!
//! A packet is "done" only when the slice holding it is stored (uploaded or
//! durably spooled), or when its stream ended without matching. Packets of
//! streams that are still open live only in memory, so a batch's offsets
//! cannot be stored when the handler returns. Instead:
//!
//! - [`RecordHandler`] feeds each batch to the [`Recorder`] and returns at
//!   once; the loop's `store` goes to [`CheckpointSource`], which holds the
//!   offsets back.
//! - Every `checkpoint_interval` (the slice age), a **checkpoint** ends every
//!   open stream, closes every slice, and delivers them (upload, else a
//!   durable spool write, else a counted drop when the spool is full). Only
//!   then are the held-back offsets of every batch handled before it
//!   stored.
//! - Shutdown is a checkpoint too ([`CheckpointSource::close`]), so a clean
//!   stop loses nothing and re-reads nothing.
//!
//! After a crash, at most one checkpoint interval of packets is read again
//! (their streams are recorded again; duplicates, never gaps). The price: a
//! stream longer than the interval is recorded in pieces, each matched on
//! its own (a piece that starts in the middle of an HTTP body may not match
//! `http`). A [`Ticker`] runs checkpoints, idle-stream expiry and spool
//! retries while no packets arrive.
//!
//! # Bad input
//!
//! A message that is not an Avro `PacketRecord`, whose lengths disagree
//! with its bytes, or whose frame has an unsupported link type, a malformed
//! or truncated header goes to `tapwire.dlq` with the reason. Frames that are
//! fine but not recordable (ARP, ICMP, IP fragments) are counted by the
//! recorder (`tapwire_messages_dropped_total{reason="not_tcp_udp"}`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tapwire_packet::PacketError;
use tapwire_plumbing::bus::{BusError, Message, Source};
use tapwire_plumbing::consumer::{BatchHandler, HandlerError, decode_batch};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::telemetry::StageMetrics;
use tapwire_schemas::events::PacketRecord;
use tokio::sync::{Mutex, mpsc};

use crate::pods::PodHistory;
use crate::recorder::{Recorder, RecorderError};
use crate::slice::FinishedSlice;
use crate::spool::{Delivery, Object, SpoolError, Uploader};

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

/// Which checkpoint made what durable.
#[derive(Debug, Default)]
pub struct Marks {
    /// Checkpoints completed so far.
    generation: AtomicU64,
    /// The generation current when the last batch's packets were pushed:
    /// that batch is durable once `generation` is greater.
    last_pushed: AtomicU64,
}

/// The state the handler, the source wrapper and the ticker share.
pub struct Core {
    recorder: Recorder,
    uploader: Uploader,
    pods: PodHistory,
    pod_rx: Option<mpsc::Receiver<tapwire_enricher::enrich::ClusterRecord>>,
    prefix: String,
    metrics: StageMetrics,
    checkpoint_interval: Duration,
    last_checkpoint: Instant,
    /// Checkpoint generations, shared with [`CheckpointSource`].
    marks: Arc<Marks>,
    /// Set when the spool disk failed: the stage stops.
    failed: Option<String>,
    tally: StageTally,
    reported_undecodable: u64,
}

impl Core {
    /// A core recording with `recorder` into `uploader` under `prefix`.
    pub fn new(
        recorder: Recorder,
        uploader: Uploader,
        prefix: &str,
        checkpoint_interval: Duration,
        metrics: StageMetrics,
    ) -> Core {
        Core {
            recorder,
            uploader,
            pods: PodHistory::default(),
            pod_rx: None,
            prefix: prefix.trim_matches('/').to_owned(),
            metrics,
            checkpoint_interval,
            last_checkpoint: Instant::now(),
            marks: Arc::new(Marks::default()),
            failed: None,
            tally: StageTally::default(),
            reported_undecodable: 0,
        }
    }

    /// Feeds pod records from `rx` (the `tapwire.pods` follower) into the
    /// address history used to name stream endpoints.
    pub fn with_pods(
        mut self,
        history: PodHistory,
        rx: mpsc::Receiver<tapwire_enricher::enrich::ClusterRecord>,
    ) -> Core {
        self.pods = history;
        self.pod_rx = Some(rx);
        self
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

    /// The checkpoint marks, for [`CheckpointSource`].
    pub fn marks(&self) -> Arc<Marks> {
        self.marks.clone()
    }

    fn drain_pods(&mut self) {
        if let Some(rx) = &mut self.pod_rx {
            while let Ok(record) = rx.try_recv() {
                if let tapwire_enricher::enrich::ClusterRecord::Pod(pod) = record {
                    self.pods.apply(&pod);
                }
            }
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

    /// Ends every stream, closes every slice and delivers them.
    pub async fn checkpoint(&mut self) -> Result<(), StageError> {
        self.drain_pods();
        self.recorder.flush(&self.pods)?;
        self.deliver_finished().await?;
        self.marks.generation.fetch_add(1, Ordering::SeqCst);
        self.tally.checkpoints += 1;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Periodic work: idle streams, slice age, spool retries, and the
    /// checkpoint when due.
    pub async fn tick(&mut self) -> Result<(), StageError> {
        self.drain_pods();
        self.recorder.tick(wall_ns(), &self.pods)?;
        self.deliver_finished().await?;
        self.uploader.drain().await?;
        if self.last_checkpoint.elapsed() >= self.checkpoint_interval {
            self.checkpoint().await?;
        }
        Ok(())
    }

    fn fail(&mut self, err: &StageError) -> HandlerError {
        let reason = err.to_string();
        self.failed = Some(reason.clone());
        HandlerError::Fatal(reason)
    }
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

/// The consumer-loop handler.
pub struct RecordHandler {
    core: Arc<Mutex<Core>>,
}

impl RecordHandler {
    /// A handler over the shared `core`.
    pub fn new(core: Arc<Mutex<Core>>) -> Self {
        RecordHandler { core }
    }
}

impl BatchHandler for RecordHandler {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let mut core = self.core.lock().await;
        if let Some(reason) = &core.failed {
            return Err(HandlerError::Fatal(reason.clone()));
        }
        core.drain_pods();
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
            let core = &mut *core;
            if let Err(err) = core.recorder.push(record, &core.pods) {
                let err = StageError::from(err);
                return Err(core.fail(&err));
            }
        }
        core.marks.last_pushed.store(
            core.marks.generation.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
        let mut result = core.deliver_finished().await;
        if result.is_ok() && core.last_checkpoint.elapsed() >= core.checkpoint_interval {
            result = core.checkpoint().await;
        }
        if let Err(err) = result {
            return Err(core.fail(&err));
        }
        Ok(rejections)
    }
}

/// A topic, partition and offset.
type Position = (String, i32, i64);

/// Wraps the loop's source: holds offsets back until a checkpoint made the
/// batches they belong to durable (see the module documentation).
pub struct CheckpointSource<S> {
    inner: S,
    core: Arc<Mutex<Core>>,
    marks: Arc<Marks>,
    /// Per handled batch, in order: the generation it was pushed in and its
    /// last offset per partition.
    held: std::collections::VecDeque<(u64, Vec<Position>)>,
}

impl<S: Source> CheckpointSource<S> {
    /// Wraps `inner`; `core` is the handler's.
    pub async fn new(inner: S, core: Arc<Mutex<Core>>) -> Self {
        let marks = core.lock().await.marks();
        CheckpointSource {
            inner,
            core,
            marks,
            held: std::collections::VecDeque::new(),
        }
    }

    /// Offsets of batches that are not durable yet.
    pub fn held_batches(&self) -> usize {
        self.held.len()
    }

    /// Stores the offsets of every held batch pushed before generation
    /// `upto`.
    fn release(&mut self, upto: u64) -> Result<(), BusError> {
        let mut last: Vec<Message> = Vec::new();
        while self.held.front().is_some_and(|(g, _)| *g < upto) {
            let (_, offsets) = self.held.pop_front().expect("front exists");
            for (topic, partition, offset) in offsets {
                match last
                    .iter_mut()
                    .find(|m| m.topic == topic && m.partition == partition)
                {
                    Some(m) => m.offset = m.offset.max(offset),
                    None => last.push(Message {
                        topic,
                        partition,
                        offset,
                        key: None,
                        payload: Vec::new(),
                        headers: Vec::new(),
                    }),
                }
            }
        }
        if last.is_empty() {
            Ok(())
        } else {
            self.inner.store(&last)
        }
    }
}

impl<S: Source> Source for CheckpointSource<S> {
    async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<Message>, BusError> {
        self.inner.next_batch(max, linger).await
    }

    fn store(&mut self, batch: &[Message]) -> Result<(), BusError> {
        let pushed = self.marks.last_pushed.load(Ordering::SeqCst);
        let offsets = tapwire_plumbing::bus::last_offsets(batch)
            .into_iter()
            .map(|(t, p, o)| (t.to_owned(), p, o))
            .collect();
        self.held.push_back((pushed, offsets));
        self.release(self.marks.generation.load(Ordering::SeqCst))
    }

    async fn close(mut self) -> Result<(), BusError> {
        let result = self.core.lock().await.checkpoint().await;
        match result {
            Ok(()) => self.release(u64::MAX)?,
            Err(err) => {
                tracing::error!(error = %err, "final checkpoint failed: offsets since the last checkpoint are not stored (they are read again on restart)");
            }
        }
        self.inner.close().await
    }
}

/// Periodic work while packets may not arrive.
pub struct Ticker;

impl Ticker {
    /// Runs [`Core::tick`] every `every` until `shutdown`. A spool disk
    /// failure is logged and stops the stage at its next batch.
    pub fn spawn(
        core: Arc<Mutex<Core>>,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = interval.tick() => {}
                }
                let mut core = core.lock().await;
                if core.failed.is_some() {
                    return;
                }
                if let Err(err) = core.tick().await {
                    tracing::error!(error = %err, "record: periodic work failed; the stage stops");
                    core.fail(&err);
                    shutdown.cancel();
                    return;
                }
            }
        })
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
