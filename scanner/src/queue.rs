//! The scanner stage (`tapwire scanner`): a member of the scanners'
//! consumer group on `tapwire.scan.jobs` that takes one job at a time.
//!
//! # A job's life
//!
//! 1. Whoever creates a job ([`enqueue`]: the recorder for each slice it
//!    stores, `tapwire scan --enqueue`, this stage for each new pod record)
//!    publishes `Pending` on `tapwire.scan.status`, then the job on
//!    `tapwire.scan.jobs`, both keyed by the job id.
//! 2. A scanner publishes `In progress` (with the attempt number), scans,
//!    publishes `Parsing results`, every finding on
//!    `tapwire.scan.findings`, then `Finished` (with the number of
//!    findings), and only then stores the job's offset.
//! 3. An attempt without a result (the job time-out, the store
//!    unreachable) publishes `Pending` with its reason and puts the job
//!    back at the end of its partition with the next attempt number; after
//!    the third, `Error` (`E-TIMEOUT`, ...). A job that cannot succeed (a
//!    malformed capture, a pod record without spec) is `Error` at once.
//! 4. A scanner that dies mid-job never stored its offset: the group gives
//!    the partition to another scanner, which reads the job again. Every
//!    scanner follows `tapwire.scan.status`, so it knows how many attempts
//!    were started (the dead one's counts) and skips jobs already final.
//!    Findings have ids derived from what was found where: a finding
//!    published twice is stored once.
//!
//! # Order
//!
//! Jobs are keyed by id, so they spread over the topic's partitions; each
//! partition is read by one scanner at a time, in offset order. What is
//! guaranteed: jobs of one partition start in the order they were
//! received, one after the other; a retried job goes to the back of its
//! partition. Jobs of different partitions run in parallel on different
//! scanners and have no order between them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tapwire_pcap_recorder::store::{LocalStore, S3Store, Store};
use tapwire_plumbing::bus::{Message, OutRecord, Sink};
use tapwire_plumbing::consumer::{BatchHandler, HandlerError, LoopSettings};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::stage::{BoxError, BuildContext, BusSink, Stage};
use tapwire_schemas::events::PodMetadata;
use tapwire_schemas::topics;
use tokio_util::sync::CancellationToken;

use crate::config::ScanConfig;
use crate::content::ContentScanner;
use crate::detect::Detectors;
use crate::finding::{Finding, Kind, Severity};
use crate::job::{
    EVENTS_TOPIC, FINDINGS_TOPIC, FindingRecord, JOBS_TOPIC, MAX_ATTEMPTS, SCANNERS_TOPIC,
    STATUS_TOPIC, ScanEvent, ScanEventKind, ScanJob, ScanObject, ScannerState, ScannerStatus,
    Status, StatusChange, VERSION, now_ns,
};
use crate::objects::scan_slice;
use crate::podspec;
use crate::rules::{Refresh, RuleSource};

/// What the status topic says of one job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobView {
    /// Highest attempt that was started (`In progress`).
    pub started: u32,
    /// `Finished` or `Error`, once one was published.
    pub last: Option<Status>,
}

/// Every job's view, from `tapwire.scan.status`.
pub type Views = Arc<Mutex<HashMap<String, JobView>>>;

/// Applies one status change to the views.
pub fn apply(views: &Views, change: &StatusChange) {
    let mut views = views.lock().expect("views lock");
    let view = views.entry(change.job_id.clone()).or_default();
    if change.status == Status::InProgress {
        view.started = view.started.max(change.attempt);
    }
    if change.status.is_final() {
        view.last = Some(change.status);
    }
}

/// Publishes `jobs` as created now: every `Pending` first, then the jobs.
///
/// # Errors
///
/// The bus did not take them.
pub async fn enqueue(
    sink: &impl Sink,
    jobs: &[ScanJob],
) -> Result<(), tapwire_plumbing::bus::BusError> {
    for batch in tapwire_schemas::scan::enqueue_records(jobs) {
        let records = batch
            .into_iter()
            .map(|(topic, key, payload)| OutRecord::new(topic, Some(key), payload))
            .collect();
        sink.send_batch(records).await?;
    }
    Ok(())
}

