//! Where recordings are kept: an object store with `put`, `list(prefix)` and
//! `get`, in two implementations.
//!
//! - [`S3Store`]: any S3 API (AWS, SeaweedFS, MinIO) through `aws-sdk-s3`:
//!   endpoint override, path-style addressing, region, credentials from the
//!   standard chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles,
//!   web identity, instance metadata), the SDK's standard retry mode with
//!   exponential backoff and jitter. When the bucket has S3 Object Lock
//!   enabled (asked once with `GetObjectLockConfiguration`) and a retention
//!   is configured, every object is written with a retain-until date.
//! - [`LocalStore`]: a directory, the object key as the relative path (used
//!   by `tapwire run` and by tests); writes go to a temporary file that is
//!   renamed, so a reader never sees half an object.
//!
//! [`Store`] is either; callers hold a `Store` and never care which.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockEnabled, ObjectLockMode};
use tokio::sync::OnceCell;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with a server error: try
    /// again later (the recorder spools meanwhile).
    #[error("{op} {key}: object store unavailable: {reason}")]
    Unavailable {
        /// The operation (`put`, `get`, `list`, `object-lock check`).
        op: &'static str,
        /// The object key or prefix.
        key: String,
        /// What the client said.
        reason: String,
    },
    /// The store refused the request (access denied, no such bucket, a
    /// malformed request): retrying the same request will not help until
    /// the configuration or the bucket is fixed.
    #[error("{op} {key}: refused by the object store: {reason}")]
    Refused {
        /// The operation.
        op: &'static str,
        /// The object key or prefix.
        key: String,
        /// The service's error code and message.
        reason: String,
    },
    /// No object under that key.
    #[error("no object {0}")]
    NotFound(String),
    /// A key that cannot name an object (empty, absolute, `..`).
    #[error("invalid object key {key:?}: {reason}")]
    BadKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether retrying later can succeed (the store is down, not refusing).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. } | StoreError::Io { .. })
    }
}

/// One object found by [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key (relative to the bucket, or to the directory).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// S3 Object Lock retention mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionMode {
    /// Nobody, not even the root account, can delete or shorten the
    /// retention before it ends.
    #[default]
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can remove it.
    Governance,
}

/// How to reach an S3 bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// Region; `None`: the standard chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Endpoint URL for S3-compatible stores (`http://127.0.0.1:8333`);
    /// `None`: AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`
    /// (most S3-compatible stores need it).
    pub path_style: bool,
    /// Attempts per request, the first included (the SDK's standard retry
    /// mode: exponential backoff with jitter, transient errors only).
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_initial_backoff: Duration,
    /// Longest a single attempt may take, connection included.
    pub attempt_timeout: Duration,
    /// Object Lock retention in days when the bucket has Object Lock
    /// enabled; 0: none set by tapwire (a bucket default still applies).
    pub retention_days: u32,
    /// Object Lock mode for that retention.
    pub retention_mode: RetentionMode,
    /// Fixed credentials instead of the standard chain (tests; never read
    /// from a configuration file).
    pub static_credentials: Option<(String, String)>,
}

impl S3Settings {
    /// Settings for `bucket` with defaults everywhere else.
    pub fn new(bucket: &str) -> Self {
        S3Settings {
            bucket: bucket.to_owned(),
            region: None,
            endpoint: None,
            path_style: false,
            max_attempts: 4,
            retry_initial_backoff: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(30),
            retention_days: 0,
            retention_mode: RetentionMode::Compliance,
            static_credentials: None,
        }
    }
}

/// An S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    retention_days: u32,
    retention_mode: RetentionMode,
    /// Whether the bucket has Object Lock enabled: asked on first `put`.
    lock: std::sync::Arc<OnceCell<bool>>,
}

