//! Configuration: the sections every stage shares (Kafka, consumer loop,
//! topics, telemetry) and [`load`], which reads any configuration type: TOML,
//! every key documented, unknown keys rejected with their name and where they
//! came from.
//!
//! One load, in layers, later ones winning ([`load_layered`]):
//!
//! 1. built-in defaults;
//! 2. the file (`--config`);
//! 3. the plain variables deployments already set (`NODE_NAME`,
//!    `S3_BUCKET`, `AWS_REGION`, `RECORDING_KFL`), each mapped to its key by
//!    the stage that owns it ([`Layers::seed_variables`]); empty ones are
//!    ignored;
//! 4. environment variables `TAPWIRE_<SECTION>__<KEY>` (double underscore
//!    between levels, e.g. `TAPWIRE_KAFKA__BROKERS=broker:9092`); only
//!    variables with a `__` are read as configuration;
//! 5. command-line flags ([`Layers::flags`]): each stage crate declares its
//!    flags beside its section, and they set the keys of that section.
//!
//! An error names the key and the layer it came from. The binary assembles
//! the whole file from these sections and each stage crate's own section;
//! see `deploy/tapwire.example.toml` for a commented file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
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

/// The layers of a load besides the defaults, the file and `TAPWIRE_*`.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// Plain environment variables and the key each sets, e.g.
    /// `("S3_BUCKET", "record.bucket")`.
    pub seed_variables: Vec<(&'static str, String)>,
    /// The keys command-line flags set: a JSON object shaped like the file
    /// (`{"enrich": {"group": "g"}}`); `null` unsets an optional key.
    pub flags: serde_json::Value,
}

/// Reads defaults, then `file` (when given), then `TAPWIRE_*` variables.
pub fn load<T: Sections>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_layered(file, &Layers::default())
}

/// Reads every layer (see the module documentation), then checks the result.
pub fn load_layered<T: Sections>(file: Option<&Path>, layers: &Layers) -> Result<T, ConfigError> {
    load_from(
        file,
        seed_layer(&layers.seed_variables, |name| std::env::var(name).ok()),
        Env::prefixed("TAPWIRE_")
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
        Layer {
            name: "command-line flags".into(),
            value: layers.flags.clone(),
        },
    )
}

/// A layer of values with a name errors can point at.
struct Layer {
    name: String,
    value: serde_json::Value,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        if self.value.is_null() {
            return Ok(Map::new());
        }
        Serialized::defaults(&self.value).data()
    }
}

/// The seed's plain variables that are set and not empty, nested by key.
fn seed_layer(variables: &[(&'static str, String)], var: impl Fn(&str) -> Option<String>) -> Layer {
    let mut root = serde_json::Map::new();
    let mut named = Vec::new();
    for (name, key) in variables {
        let Some(value) = var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        else {
            continue;
        };
        named.push(*name);
        let nested = key
            .rsplit('.')
            .fold(serde_json::Value::String(value), |inner, part| {
                serde_json::Value::Object(serde_json::Map::from_iter([(part.to_owned(), inner)]))
            });
        merge_into(&mut root, nested);
    }
    Layer {
        name: format!("environment variables {}", named.join(", ")),
        value: serde_json::Value::Object(root),
    }
}

/// Merges the object `from` into `into`, key by key.
fn merge_into(into: &mut serde_json::Map<String, serde_json::Value>, from: serde_json::Value) {
    let serde_json::Value::Object(from) = from else {
        return;
    };
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(serde_json::Value::Object(inner)), value @ serde_json::Value::Object(_)) => {
                merge_into(inner, value)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn load_from<T: Sections>(
    file: Option<&Path>,
    seed: Layer,
    env: Env,
    flags: Layer,
) -> Result<T, ConfigError> {
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
        .merge(seed)
        .merge(env)
        .merge(flags)
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
        load_from(
            Some(&path),
            none(),
            Env::prefixed("TAPWIRE_TEST_NONE_").split("__"),
            none(),
        )
    }

    fn none() -> Layer {
        Layer {
            name: "nothing".into(),
            value: serde_json::Value::Null,
        }
    }

    #[test]
    fn defaults_need_no_file() {
        let config = load_from::<Config>(None, none(), Env::prefixed("TAPWIRE_TEST_NONE_"), none())
            .expect("defaults");
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

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn layers_win_in_order_file_seed_variables_tapwire_variables_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "t.toml",
                "[kafka]\nbrokers = \"file:9092\"\nclient_id = \"file\"\n[telemetry]\nlog_filter = \"file\"\n",
            )?;
            jail.set_env("SEED_BROKERS", "seed:9092");
            jail.set_env("SEED_CLIENT", "seed");
            jail.set_env("SEED_FILTER", "seed");
            jail.set_env("SEED_EMPTY", "  ");
            jail.set_env("TAPWIRE_KAFKA__CLIENT_ID", "env");
            jail.set_env("TAPWIRE_TELEMETRY__LOG_FILTER", "env");
            let layers = Layers {
                seed_variables: vec![
                    ("SEED_BROKERS", "kafka.brokers".into()),
                    ("SEED_CLIENT", "kafka.client_id".into()),
                    ("SEED_FILTER", "telemetry.log_filter".into()),
                    ("SEED_EMPTY", "telemetry.otlp_endpoint".into()),
                    ("SEED_UNSET", "telemetry.log_format".into()),
                ],
                flags: serde_json::json!({"telemetry": {"log_filter": "flag"}}),
            };
            let config: Config =
                load_layered(Some(Path::new("t.toml")), &layers).map_err(|e| e.to_string())?;
            assert_eq!(
                config.kafka.brokers, "seed:9092",
                "a seed variable beats the file"
            );
            assert_eq!(
                config.kafka.client_id, "env",
                "TAPWIRE_* beats a seed variable"
            );
            assert_eq!(
                config.telemetry.log_filter, "flag",
                "a flag beats everything"
            );
            assert_eq!(
                config.telemetry.otlp_endpoint, None,
                "empty variables are ignored"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn a_bad_value_names_the_layer_it_came_from() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SEED_PARTITIONS", "many");
            let seed = Layers {
                seed_variables: vec![("SEED_PARTITIONS", "topics.partitions".into())],
                ..Layers::default()
            };
            let text = load_layered::<Config>(None, &seed)
                .expect_err("not a number")
                .to_string();
            assert!(text.contains("topics.partitions"), "{text}");
            assert!(text.contains("SEED_PARTITIONS"), "{text}");
            let flags = Layers {
                flags: serde_json::json!({"consumer": {"batch_max_messages": "lots"}}),
                ..Layers::default()
            };
            let text = load_layered::<Config>(None, &flags)
                .expect_err("not a number")
                .to_string();
            assert!(text.contains("consumer.batch_max_messages"), "{text}");
            assert!(text.contains("command-line flags"), "{text}");
            Ok(())
        });
    }
}
