//! The configuration file of the `tapwire` binary: the sections every stage
//! shares (from `tapwire-plumbing`) and each stage's own section (from its
//! crate). `deploy/tapwire.example.toml` documents every key.

use serde::Deserialize;
use tapwire_aggregator::AggregateConfig;
use tapwire_capture::CaptureConfig;
use tapwire_cef_forwarder::CefConfig;
use tapwire_enricher::EnrichConfig;
use tapwire_pcap_recorder::config::RecordConfig;
use tapwire_plumbing::config::{
    ConfigError, ConsumerConfig, KafkaConfig, Sections, TelemetryConfig, TopicsConfig,
};
use tapwire_policy_engine::PolicyConfig;
use tapwire_scanner::config::ScanConfig;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How to reach Kafka.
    pub kafka: KafkaConfig,
    /// The consumer loop of every stage.
    pub consumer: ConsumerConfig,
    /// Topic creation.
    pub topics: TopicsConfig,
    /// Logs, metrics, admin server, trace export.
    pub telemetry: TelemetryConfig,
    /// `tapwire cef`.
    pub cef: CefConfig,
    /// `tapwire policy`.
    pub policy: PolicyConfig,
    /// `tapwire enrich`.
    pub enrich: EnrichConfig,
    /// `tapwire aggregate`, `serve` and `query`.
    pub aggregate: AggregateConfig,
    /// `tapwire record` and `tapwire investigate` (S3 settings).
    pub record: RecordConfig,
    /// `tapwire capture`: the node agent.
    pub capture: CaptureConfig,
    /// `tapwire scanner`: object scans from the job queue.
    pub scan: ScanConfig,
}

impl Config {
    /// The plain environment variables deployments set, and the key each
    /// sets: a layer of the load (see `tapwire_plumbing::config`).
    pub fn seed_variables() -> Vec<(&'static str, String)> {
        let section = |name: &str, vars: &[(&'static str, &str)]| {
            vars.iter()
                .map(|(var, key)| (*var, format!("{name}.{key}")))
                .collect::<Vec<_>>()
        };
        let mut vars = section("capture", CaptureConfig::SEED_VARIABLES);
        vars.extend(section("record", RecordConfig::SEED_VARIABLES));
        vars
    }
}

impl Sections for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.capture
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.consumer.validate()?;
        self.topics.validate()?;
        self.cef
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.policy
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.enrich
            .validate()
            .map(|_| ())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.aggregate
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.scan
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.record
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_documents_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tapwire.toml");
        std::fs::write(&path, include_str!("../../deploy/tapwire.example.toml")).expect("write");
        let example: Config = tapwire_plumbing::config::load(Some(&path)).expect("example parses");
        assert_eq!(example, Config::default());
    }
}
