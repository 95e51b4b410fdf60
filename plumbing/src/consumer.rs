//! The at-least-once consumer loop every stage runs.
//!
//! 1. take a batch from the [`Source`];
//! 2. hand it to the stage's [`BatchHandler`], which names the messages it
//!    rejects as bad data;
//! 3. send the rejected messages to the dead-letter topic and wait for their
//!    delivery;
//! 4. store the offsets of every batch whose output is durable: most
//!    handlers return only after everything derived from the batch is
//!    acknowledged downstream (produced and delivered, inserted, written and
//!    flushed); others say later ([`BatchHandler::durable_batches`]), and
//!    their offsets wait until then. Periodic work runs between batches
//!    ([`BatchHandler::tick`]), also while none arrive.
//!
//! A transient failure in 2 or 3 retries the same batch with exponential
//! backoff (the stage pauses, nothing is skipped) until it succeeds or
//! shutdown is requested. Shutdown is checked between batches: the batch in
//! hand is finished, the handler makes its output durable
//! ([`BatchHandler::finish`]), the offsets are stored, the source closed. So after a crash
//! at most the batches not yet stored are delivered again.

use std::future::Future;
use std::time::Duration;

use tapwire_schemas::Record;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{BusError, Message, Sink, Source};
use crate::dlq::{Rejection, dead_letter};
use crate::telemetry::{Health, RateLimit, StageMetrics};

/// Knobs of the loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Largest batch.
    pub batch_max_messages: usize,
    /// How long to wait for a batch to fill after its first message.
    pub batch_linger: Duration,
    /// First retry delay after a transient failure.
    pub retry_backoff_initial: Duration,
    /// Longest retry delay.
    pub retry_backoff_max: Duration,
}

impl Default for LoopSettings {
    fn default() -> Self {
        LoopSettings {
            batch_max_messages: 5000,
            batch_linger: Duration::from_millis(50),
            retry_backoff_initial: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(10),
        }
    }
}

/// Failures a handler reports.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Downstream is unavailable; the batch is retried.
    #[error("downstream unavailable: {0}")]
    Transient(String),
    /// The stage cannot go on (misconfiguration); the loop stops.
    #[error("{0}")]
    Fatal(String),
}

impl From<BusError> for HandlerError {
    fn from(err: BusError) -> Self {
        match err {
            BusError::Config(_) | BusError::UnknownTopic(_) => HandlerError::Fatal(err.to_string()),
            BusError::Kafka(_) => HandlerError::Transient(err.to_string()),
        }
    }
}

/// A stage's work on one batch.
///
/// Most handlers return from [`BatchHandler::handle`] only when everything
/// derived from the batch is acknowledged downstream (produced and
/// delivered, inserted, written and flushed): the batch is durable at once.
/// A handler whose output becomes durable later (the recorder: a slice is
/// stored when it closes) says so through [`BatchHandler::durable_batches`],
/// and the loop holds the offsets back until then.
pub trait BatchHandler: Send {
    /// Processes `batch`. Returns the messages it rejects as bad data.
    fn handle(
        &mut self,
        batch: &[Message],
    ) -> impl Future<Output = Result<Vec<Rejection>, HandlerError>> + Send;

    /// How many of the batches handed to [`BatchHandler::handle`] so far,
    /// counted from the first, have their output durable. `None` (the
    /// default): all of them, as each `handle` returned.
    fn durable_batches(&self) -> Option<u64> {
        None
    }

    /// How often [`BatchHandler::tick`] runs while batches arrive or not.
    /// `None` (the default): never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work (expiry, retries, checkpoints).
    fn tick(&mut self) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async { Ok(()) }
    }

    /// Called once when the loop stops: make everything handled durable.
    /// Whatever is still not durable afterwards is read again on restart.
    fn finish(&mut self) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async { Ok(()) }
    }

    /// What the stage did, for its final summary line (after "N read, M
    /// dead-lettered").
    fn report(&self) -> String {
        String::new()
    }
}

