//! The `[record]` configuration section, its flags, and the environment
//! variables of the recording seed (`AWS_REGION`, `S3_BUCKET`,
//! `RECORDING_KFL`: [`RecordConfig::SEED_VARIABLES`], read by the
//! configuration load as a layer above the file).
//!
//! Recording is on when at least one query is configured: `[record.queries]`
//! names several, `RECORDING_KFL` (or `--kfl`) adds one named `default`
//! (replacing a configured `default`). Without any query `tapwire record`
//! keeps running, reads the packets and records nothing, and says so in its
//! log and on `/healthz` (`ok: recording is off: ...`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::store::{LocalStore, RetentionMode, S3Settings, S3Store, Store};

/// The name `RECORDING_KFL` is recorded under.
pub const ENV_QUERY_NAME: &str = "default";

/// Where S3 is (`tapwire record` and `investigate`); each flag sets its
/// `[record]` key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Flags {
    /// S3 endpoint URL for S3-compatible stores (record.endpoint).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// AWS region (record.region; beats AWS_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Path-style S3 addressing (ENDPOINT/BUCKET/KEY), for most
    /// S3-compatible stores (record.path_style).
    #[arg(long)]
    pub path_style: bool,
}

/// The flags of `tapwire record`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RecordFlags {
    /// S3 bucket (record.bucket; beats S3_BUCKET).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Key prefix for slices and indexes (record.prefix).
    #[arg(long)]
    pub prefix: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub s3: S3Flags,
    /// Record into this local directory instead of S3 (record.directory; a
    /// bucket from the file or S3_BUCKET is then not used).
    #[arg(long, value_name = "DIR", conflicts_with = "bucket")]
    pub directory: Option<PathBuf>,
    /// The recording query, e.g. 'http or dns' (record.queries.default;
    /// beats RECORDING_KFL; the other named queries apply as well).
    #[arg(long, value_name = "KFL")]
    pub kfl: Option<String>,
    /// Where slices wait while S3 is unavailable (record.spool_dir).
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// A directory of NAME.kfl recording queries, watched: a change applies
    /// without a restart (record.queries_dir).
    #[arg(long, value_name = "DIR")]
    pub queries_dir: Option<PathBuf>,
    /// Consumer group (record.group).
    #[arg(long)]
    pub group: Option<String>,
}

impl Serialize for S3Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.entries(&mut map)?;
        map.end()
    }
}

impl S3Flags {
    fn entries<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        if let Some(endpoint) = &self.endpoint {
            map.serialize_entry("endpoint", endpoint)?;
        }
        if let Some(region) = &self.region {
            map.serialize_entry("region", region)?;
        }
        if self.path_style {
            map.serialize_entry("path_style", &true)?;
        }
        Ok(())
    }
}

/// The keys the flags set: `--directory` also unsets the bucket, `--kfl`
/// is the query named `default`.
impl Serialize for RecordFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(bucket) = &self.bucket {
            map.serialize_entry("bucket", bucket)?;
        }
        if let Some(dir) = &self.directory {
            map.serialize_entry("directory", dir)?;
            map.serialize_entry("bucket", &None::<String>)?;
        }
        if let Some(prefix) = &self.prefix {
            map.serialize_entry("prefix", prefix)?;
        }
        self.s3.entries(&mut map)?;
        if let Some(kfl) = &self.kfl {
            map.serialize_entry("queries", &BTreeMap::from([(ENV_QUERY_NAME, kfl)]))?;
        }
        if let Some(dir) = &self.spool_dir {
            map.serialize_entry("spool_dir", dir)?;
        }
        if let Some(dir) = &self.queries_dir {
            map.serialize_entry("queries_dir", dir)?;
        }
        if let Some(group) = &self.group {
            map.serialize_entry("group", group)?;
        }
        map.end()
    }
}

