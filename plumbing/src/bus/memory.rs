//! The in-memory bus of the embedded mode (`tapwire run`, `tapwire demo`):
//! topics with partitions, consumer groups with committed offsets, the same
//! [`Source`]/[`Sink`] contract as Kafka, inside one process.
//!
//! Records are kept for the life of the process (there is no retention), so
//! it suits demos, tests and bounded replays, not unbounded streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{BusError, Follower, Message, OutRecord, Sink, Source, last_offsets, partition_for};

#[derive(Debug, Clone)]
struct Stored {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Vec<Vec<Stored>>>,
    committed: HashMap<(String, String, i32), i64>,
    /// Next offset each group's members will take (read, not necessarily stored).
    read: HashMap<(String, String, i32), i64>,
    round_robin: usize,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    notify: tokio::sync::Notify,
}

/// A bus inside the process. Cloning shares it.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates `name` with `partitions` partitions unless it exists.
    pub fn create_topic(&self, name: &str, partitions: usize) {
        self.state()
            .topics
            .entry(name.to_owned())
            .or_insert_with(|| vec![Vec::new(); partitions.max(1)]);
    }

    /// A producer on this bus.
    pub fn sink(&self) -> MemorySink {
        MemorySink { bus: self.clone() }
    }

    /// A member of `group` reading `topics`, resuming at the group's
    /// committed offsets.
    pub fn source(&self, group: &str, topics: &[&str]) -> Result<MemorySource, BusError> {
        let state = self.state();
        let mut positions = Vec::new();
        for topic in topics {
            let partitions = state
                .topics
                .get(*topic)
                .ok_or_else(|| BusError::UnknownTopic((*topic).to_owned()))?;
            for p in 0..partitions.len() as i32 {
                let next = state
                    .committed
                    .get(&(group.to_owned(), (*topic).to_owned(), p))
                    .copied()
                    .unwrap_or(0);
                positions.push(((*topic).to_owned(), p, next));
            }
        }
        Ok(MemorySource {
            bus: self.clone(),
            group: group.to_owned(),
            positions,
        })
    }

    /// Records written to `topic`, all partitions.
    pub fn written(&self, topic: &str) -> u64 {
        self.state()
            .topics
            .get(topic)
            .map_or(0, |ps| ps.iter().map(|p| p.len() as u64).sum())
    }

    /// Records of `topic` that `group` has not stored yet.
    pub fn lag(&self, group: &str, topic: &str) -> u64 {
        self.behind(group, topic, |state, key| state.committed.get(key).copied())
    }

    /// Records of `topic` that no member of `group` has taken yet (taken but
    /// not stored ones count as read; see [`MemoryBus::lag`] for stored).
    pub fn unread(&self, group: &str, topic: &str) -> u64 {
        self.behind(group, topic, |state, key| {
            state
                .read
                .get(key)
                .or_else(|| state.committed.get(key))
                .copied()
        })
    }

    /// Records of `topic` past the position `at` gives for each partition.
    fn behind(
        &self,
        group: &str,
        topic: &str,
        at: impl Fn(&State, &(String, String, i32)) -> Option<i64>,
    ) -> u64 {
        let state = self.state();
        let Some(partitions) = state.topics.get(topic) else {
            return 0;
        };
        partitions
            .iter()
            .enumerate()
            .map(|(p, records)| {
                let key = (group.to_owned(), topic.to_owned(), p as i32);
                records.len() as u64 - at(&state, &key).unwrap_or(0) as u64
            })
            .sum()
    }

    /// Follows `topic` from its start, as a compacted topic is read: every
    /// record, then new ones as they come, until `shutdown` or until the
    /// receiver is dropped. No group offsets are involved.
    pub fn follow(&self, topic: &str, shutdown: CancellationToken) -> Result<Follower, BusError> {
        let ends: Vec<usize> = self
            .state()
            .topics
            .get(topic)
            .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))?
            .iter()
            .map(Vec::len)
            .collect();
        let (tx, records) = mpsc::channel(10_000);
        let (loaded_tx, loaded) = oneshot::channel();
        let (bus, topic) = (self.clone(), topic.to_owned());
        let task = tokio::spawn(async move {
            let mut next = vec![0usize; ends.len()];
            let mut loaded_tx = Some(loaded_tx);
            let mut read = 0u64;
            loop {
                let notified = bus.inner.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let fresh: Vec<Message> = {
                    let state = bus.state();
                    let partitions = &state.topics[topic.as_str()];
                    let mut fresh = Vec::new();
                    for (p, records) in partitions.iter().enumerate() {
                        for (o, r) in records.iter().enumerate().skip(next[p]) {
                            fresh.push(message(&topic, p as i32, o as i64, r));
                        }
                        next[p] = records.len();
                    }
                    fresh
                };
                for m in fresh {
                    read += 1;
                    if tx.send(m).await.is_err() {
                        return Ok(());
                    }
                }
                if next.iter().zip(&ends).all(|(n, e)| n >= e)
                    && let Some(done) = loaded_tx.take()
                {
                    let _ = done.send(read);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tx.closed() => return Ok(()),
                    _ = notified => {}
                }
            }
        });
        Ok(Follower::new(records, loaded, task))
    }

    /// Every record of `topic`, partition by partition.
    pub fn messages(&self, topic: &str) -> Vec<Message> {
        let state = self.state();
        let Some(partitions) = state.topics.get(topic) else {
            return Vec::new();
        };
        partitions
            .iter()
            .enumerate()
            .flat_map(|(p, records)| {
                records
                    .iter()
                    .enumerate()
                    .map(move |(o, r)| message(topic, p as i32, o as i64, r))
            })
            .collect()
    }
}