fn status_record(change: &StatusChange) -> OutRecord {
    OutRecord::new(
        STATUS_TOPIC,
        Some(change.job_id.clone().into_bytes()),
        serde_json::to_vec(change).expect("a status serializes"),
    )
}

/// Why one attempt had no result.
#[derive(Debug)]
pub enum JobError {
    /// Another attempt may succeed (time-out, store unreachable).
    Retry(String),
    /// No attempt will: the job is `Error` with this reason.
    Fail(String),
}

/// A finished attempt's result.
#[derive(Debug, Default)]
pub struct Outcome {
    /// What was found.
    pub findings: Vec<Finding>,
    /// Bytes scanned.
    pub bytes: u64,
    /// Compliance verdicts on images (`tapwire.scan.events`).
    pub events: Vec<ScanEvent>,
}

/// A compliance event per image the findings judge: non-compliant with the
/// reasons of its `NCMP-001` findings, compliant for the others of
/// `images`.
fn compliance_events(images: &[String], findings: &[Finding]) -> Vec<ScanEvent> {
    let mut events = Vec::new();
    for image in images {
        let object = format!("image:{image}");
        let reasons: Vec<&str> = findings
            .iter()
            .filter(|f| f.kind == Kind::NonCompliance && f.object == object)
            .map(|f| f.excerpt.as_str())
            .collect();
        let (kind, reason) = if reasons.is_empty() {
            (
                ScanEventKind::Compliant,
                "meets the requirements".to_owned(),
            )
        } else {
            (ScanEventKind::NonCompliant, reasons.join("; "))
        };
        events.push(ScanEvent::new(kind, &object, None, "", reason));
    }
    events
}

/// Shared with the heartbeat task.
#[derive(Debug, Clone)]
struct State {
    status: ScannerStatus,
    job: Option<String>,
    finished: u64,
    rules: u64,
}

/// The scanner's handler.
pub struct Worker {
    id: String,
    config: ScanConfig,
    output: BusSink,
    views: Views,
    pods: Arc<Mutex<HashMap<String, PodMetadata>>>,
    rules: RuleSource,
    scanner: ContentScanner,
    state: Arc<Mutex<State>>,
    shutdown: CancellationToken,
    counts: HashMap<&'static str, u64>,
    /// Node mode: containers whose job was created, and container jobs to
    /// try again here (they cannot go to other scanners).
    containers: std::collections::HashSet<String>,
    local: std::collections::VecDeque<ScanJob>,
}

impl Stage for ScanConfig {
    type Handler = Worker;

    fn name(&self) -> &'static str {
        "scanner"
    }

    fn group(&self) -> String {
        self.group.clone()
    }

    fn inputs(&self) -> Vec<String> {
        vec![JOBS_TOPIC.into(), topics::PODS.into()]
    }

    fn outputs(&self) -> Vec<String> {
        vec![
            STATUS_TOPIC.into(),
            FINDINGS_TOPIC.into(),
            JOBS_TOPIC.into(),
            SCANNERS_TOPIC.into(),
            EVENTS_TOPIC.into(),
        ]
    }

    fn loop_settings(&self, base: LoopSettings) -> LoopSettings {
        // One job at a time: a batch is one message.
        LoopSettings {
            batch_max_messages: 1,
            batch_linger: Duration::ZERO,
            ..base
        }
    }

    async fn build(self, cx: &BuildContext) -> Result<Worker, BoxError> {
        self.validate()?;
        let rules = RuleSource::new(self.rules.clone())?;
        let id = self.scanner_id();
        tracing::info!(
            scanner = %id,
            rules = rules.current().len(),
            files = rules.current().files().len(),
            "scanner: rules loaded"
        );
        let shutdown = cx.stage.shutdown.clone();
        let views: Views = Arc::default();
        let loaded = follow(cx, STATUS_TOPIC, views.clone(), |views, m| {
            if let Ok(change) = serde_json::from_slice::<StatusChange>(&m.payload) {
                apply(views, &change);
            }
        })
        .await?;
        let pods: Arc<Mutex<HashMap<String, PodMetadata>>> = Arc::default();
        let pods_loaded = follow(cx, topics::PODS, pods.clone(), |pods, m| {
            if let Ok(pod) = tapwire_schemas::codec::decode::<PodMetadata>(&m.payload) {
                pods.lock().expect("pods lock").insert(pod.uid.clone(), pod);
            }
        })
        .await?;
        tracing::info!(
            statuses = loaded,
            pods = pods_loaded,
            "scanner: queue state read"
        );
        let scanner = ContentScanner::new(
            Arc::new(Detectors::new()),
            rules.current(),
            Duration::from_millis(self.job_timeout_ms),
        );
        let state = Arc::new(Mutex::new(State {
            status: ScannerStatus::Free,
            job: None,
            finished: 0,
            rules: rules.current().len() as u64,
        }));
        tokio::spawn(heartbeats(
            id.clone(),
            state.clone(),
            cx.output.clone(),
            Duration::from_millis(self.heartbeat_interval_ms),
            shutdown.clone(),
        ));
        eprintln!("scanner {id}: ready ({} rules)", rules.current().len());
        Ok(Worker {
            id,
            config: self,
            output: cx.output.clone(),
            views,
            pods,
            rules,
            scanner,
            state,
            shutdown,
            counts: HashMap::new(),
            containers: std::collections::HashSet::new(),
            local: std::collections::VecDeque::new(),
        })
    }
}

