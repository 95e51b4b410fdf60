//! The `[policy]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[policy]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Consumer group for the enriched topics.
    pub group: String,
    /// Policy files (YAML, `tapwire.io/v1` NetworkPolicy and RuntimePolicy),
    /// reloaded when they change. None: every verdict is mode `other`.
    pub files: Vec<PathBuf>,
    /// How often the files' modification times are checked for a reload.
    pub reload_check_ms: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            group: "tapwire-policy".to_owned(),
            files: Vec::new(),
            reload_check_ms: 2000,
        }
    }
}

/// The flags of `tapwire policy`; each sets its `[policy]` key.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct PolicyFlags {
    /// Policy files (YAML), reloaded when they change (policy.files).
    #[arg(long = "policies", short = 'p', value_name = "FILE")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
    /// Consumer group (policy.group).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// How often to look for changed policy files (policy.reload_check_ms).
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_check_ms: Option<u64>,
}

/// A `[policy]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("policy.{key}: {reason}")]
pub struct PolicyConfigError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl PolicyConfig {
    /// Checks the values (the files themselves are checked when loaded).
    pub fn validate(&self) -> Result<(), PolicyConfigError> {
        if self.group.is_empty() {
            return Err(PolicyConfigError {
                key: "group",
                reason: "must not be empty".into(),
            });
        }
        if self.reload_check_ms == 0 {
            return Err(PolicyConfigError {
                key: "reload_check_ms",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}
