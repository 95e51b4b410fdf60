//! The scan job queue's messages: JSON with a `version` field on their own
//! topics (keyed by job id, so a job's messages stay in order on one
//! partition). The scanner (`tapwire-scanner`) runs jobs; the recorder and
//! `tapwire scan --enqueue` create them; the aggregator stores them.
//!
//! - [`ScanJob`] on `tapwire.scan.jobs`: what to scan; re-published with
//!   the next `attempt` when an attempt ends without results.
//! - [`StatusChange`] on `tapwire.scan.status`: every transition of a job,
//!   `Pending` -> `In progress` -> `Parsing results` -> `Finished`, or
//!   `Error`; an attempt that ends without results goes back to `Pending`
//!   with its reason, and the third such attempt is `Error`.
//! - [`FindingRecord`] on `tapwire.scan.findings`: one per finding of a
//!   successful attempt, published after its `Parsing results` and before
//!   its `Finished`. A [`Finding`] never holds a secret, only where it is
//!   and a redacted excerpt.
//! - [`ScannerState`] on `tapwire.scan.scanners` (key: scanner id): `Free`
//!   or `Busy`, every few seconds and at each change.

use serde::{Deserialize, Serialize};

/// The kind of threat, as the seed's threat classes name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Credentials, keys, tokens, card numbers.
    SensitiveData,
    /// A YARA rule matched.
    Malware,
    /// A risky setting in a pod's spec.
    Misconfiguration,
    /// An image that does not meet the compliance requirements.
    NonCompliance,
}

impl Kind {
    /// The name used in tables, ClickHouse and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SensitiveData => "sensitive_data",
            Kind::Malware => "malware",
            Kind::Misconfiguration => "misconfiguration",
            Kind::NonCompliance => "non_compliance",
        }
    }
}

/// How bad a finding is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    #[default]
    Low,
    /// Should be fixed.
    Medium,
    /// Fix soon.
    High,
    /// Fix now.
    Critical,
}

impl Severity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads `low`, `medium`, `high` or `critical`.
    pub fn parse(text: &str) -> Option<Severity> {
        Some(match text {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// One finding, ready to print, publish and store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Derived from what was found where: the same finding found again
    /// (a retried job) has the same id, so stores keep it once.
    pub id: String,
    /// Threat class.
    pub kind: Kind,
    /// Detector, YARA rule or misconfiguration rule.
    pub rule: String,
    /// How bad.
    pub severity: Severity,
    /// The scanned object: `s3://bucket/key`, a file, `container:ID`,
    /// `pod:NAMESPACE/NAME`, `image:REF`.
    pub object: String,
    /// Where in the object: a stream with its endpoints and direction, a
    /// path, a container.
    pub location: String,
    /// Byte offset in the stream direction, datagram or file.
    pub offset: Option<u64>,
    /// 1-based frame number in the PCAP (tshark's `frame.number`) holding
    /// the first byte.
    pub frame: Option<u64>,
    /// A redacted excerpt (never the secret) or what the rule says.
    pub excerpt: String,
}

impl Finding {
    /// A finding with its id derived from object, rule, location and offset.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: Kind,
        rule: &str,
        severity: Severity,
        object: &str,
        location: String,
        offset: Option<u64>,
        frame: Option<u64>,
        excerpt: String,
    ) -> Finding {
        let id = crate::EventId::derive(&[
            object.as_bytes(),
            rule.as_bytes(),
            location.as_bytes(),
            &offset.unwrap_or(u64::MAX).to_le_bytes(),
        ]);
        Finding {
            id: id.to_string(),
            kind,
            rule: rule.to_owned(),
            severity,
            object: object.to_owned(),
            location,
            offset,
            frame,
            excerpt,
        }
    }
}

/// Version of the JSON messages this build writes.
pub const VERSION: u32 = 1;

pub use crate::topics::{
    SCAN_EVENTS as EVENTS_TOPIC, SCAN_FINDINGS as FINDINGS_TOPIC, SCAN_JOBS as JOBS_TOPIC,
    SCAN_SCANNERS as SCANNERS_TOPIC, SCAN_STATUS as STATUS_TOPIC,
};

/// An attempt that ends without results this many times makes the job
/// `Error`.
pub const MAX_ATTEMPTS: u32 = 3;

/// What a job scans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScanObject {
    /// A recorded PCAP slice (its index beside it, `.json`).
    Slice {
        /// `s3://bucket/key` or a local path (a directory store).
        url: String,
    },
    /// A capture or any file reachable by the scanner.
    File {
        /// The path.
        path: String,
    },
    /// A container's filesystem, on its node.
    Container {
        /// The node that runs it.
        node: String,
        /// Runtime container id.
        container_id: String,
        /// `namespace/pod`.
        pod: String,
        /// The image.
        image: String,
    },
    /// A pod's spec (misconfigurations) and its images' compliance.
    Pod {
        /// Pod uid.
        uid: String,
        /// `namespace/name`.
        pod: String,
    },
}