/// Follows `topic` from its start into `into`, returns once what it held
/// was read; goes on applying new records in the background.
async fn follow<T: Send + Sync + 'static>(
    cx: &BuildContext,
    topic: &str,
    into: Arc<T>,
    apply_one: fn(&Arc<T>, &Message),
) -> Result<u64, BoxError> {
    let shutdown = cx.stage.shutdown.clone();
    let mut follower = cx.bus.follow(topic, shutdown.clone())?;
    let loaded = follower
        .load(|m| apply_one(&into, &m), &shutdown)
        .await?
        .unwrap_or(0);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = follower.records.recv() => match m {
                    Some(m) => apply_one(&into, &m),
                    None => break,
                },
                () = shutdown.cancelled() => break,
            }
        }
    });
    Ok(loaded)
}

/// Says Free or Busy every `interval` until `shutdown`.
async fn heartbeats(
    id: String,
    state: Arc<Mutex<State>>,
    output: BusSink,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let record = heartbeat(&id, &state.lock().expect("state lock"));
        if let Err(err) = output.send_batch(vec![record]).await {
            tracing::warn!(error = %err, "scanner: heartbeat not sent");
        }
    }
}

fn heartbeat(id: &str, state: &State) -> OutRecord {
    let beat = ScannerState {
        version: VERSION,
        scanner: id.to_owned(),
        status: state.status,
        job_id: state.job.clone(),
        at_ns: now_ns(),
        finished: state.finished,
        rules: state.rules,
    };
    OutRecord::new(
        SCANNERS_TOPIC,
        Some(id.as_bytes().to_vec()),
        serde_json::to_vec(&beat).expect("a heartbeat serializes"),
    )
}

fn transient(err: impl std::fmt::Display) -> HandlerError {
    HandlerError::Transient(err.to_string())
}

impl Worker {
    async fn send(&self, records: Vec<OutRecord>) -> Result<(), HandlerError> {
        self.output.send_batch(records).await.map_err(transient)
    }

    async fn set_state(
        &self,
        status: ScannerStatus,
        job: Option<String>,
        finished: bool,
    ) -> Result<(), HandlerError> {
        let record = {
            let mut state = self.state.lock().expect("state lock");
            state.status = status;
            state.job = job;
            state.finished += u64::from(finished);
            state.rules = self.rules.current().len() as u64;
            heartbeat(&self.id, &state)
        };
        self.send(vec![record]).await
    }

    /// Publishes a status and applies it to the local view at once.
    async fn status(
        &self,
        job: &ScanJob,
        status: Status,
        attempt: u32,
        reason: Option<String>,
        findings: Option<u64>,
        bytes: Option<u64>,
    ) -> Result<(), HandlerError> {
        let change = StatusChange {
            findings,
            bytes,
            ..job.status(status, attempt, &self.id, reason)
        };
        apply(&self.views, &change);
        self.send(vec![status_record(&change)]).await
    }