fn message(topic: &str, partition: i32, offset: i64, r: &Stored) -> Message {
    Message {
        topic: topic.to_owned(),
        partition,
        offset,
        key: r.key.clone(),
        payload: r.payload.clone(),
        headers: r.headers.clone(),
    }
}

/// Producer on a [`MemoryBus`]; a send is acknowledged once appended.
#[derive(Clone)]
pub struct MemorySink {
    bus: MemoryBus,
}

impl Sink for MemorySink {
    async fn send_batch(&self, records: Vec<OutRecord>) -> Result<(), BusError> {
        {
            let mut state = self.bus.state();
            // Check every topic first so a batch is appended whole or not at all.
            if let Some(bad) = records
                .iter()
                .find(|r| !state.topics.contains_key(&r.topic))
            {
                return Err(BusError::UnknownTopic(bad.topic.clone()));
            }
            for record in records {
                let rr = state.round_robin;
                state.round_robin = rr.wrapping_add(1);
                let Some(partitions) = state.topics.get_mut(&record.topic) else {
                    continue;
                };
                let p = partition_for(record.key.as_deref(), partitions.len(), rr);
                partitions[p].push(Stored {
                    key: record.key,
                    payload: record.payload,
                    headers: record.headers,
                });
            }
        }
        self.bus.inner.notify.notify_waiters();
        Ok(())
    }
}

/// Consumer-group member on a [`MemoryBus`].
pub struct MemorySource {
    bus: MemoryBus,
    group: String,
    positions: Vec<(String, i32, i64)>,
}

impl MemorySource {
    fn take(&mut self, max: usize) -> Vec<Message> {
        let bus = self.bus.clone();
        let mut state = bus.state();
        let mut batch = Vec::new();
        for (topic, partition, next) in &mut self.positions {
            let records = &state.topics[topic.as_str()][*partition as usize];
            let before = *next;
            while batch.len() < max && (*next as usize) < records.len() {
                batch.push(message(topic, *partition, *next, &records[*next as usize]));
                *next += 1;
            }
            if *next != before {
                state
                    .read
                    .insert((self.group.clone(), topic.clone(), *partition), *next);
            }
        }
        batch
    }
}

impl Source for MemorySource {
    async fn next_batch(
        &mut self,
        max: usize,
        _linger: Duration,
        idle: Option<Duration>,
    ) -> Result<Vec<Message>, BusError> {
        let bus = self.bus.clone();
        let idle_until = idle.map(|d| tokio::time::Instant::now() + d);
        loop {
            let notified = bus.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch = self.take(max.max(1));
            if !batch.is_empty() {
                return Ok(batch);
            }
            match idle_until {
                Some(at) => {
                    if tokio::time::timeout_at(at, notified).await.is_err() {
                        return Ok(Vec::new());
                    }
                }
                None => notified.await,
            }
        }
    }

    fn store(&mut self, batch: &[Message]) -> Result<(), BusError> {
        let mut state = self.bus.state();
        for (topic, partition, offset) in last_offsets(batch) {
            state.committed.insert(
                (self.group.clone(), topic.to_owned(), partition),
                offset + 1,
            );
        }
        Ok(())
    }

    async fn close(self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: &str) -> OutRecord {
        OutRecord::new(
            "t",
            Some(key.as_bytes().to_vec()),
            value.as_bytes().to_vec(),
        )
    }

    #[tokio::test]
    async fn a_group_resumes_after_what_it_stored() {
        let bus = MemoryBus::new();
        bus.create_topic("t", 3);
        bus.sink()
            .send_batch((0..10).map(|i| rec("k", &i.to_string())).collect())
            .await
            .expect("send");
        let mut source = bus.source("g", &["t"]).expect("source");
        let batch = source
            .next_batch(4, Duration::ZERO, None)
            .await
            .expect("batch");
        assert_eq!(batch.len(), 4);
        source.store(&batch).expect("store");
        assert_eq!(bus.lag("g", "t"), 6);
        // Taken but not stored: a new member re-reads it.
        let _unstored = source
            .next_batch(2, Duration::ZERO, None)
            .await
            .expect("batch");
        let mut again = bus.source("g", &["t"]).expect("source");
        let rest = again
            .next_batch(100, Duration::ZERO, None)
            .await
            .expect("batch");
        let values: Vec<String> = rest
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect();
        assert_eq!(
            values,
            ["4", "5", "6", "7", "8", "9"],
            "one key keeps its order"
        );
    }

    #[tokio::test]
    async fn sending_to_a_missing_topic_fails_whole() {
        let bus = MemoryBus::new();
        bus.create_topic("t", 1);
        let mut records = vec![rec("a", "1")];
        records.push(OutRecord::new("missing", None, vec![]));
        let err = bus
            .sink()
            .send_batch(records)
            .await
            .expect_err("unknown topic");
        assert!(err.to_string().contains("missing"));
        assert!(bus.messages("t").is_empty());
    }

    #[tokio::test]
    async fn a_waiting_source_wakes_on_send() {
        let bus = MemoryBus::new();
        bus.create_topic("t", 1);
        let mut source = bus.source("g", &["t"]).expect("source");
        let waiter = tokio::spawn(async move { source.next_batch(10, Duration::ZERO, None).await });
        tokio::task::yield_now().await;
        bus.sink()
            .send_batch(vec![rec("a", "x")])
            .await
            .expect("send");
        let batch = waiter.await.expect("join").expect("batch");
        assert_eq!(batch.len(), 1);
    }
}