/// The `[record]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// S3 bucket for slices and their indexes (env `S3_BUCKET`). Unset, and
    /// `directory` unset: nowhere to record to (an error).
    pub bucket: Option<String>,
    /// Key prefix in the bucket (or the directory): slices are written as
    /// `PREFIX/NODE/YYYY-MM-DD/FIRST_NS-SEQ.pcap` with `.json` beside.
    pub prefix: String,
    /// AWS region (env `AWS_REGION`; unset: the AWS standard chain).
    pub region: Option<String>,
    /// S3 endpoint URL for S3-compatible stores, e.g.
    /// `http://seaweedfs:8333`; unset: AWS (or env `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`ENDPOINT/BUCKET/KEY`); most S3-compatible
    /// stores need it.
    pub path_style: bool,
    /// Write to this local directory instead of S3 (the embedded mode and
    /// tests). Exclusive with `bucket`.
    pub directory: Option<PathBuf>,
    /// Named KFL recording queries, e.g. `web = 'http and dst.port == 80'`.
    /// A stream is recorded when any matches; the index lists which did.
    pub queries: BTreeMap<String, String>,
    /// A directory of recording queries, one per `NAME.kfl` file, watched
    /// while recording: a valid change applies without a restart (to the
    /// streams that end after it), an invalid one is reported and the
    /// previous queries stay. Its queries join `queries` (a file wins over a
    /// query of the same name). Unset: only `queries`.
    pub queries_dir: Option<PathBuf>,
    /// A slice is closed when its PCAP reaches this many bytes.
    pub slice_max_bytes: u64,
    /// A slice is closed when its first packet is this old (wall clock
    /// since the slice was opened).
    pub slice_max_age_ms: u64,
    /// A TCP stream with no packet for this long ends (`idle`).
    pub tcp_idle_timeout_ms: u64,
    /// A UDP flow with no packet for this long ends (`idle`).
    pub udp_idle_timeout_ms: u64,
    /// Queue a scan job (`tapwire.scan.jobs`) for every slice stored, for
    /// the scanners (`tapwire scanner`) to look for secrets and malware.
    pub scan_slices: bool,
    /// Where finished slices wait while S3 is unavailable. Survives
    /// restarts: its entries are uploaded first on the next start.
    pub spool_dir: PathBuf,
    /// Most bytes the spool holds; a slice that does not fit is dropped and
    /// counted (`tapwire_messages_dropped_total{reason="spool_full"}`).
    pub spool_max_bytes: u64,
    /// How often spooled slices are retried while the stage is otherwise
    /// idle.
    pub spool_retry_interval_ms: u64,
    /// S3 Object Lock retention in days, set on every object when the
    /// bucket has Object Lock enabled; 0: none set by tapwire.
    pub retention_days: u32,
    /// `compliance` (nobody can shorten it) or `governance`.
    pub retention_mode: RetentionMode,
    /// Attempts per S3 request, the first included (exponential backoff
    /// with jitter between them).
    pub s3_max_attempts: u32,
    /// Longest one S3 request attempt may take.
    pub s3_attempt_timeout_ms: u64,
    /// Consumer group.
    pub group: String,
    /// Pods remembered at most for naming stream endpoints; beyond it the
    /// pods that ended longest ago are forgotten first (running pods never).
    pub max_pods: usize,
    /// Owners remembered per IP address (its history of reuse); the oldest
    /// go first.
    pub max_owners_per_ip: usize,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            bucket: None,
            prefix: "tapwire".to_owned(),
            region: None,
            endpoint: None,
            path_style: false,
            directory: None,
            queries: BTreeMap::new(),
            queries_dir: None,
            slice_max_bytes: 64 << 20,
            slice_max_age_ms: 60_000,
            tcp_idle_timeout_ms: 60_000,
            udp_idle_timeout_ms: 10_000,
            scan_slices: true,
            spool_dir: PathBuf::from("/var/lib/tapwire/spool"),
            spool_max_bytes: 1 << 30,
            spool_retry_interval_ms: 5_000,
            retention_days: 0,
            retention_mode: RetentionMode::Compliance,
            s3_max_attempts: 4,
            s3_attempt_timeout_ms: 30_000,
            group: "tapwire-record".to_owned(),
            max_pods: 200_000,
            max_owners_per_ip: 16,
        }
    }
}

/// A `[record]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordConfigError {
    /// A key has a wrong value.
    #[error("record.{key}: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A recording query does not parse; `rendered` shows the caret.
    #[error("record.queries.{name}: {rendered}")]
    Query {
        /// The query's name.
        name: String,
        /// The error under the query text.
        rendered: String,
    },
}

/// A compiled recording query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Its name.
    pub name: String,
    /// Its text.
    pub text: String,
    /// The compiled filter.
    pub filter: tapwire_kfl::Filter,
}

impl RecordConfig {
    /// The recording seed's environment variables and the `[record]` keys
    /// they set (a layer of the configuration load, above the file and
    /// below `TAPWIRE_RECORD__*` and the flags). Empty ones are ignored.
    pub const SEED_VARIABLES: &[(&str, &str)] = &[
        ("S3_BUCKET", "bucket"),
        ("AWS_REGION", "region"),
        ("RECORDING_KFL", "queries.default"),
    ];

    /// Whether any recording query is configured (recording is on).
    pub fn recording_on(&self) -> bool {
        !self.queries.is_empty()
    }

