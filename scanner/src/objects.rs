//! Stored recordings to findings: [`scan_slice`] fetches one slice (and
//! its index, for pod names) from a store and scans it; [`scan_store`]
//! does it for every capture under a prefix, as `tapwire scan` does
//! offline. Each object that fails is reported with its reason; the others
//! are still scanned.

use tapwire_pcap_recorder::index::SliceIndex;
use tapwire_pcap_recorder::slice::index_name;
use tapwire_pcap_recorder::store::{Store, StoreError};

use crate::content::ContentScanner;
use crate::finding::Finding;
use crate::traffic::{TrafficError, TrafficStats, scan_capture};

/// Why one object could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The store failed (transient: retry later).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object is not a capture, or YARA gave up.
    #[error(transparent)]
    Traffic(#[from] TrafficError),
    /// Bigger than the scanner's limit.
    #[error("{object}: {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The object.
        object: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl ObjectError {
    /// Whether another attempt may succeed (the store was unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, ObjectError::Store(e) if e.is_transient())
    }

    /// Whether a job that ended on this error is tried again: the store
    /// was unavailable, or YARA gave up (time-out) on a busy scanner; a
    /// malformed or oversized object fails the same way every time.
    pub fn is_retried(&self) -> bool {
        self.is_transient() || matches!(self, ObjectError::Traffic(TrafficError::Scan { .. }))
    }

    /// The reason code of a job that ends on this error.
    pub fn code(&self) -> &'static str {
        match self {
            ObjectError::Store(_) => "E-STORE",
            ObjectError::Traffic(TrafficError::Capture { .. }) => "E-MALFORMED",
            ObjectError::Traffic(TrafficError::Scan { .. }) => "E-RULES-TIMEOUT",
            ObjectError::TooLarge { .. } => "E-TOO-LARGE",
        }
    }
}

/// Whether `key` is a capture: `.pcap`, `.pcapng` or `.cap`.
pub fn is_capture(key: &str) -> bool {
    key.ends_with(".pcap") || key.ends_with(".pcapng") || key.ends_with(".cap")
}

/// Scans the capture `key` of `store`, named `object` in findings; its
/// index beside it (if readable) names the pods. Captures larger than
/// `max_bytes` are refused.
///
/// # Errors
///
/// [`ObjectError`].
pub async fn scan_slice(
    store: &Store,
    key: &str,
    object: &str,
    max_bytes: u64,
    scanner: &ContentScanner,
) -> Result<(Vec<Finding>, TrafficStats), ObjectError> {
    let bytes = store.get(key).await?;
    if bytes.len() as u64 > max_bytes {
        return Err(ObjectError::TooLarge {
            object: object.to_owned(),
            size: bytes.len() as u64,
            limit: max_bytes,
        });
    }
    let index = match store.get(&index_name(key)).await {
        Ok(json) => SliceIndex::from_json(&json).ok(),
        Err(_) => None,
    };
    let scanner = scanner.clone();
    let object = object.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut findings = Vec::new();
        let stats = scan_capture(
            &object,
            std::io::Cursor::new(bytes),
            index.as_ref(),
            &scanner,
            &mut findings,
        )?;
        Ok((findings, stats))
    })
    .await
    .unwrap_or_else(|e| {
        Err(ObjectError::Traffic(TrafficError::Scan {
            object: key.to_owned(),
            reason: format!("the scan stopped: {e}"),
        }))
    })
}

/// What [`scan_store`] found.
#[derive(Debug, Default)]
pub struct StoreReport {
    /// Every finding, object by object in key order.
    pub findings: Vec<Finding>,
    /// Captures scanned.
    pub objects: u64,
    /// Frames, streams and bytes over all captures.
    pub stats: TrafficStats,
    /// Captures that could not be scanned, with why.
    pub failed: Vec<(String, String)>,
}

/// Scans every capture under `prefix`, naming each `NAME_PREFIX + key`
/// (e.g. `s3://bucket/`). `progress` is told after each object.
///
/// # Errors
///
/// Listing the store failed; a single object's failure is in
/// [`StoreReport::failed`].
pub async fn scan_store(
    store: &Store,
    prefix: &str,
    name_prefix: &str,
    max_bytes: u64,
    scanner: &ContentScanner,
    progress: &indicatif::ProgressBar,
) -> Result<StoreReport, StoreError> {
    let keys: Vec<String> = store
        .list(prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| is_capture(k))
        .collect();
    progress.set_length(keys.len() as u64);
    let mut report = StoreReport::default();
    for key in keys {
        let object = format!("{name_prefix}{key}");
        match scan_slice(store, &key, &object, max_bytes, scanner).await {
            Ok((findings, stats)) => {
                report.objects += 1;
                report.stats.frames += stats.frames;
                report.stats.skipped_frames += stats.skipped_frames;
                report.stats.streams += stats.streams;
                report.stats.bytes += stats.bytes;
                report.findings.extend(findings);
            }
            Err(err) => report.failed.push((object, err.to_string())),
        }
        progress.inc(1);
    }
    Ok(report)
}
