//! Borrowed views of enriched events and verdicts, for the stages that only
//! look at them (policy, aggregate): the same schemas read with every text
//! field borrowed from the message ([`crate::codec::decode_enriched_view`],
//! [`crate::codec::decode_verdict_view`], read by `read.rs`) and fields no
//! consumer reads (a peer's image, container, pod uid; a runtime event's
//! effective ids, mode, owner, exit code; a DNS resolution's connection)
//! skipped rather than copied.
//!
//! An owned record gives the same view with `view()`, so one function over
//! views serves both the borrowed hot path and records of older schema
//! versions (which are decoded owned and upgraded first).

use super::derived::{EnrichedEvent, EventBody, Mode, Outcome, PeerContext, PeerKind};
use super::derived::{Side, SideDecision, Verdict};
use super::network::{DnsEvent, DnsKind, Endpoint, EventHeaderView, L4Event, L4EventView};
use super::runtime::{RuntimeEvent, RuntimeKind};
use super::{EventHeader, Workload};

/// Pod labels as borrowed pairs, in the order they were written (sorted by
/// key, since writers serialize a `BTreeMap`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels<'a>(pub Vec<(&'a str, &'a str)>);

impl<'a> Labels<'a> {
    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// A [`Workload`] with borrowed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct WorkloadView<'a> {
    pub kind: &'a str,
    pub name: &'a str,
}

/// The parts of a [`PeerContext`] the policy and aggregate stages read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PeerView<'a> {
    pub kind: PeerKind,
    pub pod: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub node: Option<&'a str>,
    pub labels: Labels<'a>,
    pub workload: Option<WorkloadView<'a>>,
    pub dns_name: Option<&'a str>,
}

impl<'a> PeerView<'a> {
    /// The owning workload's name, empty when there is none.
    pub fn workload_name(&self) -> &'a str {
        self.workload.map_or("", |w| w.name)
    }
}

/// The parts of a [`DnsEvent`] the policy and aggregate stages read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DnsEventView<'a> {
    pub header: EventHeaderView<'a>,
    pub kind: DnsKind,
    pub pid: u32,
    pub binary: &'a str,
    pub container_id: Option<&'a str>,
    pub name: &'a str,
    pub query_type: &'a str,
    pub answers: Vec<&'a str>,
    pub resolver: Option<Endpoint>,
    pub response_code: Option<&'a str>,
    pub client: Option<Endpoint>,
}

/// The parts of a [`RuntimeEvent`] the policy and aggregate stages read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RuntimeEventView<'a> {
    pub header: EventHeaderView<'a>,
    pub kind: RuntimeKind,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub binary: &'a str,
    pub command_line: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub path: Option<&'a str>,
    pub old_path: Option<&'a str>,
    pub blocked_by: Option<&'a str>,
}

/// An [`EventBody`] of views (union branches named as in `EventBody`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum EventBodyView<'a> {
    L4(L4EventView<'a>),
    Dns(DnsEventView<'a>),
    Runtime(RuntimeEventView<'a>),
}

impl<'a> EventBodyView<'a> {
    /// The header of the event.
    pub fn header(&self) -> &EventHeaderView<'a> {
        match self {
            EventBodyView::L4(e) => &e.header,
            EventBodyView::Dns(e) => &e.header,
            EventBodyView::Runtime(e) => &e.header,
        }
    }

    /// Id of the process the event is about (0 when unknown).
    pub fn pid(&self) -> u32 {
        match self {
            EventBodyView::L4(e) => e.pid,
            EventBodyView::Dns(e) => e.pid,
            EventBodyView::Runtime(e) => e.pid,
        }
    }

    /// Binary name (comm) of the process the event is about.
    pub fn binary(&self) -> &'a str {
        match self {
            EventBodyView::L4(e) => e.binary,
            EventBodyView::Dns(e) => e.binary,
            EventBodyView::Runtime(e) => e.binary,
        }
    }

    /// Container id of that process, when known.
    pub fn container_id(&self) -> Option<&'a str> {
        match self {
            EventBodyView::L4(e) => e.container_id,
            EventBodyView::Dns(e) => e.container_id,
            EventBodyView::Runtime(e) => e.container_id,
        }
    }

    /// Set when the node's kernel refused the action: `namespace/policy/rule`.
    pub fn blocked_by(&self) -> Option<&'a str> {
        match self {
            EventBodyView::L4(e) => e.blocked_by,
            EventBodyView::Runtime(e) => e.blocked_by,
            EventBodyView::Dns(_) => None,
        }
    }
}

/// An [`EnrichedEvent`] as the policy and aggregate stages read it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct EnrichedEventView<'a> {
    pub body: EventBodyView<'a>,
    pub src: PeerView<'a>,
    pub dst: PeerView<'a>,
}

impl<'a> EnrichedEventView<'a> {
    /// The header of the wrapped event.
    pub fn header(&self) -> &EventHeaderView<'a> {
        self.body.header()
    }
}

/// A [`SideDecision`] with borrowed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SideView<'a> {
    pub side: Side,
    pub mode: Mode,
    pub outcome: Outcome,
    pub policy: Option<&'a str>,
    pub rule: Option<&'a str>,
}