    /// A pod record: a job for its spec, once per pod.
    async fn on_pod(&mut self, message: &Message) -> Result<(), HandlerError> {
        if message.payload.is_empty() {
            return Ok(());
        }
        let Ok(pod) = tapwire_schemas::codec::decode::<PodMetadata>(&message.payload) else {
            // The enricher dead-letters bad pod records; not ours to judge.
            return Ok(());
        };
        self.pods
            .lock()
            .expect("pods lock")
            .insert(pod.uid.clone(), pod.clone());
        if pod.end_ns.is_some() || pod.security.is_none() {
            return Ok(());
        }
        let job = ScanJob::new(
            ScanObject::Pod {
                uid: pod.uid.clone(),
                pod: format!("{}/{}", pod.namespace, pod.name),
            },
            &self.id,
            now_ns(),
        );
        if self.views.lock().expect("views lock").contains_key(&job.id) {
            return Ok(());
        }
        apply(&self.views, &job.status(Status::Pending, 1, "", None));
        enqueue(&self.output, &[job]).await.map_err(transient)
    }

    /// One job, start to end.
    async fn run(&mut self, job: ScanJob) -> Result<(), HandlerError> {
        let view = self
            .views
            .lock()
            .expect("views lock")
            .get(&job.id)
            .copied()
            .unwrap_or_default();
        if let Some(last) = view.last {
            tracing::info!(job = %job.id, status = last.as_str(), "scanner: job already final, skipped");
            *self.counts.entry("skipped").or_default() += 1;
            return Ok(());
        }
        let attempt = job.attempt.max(view.started + 1);
        if attempt > MAX_ATTEMPTS {
            let reason = format!(
                "E-NO-RESULT: {} attempts started without a result (scanners stopped mid-job)",
                view.started
            );
            *self.counts.entry("error").or_default() += 1;
            return self
                .status(&job, Status::Error, view.started, Some(reason), None, None)
                .await;
        }
        self.status(&job, Status::InProgress, attempt, None, None, None)
            .await?;
        self.set_state(ScannerStatus::Busy, Some(job.id.clone()), false)
            .await?;
        tracing::info!(job = %job.id, object = %job.object.name(), attempt, "scanner: job started");
        let started = std::time::Instant::now();
        let timeout = Duration::from_millis(self.config.job_timeout_ms);
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, self.execute(&job)) => match r {
                Ok(r) => r,
                Err(_) => Err(JobError::Retry(format!(
                    "E-TIMEOUT: no result within {} s", timeout.as_secs_f64()
                ))),
            },
            // Stopping mid-job: the offset is not stored, another scanner
            // (or this one, restarted) tries again.
            () = self.shutdown.cancelled() => return Err(HandlerError::Transient("stopping mid-job".into())),
        };
        match result {
            Ok(outcome) => {
                let n = outcome.findings.len() as u64;
                let at_ns = now_ns();
                let records: Vec<OutRecord> = outcome
                    .findings
                    .into_iter()
                    .map(|finding| {
                        let record = FindingRecord {
                            version: VERSION,
                            job_id: job.id.clone(),
                            attempt,
                            at_ns,
                            finding,
                        };
                        OutRecord::new(
                            FINDINGS_TOPIC,
                            Some(job.id.clone().into_bytes()),
                            serde_json::to_vec(&record).expect("a finding serializes"),
                        )
                    })
                    .collect();
                self.status(&job, Status::ParsingResults, attempt, None, Some(n), None)
                    .await?;
                self.send(records).await?;
                let events: Vec<OutRecord> = outcome
                    .events
                    .iter()
                    .map(|e| {
                        OutRecord::new(
                            EVENTS_TOPIC,
                            Some(e.object.clone().into_bytes()),
                            serde_json::to_vec(e).expect("an event serializes"),
                        )
                    })
                    .collect();
                self.send(events).await?;
                self.status(
                    &job,
                    Status::Finished,
                    attempt,
                    None,
                    Some(n),
                    Some(outcome.bytes),
                )
                .await?;
                *self.counts.entry("finished").or_default() += 1;
                tracing::info!(job = %job.id, attempt, findings = n,
                    ms = started.elapsed().as_millis() as u64, "scanner: job finished");
                self.set_state(ScannerStatus::Free, None, true).await
            }
            Err(JobError::Fail(reason)) => {
                tracing::warn!(job = %job.id, %reason, "scanner: job failed");
                *self.counts.entry("error").or_default() += 1;
                self.status(&job, Status::Error, attempt, Some(reason), None, None)
                    .await?;
                self.set_state(ScannerStatus::Free, None, false).await
            }
            Err(JobError::Retry(reason)) if attempt >= MAX_ATTEMPTS => {
                tracing::warn!(job = %job.id, %reason, "scanner: job failed its last attempt");
                *self.counts.entry("error").or_default() += 1;
                let reason = format!("{reason} (attempt {attempt} of {MAX_ATTEMPTS}: no result)");
                self.status(&job, Status::Error, attempt, Some(reason), None, None)
                    .await?;
                self.set_state(ScannerStatus::Free, None, false).await
            }
            Err(JobError::Retry(reason)) => {
                tracing::warn!(job = %job.id, attempt, %reason, "scanner: attempt without result, queued again");
                *self.counts.entry("retried").or_default() += 1;
                self.status(&job, Status::Pending, attempt, Some(reason), None, None)
                    .await?;
                let again = ScanJob {
                    attempt: attempt + 1,
                    ..job.clone()
                };
                self.send(vec![OutRecord::new(
                    JOBS_TOPIC,
                    Some(again.id.clone().into_bytes()),
                    serde_json::to_vec(&again).expect("a job serializes"),
                )])
                .await?;
                self.set_state(ScannerStatus::Free, None, false).await
            }
        }
    }

    /// The scan itself.
    async fn execute(&self, job: &ScanJob) -> Result<Outcome, JobError> {
        match &job.object {
            ScanObject::Slice { url } => self.capture(url).await,
            ScanObject::File { path } => self.capture(path).await,
            ScanObject::Pod { uid, pod } => {
                let record = self.pods.lock().expect("pods lock").get(uid).cloned();
                let record = record.ok_or_else(|| {
                    JobError::Fail(format!(
                        "E-NO-POD: no record of pod {pod} (uid {uid}) on tapwire.pods"
                    ))
                })?;
                let findings = pod_findings(&record, &self.config.requirements)
                    .map_err(|e| JobError::Fail(format!("E-NO-SPEC: {e}")))?;
                let mut images: Vec<String> = record
                    .security
                    .iter()
                    .flat_map(|s| s.containers.iter().map(|c| c.image.clone()))
                    .collect();
                images.dedup();
                Ok(Outcome {
                    events: compliance_events(&images, &findings),
                    findings,
                    bytes: 0,
                })
            }
            ScanObject::Container {
                node, container_id, ..
            } => {
                if self.config.node.as_deref() != Some(node.as_str()) {
                    return Err(JobError::Fail(format!(
                        "E-WRONG-NODE: container scans run on their node's scanner ({node}), not from the shared queue"
                    )));
                }
                let mut outcome = self.container(&job.object.name(), container_id).await?;
                if let ScanObject::Container { image, pod, .. } = &job.object {
                    outcome.findings.extend(image_findings(
                        &self.config.requirements,
                        image,
                        pod,
                        container_id,
                        &outcome.findings,
                    ));
                }
                Ok(outcome)
            }
        }
    }

    /// A container's filesystem as the node sees it: `/proc/PID/root` of
    /// one of its processes.
    async fn container(&self, object: &str, container_id: &str) -> Result<Outcome, JobError> {
        let proc = self.config.host_proc.clone();
        let id = container_id.to_owned();
        let pid = tokio::task::spawn_blocking(move || process_of(&proc, &id))
            .await
            .map_err(|e| JobError::Retry(format!("E-INTERNAL: {e}")))?
            .ok_or_else(|| {
                JobError::Retry(format!(
                    "E-NO-PROCESS: no process of container {container_id} under {}",
                    self.config.host_proc.display()
                ))
            })?;
        let root = self.config.host_proc.join(pid.to_string()).join("root");
        let limits = crate::files::TreeLimits {
            max_file_bytes: self.config.container_max_file_bytes,
            max_total_bytes: self.config.container_max_bytes,
            max_files: crate::files::TreeLimits::default().max_files,
            max_time: Duration::from_millis(self.config.container_max_time_ms),
        };
        let scanner = self.scanner.clone();
        let object = object.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut findings = Vec::new();
            crate::files::scan_tree(&object, &root, &limits, &scanner, &mut findings)
                .map(|stats| {
                    if let Some(cut) = &stats.truncated {
                        tracing::warn!(%object, %cut, "scanner: container scan cut short");
                    }
                    Outcome {
                        findings,
                        bytes: stats.bytes,
                        events: Vec::new(),
                    }
                })
                .map_err(|e| JobError::Retry(format!("E-UNREADABLE: {e}")))
        })
        .await
        .map_err(|e| JobError::Retry(format!("E-INTERNAL: {e}")))?
    }

    /// Node mode: a job for every container of this node's running pods
    /// not seen yet, and the local retries; run here, one at a time.
    async fn node_jobs(&mut self) -> Result<(), HandlerError> {
        let Some(node) = self.config.node.clone() else {
            return Ok(());
        };
        let mut jobs: Vec<ScanJob> = Vec::new();
        {
            let pods = self.pods.lock().expect("pods lock");
            for pod in pods.values() {
                if pod.header.node != node || pod.end_ns.is_some() {
                    continue;
                }
                for c in &pod.containers {
                    if c.id.is_empty() || self.containers.contains(&c.id) {
                        continue;
                    }
                    self.containers.insert(c.id.clone());
                    jobs.push(ScanJob::new(
                        ScanObject::Container {
                            node: node.clone(),
                            container_id: c.id.clone(),
                            pod: format!("{}/{}", pod.namespace, pod.name),
                            image: c.image.clone(),
                        },
                        &self.id,
                        now_ns(),
                    ));
                }
            }
        }
        let fresh: Vec<ScanJob> = {
            let views = self.views.lock().expect("views lock");
            jobs.into_iter()
                .filter(|j| !views.contains_key(&j.id))
                .collect()
        };
        if !fresh.is_empty() {
            // Statuses only: the job itself stays on this node.
            let pending = fresh
                .iter()
                .map(|job| {
                    let change = job.status(Status::Pending, 1, "", None);
                    apply(&self.views, &change);
                    status_record(&change)
                })
                .collect();
            self.send(pending).await?;
            self.local.extend(fresh);
        }
        while let Some(job) = self.local.pop_front() {
            self.run(job).await?;
        }
        Ok(())
    }

    async fn capture(&self, url: &str) -> Result<Outcome, JobError> {
        let (store, key) = self.store_for(url).await?;
        match scan_slice(
            &store,
            &key,
            url,
            self.config.max_object_bytes,
            &self.scanner,
        )
        .await
        {
            Ok((findings, stats)) => Ok(Outcome {
                findings,
                bytes: stats.bytes,
                events: Vec::new(),
            }),
            Err(err) if err.is_retried() => Err(JobError::Retry(format!("{}: {err}", err.code()))),
            Err(err) => Err(JobError::Fail(format!("{}: {err}", err.code()))),
        }
    }

    async fn store_for(&self, url: &str) -> Result<(Store, String), JobError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest
                .split_once('/')
                .ok_or_else(|| JobError::Fail(format!("E-BAD-JOB: {url:?} names no object")))?;
            let mut settings = self
                .config
                .s3
                .clone()
                .unwrap_or_else(|| tapwire_pcap_recorder::store::S3Settings::new(bucket));
            settings.bucket = bucket.to_owned();
            return Ok((Store::S3(S3Store::connect(&settings).await), key.to_owned()));
        }
        let path = std::path::Path::new(url);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(JobError::Fail(format!(
                "E-BAD-JOB: {url:?} is not a file path"
            )));
        };
        Ok((
            Store::Local(LocalStore::new(dir)),
            name.to_string_lossy().into_owned(),
        ))
    }
}