impl S3Store {
    /// A client for the bucket. Sends nothing yet: an unreachable store
    /// shows on the first request.
    pub async fn connect(settings: &S3Settings) -> S3Store {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret)) = &settings.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "tapwire-static",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.path_style)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts.max(1))
                    .with_initial_backoff(settings.retry_initial_backoff)
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5).min(settings.attempt_timeout))
                    .operation_attempt_timeout(settings.attempt_timeout)
                    .build(),
            )
            // Checksums only where S3 requires them: S3-compatible stores
            // differ in which flexible checksums they accept. Object Lock
            // writes ask for CRC32 explicitly (S3 requires an integrity
            // check on them).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if shared.region().is_none() {
            // Signing needs a region; S3-compatible stores ignore it.
            builder = builder.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        S3Store {
            client: Client::from_conf(builder.build()),
            bucket: settings.bucket.clone(),
            retention_days: settings.retention_days,
            retention_mode: settings.retention_mode,
            lock: std::sync::Arc::new(OnceCell::new()),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The SDK client (tests use it to inspect retention and versions).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the bucket has Object Lock enabled (asked once).
    pub async fn object_lock_enabled(&self) -> Result<bool, StoreError> {
        self.lock
            .get_or_try_init(|| async {
                let answer = self
                    .client
                    .get_object_lock_configuration()
                    .bucket(&self.bucket)
                    .send()
                    .await;
                match answer {
                    Ok(out) => Ok(out
                        .object_lock_configuration()
                        .and_then(|c| c.object_lock_enabled())
                        == Some(&ObjectLockEnabled::Enabled)),
                    Err(SdkError::ServiceError(e))
                        if e.err()
                            .code()
                            .is_some_and(|c| c.starts_with("ObjectLockConfigurationNotFound")) =>
                    {
                        Ok(false)
                    }
                    Err(err) => Err(classify("object-lock check", &self.bucket, err)),
                }
            })
            .await
            .copied()
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body));
        if self.retention_days > 0 {
            if self.object_lock_enabled().await? {
                let until = SystemTime::now()
                    + Duration::from_secs(86_400 * u64::from(self.retention_days));
                let mode = match self.retention_mode {
                    RetentionMode::Compliance => ObjectLockMode::Compliance,
                    RetentionMode::Governance => ObjectLockMode::Governance,
                };
                request = request
                    .object_lock_mode(mode)
                    .object_lock_retain_until_date(DateTime::from(until))
                    .checksum_algorithm(ChecksumAlgorithm::Crc32);
            } else {
                warn_no_lock(&self.bucket);
            }
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("put", key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| classify("list", prefix, e))?;
            out.extend(page.contents().iter().filter_map(|o| {
                Some(ObjectInfo {
                    key: o.key()?.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                })
            }));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| match &e {
                SdkError::ServiceError(s) if s.err().is_no_such_key() => {
                    StoreError::NotFound(key.to_owned())
                }
                _ => classify("get", key, e),
            })?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable {
                op: "get",
                key: key.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(bytes.into_bytes().to_vec())
    }
}

/// Says once per process that retention was asked for but cannot be set.
fn warn_no_lock(bucket: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            bucket,
            "retention_days is set but the bucket has no Object Lock: objects are written without retention (create the bucket with Object Lock to make recordings immutable)"
        );
    });
}

/// Service errors with a 4xx status (other than throttling and timeouts)
/// are refusals; everything else (no connection, timeouts, 5xx) is
/// transient.
fn classify<E>(op: &'static str, key: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(service) = &err {
        let code = service.err().code().unwrap_or("");
        let throttled = matches!(
            code,
            "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "RequestTimeout"
                | "RequestTimeTooSkewed"
        );
        let status = service.raw().status().as_u16();
        if !throttled && (400..500).contains(&status) {
            return StoreError::Refused {
                op,
                key: key.to_owned(),
                reason: format!(
                    "{} (HTTP {}): {}",
                    if code.is_empty() { "error" } else { code },
                    status,
                    service.err().message().unwrap_or("no message")
                ),
            };
        }
    }
    StoreError::Unavailable {
        op,
        key: key.to_owned(),
        reason: DisplayErrorContext(&err).to_string(),
    }
}

