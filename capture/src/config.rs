//! The `[capture]` configuration section: who the agent is, and one
//! sub-section per source, each with its own `enabled` switch; the flags of
//! `tapwire capture` ([`CaptureFlags`]) and the seed's `NODE_NAME`
//! ([`CaptureConfig::SEED_VARIABLES`]), both layers of the configuration
//! load.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// The `[capture]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Node name written into every record (`NODE_NAME` sets it: the
    /// DaemonSet passes `spec.nodeName`); unset: the host name.
    pub node_name: Option<String>,
    /// Sensor id written into every record; unset: `capture-<node name>`.
    pub sensor_id: Option<String>,
    /// The node's own address, written into every record when set.
    pub node_ip: Option<IpAddr>,
    /// Time between two agent heartbeats on `tapwire.agents` (one at start,
    /// one every interval, a last one on a clean stop); a sensor silent for
    /// two intervals is disconnected. Sent while a live source (inventory,
    /// ebpf, packets) runs; an agent that only replays files sends none.
    pub heartbeat_interval_ms: u64,
    /// Batches of 1,000 records a packet source (pcap replay, live capture)
    /// may have sent and not yet seen acknowledged: the next batch is built
    /// and queued while earlier ones wait for the brokers' delivery reports.
    /// 1 awaits each batch before sending the next. Records count as sent
    /// (summary, `tapwire_messages_out_total`) once their batch is
    /// acknowledged; a failed batch stops the source (at least once: later
    /// batches may be delivered too, uncounted). Order per key holds with
    /// any value: batches enter the producer's queue in order and the
    /// producer is idempotent (see `KafkaSink`).
    pub batches_in_flight: usize,
    /// The /proc/net inventory heartbeat.
    pub inventory: InventoryConfig,
    /// Live packet capture (AF_PACKET).
    pub packets: PacketsConfig,
    /// Connection and runtime events from eBPF tracepoints.
    pub ebpf: EbpfConfig,
    /// Events derived from packets (live or replayed).
    pub derive: DeriveConfig,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            node_name: None,
            sensor_id: None,
            node_ip: None,
            heartbeat_interval_ms: 10_000,
            batches_in_flight: 8,
            inventory: InventoryConfig::default(),
            packets: PacketsConfig::default(),
            ebpf: EbpfConfig::default(),
            derive: DeriveConfig::default(),
        }
    }
}

/// The flags of `tapwire capture`; each sets its `[capture]` key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CaptureFlags {
    /// Node name in every record (capture.node_name; beats NODE_NAME).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Sensor id in every record (capture.sensor_id).
    #[arg(long)]
    pub sensor_id: Option<String>,
    /// Interface for live capture, repeatable (capture.packets.interfaces).
    #[arg(long = "interface", short = 'i', value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// BPF capture filter, tcpdump syntax (capture.packets.filter).
    #[arg(long, value_name = "FILTER")]
    pub capture_filter: Option<String>,
    /// Bytes kept per packet (capture.packets.snaplen_bytes).
    #[arg(long, value_name = "BYTES")]
    pub snaplen: Option<u32>,
    /// Time between agent heartbeats (capture.heartbeat_interval_ms).
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Batches of 1,000 records awaiting their delivery reports at once, per
    /// packet source; 1 awaits each before sending the next
    /// (capture.batches_in_flight).
    #[arg(long, value_name = "N")]
    pub batches_in_flight: Option<usize>,
    /// Time between inventory snapshots (capture.inventory.interval_ms).
    #[arg(long, value_name = "MS")]
    pub inventory_interval_ms: Option<u64>,
    /// Do not derive DNS and L4 events from packets (capture.derive.enabled = false).
    #[arg(long)]
    pub no_derive: bool,
}