/// Why the loop stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The source failed.
    #[error("reading from the bus: {0}")]
    Source(#[from] BusError),
    /// The handler reported a fatal error.
    #[error("stage {stage} stopped: {source}")]
    Handler {
        /// Stage name.
        stage: String,
        /// The handler's error.
        #[source]
        source: HandlerError,
    },
}

/// What the loop did, returned when it stops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoopSummary {
    /// Messages handled and stored.
    pub messages: u64,
    /// Of those, dead-lettered.
    pub dead_lettered: u64,
    /// Batches stored.
    pub batches: u64,
}

/// What a running stage carries: its name, loop settings, telemetry and the
/// shutdown token.
#[derive(Clone)]
pub struct StageContext {
    /// Stage name, used in logs, metrics and dead-letter headers.
    pub name: String,
    /// Loop knobs.
    pub settings: LoopSettings,
    /// The stage's counters.
    pub metrics: StageMetrics,
    /// What `/healthz` reports.
    pub health: Health,
    /// Cancelled to stop.
    pub shutdown: CancellationToken,
}

impl StageContext {
    /// A context with fresh counters and health for `name`.
    pub fn new(name: &str, settings: LoopSettings, shutdown: CancellationToken) -> Self {
        StageContext {
            name: name.to_owned(),
            settings,
            metrics: StageMetrics::new(name),
            health: Health::default(),
            shutdown,
        }
    }
}

/// Runs the loop until shutdown is requested or a fatal error.
pub async fn run<S, K, H>(
    ctx: &StageContext,
    mut source: S,
    dlq: &K,
    handler: &mut H,
) -> Result<LoopSummary, LoopError>
where
    S: Source,
    K: Sink,
    H: BatchHandler,
{
    let (stage, settings, metrics, health, shutdown) = (
        ctx.name.as_str(),
        &ctx.settings,
        &ctx.metrics,
        &ctx.health,
        &ctx.shutdown,
    );
    let mut summary = LoopSummary::default();
    let dlq_log = RateLimit::new(Duration::from_secs(10));
    let mut held = Held::default();
    let tick_every = handler.tick_interval();
    let mut last_tick = tokio::time::Instant::now();
    'batches: loop {
        if let Some(every) = tick_every
            && last_tick.elapsed() >= every
        {
            last_tick = tokio::time::Instant::now();
            handler.tick().await.map_err(|source| LoopError::Handler {
                stage: stage.to_owned(),
                source,
            })?;
            held.release(handler.durable_batches(), &mut source)?;
        }
        let idle = tick_every.map(|every| every.saturating_sub(last_tick.elapsed()));
        let batch = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            batch = source.next_batch(settings.batch_max_messages, settings.batch_linger, idle) => batch?,
        };
        if batch.is_empty() {
            continue; // idle: time for the tick
        }
        metrics.messages_in.inc_by(batch.len() as u64);

        let mut backoff = Backoff::new(settings);
        let rejections = loop {
            let span = tracing::info_span!("batch", stage, messages = batch.len());
            match handler.handle(&batch).instrument(span).await {
                Ok(rejections) => break rejections,
                Err(HandlerError::Transient(reason)) => {
                    if !backoff.wait(stage, &reason, health, shutdown).await {
                        break 'batches; // shut down while failing: nothing stored
                    }
                }
                Err(source) => {
                    return Err(LoopError::Handler {
                        stage: stage.to_owned(),
                        source,
                    });
                }
            }
        };
        if !rejections.is_empty() {
            let records: Vec<_> = rejections
                .iter()
                .filter_map(|r| batch.get(r.index).map(|m| dead_letter(stage, m, r)))
                .collect();
            let mut backoff = Backoff::new(settings);
            while let Err(err) = dlq.send_batch(records.clone()).await {
                match HandlerError::from(err) {
                    HandlerError::Transient(reason) => {
                        if !backoff.wait(stage, &reason, health, shutdown).await {
                            break 'batches;
                        }
                    }
                    fatal => {
                        return Err(LoopError::Handler {
                            stage: stage.to_owned(),
                            source: fatal,
                        });
                    }
                }
            }
            for r in &rejections {
                metrics.dead_lettered(r.error);
            }
            if let Some(suppressed) = dlq_log.allow() {
                let first = &rejections[0];
                tracing::warn!(stage, count = rejections.len(), suppressed, error = first.error,
                    reason = %first.reason, "messages sent to the dead-letter topic");
            }
            summary.dead_lettered += rejections.len() as u64;
        }
        health.set_ok();
        held.push(&batch);
        held.release(handler.durable_batches(), &mut source)?;
        summary.messages += batch.len() as u64;
        summary.batches += 1;
    }
    match handler.finish().await {
        Ok(()) => held.release(handler.durable_batches(), &mut source)?,
        Err(err) => tracing::error!(stage, error = %err,
            "could not make the last batches durable; they are read again on restart"),
    }
    if held.len() > 0 {
        tracing::warn!(
            stage,
            batches = held.len(),
            "offsets of batches whose output is not durable were not stored"
        );
    }
    source.close().await?;
    tracing::info!(
        stage,
        messages = summary.messages,
        dead_lettered = summary.dead_lettered,
        "consumer stopped"
    );
    Ok(summary)
}

