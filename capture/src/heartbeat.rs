//! The agent's heartbeat on `tapwire.agents` (key: sensor id): one when the
//! sources start, one every `heartbeat_interval_ms`, and a last one with
//! `stopping = true` when the agent stops cleanly. Each names the sources
//! still running and the events every loss counter lost since the previous
//! heartbeat. A killed agent sends no last one: readers notice the silence
//! (two intervals, `tapwire_schemas::silent_at_ns`).
//!
//! A heartbeat that cannot be sent is counted
//! (`tapwire_messages_dropped_total{stage="capture",reason="heartbeat"}`) and
//! logged, and the agent goes on: losing sight of the agent is what the
//! heartbeat reports, it must not cause it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::telemetry::RateLimit;
use tapwire_schemas::{AgentHeartbeat, SourceLoss, encode, topics};

use crate::Identity;
use crate::agent::Summary;

/// How long a heartbeat may take to be delivered (the first one waits for
/// the brokers' metadata); the next waits meanwhile.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the last heartbeat may take to be sent when the agent stops.
const LAST_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The names of the sources running now.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running(Arc<Mutex<BTreeSet<String>>>);

/// Removes its source from [`Running`] when the source's task ends.
pub(crate) struct RunningGuard {
    running: Running,
    name: String,
}

