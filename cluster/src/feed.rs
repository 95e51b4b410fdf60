//! [`ClusterFeed`]: the records of `tapwire.pods`, followed from the topic's
//! start on either bus, as [`ClusterRecord`]s.
//!
//! A stage that names addresses (the enricher, the recorder) opens a feed
//! when it is built, loads everything the topic holds into its
//! [`crate::OwnerIndex`] before the first event ([`ClusterFeed::load`]),
//! then applies new records between batches ([`ClusterFeed::drain`]).
//! Tombstones are skipped; a payload that is not cluster metadata is
//! logged (rate-limited), counted and skipped: the topic is state, not a
//! stream a dead letter could replay into.

use std::time::Duration;

use tapwire_plumbing::bus::{BusError, Follower, Message};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::stage::Bus;
use tapwire_plumbing::telemetry::RateLimit;
use tapwire_schemas::topics;

use crate::ClusterRecord;

/// `tapwire.pods`, followed.
pub struct ClusterFeed {
    follower: Follower,
    skipped: u64,
    skip_log: RateLimit,
}

impl ClusterFeed {
    /// Follows `tapwire.pods` on `bus` until `shutdown`.
    pub fn open(bus: &Bus, shutdown: CancellationToken) -> Result<ClusterFeed, BusError> {
        Ok(ClusterFeed {
            follower: bus.follow(topics::PODS, shutdown)?,
            skipped: 0,
            skip_log: RateLimit::new(Duration::from_secs(10)),
        })
    }

    /// Hands every record the topic held when the feed opened to `apply`;
    /// returns how many messages that was, or `None` if `shutdown` came first.
    pub async fn load(
        &mut self,
        mut apply: impl FnMut(ClusterRecord),
        shutdown: &CancellationToken,
    ) -> Result<Option<u64>, BusError> {
        let (skipped, skip_log) = (&mut self.skipped, &self.skip_log);
        self.follower
            .load(
                |m| {
                    if let Some(record) = read(&m, skipped, skip_log) {
                        apply(record);
                    }
                },
                shutdown,
            )
            .await
    }

    /// Hands every record that arrived since the last call to `apply`,
    /// without waiting.
    pub fn drain(&mut self, mut apply: impl FnMut(ClusterRecord)) {
        while let Ok(m) = self.follower.records.try_recv() {
            if let Some(record) = read(&m, &mut self.skipped, &self.skip_log) {
                apply(record);
            }
        }
    }

    /// Waits for the next record (`None`: the feed ended).
    pub async fn next(&mut self) -> Option<ClusterRecord> {
        loop {
            let m = self.follower.records.recv().await?;
            if let Some(record) = read(&m, &mut self.skipped, &self.skip_log) {
                return Some(record);
            }
        }
    }

    /// Messages skipped because they were not cluster metadata.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

fn read(m: &Message, skipped: &mut u64, log: &RateLimit) -> Option<ClusterRecord> {
    if m.payload.is_empty() {
        return None; // a compaction tombstone
    }
    match ClusterRecord::decode(&m.payload) {
        Ok(record) => record,
        Err(err) => {
            *skipped += 1;
            if let Some(suppressed) = log.allow() {
                tracing::warn!(partition = m.partition, offset = m.offset, error = %err,
                    suppressed, "not cluster metadata; skipped");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_plumbing::bus::Sink;
    use tapwire_plumbing::bus::memory::MemoryBus;
    use tapwire_schemas::samples;

    fn pod(name: &str) -> ClusterRecord {
        let mut p = samples::pod(
            samples::header("node-a", "watch", 0, 1),
            name,
            "shop",
            "10.1.0.7".parse().expect("ip"),
        );
        p.uid = format!("uid-{name}");
        ClusterRecord::Pod(p)
    }

    #[tokio::test]
    async fn loads_what_the_topic_holds_then_follows_new_records() {
        let bus = MemoryBus::new();
        bus.create_topic(topics::PODS, 2);
        let sink = bus.sink();
        let mut first = vec![pod("a").to_out_record().expect("encode")];
        first.push(tapwire_plumbing::bus::OutRecord::new(
            topics::PODS,
            None,
            b"not avro".to_vec(),
        ));
        first.push(pod("b").to_out_record().expect("encode"));
        sink.send_batch(first).await.expect("send");

        let stop = CancellationToken::new();
        let mut feed = ClusterFeed::open(&Bus::Memory(bus.clone()), stop.clone()).expect("open");
        let mut names = Vec::new();
        let loaded = feed
            .load(
                |r| {
                    if let ClusterRecord::Pod(p) = r {
                        names.push(p.name)
                    }
                },
                &stop,
            )
            .await
            .expect("load");
        assert_eq!(loaded, Some(3), "three messages were on the topic");
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(feed.skipped(), 1, "the garbage is counted");

        sink.send_batch(vec![pod("c").to_out_record().expect("encode")])
            .await
            .expect("send");
        let next = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("a new record arrives");
        assert!(matches!(next, Some(ClusterRecord::Pod(p)) if p.name == "c"));
    }
}
