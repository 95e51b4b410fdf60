//! The enrich stage: [`EnrichConfig`] declares it (raw topics in, enriched
//! topics out) and builds [`EnrichStage`], its batch handler, once the pod
//! metadata of the compacted `tapwire.pods` topic is loaded.
//!
//! Pod metadata reaches the handler through the topic's follower, so the
//! index has a single owner and needs no lock. An event whose in-cluster metadata is
//! missing is held while the batch waits (up to `metadata_wait_ms`) for new
//! pod records; past that it goes out with the side marked `unresolved`.
//! Outputs keep the input's key and order, and the batch returns only after
//! the bus acknowledged every output, so offsets never run ahead.

use std::time::Duration;

use tapwire_cluster::feed::ClusterFeed;
use tapwire_plumbing::bus::{Message, OutRecord, Sink};
use tapwire_plumbing::consumer::{BatchHandler, HandlerError};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::stage::{BoxError, BuildContext, BusSink, Stage};
use tapwire_plumbing::telemetry::StageMetrics;
use tapwire_schemas::events::{EnrichedEvent, EventBody};
use tapwire_schemas::{AnyEvent, decode_any, encode, topics};

use crate::EnrichConfig;
use crate::enrich::{Enricher, Held};

impl Stage for EnrichConfig {
    type Handler = EnrichStage<BusSink>;

    fn name(&self) -> &'static str {
        "enrich"
    }

    fn group(&self) -> String {
        self.group.clone()
    }

    fn inputs(&self) -> Vec<String> {
        vec![topics::L4_RAW.into(), topics::RUNTIME_RAW.into()]
    }

    fn outputs(&self) -> Vec<String> {
        vec![topics::L4_ENRICHED.into(), topics::RUNTIME_ENRICHED.into()]
    }

    /// Rebuilds the pod state from `tapwire.pods` before the first event.
    async fn build(self, cx: &BuildContext) -> Result<EnrichStage<BusSink>, BoxError> {
        let mut enricher = self.enricher()?;
        let shutdown = &cx.stage.shutdown;
        let mut pods = ClusterFeed::open(&cx.bus, shutdown.child_token())?;
        let loaded = pods
            .load(|record| enricher.apply(record), shutdown)
            .await?
            .ok_or("stopped before the pod metadata was loaded")?;
        tracing::info!(
            records = loaded,
            pods = enricher.index().len(),
            "pod metadata loaded from {}",
            topics::PODS
        );
        Ok(EnrichStage::new(
            enricher,
            pods,
            cx.output.clone(),
            Duration::from_millis(self.metadata_wait_ms),
            cx.stage.metrics.clone(),
        ))
    }
}

/// Enriches raw events and produces them to the enriched topics.
pub struct EnrichStage<K> {
    enricher: Enricher,
    pods: ClusterFeed,
    sink: K,
    wait: Duration,
    metrics: StageMetrics,
}

impl<K: Sink> EnrichStage<K> {
    /// A stage fed pod metadata by `pods`, producing to `sink`.
    pub fn new(
        enricher: Enricher,
        pods: ClusterFeed,
        sink: K,
        wait: Duration,
        metrics: StageMetrics,
    ) -> Self {
        EnrichStage {
            enricher,
            pods,
            sink,
            wait,
            metrics,
        }
    }

    /// The enricher (for state inspection).
    pub fn enricher(&self) -> &Enricher {
        &self.enricher
    }

    fn drain_pods(&mut self) {
        let enricher = &mut self.enricher;
        self.pods.drain(|record| enricher.apply(record));
    }
}

fn output_topic(event: &EnrichedEvent) -> &'static str {
    match event.body {
        EventBody::L4(_) | EventBody::Dns(_) => topics::L4_ENRICHED,
        EventBody::Runtime(_) => topics::RUNTIME_ENRICHED,
    }
}

fn record(event: &EnrichedEvent, source: &Message) -> Result<OutRecord, HandlerError> {
    let payload = encode(event).map_err(|e| HandlerError::Fatal(e.to_string()))?;
    Ok(OutRecord::new(
        output_topic(event),
        source.key.clone(),
        payload,
    ))
}

impl<K: Sink> BatchHandler for EnrichStage<K> {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        self.drain_pods();
        let mut out: Vec<Option<OutRecord>> = vec![None; batch.len()];
        let mut held: Vec<(usize, Held)> = Vec::new();
        let mut rejections = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            // Most connections: read without copies, and written by splicing
            // the event's bytes with cached pod contexts.
            if let Ok(view) = tapwire_schemas::codec::decode_l4_view(&message.payload) {
                let mut payload = Vec::with_capacity(message.payload.len() + 512);
                if self
                    .enricher
                    .enrich_l4_into(&view, &message.payload, &mut payload)
                {
                    out[index] = Some(OutRecord::new(
                        topics::L4_ENRICHED,
                        message.key.clone(),
                        payload,
                    ));
                    continue;
                }
            }
            let event = match decode_any(&message.payload) {
                Ok(AnyEvent::L4Event(e)) => Held::L4(e),
                Ok(AnyEvent::DnsEvent(e)) => Held::Dns(e),
                Ok(AnyEvent::RuntimeEvent(e)) => Held::Runtime(e),
                Ok(AnyEvent::LossRecord(_)) => {
                    // Loss records travel on, so later stages see the gap.
                    let topic = if message.topic == topics::RUNTIME_RAW {
                        topics::RUNTIME_ENRICHED
                    } else {
                        topics::L4_ENRICHED
                    };
                    out[index] = Some(OutRecord::new(
                        topic,
                        message.key.clone(),
                        message.payload.clone(),
                    ));
                    continue;
                }
                Ok(other) => {
                    rejections.push(Rejection::wrong_schema(
                        index,
                        "enrich reads L4, DNS and runtime events",
                        other.kind(),
                    ));
                    continue;
                }
                Err(err) => {
                    rejections.push(Rejection::undecodable(index, &err));
                    continue;
                }
            };
            match self.enricher.enrich(event, false) {
                Ok(enriched) => out[index] = Some(record(&enriched, message)?),
                Err(event) => held.push((index, event)),
            }
        }

        if !held.is_empty() {
            let deadline = tokio::time::Instant::now() + self.wait;
            loop {
                let mut waiting = Vec::with_capacity(held.len());
                for (index, event) in held.drain(..) {
                    match self.enricher.enrich(event, false) {
                        Ok(enriched) => out[index] = Some(record(&enriched, &batch[index])?),
                        Err(event) => waiting.push((index, event)),
                    }
                }
                held = waiting;
                if held.is_empty() {
                    break;
                }
                match tokio::time::timeout_at(deadline, self.pods.next()).await {
                    Ok(Some(record)) => {
                        self.enricher.apply(record);
                        self.drain_pods();
                    }
                    Ok(None) | Err(_) => break, // no more metadata, or the wait is over
                }
            }
            let before = self.enricher.tally.unresolved;
            for (index, event) in held {
                let enriched = self.enricher.finish(event);
                out[index] = Some(record(&enriched, &batch[index])?);
            }
            let unresolved = self.enricher.tally.unresolved - before;
            if unresolved > 0 {
                self.metrics.marked("unresolved", unresolved);
            }
        }

        let records: Vec<OutRecord> = out.into_iter().flatten().collect();
        let n = records.len() as u64;
        self.sink.send_batch(records).await?;
        self.metrics.messages_out.inc_by(n);
        Ok(rejections)
    }

    fn report(&self) -> String {
        format!(
            "{} sides unresolved, {} pods known",
            self.enricher.tally.unresolved,
            self.enricher.index().len()
        )
    }
}