impl Running {
    /// Marks `name` running until the guard is dropped.
    pub(crate) fn enter(&self, name: String) -> RunningGuard {
        self.lock().insert(name.clone());
        RunningGuard {
            running: self.clone(),
            name,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn names(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.running.lock().remove(&self.name);
    }
}

/// Builds the heartbeats of one agent process.
pub(crate) struct Beats {
    identity: Identity,
    interval_ms: u64,
    started_ns: i64,
    sequence: u64,
    /// Loss counters already reported: ring buffer, packet queue.
    reported: [u64; 2],
}

impl Beats {
    pub(crate) fn new(identity: Identity, interval_ms: u64, started_ns: i64) -> Self {
        Beats {
            identity,
            interval_ms,
            started_ns,
            sequence: 0,
            reported: [0; 2],
        }
    }

    /// The next heartbeat, at `now_ns`, with the losses since the last one.
    pub(crate) fn next(
        &mut self,
        now_ns: i64,
        sources: Vec<String>,
        summary: &Summary,
        stopping: bool,
    ) -> AgentHeartbeat {
        let totals = [
            Summary::get(&summary.lost_ringbuf),
            Summary::get(&summary.lost_packet_queue),
        ];
        let losses = ["ringbuf", "packet_queue"]
            .into_iter()
            .zip(totals.iter().zip(&self.reported))
            .map(|(source, (now, before))| SourceLoss {
                source: source.to_owned(),
                lost: now.saturating_sub(*before),
            })
            .collect();
        self.reported = totals;
        let header = self.identity.header(
            now_ns,
            &[
                b"heartbeat",
                &self.started_ns.to_le_bytes(),
                &self.sequence.to_le_bytes(),
            ],
        );
        let beat = AgentHeartbeat {
            header,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_ns: self.started_ns,
            sequence: self.sequence,
            interval_ms: self.interval_ms,
            sources,
            losses,
            stopping,
            enforcing: summary.enforcing.load(std::sync::atomic::Ordering::Relaxed),
        };
        self.sequence += 1;
        beat
    }

    pub(crate) fn record(
        &self,
        beat: &AgentHeartbeat,
    ) -> Result<OutRecord, tapwire_schemas::EncodeError> {
        Ok(OutRecord::new(
            topics::AGENTS,
            Some(self.identity.sensor_id.clone().into_bytes()),
            encode(beat)?,
        ))
    }
}

/// Sends heartbeats until `stop` (cancelled once every source stopped), then
/// the last one, `stopping = true`.
///
/// Heartbeats are made on time and sent in order by a second future: a slow
/// delivery (the first one waits for the brokers' metadata) delays them on
/// the way, never their timestamps, so readers see no false gap.
pub(crate) async fn run<S: Sink>(
    mut beats: Beats,
    sink: S,
    running: Running,
    summary: Arc<Summary>,
    stop: CancellationToken,
) {
    let interval = Duration::from_millis(beats.interval_ms.max(1));
    let log = RateLimit::new(Duration::from_secs(60));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(OutRecord, bool)>(QUEUE);
    let make = async {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let beat = beats.next(crate::inventory::now_ns(), running.names(), &summary, false);
            let queued = match beats.record(&beat) {
                Ok(record) => tx
                    .try_send((record, false))
                    .map_err(|_| "the send queue is full".to_owned()),
                Err(err) => Err(err.to_string()),
            };
            if let Err(error) = queued {
                failed(&log, error, false);
            }
        }
        let last = beats.next(crate::inventory::now_ns(), Vec::new(), &summary, true);
        match beats.record(&last) {
            Ok(record) => {
                let _ = tx.send((record, true)).await;
            }
            Err(err) => failed(&log, err.to_string(), true),
        }
        drop(tx);
    };
    let deliver = async {
        while let Some((record, stopping)) = rx.recv().await {
            // Once stopping, only the last heartbeat is worth the wait.
            if stop.is_cancelled() && !stopping {
                continue;
            }
            let timeout = if stopping {
                LAST_SEND_TIMEOUT
            } else {
                SEND_TIMEOUT
            };
            match tokio::time::timeout(timeout, sink.send_batch(vec![record])).await {
                Ok(Ok(())) => Summary::add(&summary.heartbeats, 1),
                Ok(Err(err)) => failed(&log, err.to_string(), stopping),
                Err(_) => failed(&log, format!("not delivered within {timeout:?}"), stopping),
            }
        }
    };
    tokio::join!(make, deliver);
}

/// Heartbeats waiting for delivery at most.
const QUEUE: usize = 64;

fn failed(log: &RateLimit, error: String, stopping: bool) {
    crate::agent::metrics().dropped("heartbeat", 1);
    if let Some(suppressed) = log.allow() {
        tracing::warn!(%error, suppressed, stopping, "heartbeat not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use tapwire_plumbing::bus::memory::MemoryBus;
    use tapwire_schemas::{AnyEvent, decode_any};

    fn identity() -> Identity {
        Identity {
            node: "node-h".into(),
            sensor_id: "sensor-h".into(),
            node_ip: None,
        }
    }

    #[test]
    fn losses_are_reported_once_per_counter() {
        let summary = Summary::default();
        let mut beats = Beats::new(identity(), 500, 7);
        summary.lost("ringbuf", 5);
        let first = beats.next(10, vec!["inventory".into()], &summary, false);
        assert_eq!(first.lost(), 5);
        assert_eq!(first.losses[0].source, "ringbuf");
        summary.lost("packet_queue", 2);
        let second = beats.next(20, vec![], &summary, true);
        assert_eq!((second.losses[0].lost, second.losses[1].lost), (0, 2));
        assert_eq!((second.sequence, second.stopping), (1, true));
        assert_ne!(first.header.id, second.header.id);
    }

    /// One at start, one per interval, a last one saying it stops.
    #[tokio::test(start_paused = true)]
    async fn beats_every_interval_and_a_last_one_on_stop() {
        let bus = MemoryBus::new();
        bus.create_topic(topics::AGENTS, 1);
        let summary = Arc::new(Summary::default());
        let running = Running::default();
        let guard = running.enter("inventory".into());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            Beats::new(identity(), 1000, 1),
            bus.sink(),
            running.clone(),
            summary.clone(),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        drop(guard);
        stop.cancel();
        task.await.expect("task");
        let beats: Vec<AgentHeartbeat> = bus
            .messages(topics::AGENTS)
            .iter()
            .map(|m| {
                assert_eq!(m.key.as_deref(), Some(&b"sensor-h"[..]));
                match decode_any(&m.payload).expect("decodes") {
                    AnyEvent::AgentHeartbeat(h) => h,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(beats.len(), 4, "at 0, 1 s, 2 s and the last: {beats:?}");
        assert!(
            beats[..3]
                .iter()
                .all(|b| !b.stopping && b.sources == ["inventory"])
        );
        assert!(beats[3].stopping && beats[3].sources.is_empty());
        assert_eq!(summary.heartbeats.load(Ordering::Relaxed), 4);
    }
}