impl SideView<'_> {
    /// See [`SideDecision::severity_rank`].
    pub fn severity_rank(&self) -> u8 {
        super::derived::severity_rank(self.outcome, self.mode)
    }
}

/// A [`Verdict`] as the aggregate stage reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct VerdictView<'a> {
    pub event: EnrichedEventView<'a>,
    pub mode: Mode,
    pub policy: Option<&'a str>,
    pub rule: Option<&'a str>,
    pub signature_id: &'a str,
    pub severity: i32,
    pub outcome: Outcome,
    pub sides: Vec<SideView<'a>>,
}

impl VerdictView<'_> {
    /// See [`Verdict::connection_mode`].
    pub fn connection_mode(&self) -> Mode {
        self.sides
            .iter()
            .max_by_key(|s| s.severity_rank())
            .map_or(self.mode, |s| s.mode)
    }
}

impl EventHeader {
    /// This header as a view.
    pub fn view(&self) -> EventHeaderView<'_> {
        EventHeaderView {
            id: self.id,
            timestamp_ns: self.timestamp_ns,
            node: &self.node,
            sensor_id: &self.sensor_id,
            node_ip: self.node_ip,
        }
    }
}

impl L4Event {
    /// This event as a view.
    pub fn view(&self) -> L4EventView<'_> {
        L4EventView {
            header: self.header.view(),
            kind: self.kind,
            pid: self.pid,
            binary: &self.binary,
            container_id: self.container_id.as_deref(),
            src: self.src,
            dst: self.dst,
            protocol: self.protocol,
            direction: self.direction,
            duration_ns: self.duration_ns,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            final_state: self.final_state,
            ppid: self.ppid,
            euid: self.euid,
            egid: self.egid,
            binary_path: self.binary_path.as_deref(),
            command_line: self.command_line.as_deref(),
            blocked_by: self.blocked_by.as_deref(),
        }
    }
}

impl DnsEvent {
    /// This event as a view.
    pub fn view(&self) -> DnsEventView<'_> {
        DnsEventView {
            header: self.header.view(),
            kind: self.kind,
            pid: self.pid,
            binary: &self.binary,
            container_id: self.container_id.as_deref(),
            name: &self.name,
            query_type: &self.query_type,
            answers: self.answers.iter().map(String::as_str).collect(),
            resolver: self.resolver,
            response_code: self.response_code.as_deref(),
            client: self.client,
        }
    }
}

impl RuntimeEvent {
    /// This event as a view.
    pub fn view(&self) -> RuntimeEventView<'_> {
        RuntimeEventView {
            header: self.header.view(),
            kind: self.kind,
            pid: self.pid,
            ppid: self.ppid,
            uid: self.uid,
            binary: &self.binary,
            command_line: self.command_line.as_deref(),
            container_id: self.container_id.as_deref(),
            path: self.path.as_deref(),
            old_path: self.old_path.as_deref(),
            blocked_by: self.blocked_by.as_deref(),
        }
    }
}

impl Workload {
    /// This workload as a view.
    pub fn view(&self) -> WorkloadView<'_> {
        WorkloadView {
            kind: &self.kind,
            name: &self.name,
        }
    }
}

impl PeerContext {
    /// This context as a view.
    pub fn view(&self) -> PeerView<'_> {
        PeerView {
            kind: self.kind,
            pod: self.pod.as_deref(),
            namespace: self.namespace.as_deref(),
            node: self.node.as_deref(),
            labels: Labels(
                self.labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            ),
            workload: self.workload.as_ref().map(Workload::view),
            dns_name: self.dns_name.as_deref(),
        }
    }
}

impl EventBody {
    /// This body as a view.
    pub fn view(&self) -> EventBodyView<'_> {
        match self {
            EventBody::L4(e) => EventBodyView::L4(e.view()),
            EventBody::Dns(e) => EventBodyView::Dns(e.view()),
            EventBody::Runtime(e) => EventBodyView::Runtime(e.view()),
        }
    }
}

impl EnrichedEvent {
    /// This event as a view.
    pub fn view(&self) -> EnrichedEventView<'_> {
        EnrichedEventView {
            body: self.body.view(),
            src: self.src.view(),
            dst: self.dst.view(),
        }
    }
}

impl SideDecision {
    /// This decision as a view.
    pub fn view(&self) -> SideView<'_> {
        SideView {
            side: self.side,
            mode: self.mode,
            outcome: self.outcome,
            policy: self.policy.as_deref(),
            rule: self.rule.as_deref(),
        }
    }
}

impl Verdict {
    /// This verdict as a view.
    pub fn view(&self) -> VerdictView<'_> {
        VerdictView {
            event: self.event.view(),
            mode: self.mode,
            policy: self.policy.as_deref(),
            rule: self.rule.as_deref(),
            signature_id: &self.signature_id,
            severity: self.severity,
            outcome: self.outcome,
            sides: self.sides.iter().map(SideDecision::view).collect(),
        }
    }
}
