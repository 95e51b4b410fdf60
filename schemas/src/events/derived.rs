//! Records the consumer stages derive: enriched events and verdicts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DnsEvent, EventHeader, L4Event, RuntimeEvent, Workload};

/// What is known about one side of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKind {
    /// A pod of the cluster.
    Pod,
    /// A node's own network.
    Host,
    /// Outside the cluster.
    External,
    /// Metadata did not arrive within the wait window.
    Unresolved,
    /// The event has no such side.
    None,
    /// A Service's cluster IP.
    Service,
}

/// Pod context of one side (`peer_context.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerContext {
    /// Pod, host, external, unresolved or none.
    pub kind: PeerKind,
    /// Pod uid: IPs are reused, uids are not.
    pub pod_uid: Option<String>,
    /// Pod name.
    pub pod: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Container name.
    pub container: Option<String>,
    /// Node name.
    pub node: Option<String>,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// Owning workload.
    pub workload: Option<Workload>,
    /// Container image.
    pub image: Option<String>,
    /// Container image digest.
    pub image_digest: Option<String>,
    /// DNS name of an external peer.
    pub dns_name: Option<String>,
}

impl PeerContext {
    /// A context with only a kind (`none`, `unresolved`, ...).
    pub fn of_kind(kind: PeerKind) -> Self {
        PeerContext {
            kind,
            pod_uid: None,
            pod: None,
            namespace: None,
            container: None,
            node: None,
            labels: BTreeMap::new(),
            workload: None,
            image: None,
            image_digest: None,
            dns_name: None,
        }
    }
}

/// The event an [`EnrichedEvent`] carries: one variant per event family, so
/// a new family is a compile error wherever bodies are matched.
///
/// In Avro the union `[L4Event, DnsEvent, RuntimeEvent]`, branches in
/// variant order. serde_avro_fast picks a union branch by the variant name
/// (the record's name) when writing and names the variant by the branch's
/// full name when reading, hence `rename` and `alias`; other serde formats
/// (JSON) see `{"L4Event": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    /// A connection event.
    #[serde(rename = "L4Event", alias = "io.tapwire.L4Event")]
    L4(L4Event),
    /// A DNS event.
    #[serde(rename = "DnsEvent", alias = "io.tapwire.DnsEvent")]
    Dns(DnsEvent),
    /// A process or file event.
    #[serde(rename = "RuntimeEvent", alias = "io.tapwire.RuntimeEvent")]
    Runtime(RuntimeEvent),
}

impl EventBody {
    /// The header of the event.
    pub fn header(&self) -> &EventHeader {
        match self {
            EventBody::L4(e) => &e.header,
            EventBody::Dns(e) => &e.header,
            EventBody::Runtime(e) => &e.header,
        }
    }

    /// The connection event, if that is what this is.
    pub fn as_l4(&self) -> Option<&L4Event> {
        match self {
            EventBody::L4(e) => Some(e),
            EventBody::Dns(_) | EventBody::Runtime(_) => None,
        }
    }

    /// The connection event, mutably, if that is what this is.
    pub fn as_l4_mut(&mut self) -> Option<&mut L4Event> {
        match self {
            EventBody::L4(e) => Some(e),
            EventBody::Dns(_) | EventBody::Runtime(_) => None,
        }
    }

    /// Id of the process the event is about (0 when unknown).
    pub fn pid(&self) -> u32 {
        match self {
            EventBody::L4(e) => e.pid,
            EventBody::Dns(e) => e.pid,
            EventBody::Runtime(e) => e.pid,
        }
    }

    /// Binary name (comm) of the process the event is about.
    pub fn binary(&self) -> &str {
        match self {
            EventBody::L4(e) => &e.binary,
            EventBody::Dns(e) => &e.binary,
            EventBody::Runtime(e) => &e.binary,
        }
    }

