//! The `[aggregate]` configuration section (`tapwire aggregate`, `serve`
//! and `query`).

use serde::{Deserialize, Serialize};

/// Which ClickHouse (`tapwire aggregate`, `serve`, `query`); each flag sets
/// its `[aggregate]` key.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ClickHouseFlags {
    /// ClickHouse HTTP URL (aggregate.clickhouse_url).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_url: Option<String>,
    /// Database (aggregate.database).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// The flags of `tapwire aggregate`.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct AggregateFlags {
    #[command(flatten)]
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub clickhouse: ClickHouseFlags,
    /// Consumer group (aggregate.group).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// ClickHouse cluster to make the tables on, a name in the servers'
    /// remote_servers (aggregate.cluster).
    #[arg(long = "clickhouse-cluster", value_name = "NAME")]
    #[serde(rename = "cluster", skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// The flags of `tapwire serve`.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ServeFlags {
    /// Address to listen on (aggregate.listen).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub clickhouse: ClickHouseFlags,
}

/// The `[aggregate]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AggregateConfig {
    /// ClickHouse HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub clickhouse_url: String,
    /// Database that holds tapwire's tables; created when missing.
    pub database: String,
    /// A ClickHouse cluster to make the tables on (a name in the servers'
    /// `remote_servers`); unset, they are plain `MergeTree` tables on the one
    /// server at `clickhouse_url`. With a cluster every migration runs
    /// `ON CLUSTER`: each table is a `Replicated*MergeTree` `<table>_local`
    /// on every server, under a `Distributed` table `<table>` that readers
    /// and writers use, sharded by the Kafka partition a row came from, so
    /// replays are still skipped (see `schema`); inserts wait for every
    /// shard (`insert_distributed_sync = 1`). The servers need ZooKeeper (or
    /// ClickHouse Keeper) and a `distributed_ddl` section, the macros
    /// `{shard}` and `{replica}` (a replica name unique within its shard),
    /// `internal_replication` on every shard, and all of them up while
    /// migrations run. A database is made one way or the other: the
    /// migrations refuse to switch it.
    pub cluster: Option<String>,
    /// ClickHouse user.
    pub user: String,
    /// ClickHouse password (prefer the environment:
    /// `TAPWIRE_AGGREGATE__PASSWORD`).
    pub password: String,
    /// Consumer group of `tapwire aggregate`.
    pub group: String,
    /// Topics read: verdicts (every judged event, with its enriched event),
    /// inventory snapshots and agent heartbeats.
    pub topics: Vec<String>,
    /// Most messages aggregated into one insert per table.
    pub batch_max_messages: usize,
    /// Longest wait for a batch to fill before it is inserted anyway.
    pub flush_interval_ms: u64,
    /// Days rows are kept, on servers with TTL (ClickHouse 20 and later);
    /// 0 keeps them forever. Older servers keep rows until dropped by hand.
    pub retention_days: u32,
    /// Address of `tapwire serve` (the API and the console).
    pub listen: String,
    /// Bearer tokens of the API and the console: `{name, role, token}`,
    /// role `viewer` or `admin`, secrets of 16 characters or more.
    pub tokens: Vec<crate::console::ApiToken>,
    /// A file of more tokens, one `NAME ROLE SECRET` per line (a mounted
    /// Kubernetes Secret). With no token at all, `tapwire serve` makes a
    /// one-time admin token and prints its sign-in link.
    pub tokens_file: Option<std::path::PathBuf>,
    /// HTTPS: the certificate chain (PEM) `tapwire serve` presents; with
    /// `tls_key_file`. Without them it serves plain HTTP (behind a TLS
    /// proxy or on loopback).
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// HTTPS: the private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            clickhouse_url: "http://127.0.0.1:8123".to_owned(),
            database: "tapwire".to_owned(),
            cluster: None,
            user: "default".to_owned(),
            password: String::new(),
            group: "tapwire-aggregate".to_owned(),
            topics: vec![
                tapwire_schemas::topics::VERDICTS.to_owned(),
                tapwire_schemas::topics::INVENTORY.to_owned(),
                tapwire_schemas::topics::AGENTS.to_owned(),
                tapwire_schemas::topics::PODS.to_owned(),
                tapwire_schemas::topics::AUDIT.to_owned(),
                tapwire_schemas::topics::SCAN_STATUS.to_owned(),
                tapwire_schemas::topics::SCAN_FINDINGS.to_owned(),
                tapwire_schemas::topics::SCAN_SCANNERS.to_owned(),
                tapwire_schemas::topics::SCAN_EVENTS.to_owned(),
            ],
            batch_max_messages: 50_000,
            flush_interval_ms: 1000,
            retention_days: 30,
            listen: "127.0.0.1:8080".to_owned(),
            tokens: Vec::new(),
            tokens_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// An `[aggregate]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("aggregate.{key}: {reason}")]
pub struct AggregateConfigError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl AggregateConfig {
    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), AggregateConfigError> {
        let bad = |key, reason: &str| {
            Err(AggregateConfigError {
                key,
                reason: reason.to_owned(),
            })
        };
        if !self.clickhouse_url.starts_with("http://")
            && !self.clickhouse_url.starts_with("https://")
        {
            return bad("clickhouse_url", "must be an http:// or https:// URL");
        }
        if self.database.is_empty()
            || !self
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return bad("database", "letters, digits and _ only");
        }
        if let Some(cluster) = &self.cluster
            && (cluster.is_empty()
                || cluster.starts_with(|c: char| c.is_ascii_digit())
                || !cluster
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return bad(
                "cluster",
                "a cluster name of the servers' remote_servers: letters, digits and _, not starting with a digit",
            );
        }
        if self.batch_max_messages == 0 || self.batch_max_messages > 1_000_000 {
            return bad(
                "batch_max_messages",
                "between 1 and 1,000,000 (one insert must stay one ClickHouse block)",
            );
        }
        if self.topics.is_empty() {
            return bad("topics", "at least one topic");
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("listen", "an address like 127.0.0.1:8080");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_a_plain_name() {
        let with = |name: &str| AggregateConfig {
            cluster: Some(name.to_owned()),
            ..AggregateConfig::default()
        };
        assert!(AggregateConfig::default().validate().is_ok(), "unset");
        assert!(with("tapwire_2x1").validate().is_ok());
        for bad in ["", "2shards", "my-cluster", "c; DROP TABLE x"] {
            let err = with(bad).validate().expect_err(bad);
            assert_eq!(err.key, "cluster", "{bad}");
        }
    }

    #[test]
    fn the_cluster_flag_sets_its_key() {
        use clap::Parser;
        // `tapwire run --cluster` is a file of Kubernetes objects: this one
        // names the ClickHouse cluster.
        #[derive(Parser)]
        struct Aggregate {
            #[command(flatten)]
            flags: AggregateFlags,
        }
        let parsed = Aggregate::try_parse_from(["aggregate", "--clickhouse-cluster", "tapwire"])
            .expect("the flag");
        let value = serde_json::to_value(&parsed.flags).expect("flags");
        assert_eq!(value, serde_json::json!({"cluster": "tapwire"}));
    }
}