/// The compliance of `image` from what its container held: non-compliant
/// (`NCMP-001`) when the requirements forbid the malware or sensitive data
/// found (registry, digest and spec are judged by the pod's job).
fn image_findings(
    requirements: &podspec::Requirements,
    image: &str,
    pod: &str,
    container_id: &str,
    found: &[Finding],
) -> Option<Finding> {
    let count = |kind| found.iter().filter(|f| f.kind == kind).count();
    let only_contents = podspec::Requirements {
        allowed_registries: Vec::new(),
        require_digest: false,
        max_misconfiguration: None,
        ..requirements.clone()
    };
    let verdict = podspec::check(
        &only_contents,
        &podspec::ImageFacts {
            image,
            digest: None,
            malware: count(Kind::Malware),
            sensitive_data: count(Kind::SensitiveData),
            worst_misconfiguration: None,
        },
    );
    (!verdict.compliant).then(|| {
        Finding::new(
            Kind::NonCompliance,
            "NCMP-001",
            Severity::High,
            &format!("image:{image}"),
            format!("pod {pod} container {container_id}"),
            None,
            None,
            verdict.reasons.join("; "),
        )
    })
}

/// A process of container `id` under `proc` (its cgroup path names the
/// container id, as containerd, CRI-O and Docker name their scopes).
pub fn process_of(proc: &std::path::Path, id: &str) -> Option<u32> {
    let entries = std::fs::read_dir(proc).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(proc.join(pid.to_string()).join("cgroup"))
                .is_ok_and(|cgroup| cgroup.contains(id))
        })
}

