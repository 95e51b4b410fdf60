//! The `[capture]` configuration section: who the agent is, and one
//! sub-section per source, each with its own `enabled` switch.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The `[capture]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Node name written into every record; unset: `$NODE_NAME` (the
    /// DaemonSet sets it from `spec.nodeName`), else the host name.
    pub node_name: Option<String>,
    /// Sensor id written into every record; unset: `capture-<node name>`.
    pub sensor_id: Option<String>,
    /// The node's own address, written into every record when set.
    pub node_ip: Option<IpAddr>,
    /// The /proc/net inventory heartbeat.
    pub inventory: InventoryConfig,
    /// Live packet capture (AF_PACKET).
    pub packets: PacketsConfig,
    /// Connection and runtime events from eBPF tracepoints.
    pub ebpf: EbpfConfig,
    /// Events derived from packets (live or replayed).
    pub derive: DeriveConfig,
}

/// `[capture.inventory]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Publish inventory snapshots to `tapwire.inventory`.
    pub enabled: bool,
    /// Time between two snapshots.
    pub interval_ms: u64,
    /// Where procfs is mounted (`/host/proc` when the host's is mounted into
    /// the agent's container).
    pub proc_root: PathBuf,
    /// Read the sockets of every network namespace a process is in (pods
    /// have their own), not only the agent's.
    pub all_network_namespaces: bool,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            enabled: true,
            interval_ms: 15_000,
            proc_root: PathBuf::from("/proc"),
            all_network_namespaces: true,
        }
    }
}

/// `[capture.packets]`: live capture to `tapwire.packets.raw`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PacketsConfig {
    /// Capture packets live (needs CAP_NET_RAW).
    pub enabled: bool,
    /// Interfaces to capture on; empty: all of them (`any`).
    pub interfaces: Vec<String>,
    /// BPF capture filter in tcpdump syntax, e.g. `tcp or udp port 53`;
    /// unset: every packet.
    pub filter: Option<String>,
    /// Bytes kept of each packet.
    pub snaplen_bytes: u32,
    /// Kernel ring buffer size per interface.
    pub buffer_bytes: u32,
}

impl Default for PacketsConfig {
    fn default() -> Self {
        PacketsConfig {
            enabled: false,
            interfaces: Vec::new(),
            filter: None,
            snaplen_bytes: 262_144,
            buffer_bytes: 8 << 20,
        }
    }
}

/// `[capture.derive]`: DNS and L4 events derived from packets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeriveConfig {
    /// Derive `dns_query` events (UDP 53 and 5353; TCP 853 as DNS over TLS)
    /// and L4 events (connect, accept, flow) from packets.
    pub enabled: bool,
    /// A TCP flow without packets for this long is closed as `stale`.
    pub flow_idle_timeout_ms: u64,
    /// Flows tracked at most; beyond it the least recently active one is
    /// closed as `stale` (counted).
    pub max_flows: usize,
}

impl Default for DeriveConfig {
    fn default() -> Self {
        DeriveConfig {
            enabled: true,
            flow_idle_timeout_ms: 120_000,
            max_flows: 100_000,
        }
    }
}

/// `[capture.ebpf]`: tracepoint programs (needs CAP_BPF and CAP_PERFMON, or root).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfConfig {
    /// Load the eBPF programs.
    pub enabled: bool,
    /// TCP connect/accept/listen/close (`sock:inet_sock_set_state`).
    pub connections: bool,
    /// Process exec and exit (`sched:sched_process_exec|exit`).
    pub processes: bool,
    /// File events under `file_path_prefixes`.
    pub files: bool,
    /// Paths whose file events are reported (prefix match).
    pub file_path_prefixes: Vec<String>,
    /// Ring buffer size (a power of two, a multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// A connection with no close seen for this long is reported `stale`.
    pub stale_after_ms: u64,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            enabled: true,
            connections: true,
            processes: true,
            files: true,
            file_path_prefixes: [
                "/etc/",
                "/bin/",
                "/sbin/",
                "/usr/bin/",
                "/usr/sbin/",
                "/root/",
            ]
            .map(str::to_owned)
            .to_vec(),
            ring_buffer_bytes: 4 << 20,
            stale_after_ms: 3_600_000,
        }
    }
}

/// A `[capture]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("capture.{key}: {reason}")]
pub struct CaptureConfigError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl CaptureConfig {
    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), CaptureConfigError> {
        let bad = |key, reason: &str| {
            Err(CaptureConfigError {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.inventory.interval_ms == 0 {
            return bad("inventory.interval_ms", "must be above 0");
        }
        if !(64..=262_144).contains(&self.packets.snaplen_bytes) {
            return bad("packets.snaplen_bytes", "must be between 64 and 262144");
        }
        let rb = self.ebpf.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 4096 {
            return bad(
                "ebpf.ring_buffer_bytes",
                "must be a power of two of at least 4096",
            );
        }
        if self.derive.max_flows == 0 {
            return bad("derive.max_flows", "must be above 0");
        }
        Ok(())
    }

    /// The node name: the configured one, `$NODE_NAME`, or the host name.
    pub fn node(&self) -> String {
        self.node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown-node".to_owned())
    }

    /// Who writes the records: node, sensor id and node address.
    pub fn identity(&self) -> crate::Identity {
        let node = self.node();
        crate::Identity {
            sensor_id: self
                .sensor_id
                .clone()
                .unwrap_or_else(|| format!("capture-{node}")),
            node,
            node_ip: self.node_ip.map(tapwire_schemas::Ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_keys_rejected() {
        CaptureConfig::default().validate().expect("defaults valid");
        let err = toml_parse("[inventory]\ninterval_s = 3\n").unwrap_err();
        assert!(err.contains("interval_s"), "{err}");
        let cfg =
            toml_parse("node_name = \"n1\"\n[packets]\nenabled = true\ninterfaces = [\"eth0\"]\n")
                .expect("parses");
        assert_eq!(cfg.identity().sensor_id, "capture-n1");
        assert_eq!(cfg.packets.interfaces, ["eth0"]);
        let mut bad = CaptureConfig::default();
        bad.ebpf.ring_buffer_bytes = 5000;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .starts_with("capture.ebpf.ring_buffer_bytes")
        );
    }

    fn toml_parse(text: &str) -> Result<CaptureConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
