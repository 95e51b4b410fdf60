//! The `[enrich]` configuration section.

use serde::{Deserialize, Serialize};
use tapwire_cluster::IndexLimits;

/// The `[enrich]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Consumer group for the raw topics.
    pub group: String,
    /// Address ranges pods get their IPs from. An address in them without a
    /// known owner at the event's time waits for pod metadata (see
    /// `metadata_wait_ms`) and is then marked `unresolved`; an address outside
    /// them is `external` (or `host` when it is a node's) at once.
    pub pod_cidrs: Vec<String>,
    /// Service (ClusterIP) ranges: checked before `pod_cidrs`. No pod owns
    /// these addresses, so events to them do not wait; they go out
    /// `unresolved`, with the DNS name when an answer gave one.
    pub service_cidrs: Vec<String>,
    /// How long an event whose pod metadata has not arrived yet is held back,
    /// waiting for it, before it goes out marked `unresolved`. An address
    /// whose wait ran out is not waited for again until a pod claims it.
    pub metadata_wait_ms: u64,
    /// Pods remembered at most; beyond it the pods that ended longest ago are
    /// forgotten first (running pods are never evicted).
    pub max_pods: usize,
    /// Owners remembered per IP address (its history of reuse); the oldest
    /// go first.
    pub max_owners_per_ip: usize,
    /// IP-to-DNS-name entries remembered at most; least recently used go first.
    pub dns_cache_entries: usize,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            group: "tapwire-enrich".to_owned(),
            pod_cidrs: [
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "fd00::/8",
            ]
            .map(str::to_owned)
            .to_vec(),
            service_cidrs: vec!["10.96.0.0/12".to_owned()],
            metadata_wait_ms: 5000,
            max_pods: IndexLimits::default().max_pods,
            max_owners_per_ip: IndexLimits::default().max_owners_per_ip,
            dns_cache_entries: 100_000,
        }
    }
}

/// The flags of `tapwire enrich`; each sets its `[enrich]` key.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct EnrichFlags {
    /// Consumer group for the raw topics (enrich.group).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// How long an event waits for late pod metadata before it goes out
    /// marked unresolved (enrich.metadata_wait_ms).
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_wait_ms: Option<u64>,
}

/// An `[enrich]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("enrich.{key}: {reason}")]
pub struct EnrichConfigError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl EnrichConfig {
    /// An enricher with empty state, built from this configuration.
    pub fn enricher(&self) -> Result<crate::enrich::Enricher, EnrichConfigError> {
        let (pod_cidrs, service_cidrs) = self.validate()?;
        Ok(crate::enrich::Enricher::new(
            tapwire_cluster::OwnerIndex::new(self.max_pods, self.max_owners_per_ip),
            crate::dns::DnsCache::new(self.dns_cache_entries),
            pod_cidrs,
            service_cidrs,
            self.dns_cache_entries,
        ))
    }

    /// The bounds of the owner index, for a stage that keeps its own.
    pub fn index_limits(&self) -> IndexLimits {
        IndexLimits {
            max_pods: self.max_pods,
            max_owners_per_ip: self.max_owners_per_ip,
        }
    }

    /// Parses the pod and service CIDRs and checks the limits.
    pub fn validate(&self) -> Result<(Vec<ipnet::IpNet>, Vec<ipnet::IpNet>), EnrichConfigError> {
        for (key, value) in [
            ("max_pods", self.max_pods),
            ("max_owners_per_ip", self.max_owners_per_ip),
            ("dns_cache_entries", self.dns_cache_entries),
        ] {
            if value == 0 {
                return Err(EnrichConfigError {
                    key,
                    reason: "must be at least 1".into(),
                });
            }
        }
        let parse = |key: &'static str, list: &[String]| {
            list.iter()
                .map(|c| {
                    c.parse().map_err(|e| EnrichConfigError {
                        key,
                        reason: format!("{c:?} is not a CIDR: {e}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok((
            parse("pod_cidrs", &self.pod_cidrs)?,
            parse("service_cidrs", &self.service_cidrs)?,
        ))
    }
}