    /// The queries, compiled, in name order.
    pub fn compile_queries(&self) -> Result<Vec<Query>, RecordConfigError> {
        self.queries
            .iter()
            .map(|(name, text)| {
                crate::entry::compile(text)
                    .map(|filter| Query {
                        name: name.clone(),
                        text: text.clone(),
                        filter,
                    })
                    .map_err(|e| RecordConfigError::Query {
                        name: name.clone(),
                        rendered: e.render(text),
                    })
            })
            .collect()
    }

    /// Cross-field checks that need no I/O (queries included).
    pub fn validate(&self) -> Result<(), RecordConfigError> {
        let bad = |key: &str, reason: &str| {
            Err(RecordConfigError::Invalid {
                key: key.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if self.bucket.is_some() && self.directory.is_some() {
            return bad("directory", "set either bucket (S3) or directory, not both");
        }
        if self.bucket.as_deref().is_some_and(|b| b.is_empty()) {
            return bad("bucket", "is empty");
        }
        if self.prefix.starts_with('/') || self.prefix.split('/').any(|p| p == "..") {
            return bad("prefix", "must be relative, without `..`");
        }
        for (key, value) in [
            ("slice_max_bytes", self.slice_max_bytes),
            ("slice_max_age_ms", self.slice_max_age_ms),
            ("tcp_idle_timeout_ms", self.tcp_idle_timeout_ms),
            ("udp_idle_timeout_ms", self.udp_idle_timeout_ms),
            ("spool_max_bytes", self.spool_max_bytes),
            ("spool_retry_interval_ms", self.spool_retry_interval_ms),
            ("s3_attempt_timeout_ms", self.s3_attempt_timeout_ms),
            ("s3_max_attempts", u64::from(self.s3_max_attempts)),
            ("max_pods", self.max_pods as u64),
            ("max_owners_per_ip", self.max_owners_per_ip as u64),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.spool_max_bytes < self.slice_max_bytes {
            return bad(
                "spool_max_bytes",
                "must hold at least one slice (slice_max_bytes)",
            );
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return bad("endpoint", "must be an http:// or https:// URL");
        }
        if self.group.is_empty() {
            return bad("group", "is empty");
        }
        self.compile_queries().map(|_| ())?;
        if let Some(dir) = &self.queries_dir
            && !dir.is_dir()
        {
            return bad("queries_dir", "is not a directory");
        }
        Ok(())
    }

    /// The queries in force now: `queries` and the files of `queries_dir`.
    ///
    /// # Errors
    ///
    /// The directory cannot be read, or a query does not compile (named,
    /// with a caret).
    pub fn current_queries(&self) -> Result<BTreeMap<String, String>, RecordConfigError> {
        let mut all = self.queries.clone();
        if let Some(dir) = &self.queries_dir {
            all.extend(read_queries_dir(dir)?);
        }
        for (name, text) in &all {
            crate::entry::compile(text).map_err(|e| RecordConfigError::Query {
                name: name.clone(),
                rendered: e.render(text),
            })?;
        }
        Ok(all)
    }

    /// The queries as the recorder and the index name them.
    pub fn named_queries(&self) -> Vec<crate::index::NamedQuery> {
        self.queries
            .iter()
            .map(|(name, query)| crate::index::NamedQuery {
                name: name.clone(),
                query: query.clone(),
            })
            .collect()
    }

    /// Reassembly timeouts and slice rotation for the recorder.
    pub fn recorder_config(&self) -> crate::recorder::RecorderConfig {
        let ms = |v: u64| i64::try_from(v.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        let mut c = crate::recorder::RecorderConfig::default();
        c.reassembly.tcp_idle_ns = ms(self.tcp_idle_timeout_ms);
        c.reassembly.udp_idle_ns = ms(self.udp_idle_timeout_ms);
        c.slice.max_bytes = self.slice_max_bytes;
        c.slice.max_age_ns = ms(self.slice_max_age_ms);
        c
    }

    /// Settings for the S3 client, when a bucket is set.
    pub fn s3_settings(&self) -> Option<S3Settings> {
        let mut s = S3Settings::new(self.bucket.as_deref()?);
        s.region = self.region.clone();
        s.endpoint = self.endpoint.clone();
        s.path_style = self.path_style;
        s.max_attempts = self.s3_max_attempts;
        s.attempt_timeout = Duration::from_millis(self.s3_attempt_timeout_ms);
        s.retention_days = self.retention_days;
        s.retention_mode = self.retention_mode;
        Some(s)
    }

    /// The store named by `bucket` or `directory`.
    pub async fn store(&self) -> Result<Store, RecordConfigError> {
        if let Some(dir) = &self.directory {
            return Ok(Store::Local(LocalStore::new(dir)));
        }
        match self.s3_settings() {
            Some(settings) => Ok(Store::S3(S3Store::connect(&settings).await)),
            None => Err(RecordConfigError::Invalid {
                key: "bucket".to_owned(),
                reason: "no bucket (S3_BUCKET or record.bucket) and no record.directory: nowhere to record to".to_owned(),
            }),
        }
    }
}

/// The queries of `dir`: each `NAME.kfl` file holds one (comments after
/// `#` at the start of a line are left out); other files are ignored.
pub fn read_queries_dir(
    dir: &std::path::Path,
) -> Result<BTreeMap<String, String>, RecordConfigError> {
    let unreadable = |reason: String| RecordConfigError::Invalid {
        key: "queries_dir".to_owned(),
        reason: format!("{}: {reason}", dir.display()),
    };
    let mut queries = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| unreadable(e.to_string()))?;
    for entry in entries {
        let path = entry.map_err(|e| unreadable(e.to_string()))?.path();
        if path.extension().is_none_or(|x| x != "kfl") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|e| unreadable(e.to_string()))?;
        let query: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        queries.insert(name.to_owned(), query.join("\n").trim().to_owned());
    }
    Ok(queries)
}

/// What a queries directory holds now, to notice a change: each file's
/// name, modification time and length.
pub fn queries_dir_stamp(
    dir: &std::path::Path,
) -> Vec<(PathBuf, Option<std::time::SystemTime>, u64)> {
    let mut stamp: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let meta = e.metadata().ok();
            (
                e.path(),
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.map_or(0, |m| m.len()),
            )
        })
        .collect();
    stamp.sort();
    stamp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with only the `[record]` section, loaded as the binary loads.
    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct File {
        record: RecordConfig,
    }

    impl tapwire_plumbing::config::Sections for File {}

    fn load(flags: serde_json::Value) -> Result<RecordConfig, String> {
        let layers = tapwire_plumbing::config::Layers {
            seed_variables: RecordConfig::SEED_VARIABLES
                .iter()
                .map(|(name, key)| (*name, format!("record.{key}")))
                .collect(),
            flags: serde_json::json!({ "record": flags }),
        };
        tapwire_plumbing::config::load_layered::<File>(None, &layers)
            .map(|f| f.record)
            .map_err(|e| e.to_string())
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn the_seed_variables_turn_recording_on_and_flags_beat_them() {
        figment::Jail::expect_with(|jail| {
            assert!(!load(serde_json::json!({}))?.recording_on());
            jail.set_env("AWS_REGION", "us-east-2");
            jail.set_env("S3_BUCKET", "evidence");
            jail.set_env("RECORDING_KFL", "http or dns");
            let c = load(serde_json::json!({}))?;
            assert!(c.recording_on());
            assert_eq!(c.bucket.as_deref(), Some("evidence"));
            assert_eq!(c.region.as_deref(), Some("us-east-2"));
            let queries = c.compile_queries().expect("compiles");
            assert_eq!(queries.len(), 1);
            assert_eq!(queries[0].name, ENV_QUERY_NAME);
            assert_eq!(queries[0].text, "http or dns");
            c.validate().expect("valid");

            // --kfl replaces RECORDING_KFL; --directory replaces the bucket.
            let flags = RecordFlags {
                kfl: Some("dns".into()),
                directory: Some("/tmp/rec".into()),
                ..RecordFlags::default()
            };
            let c = load(serde_json::to_value(&flags).expect("json"))?;
            assert_eq!(c.queries[ENV_QUERY_NAME], "dns");
            assert_eq!(c.bucket, None);
            assert_eq!(
                c.directory.as_deref(),
                Some(std::path::Path::new("/tmp/rec"))
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn an_empty_recording_kfl_leaves_recording_off() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RECORDING_KFL", "  ");
            assert!(!load(serde_json::json!({}))?.recording_on());
            Ok(())
        });
    }

    #[test]
    fn a_bad_query_is_named_with_a_caret() {
        let mut c = RecordConfig::default();
        c.queries.insert("web".into(), "http and (".into());
        let err = c.validate().expect_err("bad query").to_string();
        assert!(err.contains("record.queries.web"), "{err}");
        assert!(err.contains('^'), "{err}");
    }

    #[test]
    fn cross_field_rules() {
        let c = RecordConfig {
            bucket: Some("b".into()),
            directory: Some("/tmp/x".into()),
            ..RecordConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("directory"));
        let c = RecordConfig {
            spool_max_bytes: 10,
            ..RecordConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("spool_max_bytes")
        );
        let c = RecordConfig {
            endpoint: Some("127.0.0.1:8333".into()),
            ..RecordConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("endpoint"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<RecordConfig>("bucket = \"b\"\nbukket = \"c\"\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("bukket"), "{err}");
    }
}