impl ScanObject {
    /// A capture to scan: a slice in S3 (`s3://...`) or a file the
    /// scanners can read.
    pub fn capture(url: String) -> ScanObject {
        if url.starts_with("s3://") {
            ScanObject::Slice { url }
        } else {
            ScanObject::File { path: url }
        }
    }

    /// The name findings and tables use: the URL, the path,
    /// `container:ID`, `pod:NAMESPACE/NAME`.
    pub fn name(&self) -> String {
        match self {
            ScanObject::Slice { url } => url.clone(),
            ScanObject::File { path } => path.clone(),
            ScanObject::Container { container_id, .. } => format!("container:{container_id}"),
            ScanObject::Pod { pod, .. } => format!("pod:{pod}"),
        }
    }

    /// `slice`, `file`, `container` or `pod`.
    pub fn kind(&self) -> &'static str {
        match self {
            ScanObject::Slice { .. } => "slice",
            ScanObject::File { .. } => "file",
            ScanObject::Container { .. } => "container",
            ScanObject::Pod { .. } => "pod",
        }
    }
}

/// A scan job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanJob {
    /// Message version ([`VERSION`]).
    pub version: u32,
    /// Job id (the topic key), derived from the object: the same object
    /// queued twice is one job.
    pub id: String,
    /// What to scan.
    pub object: ScanObject,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the job was created, ns since the epoch.
    pub created_ns: i64,
    /// Who created it (`record`, `scan-schedule`, a user).
    pub created_by: String,
}

impl ScanJob {
    /// A first attempt at `object`, created at `created_ns` by
    /// `created_by`; the id is derived from the object.
    pub fn new(object: ScanObject, created_by: &str, created_ns: i64) -> ScanJob {
        // The whole object: a pod of the same name with another uid is
        // another job.
        let identity = serde_json::to_vec(&object).unwrap_or_default();
        let id = crate::EventId::derive(&[b"scan-job", &identity]).to_string();
        ScanJob {
            version: VERSION,
            id,
            object,
            attempt: 1,
            created_ns,
            created_by: created_by.to_owned(),
        }
    }
}

/// A job's status, named as the seed's queue names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Created, waiting for a scanner (again, after a failed attempt).
    Pending,
    /// A scanner works on it.
    #[serde(rename = "In progress")]
    InProgress,
    /// Scanned; its findings are being published.
    #[serde(rename = "Parsing results")]
    ParsingResults,
    /// Its results are available.
    Finished,
    /// Failed for good.
    Error,
}

impl Status {
    /// The name as displayed and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::InProgress => "In progress",
            Status::ParsingResults => "Parsing results",
            Status::Finished => "Finished",
            Status::Error => "Error",
        }
    }

    /// Finished or Error: nothing follows.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Finished | Status::Error)
    }
}

/// One transition of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Message version.
    pub version: u32,
    /// The job.
    pub job_id: String,
    /// The object's name ([`ScanObject::name`]).
    pub object: String,
    /// `slice`, `file`, `container`, `pod`.
    pub object_kind: String,
    /// The new status.
    pub status: Status,
    /// The attempt it belongs to.
    pub attempt: u32,
    /// The scanner (empty for `Pending` at creation).
    pub scanner: String,
    /// When, ns since the epoch.
    pub at_ns: i64,
    /// Why (`Error`, or a `Pending` after a failed attempt): a code and a
    /// sentence, e.g. `E-TIMEOUT: no result within 120 s`.
    pub reason: Option<String>,
    /// Findings of the attempt (`Parsing results`, `Finished`).
    pub findings: Option<u64>,
    /// Bytes scanned (`Finished`).
    pub bytes: Option<u64>,
}

/// A finding with the job and attempt that found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Message version.
    pub version: u32,
    /// The job.
    pub job_id: String,
    /// The attempt.
    pub attempt: u32,
    /// When found, ns since the epoch.
    pub at_ns: i64,
    /// What.
    pub finding: Finding,
}

/// Free or Busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScannerStatus {
    /// Waiting for a job.
    Free,
    /// Working on one.
    Busy,
}

