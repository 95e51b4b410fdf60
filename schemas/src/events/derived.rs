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

/// A raw event with pod context (`enriched_event.avsc`). Exactly one of
/// `l4`, `dns` and `runtime` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedEvent {
    /// A connection event.
    pub l4: Option<L4Event>,
    /// A DNS event.
    pub dns: Option<DnsEvent>,
    /// A runtime event.
    pub runtime: Option<RuntimeEvent>,
    /// The initiator or acting pod.
    pub src: PeerContext,
    /// The accepting side.
    pub dst: PeerContext,
}

impl EnrichedEvent {
    /// The header of the wrapped event, `None` if the record is malformed
    /// (no event set).
    pub fn header(&self) -> Option<&EventHeader> {
        self.l4
            .as_ref()
            .map(|e| &e.header)
            .or(self.dns.as_ref().map(|e| &e.header))
            .or(self.runtime.as_ref().map(|e| &e.header))
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
    /// A violation under an enforce policy.
    Blocked,
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
    /// Allowed, audited or blocked.
    pub outcome: Outcome,
}
