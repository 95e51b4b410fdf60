//! The node agent (`tapwire capture`): what a node saw, produced to the raw
//! topics with the node name and sensor id in every record.
//!
//! - [`config`]: the `[capture]` section, one switch per source.
//! - [`agent`]: runs the chosen sources until shutdown (or until a replay
//!   ends) and sends their records to a bus [`Sink`](tapwire_plumbing::bus::Sink).
//! - `in_flight`: the packet sources' batches awaiting acknowledgement
//!   (`batches_in_flight` at most), counted once acknowledged.
//! - [`inventory`]: /proc/net sockets resolved to processes, the
//!   `tapwire.inventory` heartbeat.
//! - [`replay`]: pcap and pcapng files read frame by frame, with the file
//!   offset in every error.
//! - [`live`]: AF_PACKET capture through libpcap (TPACKET_V3 ring, BPF
//!   filter, snap length).
//! - [`derive`](mod@derive): DNS and L4 events derived from packets (live or replayed).
//! - [`ebpf`]: tracepoint programs from `capture-bpf/` (TCP lifecycle,
//!   exec/exit), ring buffer loss as loss records.
//! - [`privileges`]: which capabilities are held and which a source lacks.
//! - `heartbeat`: the agent's heartbeat on `tapwire.agents` (start, every
//!   `heartbeat_interval_ms`, a last one on a clean stop).

pub mod agent;
pub mod config;
pub mod derive;
pub mod ebpf;
pub(crate) mod heartbeat;
pub(crate) mod in_flight;
pub mod inventory;
pub mod live;
pub mod privileges;
pub mod replay;

pub use agent::{Agent, CaptureError, SourceSpec, Summary};
pub use config::CaptureConfig;

use tapwire_schemas::{EventHeader, EventId, Ip};

/// Who writes the records: every header carries these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Kubernetes node name.
    pub node: String,
    /// This agent instance.
    pub sensor_id: String,
    /// The node's own address, when configured.
    pub node_ip: Option<Ip>,
}

impl Identity {
    /// A header for an event at `timestamp_ns` whose identity is `parts`
    /// (with node and sensor id, so replays give the same ids).
    pub fn header(&self, timestamp_ns: i64, parts: &[&[u8]]) -> EventHeader {
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 2);
        all.push(self.node.as_bytes());
        all.push(self.sensor_id.as_bytes());
        all.extend_from_slice(parts);
        EventHeader {
            id: EventId::derive(&all),
            timestamp_ns,
            node: self.node.clone(),
            sensor_id: self.sensor_id.clone(),
            node_ip: self.node_ip,
        }
    }
}