/// A pod's misconfigurations and its images' compliance, as findings.
///
/// # Errors
///
/// The record carries no spec settings.
pub fn pod_findings(
    pod: &PodMetadata,
    requirements: &podspec::Requirements,
) -> Result<Vec<Finding>, podspec::NoSpec> {
    let object = format!("pod:{}/{}", pod.namespace, pod.name);
    let found = podspec::misconfigurations(pod)?;
    let worst = podspec::worst(&found);
    let mut findings: Vec<Finding> = found
        .iter()
        .map(|m| {
            let location = m
                .container
                .as_deref()
                .map_or_else(|| "pod".to_owned(), |c| format!("container {c}"));
            Finding::new(
                Kind::Misconfiguration,
                &m.rule,
                m.severity,
                &object,
                location,
                None,
                None,
                m.detail.clone(),
            )
        })
        .collect();
    let security = pod.security.as_ref().expect("misconfigurations checked it");
    let mut seen = std::collections::BTreeSet::new();
    for container in &security.containers {
        if !seen.insert(container.image.clone()) {
            continue;
        }
        let digest = pod
            .containers
            .iter()
            .find(|c| c.name == container.name)
            .and_then(|c| c.image_digest.as_deref());
        let verdict = podspec::check(
            requirements,
            &podspec::ImageFacts {
                image: &container.image,
                digest,
                malware: 0,
                sensitive_data: 0,
                worst_misconfiguration: worst,
            },
        );
        if !verdict.compliant {
            findings.push(Finding::new(
                Kind::NonCompliance,
                "NCMP-001",
                Severity::High,
                &format!("image:{}", container.image),
                format!(
                    "pod {}/{} container {}",
                    pod.namespace, pod.name, container.name
                ),
                None,
                None,
                verdict.reasons.join("; "),
            ));
        }
    }
    Ok(findings)
}

