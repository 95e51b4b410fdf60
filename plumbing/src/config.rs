//! Configuration: the sections every stage shares (Kafka, consumer loop,
//! topics, telemetry) and [`load`], which reads any configuration type: TOML,
//! every key documented, unknown keys rejected with their name and where they
//! came from.
//!
//! Sources, later ones winning: built-in defaults, the file (`--config`), then
//! environment variables `TAPWIRE_<SECTION>__<KEY>` (double underscore between
//! levels, e.g. `TAPWIRE_KAFKA__BROKERS=broker:9092`). Only variables with a
//! `__` are read as configuration. The binary assembles the whole file from
//! these sections and each stage crate's own section; see
//! `deploy/tapwire.example.toml` for a commented file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::consumer::LoopSettings;

/// How to reach Kafka.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Client id prefix shown in broker logs.
    pub client_id: String,
    /// librdkafka properties passed through as they are (for example
    /// `"session.timeout.ms" = "6000"`, `"security.protocol" = "ssl"`); they
    /// override tapwire's defaults.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            client_id: "tapwire".to_owned(),
            options: BTreeMap::new(),
        }
    }
}

/// The consumer loop of every stage.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Largest batch handled at once; also the most that is re-delivered after
    /// a crash, per member.
    pub batch_max_messages: usize,
    /// How long a batch may wait to fill after its first message.
    pub batch_linger_ms: u64,
    /// First retry delay when downstream fails.
    pub retry_backoff_initial_ms: u64,
    /// Longest retry delay.
    pub retry_backoff_max_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        let d = LoopSettings::default();
        ConsumerConfig {
            batch_max_messages: d.batch_max_messages,
            batch_linger_ms: d.batch_linger.as_millis() as u64,
            retry_backoff_initial_ms: d.retry_backoff_initial.as_millis() as u64,
            retry_backoff_max_ms: d.retry_backoff_max.as_millis() as u64,
        }
    }
}

impl ConsumerConfig {
    /// The loop settings these values describe.
    pub fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            batch_max_messages: self.batch_max_messages,
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            retry_backoff_initial: Duration::from_millis(self.retry_backoff_initial_ms),
            retry_backoff_max: Duration::from_millis(self.retry_backoff_max_ms),
        }
    }
}

/// Topic creation.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Partitions per topic; the unit of parallelism of every stage.
    pub partitions: i32,
    /// Copies of each partition.
    pub replication_factor: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            partitions: 4,
            replication_factor: 1,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs, metrics and the admin server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// tracing filter, e.g. `info` or `tapwire_plumbing=debug,info`;
    /// `RUST_LOG` overrides it.
    pub log_filter: String,
    /// Address of the admin server (`/metrics`, `/healthz`); unset: none.
    pub admin_listen: Option<SocketAddr>,
    /// OTLP/HTTP endpoint for trace export, e.g.
    /// `http://otel-collector:4318/v1/traces`; unset: no export. Needs a
    /// build with the `otlp` feature.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            admin_listen: None,
            otlp_endpoint: None,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing or unreadable.
    #[error("configuration file {path}: {reason}")]
    File {
        /// The path given.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A key or value is wrong; the message names the key and its source.
    #[error("configuration: {0}")]
    Invalid(String),
}

/// A whole configuration file: its sections check cross-field rules.
pub trait Sections: DeserializeOwned {
    /// Checks rules that span fields; run after parsing.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Reads defaults, then `file` (when given), then the environment.
pub fn load<T: Sections>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_from(
        file,
        Env::prefixed("TAPWIRE_")
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    )
}

fn load_from<T: Sections>(file: Option<&Path>, env: Env) -> Result<T, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                reason: "not found or not a file".to_owned(),
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let config: T = figment
        .merge(env)
        .extract()
        .map_err(|err| ConfigError::Invalid(describe(err)))?;
    config.validate()?;
    Ok(config)
}

impl KafkaConfig {
    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::Invalid("kafka.brokers is empty".into()));
        }
        Ok(())
    }
}

impl ConsumerConfig {
    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_max_messages == 0 {
            return Err(ConfigError::Invalid(
                "consumer.batch_max_messages must be at least 1".into(),
            ));
        }
        if self.retry_backoff_initial_ms == 0
            || self.retry_backoff_initial_ms > self.retry_backoff_max_ms
        {
            return Err(ConfigError::Invalid(format!(
                "consumer.retry_backoff_initial_ms ({}) must be at least 1 and at most retry_backoff_max_ms ({})",
                self.retry_backoff_initial_ms, self.retry_backoff_max_ms
            )));
        }
        Ok(())
    }
}

impl TopicsConfig {
    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.partitions < 1 || self.replication_factor < 1 {
            return Err(ConfigError::Invalid(
                "topics.partitions and topics.replication_factor must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// One line per figment error, each naming the key and where it came from.
fn describe(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!(" at key `{}`", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!(" in {src}"),
                    None => format!(" in {}", m.name),
                })
                .unwrap_or_default();
            format!("{}{key}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with the shared sections, as the binary's has.
    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Config {
        kafka: KafkaConfig,
        consumer: ConsumerConfig,
        topics: TopicsConfig,
        telemetry: TelemetryConfig,
    }

    impl Sections for Config {
        fn validate(&self) -> Result<(), ConfigError> {
            self.kafka.validate()?;
            self.consumer.validate()?;
            self.topics.validate()
        }
    }

    impl Config {
        fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
            load(file)
        }
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tapwire.toml");
        std::fs::write(&path, text).expect("write");
        load_from(Some(&path), Env::prefixed("TAPWIRE_TEST_NONE_").split("__"))
    }

    #[test]
    fn defaults_need_no_file() {
        let config =
            load_from::<Config>(None, Env::prefixed("TAPWIRE_TEST_NONE_")).expect("defaults");
        assert_eq!(config, Config::default());
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
    }

    #[test]
    fn a_file_sets_values_and_passes_librdkafka_options_through() {
        let config = load_text(
            "[kafka]\nbrokers = \"b1:9092,b2:9092\"\n[kafka.options]\n\"session.timeout.ms\" = \"6000\"\n",
        )
        .expect("valid");
        assert_eq!(config.kafka.brokers, "b1:9092,b2:9092");
        assert_eq!(config.kafka.options["session.timeout.ms"], "6000");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_place() {
        let err = load_text("[kafka]\nbrokerz = \"x\"\n").expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("brokerz"), "{text}");
        assert!(text.contains("kafka"), "{text}");
        assert!(text.contains("tapwire.toml"), "{text}");
    }

    #[test]
    fn an_unknown_section_is_rejected() {
        let err = load_text("[kafak]\nbrokers = \"x\"\n").expect_err("unknown section");
        assert!(err.to_string().contains("kafak"), "{err}");
    }

    #[test]
    fn cross_field_checks_run() {
        let err =
            load_text("[consumer]\nretry_backoff_initial_ms = 50000\nretry_backoff_max_ms = 10\n")
                .expect_err("initial > max");
        assert!(
            err.to_string().contains("retry_backoff_initial_ms"),
            "{err}"
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "[kafka]\nbrokers = \"file:9092\"\n")?;
            jail.set_env("TAPWIRE_KAFKA__BROKERS", "env:9092");
            jail.set_env(
                "TAPWIRE_KAFKA_BROKERS_FOR_TESTS",
                "ignored: no double underscore",
            );
            let config = Config::load(Some(Path::new("t.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.kafka.brokers, "env:9092");
            Ok(())
        });
    }
}
