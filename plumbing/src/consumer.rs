//! The at-least-once consumer loop every stage runs.
//!
//! 1. take a batch from the [`Source`];
//! 2. hand it to the stage's [`BatchHandler`], which returns only after
//!    everything derived from the batch is acknowledged downstream (produced
//!    and delivered, inserted, written and flushed), and names the messages
//!    it rejects as bad data;
//! 3. send the rejected messages to the dead-letter topic and wait for their
//!    delivery;
//! 4. store the batch's offsets.
//!
//! A transient failure in 2 or 3 retries the same batch with exponential
//! backoff (the stage pauses, nothing is skipped) until it succeeds or
//! shutdown is requested. Shutdown is checked between batches: the batch in
//! hand is finished, its offsets stored, the source closed. So after a crash
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
pub trait BatchHandler: Send {
    /// Processes `batch`. Returns after every output is acknowledged
    /// downstream, with the messages it rejects as bad data.
    fn handle(
        &mut self,
        batch: &[Message],
    ) -> impl Future<Output = Result<Vec<Rejection>, HandlerError>> + Send;
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
    'batches: loop {
        let batch = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            batch = source.next_batch(settings.batch_max_messages, settings.batch_linger) => batch?,
        };
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
        source.store(&batch)?;
        summary.messages += batch.len() as u64;
        summary.batches += 1;
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
