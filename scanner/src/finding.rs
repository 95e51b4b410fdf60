//! What a scan finds: [`Finding`], its [`Kind`] and [`Severity`].
//!
//! A finding never holds the secret or the matched bytes: only where they
//! are and a redacted excerpt, so findings can go to Kafka, ClickHouse and
//! a SIEM as they are.

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
        let id = tapwire_schemas::EventId::derive(&[
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