impl BatchHandler for Worker {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let mut rejected = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            if message.topic == topics::PODS {
                self.on_pod(message).await?;
                continue;
            }
            match serde_json::from_slice::<ScanJob>(&message.payload) {
                Ok(job) => self.run(job).await?,
                Err(err) => rejected.push(Rejection {
                    index,
                    error: "bad_scan_job",
                    reason: format!("not a scan job: {err}"),
                }),
            }
        }
        Ok(rejected)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.config.rules_check_ms))
    }

    async fn tick(&mut self) -> Result<(), HandlerError> {
        self.node_jobs().await?;
        match self.rules.refresh() {
            Refresh::Unchanged => {}
            Refresh::Reloaded(n) => {
                tracing::info!(rules = n, "scanner: rules reloaded");
                eprintln!("scanner {}: rules reloaded ({n} rules)", self.id);
                self.scanner = self.scanner.with_rules(self.rules.current());
            }
            Refresh::Kept(err) => {
                tracing::error!(error = %err, "scanner: new rules do not compile; the previous rules stay");
                eprintln!("scanner {}: {err}; the previous rules stay", self.id);
            }
        }
        Ok(())
    }

    fn report(&self) -> String {
        let get = |k| self.counts.get(k).copied().unwrap_or(0);
        format!(
            "{} jobs finished, {} errors, {} retried, {} skipped (already final)",
            get("finished"),
            get("error"),
            get("retried"),
            get("skipped")
        )
    }
}
