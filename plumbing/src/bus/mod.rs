//! The bus interface stages are written against, and its two
//! implementations: [`kafka`] and [`memory`].
//!
//! A [`Source`] hands out batches of messages from the topics it subscribed
//! to and remembers, per partition, the next offset to resume from once the
//! caller says a batch is done ([`Source::store`]). A [`Sink`] sends a batch of
//! records and resolves only when the bus acknowledged every one of them.

pub mod kafka;
pub mod memory;

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// A message read from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic it was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub payload: Vec<u8>,
    /// Record headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Destination topic.
    pub topic: String,
    /// Key: decides the partition, so records with one key stay in order.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OutRecord {
    /// A record without headers.
    pub fn new(topic: impl Into<String>, key: Option<Vec<u8>>, payload: Vec<u8>) -> Self {
        OutRecord {
            topic: topic.into(),
            key,
            payload,
            headers: Vec::new(),
        }
    }
}

/// Bus failures.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A Kafka client error.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The topic does not exist (neither bus creates topics implicitly).
    #[error("topic {0} does not exist; create it with `tapwire topics create`")]
    UnknownTopic(String),
    /// A configuration problem found when building a client.
    #[error("invalid bus configuration: {0}")]
    Config(String),
}

/// Where messages come from.
pub trait Source: Send {
    /// Waits for at least one message, then gathers more until `max`
    /// messages or until `linger` has passed since the first one. With
    /// `idle`, gives up waiting for the first message after that long and
    /// returns an empty batch (so the caller can do periodic work without
    /// cancelling a half-gathered batch).
    fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
        idle: Option<Duration>,
    ) -> impl Future<Output = Result<Vec<Message>, BusError>> + Send;

    /// Records that every message of `batch` is done: on restart or
    /// rebalance, consumption resumes after them.
    fn store(&mut self, batch: &[Message]) -> Result<(), BusError>;

    /// Commits what was stored and leaves the group.
    fn close(self) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// A compacted topic read from its start (no consumer group): every record
/// it holds, then new ones as they are written.
pub struct Follower {
    /// The records, per partition in offset order. Tombstones (empty values)
    /// are passed on: a reader decides what deletion means.
    pub records: mpsc::Receiver<Message>,
    /// Resolves with the number of records read once every partition reached
    /// the end it had when following began: the state is rebuilt. Dropped
    /// without a value if the follower failed first ([`Follower::load`] then
    /// returns why).
    pub loaded: oneshot::Receiver<u64>,
    task: tokio::task::JoinHandle<Result<(), BusError>>,
}

impl Follower {
    pub(crate) fn new(
        records: mpsc::Receiver<Message>,
        loaded: oneshot::Receiver<u64>,
        task: tokio::task::JoinHandle<Result<(), BusError>>,
    ) -> Self {
        Follower {
            records,
            loaded,
            task,
        }
    }

    /// Waits until the state is rebuilt (everything the topic held at the
    /// start was received), handing every record to `apply` meanwhile.
    /// Returns how many records that was; `None` when `shutdown` came first.
    pub async fn load(
        &mut self,
        mut apply: impl FnMut(Message),
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<Option<u64>, BusError> {
        let loaded = loop {
            tokio::select! {
                Some(m) = self.records.recv() => apply(m),
                n = &mut self.loaded => match n {
                    Ok(n) => break n,
                    Err(_) => return Err(self.failure().await),
                },
                _ = shutdown.cancelled() => return Ok(None),
            }
        };
        while let Ok(m) = self.records.try_recv() {
            apply(m);
        }
        Ok(Some(loaded))
    }

    /// Why the follower stopped before loading.
    async fn failure(&mut self) -> BusError {
        match (&mut self.task).await {
            Ok(Err(err)) => err,
            Ok(Ok(())) => BusError::Config("the follower stopped before loading".into()),
            Err(join) => BusError::Config(format!("the follower task failed: {join}")),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where records go.
pub trait Sink: Send + Sync {
    /// Sends every record and resolves once the bus acknowledged all of them
    /// (Kafka delivery reports), or with the first failure.
    fn send_batch(
        &self,
        records: Vec<OutRecord>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// The last offset of each topic-partition in `batch`, in first-seen order.
pub fn last_offsets(batch: &[Message]) -> Vec<(&str, i32, i64)> {
    let mut out: Vec<(&str, i32, i64)> = Vec::new();
    for m in batch {
        match out
            .iter_mut()
            .find(|(t, p, _)| *t == m.topic && *p == m.partition)
        {
            Some(entry) => entry.2 = entry.2.max(m.offset),
            None => out.push((&m.topic, m.partition, m.offset)),
        }
    }
    out
}

/// Partition for a key: the same key always lands in the same partition.
pub fn partition_for(key: Option<&[u8]>, partitions: usize, round_robin: usize) -> usize {
    match key {
        Some(key) => (fnv1a(key) % partitions as u64) as usize,
        None => round_robin % partitions,
    }
}

/// FNV-1a: a small, stable hash for the in-memory bus's partitioner.
fn fnv1a(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}
