//! A filesystem to findings: [`scan_tree`] walks a root (a container's
//! filesystem as the node sees it, `/proc/PID/root`, or any directory) and
//! scans every regular file with the secret detectors and YARA rules,
//! within [`TreeLimits`].
//!
//! Symbolic links are not followed (a container's link to `/` would lead
//! into the node), other mounts' pseudo-filesystems (`/proc`, `/sys`,
//! `/dev`) are skipped, FIFOs, sockets and devices are never opened, and a
//! file larger than the per-file limit is read only up to it (and said so).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::content::{ContentScanner, Hit};
use crate::finding::Finding;

/// Bounds of one tree scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Bytes read per file at most.
    pub max_file_bytes: u64,
    /// Bytes read in all at most; then the scan stops (`truncated`).
    pub max_total_bytes: u64,
    /// Files at most.
    pub max_files: u64,
    /// Wall time at most; then the scan stops (`truncated`).
    pub max_time: Duration,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_file_bytes: 32 << 20,
            max_total_bytes: 2 << 30,
            max_files: 200_000,
            max_time: Duration::from_secs(300),
        }
    }
}

/// What a tree scan covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Files scanned.
    pub files: u64,
    /// Bytes scanned.
    pub bytes: u64,
    /// Files only partly read (over the per-file limit).
    pub cut_files: u64,
    /// Files or directories that could not be read.
    pub unreadable: u64,
    /// Why the scan stopped early, if it did.
    pub truncated: Option<String>,
}

/// A root that cannot be scanned at all.
#[derive(Debug, thiserror::Error)]
#[error("{root}: {source}")]
pub struct TreeError {
    /// The root.
    pub root: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Directories under the root that are never entered.
const SKIPPED: &[&str] = &["proc", "sys", "dev"];

/// Scans every regular file under `root`; findings name `object` and the
/// file's path inside the root.
///
/// # Errors
///
/// The root itself cannot be read. Unreadable files inside are counted.
pub fn scan_tree(
    object: &str,
    root: &Path,
    limits: &TreeLimits,
    scanner: &ContentScanner,
    findings: &mut Vec<Finding>,
) -> Result<TreeStats, TreeError> {
    std::fs::read_dir(root).map_err(|source| TreeError {
        root: root.to_owned(),
        source,
    })?;
    let started = Instant::now();
    let mut stats = TreeStats::default();
    let mut session = scanner.session();
    let mut hits: Vec<Hit> = Vec::new();
    let mut buf = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let dir = root.join(&relative);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            stats.unreadable += 1;
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
        for entry in entries {
            let Ok(kind) = entry.file_type() else {
                stats.unreadable += 1;
                continue;
            };
            let inner = relative.join(entry.file_name());
            if kind.is_dir() {
                if !(relative.as_os_str().is_empty()
                    && SKIPPED.iter().any(|s| entry.file_name() == *s))
                {
                    stack.push(inner);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            if let Some(reason) = over(limits, &stats, started) {
                stats.truncated = Some(reason);
                return Ok(stats);
            }
            buf.clear();
            let read = std::fs::File::open(entry.path())
                .and_then(|f| f.take(limits.max_file_bytes).read_to_end(&mut buf));
            if read.is_err() {
                stats.unreadable += 1;
                continue;
            }
            stats.files += 1;
            stats.bytes += buf.len() as u64;
            if buf.len() as u64 >= limits.max_file_bytes {
                stats.cut_files += 1;
            }
            hits.clear();
            if let Err(reason) = session.scan(&buf, &mut hits) {
                tracing::warn!(file = %inner.display(), %reason, "scan: YARA gave up on a file");
                stats.unreadable += 1;
            }
            let path = format!("/{}", inner.display());
            for hit in hits.drain(..) {
                findings.push(Finding::new(
                    hit.kind,
                    &hit.rule,
                    hit.severity,
                    object,
                    path.clone(),
                    Some(hit.offset as u64),
                    None,
                    hit.excerpt,
                ));
            }
        }
    }
    Ok(stats)
}

fn over(limits: &TreeLimits, stats: &TreeStats, started: Instant) -> Option<String> {
    if stats.files >= limits.max_files {
        Some(format!("stopped at the file limit ({})", limits.max_files))
    } else if stats.bytes >= limits.max_total_bytes {
        Some(format!(
            "stopped at the byte limit ({} bytes)",
            limits.max_total_bytes
        ))
    } else if started.elapsed() >= limits.max_time {
        Some(format!(
            "stopped at the time limit ({} s)",
            limits.max_time.as_secs()
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_scanned_links_and_fifos_are_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/app")).expect("mkdir");
        std::fs::write(
            root.join("etc/app/config"),
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n",
        )
        .expect("write");
        std::fs::create_dir_all(root.join("proc/1")).expect("mkdir");
        std::fs::write(root.join("proc/1/environ"), "AKIAIOSFODNN7EXAMPLE").expect("write");
        std::os::unix::fs::symlink("/", root.join("hostroot")).expect("symlink");
        let fifo = root.join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        let mut findings = Vec::new();
        let stats = scan_tree(
            "container:abc",
            root,
            &TreeLimits::default(),
            &ContentScanner::builtin(),
            &mut findings,
        )
        .expect("scan");
        assert_eq!(stats.files, 1, "{stats:?}");
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, "aws-access-key");
        assert_eq!(findings[0].location, "/etc/app/config");
        assert_eq!(findings[0].offset, Some(20));
        assert!(!findings[0].excerpt.contains("AKIAIOSFODNN7EXAMPLE"));
        assert!(
            scan_tree(
                "x",
                &root.join("missing"),
                &TreeLimits::default(),
                &ContentScanner::builtin(),
                &mut findings
            )
            .is_err()
        );
    }
}