    /// Container id of that process, when known.
    pub fn container_id(&self) -> Option<&str> {
        match self {
            EventBody::L4(e) => e.container_id.as_deref(),
            EventBody::Dns(e) => e.container_id.as_deref(),
            EventBody::Runtime(e) => e.container_id.as_deref(),
        }
    }
}

/// A raw event with pod context (`enriched_event.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedEvent {
    /// The event.
    pub body: EventBody,
    /// The initiator or acting pod.
    pub src: PeerContext,
    /// The accepting side.
    pub dst: PeerContext,
}

impl EnrichedEvent {
    /// The header of the wrapped event.
    pub fn header(&self) -> &EventHeader {
        self.body.header()
    }
}

/// Policy mode covering an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Covered by an audit-mode policy.
    Audit,
    /// Covered by an enforce-mode policy.
    Enforce,
    /// No policy covers it.
    Other,
}

/// What the policy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No violation.
    Allowed,
    /// A violation under an audit policy.
    Audited,
    /// A violation under an enforce policy that the node's kernel refused
    /// (only its own record of the refusal says so).
    Blocked,
    /// A violation under an enforce policy that went through: the node did
    /// not or could not stop it (the policy not applied there yet, a kind
    /// the kernel cannot stop, no agent enforcing).
    NotPrevented,
}

impl Outcome {
    /// Whether a policy was violated (audited, blocked or not prevented).
    pub fn is_violation(self) -> bool {
        !matches!(self, Outcome::Allowed)
    }
}

/// Which side of a connection a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The source's egress policies.
    Egress,
    /// The destination's ingress policies.
    Ingress,
}

/// One side's policy decision about a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideDecision {
    /// Egress (the source's policies) or ingress (the destination's).
    pub side: Side,
    /// The mode of the deciding policy.
    pub mode: Mode,
    /// Allowed, audited, blocked or not prevented.
    pub outcome: Outcome,
    /// namespace/name of the deciding policy.
    pub policy: Option<String>,
    /// Name of the deciding rule.
    pub rule: Option<String>,
}

impl SideDecision {
    /// How severe: an enforce violation, an audit violation, an enforce
    /// allow, an audit allow (higher is more severe); "other" is below all.
    pub fn severity_rank(&self) -> u8 {
        severity_rank(self.outcome, self.mode)
    }
}

/// See [`SideDecision::severity_rank`].
pub(crate) fn severity_rank(outcome: Outcome, mode: Mode) -> u8 {
    match (outcome, mode) {
        (Outcome::Blocked | Outcome::NotPrevented, _) => 4,
        (Outcome::Audited, _) => 3,
        (Outcome::Allowed, Mode::Enforce) => 2,
        (Outcome::Allowed, Mode::Audit) => 1,
        (Outcome::Allowed, Mode::Other) => 0,
    }
}

/// The decision for one enriched event (`verdict.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The judged event.
    pub event: EnrichedEvent,
    /// Audit, enforce or other.
    pub mode: Mode,
    /// namespace/name of the deciding policy.
    pub policy: Option<String>,
    /// Name of the deciding rule.
    pub rule: Option<String>,
    /// CEF signature id.
    pub signature_id: String,
    /// 0-10.
    pub severity: i32,
    /// Allowed, audited, blocked or not prevented.
    pub outcome: Outcome,
    /// For a connection: the decision of each side a policy covers (the
    /// source's egress, the destination's ingress), whichever side saw the
    /// event. Empty for other events, and in verdicts written before v5.
    #[serde(default)]
    pub sides: Vec<SideDecision>,
}

impl Verdict {
    /// The connection's mode (the tab it belongs in): the most severe of
    /// its sides' decisions (an enforce violation, then an audit
    /// violation, then an enforce allow, then an audit allow), else the
    /// verdict's own mode.
    pub fn connection_mode(&self) -> Mode {
        self.sides
            .iter()
            .max_by_key(|s| s.severity_rank())
            .map_or(self.mode, |s| s.mode)
    }
}