/// The keys the flags set, nested as in the section.
impl Serialize for CaptureFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(name) = &self.node_name {
            map.serialize_entry("node_name", name)?;
        }
        if let Some(id) = &self.sensor_id {
            map.serialize_entry("sensor_id", id)?;
        }
        if let Some(ms) = self.heartbeat_interval_ms {
            map.serialize_entry("heartbeat_interval_ms", &ms)?;
        }
        if let Some(n) = self.batches_in_flight {
            map.serialize_entry("batches_in_flight", &n)?;
        }
        #[derive(Serialize)]
        struct Packets<'a> {
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            interfaces: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            filter: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            snaplen_bytes: Option<u32>,
        }
        if !self.interfaces.is_empty() || self.capture_filter.is_some() || self.snaplen.is_some() {
            let packets = Packets {
                interfaces: &self.interfaces,
                filter: self.capture_filter.as_deref(),
                snaplen_bytes: self.snaplen,
            };
            map.serialize_entry("packets", &packets)?;
        }
        if let Some(ms) = self.inventory_interval_ms {
            map.serialize_entry(
                "inventory",
                &std::collections::BTreeMap::from([("interval_ms", ms)]),
            )?;
        }
        if self.no_derive {
            map.serialize_entry(
                "derive",
                &std::collections::BTreeMap::from([("enabled", false)]),
            )?;
        }
        map.end()
    }
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
    /// Derive connect, accept and flow events from live packets: `true`,
    /// `false`, or unset (the default): only when the eBPF source does not
    /// track connections in the same agent. eBPF sees every socket of the
    /// node with its process, so deriving them from packets too would count
    /// each connection twice; set `true` on a node that forwards traffic no
    /// local socket terminates. DNS queries are derived either way.
    pub connections: Option<bool>,
}

impl Default for DeriveConfig {
    fn default() -> Self {
        DeriveConfig {
            enabled: true,
            flow_idle_timeout_ms: 120_000,
            max_flows: 100_000,
            connections: None,
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
    /// Name lookups (`dns_lookup`) from uprobes on `getaddrinfo`, and the
    /// connects that follow them (`dns_resolution`).
    pub lookups: bool,
    /// C libraries whose `getaddrinfo` is probed, where they exist (glibc and
    /// musl at their usual places); containers' own copies are found through
    /// `/proc/PID/root` as their processes start.
    pub lookup_libraries: Vec<String>,
    /// A connect this long after a lookup that named its address is its
    /// `dns_resolution`.
    pub resolution_window_ms: u64,
    /// Apply the enforce-mode policies of `tapwire.enforcement` to this
    /// node's pods: cgroup programs refuse denied connections (EPERM) and
    /// new inbound connections, the exec tracepoint kills denied
    /// executables. Needs CAP_BPF/CAP_SYS_ADMIN and a cgroup v2 hierarchy;
    /// without them the agent says so and captures on.
    pub enforce: bool,
}

/// Where C libraries live on the distributions nodes and images use
/// (relative to a root: `/` for the node, `/proc/PID/root` for a container).
pub const LIBC_PATHS: [&str; 6] = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib/libc.so.6",
    "/lib/ld-musl-x86_64.so.1",
    "/lib/ld-musl-aarch64.so.1",
];

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
            lookups: true,
            lookup_libraries: LIBC_PATHS.map(str::to_owned).to_vec(),
            resolution_window_ms: 30_000,
            enforce: true,
        }
    }
}

/// Most batches a packet source may have in flight (64 batches of 1,000
/// records; the producer's local queue holds a million).
pub const MAX_BATCHES_IN_FLIGHT: usize = 64;

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
        if self.heartbeat_interval_ms == 0 {
            return bad("heartbeat_interval_ms", "must be above 0");
        }
        if !(1..=MAX_BATCHES_IN_FLIGHT).contains(&self.batches_in_flight) {
            return bad("batches_in_flight", "must be between 1 and 64");
        }
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

    /// The seed's environment variable and the `[capture]` key it sets (a
    /// layer of the configuration load, above the file and below
    /// `TAPWIRE_CAPTURE__*` and the flags).
    pub const SEED_VARIABLES: &[(&str, &str)] = &[("NODE_NAME", "node_name")];

    /// The node name: the configured one, or the host name.
    pub fn node(&self) -> String {
        self.node_name
            .clone()
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
        let cfg = toml_parse("batches_in_flight = 1\n").expect("parses");
        assert_eq!(cfg.batches_in_flight, 1);
        let zero = toml_parse("batches_in_flight = 0\n").expect("parses");
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .starts_with("capture.batches_in_flight")
        );
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