/// Offsets of handled batches whose output is not durable yet, in order.
#[derive(Default)]
struct Held {
    /// Batches handled so far.
    handled: u64,
    /// Per batch not yet released: its sequence number and last offsets.
    batches: std::collections::VecDeque<(u64, Vec<Message>)>,
}

impl Held {
    fn len(&self) -> usize {
        self.batches.len()
    }

    fn push(&mut self, batch: &[Message]) {
        let last = crate::bus::last_offsets(batch)
            .into_iter()
            .map(|(topic, partition, offset)| Message {
                topic: topic.to_owned(),
                partition,
                offset,
                key: None,
                payload: Vec::new(),
                headers: Vec::new(),
            })
            .collect();
        self.batches.push_back((self.handled, last));
        self.handled += 1;
    }

    /// Stores the offsets of every held batch the handler calls durable.
    fn release<S: Source>(&mut self, durable: Option<u64>, source: &mut S) -> Result<(), BusError> {
        let durable = durable.unwrap_or(u64::MAX);
        let mut last: Vec<Message> = Vec::new();
        while self.batches.front().is_some_and(|(seq, _)| *seq < durable) {
            let (_, offsets) = self.batches.pop_front().expect("front exists");
            for o in offsets {
                match last
                    .iter_mut()
                    .find(|m| m.topic == o.topic && m.partition == o.partition)
                {
                    Some(m) => m.offset = m.offset.max(o.offset),
                    None => last.push(o),
                }
            }
        }
        if last.is_empty() {
            Ok(())
        } else {
            source.store(&last)
        }
    }
}

/// Exponential backoff between retries of one batch.
struct Backoff {
    delay: Duration,
    max: Duration,
}

impl Backoff {
    fn new(settings: &LoopSettings) -> Self {
        Backoff {
            delay: settings.retry_backoff_initial,
            max: settings.retry_backoff_max,
        }
    }

    /// Logs, marks the stage unhealthy and sleeps; `false` if shutdown came first.
    async fn wait(
        &mut self,
        stage: &str,
        reason: &str,
        health: &Health,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::warn!(stage, %reason, retry_in_ms = self.delay.as_millis() as u64,
            "downstream failed; retrying the same batch");
        health.set_failing(format!("{stage}: {reason}"));
        let slept = tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.delay) => true,
        };
        self.delay = (self.delay * 2).min(self.max);
        slept
    }
}

/// Decodes every message of `batch` as a `T`, rejecting those that do not.
pub fn decode_batch<T: Record>(batch: &[Message]) -> (Vec<(usize, T)>, Vec<Rejection>) {
    let mut good = Vec::with_capacity(batch.len());
    let mut bad = Vec::new();
    for (index, message) in batch.iter().enumerate() {
        match tapwire_schemas::decode::<T>(&message.payload) {
            Ok(value) => good.push((index, value)),
            Err(err) => bad.push(Rejection::undecodable(index, &err)),
        }
    }
    (good, bad)
}
