//! The policy stage: [`PolicyConfig`] declares it (enriched topics in,
//! verdicts out) and builds [`PolicyStage`], one verdict per enriched event,
//! with policies reloaded when their files change.
//!
//! Reload: the files' modification times are checked between batches and
//! while idle (every `reload_check`); changed files are parsed and compiled, and the
//! new set replaces the old one before the next batch, so a batch is judged
//! by one set, nothing is lost and nothing judged twice. Files that no longer
//! parse or compile are reported and the previous set stays in force.
//!
//! Enforcement: the enforce-mode policies in force are published to the
//! compacted `tapwire.enforcement` (see [`crate::enforce`]) at start and
//! after every reload; a policy deleted or turned to audit gets a tombstone.
//! At start the topic is read first, so what was withdrawn while the stage
//! was down is withdrawn too.

use std::collections::BTreeMap;
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
use crate::document::{Document, parse};

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
        vec![topics::VERDICTS.into(), topics::ENFORCEMENT.into()]
    }

    async fn build(self, cx: &BuildContext) -> Result<PolicyStage<BusSink>, BoxError> {
        self.validate()?;
        let policies = PolicyFiles::load(self.files.clone())?;
        tracing::info!(
            policies = policies.set().len(),
            files = self.files.len(),
            "policies loaded"
        );
        let mut stage = PolicyStage::new(
            policies,
            cx.output.clone(),
            Duration::from_millis(self.reload_check_ms),
            cx.stage.metrics.clone(),
        );
        // What the topic holds now, so that policies removed while this
        // stage was down are withdrawn too.
        match published(cx).await {
            Ok(held) => {
                stage.published = Some(held);
                stage.publish().await?;
            }
            Err(err) => tracing::warn!(
                error = %err,
                topic = topics::ENFORCEMENT,
                "enforce-mode policies are not published to the node agents: nothing is enforced at the nodes"
            ),
        }
        Ok(stage)
    }
}

/// The records `tapwire.enforcement` holds (key -> value), tombstones
/// applied.
async fn published(cx: &BuildContext) -> Result<BTreeMap<String, Vec<u8>>, BoxError> {
    let mut follower = cx
        .bus
        .follow(topics::ENFORCEMENT, cx.stage.shutdown.clone())?;
    let mut held = BTreeMap::new();
    follower
        .load(
            |m| {
                let key =
                    String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned();
                if m.payload.is_empty() {
                    held.remove(&key);
                } else {
                    held.insert(key, m.payload);
                }
            },
            &cx.stage.shutdown,
        )
        .await?;
    Ok(held)
}

/// Policy files and the set compiled from them.
pub struct PolicyFiles {
    files: Vec<PathBuf>,
    stamps: Vec<Option<SystemTime>>,
    documents: Vec<Document>,
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

fn load(files: &[PathBuf]) -> Result<(Vec<Document>, PolicySet), LoadError> {
    let mut documents = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|source| LoadError::Read {
            file: name.clone(),
            source,
        })?;
        documents.extend(parse(&name, &text)?);
    }
    let set = PolicySet::compile(&documents)?;
    Ok((documents, set))
}

impl PolicyFiles {
    /// Loads `files` (all must be valid at start).
    pub fn load(files: Vec<PathBuf>) -> Result<PolicyFiles, LoadError> {
        let stamps = files.iter().map(stamp).collect();
        let (documents, set) = load(&files)?;
        Ok(PolicyFiles {
            files,
            stamps,
            documents,
            set,
        })
    }

    /// The policies in force.
    pub fn set(&self) -> &PolicySet {
        &self.set
    }

    /// The documents of the policies in force.
    pub fn documents(&self) -> &[Document] {
        &self.documents
    }

    /// Reloads when a file changed; `Some(result)` when it tried.
    pub fn reload_if_changed(&mut self) -> Option<Result<usize, LoadError>> {
        let stamps: Vec<_> = self.files.iter().map(stamp).collect();
        if stamps == self.stamps {
            return None;
        }
        self.stamps = stamps;
        Some(load(&self.files).map(|(documents, set)| {
            self.documents = documents;
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
    /// What `tapwire.enforcement` holds (key -> value); `None` when the
    /// topic cannot be followed (nothing is published).
    published: Option<BTreeMap<String, Vec<u8>>>,
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
            published: None,
        }
    }

    /// Brings `tapwire.enforcement` in line with the policies in force:
    /// changed enforce-mode policies written, withdrawn ones tombstoned.
    async fn publish(&mut self) -> Result<(), HandlerError> {
        let Some(held) = &mut self.published else {
            return Ok(());
        };
        let wanted = crate::enforce::records(self.policies.documents());
        let mut out = Vec::new();
        for (key, payload) in &wanted {
            if held.get(key) != Some(payload) {
                out.push(OutRecord::new(
                    topics::ENFORCEMENT,
                    Some(key.clone().into_bytes()),
                    payload.clone(),
                ));
            }
        }
        for key in held.keys().filter(|k| !wanted.contains_key(*k)) {
            out.push(OutRecord::new(
                topics::ENFORCEMENT,
                Some(key.clone().into_bytes()),
                Vec::new(),
            ));
        }
        if out.is_empty() {
            return Ok(());
        }
        let n = out.len();
        self.sink.send_batch(out).await?;
        *held = wanted;
        tracing::info!(
            records = n,
            enforced = held.len(),
            "enforce-mode policies published to the node agents"
        );
        Ok(())
    }
}

impl<K: Sink> PolicyStage<K> {
    async fn reload_if_due(&mut self) -> Result<(), HandlerError> {
        if self.last_check.elapsed() >= self.reload_check {
            self.last_check = Instant::now();
            match self.policies.reload_if_changed() {
                Some(Ok(n)) => {
                    tracing::info!(policies = n, "policies reloaded");
                    self.publish().await?;
                }
                Some(Err(err)) => {
                    tracing::error!(error = %err, "policy files changed but are invalid; the previous policies stay in force")
                }
                None => {}
            }
        }
        Ok(())
    }
}

impl<K: Sink> BatchHandler for PolicyStage<K> {
    fn tick_interval(&self) -> Option<Duration> {
        Some(self.reload_check)
    }

    async fn tick(&mut self) -> Result<(), HandlerError> {
        self.reload_if_due().await
    }

    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        self.reload_if_due().await?;
        let mut out = Vec::with_capacity(batch.len());
        let mut rejections = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            // Enriched events of the current version: judged on a borrowed
            // view, the verdict spliced from the message.
            let mut payload = Vec::with_capacity(message.payload.len() + 64);
            match self
                .policies
                .set()
                .judge_message(&message.payload, &mut payload)
            {
                Ok(true) => {
                    out.push(OutRecord::new(
                        topics::VERDICTS,
                        message.key.clone(),
                        payload,
                    ));
                    continue;
                }
                Ok(false) => {}
                Err(err) => {
                    rejections.push(Rejection::undecodable(index, &err));
                    continue;
                }
            }
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
