//! Uploads that survive an unavailable object store.
//!
//! [`Uploader::deliver`] puts a finished slice's objects (PCAP, then its
//! index) to the [`Store`]. While the store fails, or while older slices
//! still wait, the objects go to the [`Spool`] instead: a local directory,
//! bounded in bytes, one entry per slice, written to a temporary name,
//! synced and renamed so that an entry is either whole or absent after a
//! crash. [`Uploader::drain`] uploads spooled entries oldest first and
//! deletes each once all its objects are stored; a restart re-scans the
//! directory and resumes where it stopped.
//!
//! Only a full spool loses data: the slice that does not fit is dropped,
//! counted in `tapwire_messages_dropped_total{reason="spool_full"}` (one per
//! packet of the slice) and in [`SpoolStats`], and logged (rate limited).
//! Nothing else is ever dropped here.
//!
//! Layout of the directory:
//!
//! ```text
//! SPOOL/00000000000000000007/manifest.json   ["rec/n/1.pcap", "rec/n/1.json"]
//! SPOOL/00000000000000000007/0               bytes of the first key
//! SPOOL/00000000000000000007/1               bytes of the second key
//! SPOOL/tmp-00000000000000000008/            being written; removed on start
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tapwire_plumbing::telemetry::{RateLimit, StageMetrics};

use crate::store::{Store, StoreError};

/// Spool failures (the local disk, not the store).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Reading or writing the spool directory failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An entry's manifest is unreadable (written by something else?).
    #[error("spool entry {path}: bad manifest: {reason}")]
    BadEntry {
        /// The entry directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One object to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Key in the store.
    pub key: String,
    /// Its bytes.
    pub body: Vec<u8>,
}

/// What happened to a delivered slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Stored in the object store.
    Uploaded,
    /// Written to the spool; uploaded when the store is back.
    Spooled,
    /// The spool was full: dropped and counted.
    Dropped,
}

/// Counters of a spool since it was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Entries written to the spool.
    pub spooled: u64,
    /// Entries uploaded from the spool.
    pub drained: u64,
    /// Slices dropped because the spool was full.
    pub dropped: u64,
    /// Bytes of those slices.
    pub dropped_bytes: u64,
}

#[derive(Debug)]
struct Entry {
    dir: PathBuf,
    bytes: u64,
}

/// The bounded spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used_bytes: u64,
    next_seq: u64,
    entries: VecDeque<Entry>,
    stats: SpoolStats,
    /// Keys of PCAP slices stored by [`Spool::drain`], until taken.
    drained: Vec<String>,
}

const MANIFEST: &str = "manifest.json";

