//! The `[scan]` section (the scanner stage, `tapwire scanner`) and its
//! flags.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tapwire_pcap_recorder::store::S3Settings;

use crate::podspec::Requirements;

/// The `[scan]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Consumer group of the scanners: every scanner of one group takes
    /// its share of the jobs.
    pub group: String,
    /// Scanner id in statuses and heartbeats; default: host name and pid.
    pub id: Option<String>,
    /// YARA rules files or directories (.yar, .yara), added to the
    /// built-in rules and reloaded when they change.
    pub rules: Vec<PathBuf>,
    /// How often the rules files are checked for changes.
    pub rules_check_ms: u64,
    /// An attempt that has no result after this long ends (`E-TIMEOUT`)
    /// and the job is tried again (the third time: `Error`). Keep it below
    /// the consumer's `max.poll.interval.ms` (300 s by default).
    pub job_timeout_ms: u64,
    /// How often the scanner says Free or Busy on `tapwire.scan.scanners`.
    pub heartbeat_interval_ms: u64,
    /// Captures larger than this are not scanned (`E-TOO-LARGE`).
    pub max_object_bytes: u64,
    /// Scan the filesystems of the containers that start on this node
    /// (`/proc/PID/root` of one of their processes); unset: no container
    /// scans by this scanner.
    pub node: Option<String>,
    /// Where the node's processes are (`/proc`, or the host's /proc mounted
    /// into the scanner's container).
    pub host_proc: PathBuf,
    /// Bytes read per file of a container at most.
    pub container_max_file_bytes: u64,
    /// Bytes read per container at most.
    pub container_max_bytes: u64,
    /// Time per container scan at most (below `job_timeout_ms`).
    pub container_max_time_ms: u64,
    /// What an image must meet to be compliant (`CMP-001`) rather than
    /// non-compliant (`NCMP-001`).
    pub requirements: Requirements,
    /// How to reach S3 for `s3://` slices (endpoint, region, path style:
    /// the `[record]` section's; the bucket is the job's). Set by the
    /// command, not read from the file.
    #[serde(skip)]
    pub s3: Option<S3Settings>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            group: "tapwire-scanner".to_owned(),
            id: None,
            rules: Vec::new(),
            rules_check_ms: 2000,
            job_timeout_ms: 120_000,
            heartbeat_interval_ms: 5000,
            max_object_bytes: 1 << 30,
            node: None,
            host_proc: PathBuf::from("/proc"),
            container_max_file_bytes: 32 << 20,
            container_max_bytes: 2 << 30,
            container_max_time_ms: 100_000,
            requirements: Requirements::default(),
            s3: None,
        }
    }
}

/// A `[scan]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("scan.{key}: {reason}")]
pub struct ScanConfigError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl ScanConfig {
    /// Cross-field checks.
    ///
    /// # Errors
    ///
    /// The first value that cannot be used.
    pub fn validate(&self) -> Result<(), ScanConfigError> {
        let positive = [
            ("job_timeout_ms", self.job_timeout_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("rules_check_ms", self.rules_check_ms),
            ("max_object_bytes", self.max_object_bytes),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ScanConfigError {
                    key,
                    reason: "must be greater than 0".to_owned(),
                });
            }
        }
        if self.node.is_some() && self.container_max_time_ms >= self.job_timeout_ms {
            return Err(ScanConfigError {
                key: "container_max_time_ms",
                reason: format!(
                    "{} ms is not below job_timeout_ms ({} ms): a big container would time out instead of being cut",
                    self.container_max_time_ms, self.job_timeout_ms
                ),
            });
        }
        Ok(())
    }

    /// The scanner id: `id`, or host name and pid.
    pub fn scanner_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "scanner".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// The flags of `tapwire scanner`; each sets its `[scan]` key.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ScanFlags {
    /// YARA rules files or directories, added to the built-in rules (scan.rules).
    #[arg(long, value_name = "PATH")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<PathBuf>,
    /// Scanner id in statuses and heartbeats (scan.id).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Seconds an attempt may take before it is tried again (scan.job_timeout_ms).
    #[arg(long, value_name = "SECS", value_parser = secs_to_ms)]
    #[serde(skip_serializing_if = "Option::is_none", rename = "job_timeout_ms")]
    pub job_timeout: Option<u64>,
    /// Scan the containers that start on this node (scan.node).
    #[arg(long, value_name = "NODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node's /proc (scan.host_proc).
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_proc: Option<PathBuf>,
    /// Consumer group (scan.group).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

fn secs_to_ms(text: &str) -> Result<u64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs <= 0.0 || !secs.is_finite() {
        return Err(format!("{text:?}: must be more than 0 seconds"));
    }
    Ok((secs * 1000.0).round() as u64)
}
