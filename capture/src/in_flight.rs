//! Batches handed to the sink whose delivery is not acknowledged yet.
//!
//! The packet sources (pcap replay, live capture) keep up to
//! `capture.batches_in_flight` sends going at once: the next batch is built
//! and queued while the earlier ones wait for their delivery reports.
//!
//! - Order: a send is polled for the first time when it is pushed, so sends
//!   start in the order their batches were made; a sink that queues records
//!   in the order its sends start (the Kafka sink, see
//!   `tapwire_plumbing::bus::kafka::KafkaSink`) keeps records with one key
//!   in order.
//! - Truthful counts: a batch's records count as sent (the [`Summary`]
//!   counters and `tapwire_messages_out_total`) only once the whole batch is
//!   acknowledged.
//! - At least once: the first failed batch fails the source. Batches behind
//!   it may still be delivered; they are not counted, and a replay run again
//!   sends them again.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};

use tapwire_plumbing::bus::BusError;

use crate::agent::Summary;

/// What one batch carries, counted when it is acknowledged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Packet records.
    pub(crate) packets: u64,
    /// L4 events derived from the packets.
    pub(crate) l4_events: u64,
    /// DNS events derived from the packets.
    pub(crate) dns_events: u64,
}

impl Counts {
    fn add_to(self, summary: &Summary) {
        Summary::add(&summary.packets, self.packets);
        Summary::add(&summary.l4_events, self.l4_events);
        Summary::add(&summary.dns_events, self.dns_events);
    }
}

type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'a>>;

/// Up to `max` sends in flight, oldest first.
pub(crate) struct InFlight<'a> {
    max: usize,
    sends: VecDeque<(Sending<'a>, Counts)>,
}

impl<'a> InFlight<'a> {
    /// At most `max` sends at once (at least 1: each send awaited before the
    /// next starts).
    pub(crate) fn new(max: usize) -> Self {
        InFlight {
            max: max.max(1),
            sends: VecDeque::with_capacity(max.max(1)),
        }
    }

    /// Whether no send is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.sends.is_empty()
    }

    /// Starts `send`, the send of a batch carrying `counts`: counts the
    /// sends acknowledged meanwhile, waits while `max` are in flight, then
    /// polls `send` once, which takes its place in the sink's queue.
    pub(crate) async fn push<F>(
        &mut self,
        send: F,
        counts: Counts,
        summary: &Summary,
    ) -> Result<(), BusError>
    where
        F: Future<Output = Result<(), BusError>> + Send + 'a,
    {
        self.count_acknowledged(summary).await?;
        while self.sends.len() >= self.max {
            self.acknowledged(summary).await?;
        }
        let mut send: Sending<'a> = Box::pin(send);
        match poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
            Poll::Ready(result) => {
                result?;
                counts.add_to(summary);
            }
            Poll::Pending => self.sends.push_back((send, counts)),
        }
        Ok(())
    }

    /// Counts the sends acknowledged by now, without waiting.
    pub(crate) async fn count_acknowledged(&mut self, summary: &Summary) -> Result<(), BusError> {
        poll_fn(|cx| Poll::Ready(self.poll_sends(cx, summary)))
            .await
            .map(drop)
    }

    /// Waits until at least one send is acknowledged (at once when none is
    /// in flight); fails with the first failed send.
    pub(crate) async fn acknowledged(&mut self, summary: &Summary) -> Result<(), BusError> {
        poll_fn(|cx| {
            if self.sends.is_empty() {
                return Poll::Ready(Ok(()));
            }
            match self.poll_sends(cx, summary) {
                Ok(0) => Poll::Pending,
                Ok(_) => Poll::Ready(Ok(())),
                Err(err) => Poll::Ready(Err(err)),
            }
        })
        .await
    }

    /// Waits until every send in flight is acknowledged.
    pub(crate) async fn drain(&mut self, summary: &Summary) -> Result<(), BusError> {
        while !self.sends.is_empty() {
            self.acknowledged(summary).await?;
        }
        Ok(())
    }

    /// Polls every send, oldest first; counts and removes the acknowledged
    /// ones. How many were, or the first failure.
    fn poll_sends(&mut self, cx: &mut Context<'_>, summary: &Summary) -> Result<usize, BusError> {
        let mut done = 0;
        let mut i = 0;
        while i < self.sends.len() {
            match self.sends[i].0.as_mut().poll(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(result) => {
                    let (_, counts) = self.sends.remove(i).expect("index in range");
                    result?;
                    counts.add_to(summary);
                    done += 1;
                }
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tapwire_plumbing::bus::{OutRecord, Sink};

    /// Appends each batch when its send starts, acknowledges it after a
    /// delay that varies (later batches often first), fails batch `fail`.
    #[derive(Clone, Default)]
    struct Slow {
        log: Arc<Mutex<Vec<u64>>>,
        started: Arc<AtomicUsize>,
        acked: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
        fail: Option<usize>,
    }

    impl Sink for Slow {
        async fn send_batch(&self, records: Vec<OutRecord>) -> Result<(), BusError> {
            let n = self.started.fetch_add(1, Ordering::SeqCst);
            let open = n + 1 - self.acked.load(Ordering::SeqCst);
            self.peak.fetch_max(open, Ordering::SeqCst);
            self.log.lock().unwrap().extend(
                records
                    .iter()
                    .map(|r| u64::from_be_bytes(r.payload[..8].try_into().unwrap())),
            );
            tokio::time::sleep(Duration::from_millis(10 + (n as u64 * 7919) % 23)).await;
            self.acked.fetch_add(1, Ordering::SeqCst);
            if self.fail == Some(n) {
                return Err(BusError::Config(format!("batch {n} refused")));
            }
            Ok(())
        }
    }

    fn batch(first: u64) -> Vec<OutRecord> {
        (first..first + 10)
            .map(|i| OutRecord::new("t", Some(vec![(i % 3) as u8]), i.to_be_bytes().to_vec()))
            .collect()
    }

    async fn send_all(
        sink: &Slow,
        max: usize,
        batches: u64,
        summary: &Summary,
    ) -> Result<(), BusError> {
        let mut sends = InFlight::new(max);
        for b in 0..batches {
            let counts = Counts {
                packets: 10,
                ..Counts::default()
            };
            sends
                .push(sink.send_batch(batch(b * 10)), counts, summary)
                .await?;
            assert!(sends.sends.len() <= max);
        }
        sends.drain(summary).await
    }

    #[tokio::test(start_paused = true)]
    async fn sends_start_in_order_and_count_only_acknowledged_batches() {
        let sink = Slow::default();
        let summary = Summary::default();
        send_all(&sink, 4, 50, &summary).await.expect("sent");
        assert_eq!(*sink.log.lock().unwrap(), (0..500).collect::<Vec<u64>>());
        assert_eq!(
            sink.peak.load(Ordering::SeqCst),
            4,
            "4 batches in flight at most"
        );
        assert_eq!(Summary::get(&summary.packets), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_fails_the_sends_and_is_not_counted() {
        let sink = Slow {
            fail: Some(7),
            ..Slow::default()
        };
        let summary = Summary::default();
        let err = send_all(&sink, 4, 50, &summary).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid bus configuration: batch 7 refused"
        );
        let counted = Summary::get(&summary.packets);
        let acked = sink.acked.load(Ordering::SeqCst) as u64;
        // Whole batches only, and never batch 7; none started after it failed.
        assert_eq!(counted % 10, 0);
        assert!(
            counted <= (acked - 1) * 10,
            "{counted} records of {acked} batches"
        );
        assert!(sink.started.load(Ordering::SeqCst) <= 7 + 4);
    }
}