impl Spool {
    /// Opens (creating) the spool at `dir`, holding at most `max_bytes` of
    /// object bytes. Entries left by an earlier run are found again, in
    /// order; half-written ones are removed.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut found = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let item = item.map_err(io(&dir))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with("tmp-") {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            } else if name.len() == 20
                && let Ok(seq) = name.parse::<u64>()
            {
                if !path.join(MANIFEST).is_file() {
                    // Every file of the entry was uploaded and the directory
                    // was being removed when the process stopped.
                    std::fs::remove_dir_all(&path).map_err(io(&path))?;
                    continue;
                }
                found.push((seq, path));
            }
        }
        found.sort();
        let mut spool = Spool {
            next_seq: found.last().map_or(0, |(s, _)| s + 1),
            dir,
            max_bytes,
            used_bytes: 0,
            entries: VecDeque::new(),
            stats: SpoolStats::default(),
            drained: Vec::new(),
        };
        for (_, path) in found {
            let bytes = dir_bytes(&path)?;
            spool.used_bytes += bytes;
            spool.entries.push_back(Entry { dir: path, bytes });
        }
        if !spool.entries.is_empty() {
            tracing::info!(
                entries = spool.entries.len(),
                bytes = spool.used_bytes,
                dir = %spool.dir.display(),
                "spooled slices from an earlier run: uploading them first"
            );
        }
        Ok(spool)
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Object bytes waiting.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Counters since open.
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `objects` as one entry, durably. `Ok(false)` when they do not
    /// fit in the bytes left: nothing is written and the drop is counted in
    /// [`SpoolStats`] (the caller counts the packets).
    pub fn push(&mut self, objects: &[Object]) -> Result<bool, SpoolError> {
        let bytes: u64 = objects.iter().map(|o| o.body.len() as u64).sum();
        if self.used_bytes + bytes > self.max_bytes {
            self.stats.dropped += 1;
            self.stats.dropped_bytes += bytes;
            return Ok(false);
        }
        let name = format!("{:020}", self.next_seq);
        let tmp = self.dir.join(format!("tmp-{name}"));
        let dir = self.dir.join(&name);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        for (i, object) in objects.iter().enumerate() {
            write_synced(&tmp.join(i.to_string()), &object.body)?;
        }
        let manifest = serde_json::to_vec(&keys).map_err(|e| SpoolError::BadEntry {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
        write_synced(&tmp.join(MANIFEST), &manifest)?;
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        // The rename is durable once the parent directory is synced.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.next_seq += 1;
        self.used_bytes += bytes;
        self.stats.spooled += 1;
        self.entries.push_back(Entry { dir, bytes });
        Ok(true)
    }

    /// Uploads entries oldest first until the spool is empty (returns how
    /// many were uploaded) or the store fails (the failing entry stays
    /// first; its objects already stored are not sent again).
    pub async fn drain(&mut self, store: &Store) -> Result<usize, DrainError> {
        let mut uploaded = 0;
        while let Some(entry) = self.entries.front() {
            let dir = entry.dir.clone();
            let manifest_path = dir.join(MANIFEST);
            let text = std::fs::read(&manifest_path).map_err(io(&manifest_path))?;
            let keys: Vec<String> =
                serde_json::from_slice(&text).map_err(|e| SpoolError::BadEntry {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
            for (i, key) in keys.iter().enumerate() {
                let file = dir.join(i.to_string());
                let body = match std::fs::read(&file) {
                    Ok(body) => body,
                    // Stored by an earlier attempt.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(SpoolError::Io { path: file, source }.into()),
                };
                store.put(key, body).await?;
                if key.ends_with(".pcap") {
                    self.drained.push(key.clone());
                }
                std::fs::remove_file(&file).map_err(io(&file))?;
            }
            std::fs::remove_file(&manifest_path).map_err(io(&manifest_path))?;
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
            let entry = self.entries.pop_front().expect("front exists");
            self.used_bytes -= entry.bytes;
            self.stats.drained += 1;
            uploaded += 1;
        }
        Ok(uploaded)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn dir_bytes(dir: &Path) -> Result<u64, SpoolError> {
    let mut total = 0;
    for item in std::fs::read_dir(dir).map_err(io(dir))? {
        let item = item.map_err(io(dir))?;
        if item.file_name() != MANIFEST {
            total += item.metadata().map_err(io(dir))?.len();
        }
    }
    Ok(total)
}

/// Why a drain stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The store failed; the entry stays spooled.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The spool directory failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// The store with the spool in front of it.
pub struct Uploader {
    store: Store,
    spool: Spool,
    metrics: StageMetrics,
    fail_log: RateLimit,
    drop_log: RateLimit,
    /// Keys of PCAP slices stored since [`Uploader::take_stored`].
    stored: Vec<String>,
}

impl Uploader {
    /// Uploads to `store`, spooling to `spool` while it fails.
    pub fn new(store: Store, spool: Spool, metrics: StageMetrics) -> Self {
        Uploader {
            store,
            spool,
            metrics,
            fail_log: RateLimit::new(Duration::from_secs(10)),
            drop_log: RateLimit::new(Duration::from_secs(10)),
            stored: Vec::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Stores one slice's `objects` (in order: the PCAP before its index, so
    /// that an index always names a PCAP that exists), or spools them when
    /// the store fails or older slices still wait (uploads stay in order),
    /// or drops them, counted, when the spool is full. `packets` is what the
    /// drop counter counts. Returns only after the objects are stored, or
    /// durably spooled, or counted as dropped; an error means the spool
    /// disk itself failed and nothing was kept.
    pub async fn deliver(
        &mut self,
        objects: Vec<Object>,
        packets: u64,
    ) -> Result<Delivery, SpoolError> {
        if !self.spool.is_empty() {
            self.drain().await?;
        }
        if self.spool.is_empty() {
            let mut failed = None;
            for object in &objects {
                if let Err(err) = self.store.put(&object.key, object.body.clone()).await {
                    failed = Some(err);
                    break;
                }
            }
            match failed {
                None => {
                    self.stored.extend(
                        objects
                            .iter()
                            .filter(|o| o.key.ends_with(".pcap"))
                            .map(|o| o.key.clone()),
                    );
                    return Ok(Delivery::Uploaded);
                }
                Some(err) => {
                    if let Some(suppressed) = self.fail_log.allow() {
                        tracing::warn!(error = %err, suppressed, store = %self.store.describe(),
                            "object store failed: spooling slices until it is back");
                    }
                }
            }
        }
        if self.spool.push(&objects)? {
            Ok(Delivery::Spooled)
        } else {
            self.metrics.dropped("spool_full", packets);
            if let Some(suppressed) = self.drop_log.allow() {
                tracing::error!(
                    packets,
                    bytes = objects.iter().map(|o| o.body.len()).sum::<usize>(),
                    spool_bytes = self.spool.used_bytes(),
                    spool_max_bytes = self.spool.max_bytes,
                    suppressed,
                    "spool full while the object store is unavailable: slice dropped"
                );
            }
            Ok(Delivery::Dropped)
        }
    }

    /// Keys of the PCAP slices that reached the store (directly or from the
    /// spool) since the last call, in the order they were stored.
    pub fn take_stored(&mut self) -> Vec<String> {
        let mut keys = std::mem::take(&mut self.spool.drained);
        keys.append(&mut self.stored);
        keys
    }

    /// Uploads what the spool holds, oldest first. A store failure leaves
    /// the rest spooled and is not an error (`Ok` with what was uploaded);
    /// only a spool disk failure is.
    pub async fn drain(&mut self) -> Result<usize, SpoolError> {
        if self.spool.is_empty() {
            return Ok(0);
        }
        let before = self.spool.len();
        match self.spool.drain(&self.store).await {
            Ok(n) => {
                tracing::info!(slices = n, "spooled slices uploaded; the spool is empty");
                Ok(n)
            }
            Err(DrainError::Store(err)) => {
                if let Some(suppressed) = self.fail_log.allow() {
                    tracing::warn!(error = %err, suppressed, waiting = self.spool.len(),
                        "object store still failing: slices stay spooled");
                }
                Ok(before - self.spool.len())
            }
            Err(DrainError::Spool(err)) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;

    fn objects(name: &str, size: usize) -> Vec<Object> {
        vec![
            Object {
                key: format!("rec/{name}.pcap"),
                body: vec![7; size],
            },
            Object {
                key: format!("rec/{name}.json"),
                body: b"{}".to_vec(),
            },
        ]
    }

    #[tokio::test]
    async fn entries_survive_a_restart_and_drain_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool_dir = dir.path().join("spool");
        {
            let mut spool = Spool::open(&spool_dir, 1 << 20).expect("open");
            assert!(spool.push(&objects("a", 10)).expect("push"));
            assert!(spool.push(&objects("b", 20)).expect("push"));
            assert_eq!(spool.used_bytes(), 34);
        }
        // A half-written entry from a crash is discarded on open.
        std::fs::create_dir_all(spool_dir.join("tmp-00000000000000000009")).expect("mkdir");
        let mut spool = Spool::open(&spool_dir, 1 << 20).expect("reopen");
        assert_eq!((spool.len(), spool.used_bytes()), (2, 34));
        assert!(!spool_dir.join("tmp-00000000000000000009").exists());
        assert!(spool.push(&objects("c", 1)).expect("push"));

        let store = Store::Local(LocalStore::new(dir.path().join("store")));
        assert_eq!(spool.drain(&store).await.expect("drain"), 3);
        assert!(spool.is_empty());
        assert_eq!(spool.used_bytes(), 0);
        let keys: Vec<_> = store
            .list("rec/")
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(store.get("rec/b.pcap").await.expect("get"), vec![7; 20]);
        assert_eq!(std::fs::read_dir(&spool_dir).expect("dir").count(), 0);
    }

    #[tokio::test]
    async fn a_full_spool_drops_and_counts_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), 100).expect("open");
        assert!(spool.push(&objects("a", 60)).expect("push"));
        assert!(
            !spool.push(&objects("b", 60)).expect("push"),
            "does not fit"
        );
        assert!(
            spool.push(&objects("c", 30)).expect("push"),
            "this one fits"
        );
        let stats = spool.stats();
        assert_eq!(
            (stats.spooled, stats.dropped, stats.dropped_bytes),
            (2, 1, 62)
        );
        assert_eq!(spool.len(), 2);
    }

    #[tokio::test]
    async fn the_uploader_spools_while_the_store_fails_and_catches_up_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A "store" under a path that is a file: every put fails.
        let blocker = dir.path().join("store");
        std::fs::write(&blocker, b"not a directory").expect("write");
        let store = Store::Local(LocalStore::new(&blocker));
        let spool = Spool::open(dir.path().join("spool"), 1 << 20).expect("open");
        let mut up = Uploader::new(store.clone(), spool, StageMetrics::new("spool-test"));
        assert_eq!(
            up.deliver(objects("1", 5), 3).await.expect("deliver"),
            Delivery::Spooled
        );
        assert_eq!(
            up.deliver(objects("2", 5), 3).await.expect("deliver"),
            Delivery::Spooled
        );
        assert_eq!(up.drain().await.expect("drain"), 0, "store still down");
        // The store comes back.
        std::fs::remove_file(&blocker).expect("rm");
        assert_eq!(
            up.deliver(objects("3", 5), 3).await.expect("deliver"),
            Delivery::Uploaded,
            "older slices go first, then this one directly"
        );
        assert!(up.spool().is_empty());
        assert_eq!(store.list("rec/").await.expect("list").len(), 6);
    }

    #[tokio::test]
    async fn a_drop_is_counted_in_the_metrics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("store");
        std::fs::write(&blocker, b"x").expect("write");
        let spool = Spool::open(dir.path().join("spool"), 10).expect("open");
        let mut up = Uploader::new(
            Store::Local(LocalStore::new(&blocker)),
            spool,
            StageMetrics::new("spool-drop-test"),
        );
        assert_eq!(
            up.deliver(objects("big", 50), 17).await.expect("deliver"),
            Delivery::Dropped
        );
        let metrics = tapwire_plumbing::telemetry::render_metrics();
        let line = metrics
            .lines()
            .find(|l| l.contains("spool-drop-test") && l.contains("spool_full"))
            .unwrap_or_else(|| panic!("no drop counter in:\n{metrics}"));
        assert!(line.ends_with(" 17"), "{line}");
    }
}
