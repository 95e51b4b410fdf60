//! The policy stage: [`PolicyConfig`] declares it (enriched topics in,
//! verdicts out) and builds [`PolicyStage`], one verdict per enriched event,
//! with policies reloaded when their files change.
//!
//! Reload: the files' modification times are checked between batches and
//! while idle (every `reload_check`); changed files are parsed and compiled, and the
//! new set replaces the old one before the next batch, so a batch is judged
//! by one set, nothing is lost and nothing judged twice. Files that no longer
//! parse or compile are reported and the previous set stays in force.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use tapwire_plumbing::bus::{Message, OutRecord, Sink};
use tapwire_plumbing::consumer::{BatchHandler, HandlerError};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::stage::{BoxError, BuildContext, BusSink, Stage};
use tapwire_plumbing::telemetry::StageMetrics;
use tapwire_schemas::{AnyEvent, decode_any, encode, topics};

use crate::compile::PolicySet;
use crate::config::PolicyConfig;
use crate::document::parse;

impl Stage for PolicyConfig {
    type Handler = PolicyStage<BusSink>;

    fn name(&self) -> &'static str {
        "policy"
    }

    fn group(&self) -> String {
        self.group.clone()
    }

    fn inputs(&self) -> Vec<String> {
        vec![topics::L4_ENRICHED.into(), topics::RUNTIME_ENRICHED.into()]
    }

    fn outputs(&self) -> Vec<String> {
        vec![topics::VERDICTS.into()]
    }

    async fn build(self, cx: &BuildContext) -> Result<PolicyStage<BusSink>, BoxError> {
        self.validate()?;
        let policies = PolicyFiles::load(self.files.clone())?;
        tracing::info!(
            policies = policies.set().len(),
            files = self.files.len(),
            "policies loaded"
        );
        Ok(PolicyStage::new(
            policies,
            cx.output.clone(),
            Duration::from_millis(self.reload_check_ms),
            cx.stage.metrics.clone(),
        ))
    }
}

/// Policy files and the set compiled from them.
pub struct PolicyFiles {
    files: Vec<PathBuf>,
    stamps: Vec<Option<SystemTime>>,
    set: PolicySet,
}

/// Why policy files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading failed.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A document is invalid.
    #[error(transparent)]
    Document(#[from] crate::document::DocumentError),
    /// A policy does not compile.
    #[error(transparent)]
    Compile(#[from] crate::compile::CompileError),
}

fn stamp(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(files: &[PathBuf]) -> Result<PolicySet, LoadError> {
    let mut documents = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|source| LoadError::Read {
            file: name.clone(),
            source,
        })?;
        documents.extend(parse(&name, &text)?);
    }
    Ok(PolicySet::compile(&documents)?)
}

impl PolicyFiles {
    /// Loads `files` (all must be valid at start).
    pub fn load(files: Vec<PathBuf>) -> Result<PolicyFiles, LoadError> {
        let stamps = files.iter().map(stamp).collect();
        let set = load(&files)?;
        Ok(PolicyFiles { files, stamps, set })
    }

    /// The policies in force.
    pub fn set(&self) -> &PolicySet {
        &self.set
    }

    /// Reloads when a file changed; `Some(result)` when it tried.
    pub fn reload_if_changed(&mut self) -> Option<Result<usize, LoadError>> {
        let stamps: Vec<_> = self.files.iter().map(stamp).collect();
        if stamps == self.stamps {
            return None;
        }
        self.stamps = stamps;
        Some(load(&self.files).map(|set| {
            self.set = set;
            self.set.len()
        }))
    }
}

/// Judges enriched events and produces verdicts.
pub struct PolicyStage<K> {
    policies: PolicyFiles,
    sink: K,
    metrics: StageMetrics,
    reload_check: Duration,
    last_check: Instant,
}

impl<K: Sink> PolicyStage<K> {
    /// A stage judging with `policies`, producing to `sink`.
    pub fn new(
        policies: PolicyFiles,
        sink: K,
        reload_check: Duration,
        metrics: StageMetrics,
    ) -> Self {
        PolicyStage {
            policies,
            sink,
            metrics,
            reload_check,
            last_check: Instant::now(),
        }
    }
}

impl<K: Sink> PolicyStage<K> {
    fn reload_if_due(&mut self) {
        if self.last_check.elapsed() >= self.reload_check {
            self.last_check = Instant::now();
            match self.policies.reload_if_changed() {
                Some(Ok(n)) => tracing::info!(policies = n, "policies reloaded"),
                Some(Err(err)) => {
                    tracing::error!(error = %err, "policy files changed but are invalid; the previous policies stay in force")
                }
                None => {}
            }
        }
    }
}

impl<K: Sink> BatchHandler for PolicyStage<K> {
    fn tick_interval(&self) -> Option<Duration> {
        Some(self.reload_check)
    }

    async fn tick(&mut self) -> Result<(), HandlerError> {
        self.reload_if_due();
        Ok(())
    }

    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        self.reload_if_due();
        let mut out = Vec::with_capacity(batch.len());
        let mut rejections = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            match decode_any(&message.payload) {
                Ok(AnyEvent::EnrichedEvent(event)) => {
                    let verdict = self.policies.set().judge(event);
                    let payload =
                        encode(&verdict).map_err(|e| HandlerError::Fatal(e.to_string()))?;
                    out.push(OutRecord::new(
                        topics::VERDICTS,
                        message.key.clone(),
                        payload,
                    ));
                }
                // Loss records travel on, so later stages see the gap.
                Ok(AnyEvent::LossRecord(_)) => {
                    out.push(OutRecord::new(
                        topics::VERDICTS,
                        message.key.clone(),
                        message.payload.clone(),
                    ));
                }
                Ok(other) => rejections.push(Rejection::wrong_schema(
                    index,
                    "policy reads enriched events",
                    other.kind(),
                )),
                Err(err) => rejections.push(Rejection::undecodable(index, &err)),
            }
        }
        let n = out.len() as u64;
        self.sink.send_batch(out).await?;
        self.metrics.messages_out.inc_by(n);
        Ok(rejections)
    }
}