/// A scanner's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannerState {
    /// Message version.
    pub version: u32,
    /// Scanner id (the key).
    pub scanner: String,
    /// Free or Busy.
    pub status: ScannerStatus,
    /// The job while Busy.
    pub job_id: Option<String>,
    /// When, ns since the epoch.
    pub at_ns: i64,
    /// Jobs finished since it started.
    pub finished: u64,
    /// Rules loaded.
    pub rules: u64,
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A record to send: topic, key, payload.
pub type RawRecord = (&'static str, Vec<u8>, Vec<u8>);

/// The records that queue `jobs` as created: first every `Pending` status,
/// then every job, as `(topic, key, payload)`. Send the first batch and
/// wait for it before the second, so `Pending` precedes what a scanner
/// says of the job.
pub fn enqueue_records(jobs: &[ScanJob]) -> [Vec<RawRecord>; 2] {
    let pending = jobs
        .iter()
        .map(|job| {
            let change = job.status(Status::Pending, job.attempt, "", None);
            (
                STATUS_TOPIC,
                job.id.clone().into_bytes(),
                serde_json::to_vec(&change).expect("a status serializes"),
            )
        })
        .collect();
    let queued = jobs
        .iter()
        .map(|job| {
            (
                JOBS_TOPIC,
                job.id.clone().into_bytes(),
                serde_json::to_vec(job).expect("a job serializes"),
            )
        })
        .collect();
    [pending, queued]
}

impl ScanJob {
    /// A status change of this job, now.
    pub fn status(
        &self,
        status: Status,
        attempt: u32,
        scanner: &str,
        reason: Option<String>,
    ) -> StatusChange {
        StatusChange {
            version: VERSION,
            job_id: self.id.clone(),
            object: self.object.name(),
            object_kind: self.object.kind().to_owned(),
            status,
            attempt,
            scanner: scanner.to_owned(),
            at_ns: now_ns(),
            reason,
            findings: None,
            bytes: None,
        }
    }
}

/// What happened to a finding or an image after a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanEventKind {
    /// A user accepted the finding's risk until `until_ns`.
    RiskAccepted,
    /// An acceptance reached its end: the finding counts again.
    RiskExpired,
    /// A user marked the threat removed (fixed, deleted).
    ThreatRemoved,
    /// An image met the compliance requirements.
    Compliant,
    /// An image did not (`reason` says which).
    NonCompliant,
}

impl ScanEventKind {
    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanEventKind::RiskAccepted => "risk_accepted",
            ScanEventKind::RiskExpired => "risk_expired",
            ScanEventKind::ThreatRemoved => "threat_removed",
            ScanEventKind::Compliant => "compliant",
            ScanEventKind::NonCompliant => "non_compliant",
        }
    }
}

/// One event on `tapwire.scan.events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanEvent {
    /// Message version.
    pub version: u32,
    /// Derived from what happened to what and when: a copy has the same id.
    pub id: String,
    /// What happened.
    pub event: ScanEventKind,
    /// The finding (risk events); empty for compliance events.
    pub finding_id: String,
    /// The finding's kind (risk events); `None` for compliance events.
    pub kind: Option<Kind>,
    /// The finding's rule or detector.
    pub rule: String,
    /// The object: the finding's, or `image:REF`.
    pub object: String,
    /// Who did it (the token's name); empty for the system.
    pub user: String,
    /// Until when an acceptance holds, ns since the epoch.
    pub until_ns: Option<i64>,
    /// Why (the user's words, the unmet requirements, the expiry).
    pub reason: String,
    /// Whether the action succeeded.
    pub success: bool,
    /// When, ns since the epoch.
    pub at_ns: i64,
}

impl ScanEvent {
    /// An event now, its id derived from what, which and when.
    pub fn new(
        event: ScanEventKind,
        object: &str,
        finding: Option<&Finding>,
        user: &str,
        reason: String,
    ) -> ScanEvent {
        let at_ns = now_ns();
        let finding_id = finding.map(|f| f.id.clone()).unwrap_or_default();
        let id = crate::EventId::derive(&[
            event.as_str().as_bytes(),
            object.as_bytes(),
            finding_id.as_bytes(),
            &at_ns.to_le_bytes(),
        ])
        .to_string();
        ScanEvent {
            version: VERSION,
            id,
            event,
            finding_id,
            kind: finding.map(|f| f.kind),
            rule: finding.map(|f| f.rule.clone()).unwrap_or_default(),
            object: object.to_owned(),
            user: user.to_owned(),
            until_ns: None,
            reason,
            success: true,
            at_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_spelled_as_the_queue_shows_them() {
        let names: Vec<String> = [
            Status::Pending,
            Status::InProgress,
            Status::ParsingResults,
            Status::Finished,
            Status::Error,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).expect("json"))
        .collect();
        assert_eq!(
            names,
            [
                "\"Pending\"",
                "\"In progress\"",
                "\"Parsing results\"",
                "\"Finished\"",
                "\"Error\""
            ]
        );
        let job = ScanJob::new(
            ScanObject::Slice {
                url: "s3://b/k.pcap".into(),
            },
            "record",
            5,
        );
        let again = ScanJob::new(job.object.clone(), "someone", 9);
        assert_eq!(job.id, again.id, "the same object is the same job");
        let json = serde_json::to_string(&job).expect("json");
        assert!(json.contains("\"type\":\"slice\""), "{json}");
        assert_eq!(serde_json::from_str::<ScanJob>(&json).expect("back"), job);
    }
}
