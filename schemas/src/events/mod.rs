//! Rust types for every Avro record; each maps field for field, in order, to
//! its `.avsc` file in `schemas/avro/`.

mod agents;
mod api;
mod derived;
mod network;
mod pods;
pub(crate) mod read;
mod runtime;
mod views;

use serde::{Deserialize, Serialize};

pub use agents::{AgentHeartbeat, SILENT_INTERVALS, SourceLoss, alive_at, silent_at_ns};
pub use api::ApiRequest;
pub use derived::{
    EnrichedEvent, EventBody, Mode, Outcome, PeerContext, PeerKind, Side, SideDecision, Verdict,
};
pub use network::{
    Direction, DnsEvent, DnsKind, Endpoint, EventHeaderView, FinalState, InventorySnapshot,
    L4Event, L4EventView, L4Kind, PacketRecord, Protocol, Socket,
};
pub use pods::{
    Container, ContainerSecurity, NodeMetadata, PodMetadata, PodSecurity, ServiceMetadata, Workload,
};
pub use runtime::{RuntimeEvent, RuntimeKind};
pub use views::{
    DnsEventView, EnrichedEventView, EventBodyView, Labels, PeerView, RuntimeEventView, SideView,
    VerdictView, WorkloadView,
};

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

/// `as_str` for enums: the serde (and Avro symbol) name, for tables, labels
/// and filters that print the name.
macro_rules! symbol_names {
    ($($ty:ty { $($variant:ident => $name:literal),* $(,)? })*) => {$(
        impl $ty {
            /// The name as serialized (the Avro enum symbol).
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $name,)* }
            }
        }
    )*};
}

symbol_names! {
    PeerKind {
        Pod => "pod", Host => "host", External => "external",
        Unresolved => "unresolved", None => "none", Service => "service",
    }
    Mode { Audit => "audit", Enforce => "enforce", Other => "other" }
    Outcome {
        Allowed => "allowed", Audited => "audited", Blocked => "blocked",
        NotPrevented => "not_prevented",
    }
    Protocol { Tcp => "tcp", Udp => "udp" }
    Direction { Egress => "egress", Ingress => "ingress", None => "none" }
    FinalState {
        Established => "established", Refused => "refused",
        HalfClosed => "half_closed", Stale => "stale",
    }
    RuntimeKind {
        ProcessExec => "process_exec", ProcessExit => "process_exit",
        FileOpen => "file_open", FileCreate => "file_create", FileWrite => "file_write",
        FileDelete => "file_delete", FileChmod => "file_chmod", FileChown => "file_chown",
        FileRename => "file_rename",
    }
}

#[cfg(test)]
mod symbol_name_tests {
    use super::*;

    /// `as_str` is exactly what serde writes, for every variant.
    #[test]
    fn names_are_the_serialized_symbols() {
        fn check<T: Serialize + Copy>(all: &[T], name: impl Fn(T) -> &'static str) {
            for v in all {
                assert_eq!(serde_json::to_value(v).expect("serialize"), name(*v));
            }
        }
        use PeerKind as P;
        check(
            &[
                P::Pod,
                P::Host,
                P::External,
                P::Unresolved,
                P::None,
                P::Service,
            ],
            PeerKind::as_str,
        );
        check(&[Mode::Audit, Mode::Enforce, Mode::Other], Mode::as_str);
        check(
            &[
                Outcome::Allowed,
                Outcome::Audited,
                Outcome::Blocked,
                Outcome::NotPrevented,
            ],
            Outcome::as_str,
        );
        check(&[Protocol::Tcp, Protocol::Udp], Protocol::as_str);
        check(
            &[Direction::Egress, Direction::Ingress, Direction::None],
            Direction::as_str,
        );
        use FinalState as F;
        check(
            &[F::Established, F::Refused, F::HalfClosed, F::Stale],
            FinalState::as_str,
        );
        use RuntimeKind as R;
        check(
            &[
                R::ProcessExec,
                R::ProcessExit,
                R::FileOpen,
                R::FileCreate,
                R::FileWrite,
                R::FileDelete,
                R::FileChmod,
                R::FileChown,
                R::FileRename,
            ],
            RuntimeKind::as_str,
        );
    }
}