/// A directory of objects: key `a/b.pcap` is the file `ROOT/a/b.pcap`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on the first `put`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let bad = |reason| StoreError::BadKey {
            key: key.to_owned(),
            reason,
        };
        if key.is_empty() || key.ends_with('/') {
            return Err(bad("empty, or names a directory"));
        }
        let rel = Path::new(key);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad("must be relative, without `.` or `..`"));
        }
        Ok(self.root.join(rel))
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        }
        let tmp = path.with_extension("tapwire-partial");
        tokio::fs::write(&tmp, body).await.map_err(io(&tmp))?;
        tokio::fs::rename(&tmp, &path).await.map_err(io(&path))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Io {
            path: self.root.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        tokio::fs::read(&path).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound(key.to_owned())
            } else {
                StoreError::Io { path, source }
            }
        })
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<ObjectInfo>,
) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let key = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let meta = entry.metadata().map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            // Only descend where keys can still match the prefix.
            let dir_key = format!("{key}/");
            if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                walk(root, &path, prefix, out)?;
            }
        } else if key.starts_with(prefix) && !key.ends_with(".tapwire-partial") {
            out.push(ObjectInfo {
                key,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

/// An S3 bucket or a local directory.
#[derive(Debug, Clone)]
pub enum Store {
    /// S3 or an S3-compatible store.
    S3(S3Store),
    /// A local directory.
    Local(LocalStore),
}

impl Store {
    /// Writes `body` under `key` (replacing an object there, or adding a
    /// version on a versioned bucket).
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Store::S3(s) => s.put(key, body).await,
            Store::Local(l) => l.put(key, body).await,
        }
    }

    /// Every object whose key starts with `prefix`, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        match self {
            Store::S3(s) => s.list(prefix).await,
            Store::Local(l) => l.list(prefix).await,
        }
    }

    /// The object's bytes.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Store::S3(s) => s.get(key).await,
            Store::Local(l) => l.get(key).await,
        }
    }

    /// Where it is, for people: `s3://bucket` or the directory.
    pub fn describe(&self) -> String {
        match self {
            Store::S3(s) => format!("s3://{}", s.bucket),
            Store::Local(l) => l.root.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_store_puts_lists_by_prefix_and_gets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::Local(LocalStore::new(dir.path().join("objects")));
        assert!(store.list("").await.expect("empty list").is_empty());
        store
            .put("rec/node-a/1.pcap", b"one".to_vec())
            .await
            .expect("put");
        store
            .put("rec/node-a/1.json", b"{}".to_vec())
            .await
            .expect("put");
        store
            .put("rec/node-b/2.pcap", b"two!".to_vec())
            .await
            .expect("put");
        store.put("other/x", b"x".to_vec()).await.expect("put");
        let keys: Vec<_> = store
            .list("rec/node-a")
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["rec/node-a/1.json", "rec/node-a/1.pcap"]);
        let all = store.list("rec/").await.expect("list");
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].size, 4);
        assert_eq!(store.get("rec/node-b/2.pcap").await.expect("get"), b"two!");
        assert!(matches!(
            store.get("rec/missing").await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn keys_cannot_leave_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::Local(LocalStore::new(dir.path()));
        for key in ["../x", "/etc/passwd", "a/../../b", "", "a/"] {
            assert!(
                matches!(store.put(key, vec![]).await, Err(StoreError::BadKey { .. })),
                "{key:?} accepted"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_s3_endpoint_is_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let mut settings = S3Settings::new("bucket");
        settings.endpoint = Some(format!("http://127.0.0.1:{port}"));
        settings.path_style = true;
        settings.max_attempts = 2;
        settings.retry_initial_backoff = Duration::from_millis(10);
        settings.static_credentials = Some(("id".into(), "secret".into()));
        let store = Store::S3(S3Store::connect(&settings).await);
        let err = store
            .put("k", b"v".to_vec())
            .await
            .expect_err("nobody listens");
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("unavailable"), "{err}");
    }
}
