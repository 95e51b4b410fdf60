//! Rust types for every Avro record; each maps field for field, in order, to
//! its `.avsc` file in `schemas/avro/`.

mod derived;
mod network;
mod pods;
mod runtime;

use serde::{Deserialize, Serialize};

pub use derived::{EnrichedEvent, Mode, Outcome, PeerContext, PeerKind, Verdict};
pub use network::{
    Direction, DnsEvent, DnsKind, Endpoint, EventHeaderView, FinalState, InventorySnapshot,
    L4Event, L4EventView, L4Kind, PacketRecord, Protocol, Socket,
};
pub use pods::{Container, NodeMetadata, PodMetadata, ServiceMetadata, Workload};
pub use runtime::{RuntimeEvent, RuntimeKind};

use crate::{EventId, Ip};

/// The fields every event starts with (`event_header.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EventHeader {
    /// Stable id: the same event always carries the same id.
    pub id: EventId,
    /// When the event happened, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Kubernetes node name.
    pub node: String,
    /// The sensor or stage instance that produced it.
    pub sensor_id: String,
    /// The node's own address, when the producer knows it.
    pub node_ip: Option<Ip>,
}

/// Events a hop knows it lost (`loss_record.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossRecord {
    /// Common fields.
    pub header: EventHeader,
    /// Where the loss happened: `ringbuf`, `queue`, `rate_limit`, ...
    pub source: String,
    /// Events lost since the previous loss record of this source.
    pub lost: u64,
}
