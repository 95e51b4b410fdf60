//! Policies compiled once into matchers, and the verdict for one enriched
//! event.
//!
//! Coverage: a policy covers an event when its selector matches the event's
//! local pod (the initiator for egress, DNS and runtime events; the accepting
//! pod for ingress). Inside a policy, the most specific matching rule decides
//! (specificity: how many constraints the rule states, a `when` condition
//! counting as one; a tie goes to deny). A rule with a KFL `when` condition
//! matches only when the condition also holds for the event (fields in
//! `tapwire_schemas::kfl`; `now()` is the event's time).
//! When no rule matches: if the policy has allow rules for that direction (or
//! for executables, or files), the event is a violation of that allow-list
//! (no rule is named); otherwise it is allowed.
//!
//! Overlap: among the covering policies, an enforce violation decides first,
//! then an audit violation, then an enforce allow, then an audit allow; within
//! one rank the more specific rule, then the policy name in order. The verdict
//! names the deciding policy (`namespace/name`) and rule.
//!
//! Judging reads a borrowed view of the event ([`EnrichedEventView`]):
//! [`PolicySet::judge_message`] decodes it from the message and writes the
//! verdict by splicing the message's event datum, so a verdict costs no
//! owned copy of its event; [`PolicySet::judge`] views an owned event the
//! same way. A rule's KFL `when` condition is the one reader of the whole
//! event: the owned event is decoded from the message only when a condition
//! is reached, once per event. Indexes: policies by the namespace of the
//! pod they select, rules by port, both in Fx hash maps (keys are short and
//! come from our own configuration).

use std::cell::OnceCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;

use globset::{Glob, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use rustc_hash::FxHasher;
use smallvec::SmallVec;
use tapwire_kfl::Filter;
use tapwire_schemas::codec::{self, VerdictTail};
use tapwire_schemas::events::{
    Direction, EnrichedEvent, EnrichedEventView, EventBodyView, L4EventView, Labels, Mode, Outcome,
    PeerKind, PeerView, Protocol, RuntimeEventView, RuntimeKind, Side, SideDecision, SideView,
    Verdict,
};
use tapwire_schemas::kfl::EventEntry;
use tapwire_schemas::signature::{EventKind, Signature, signature};
use tapwire_schemas::{DecodeError, SchemaKind};

use crate::document::{
    Action, Document, FileOp, Kind, NetworkRule, Peer, PodSelector, PolicyMode, RuntimeRule,
};

/// A policy that does not compile, naming the policy and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy}: {field}: {message}")]
pub struct CompileError {
    /// `namespace/name`.
    pub policy: String,
    /// The field, e.g. `spec.egress[0].to[1].cidr`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug)]
pub(crate) struct Selector {
    pub(crate) namespace: Option<String>,
    pub(crate) labels: Vec<(String, String)>,
}

impl Selector {
    fn new(s: &PodSelector, default_namespace: Option<&str>) -> Self {
        let namespace = s
            .namespace
            .as_deref()
            .or(default_namespace)
            .filter(|n| *n != "*");
        Selector {
            namespace: namespace.map(str::to_owned),
            labels: s
                .match_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    fn matches(&self, peer: &PeerView<'_>) -> bool {
        peer.kind == PeerKind::Pod && self.selects(peer.namespace, |k| Labels::get(&peer.labels, k))
    }

    /// Whether a pod of `namespace` with `labels` is selected.
    pub(crate) fn matches_pod(
        &self,
        namespace: Option<&str>,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        self.selects(namespace, |k| labels.get(k).map(String::as_str))
    }

    /// Whether a pod of `namespace` whose label values `label` gives is
    /// selected.
    fn selects<'l>(
        &self,
        namespace: Option<&str>,
        label: impl Fn(&str) -> Option<&'l str>,
    ) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| namespace == Some(ns))
            && self
                .labels
                .iter()
                .all(|(k, v)| label(k) == Some(v.as_str()))
    }

    pub(crate) fn specificity(&self) -> u32 {
        u32::from(self.namespace.is_some()) + self.labels.len() as u32
    }
}

#[derive(Debug)]
pub(crate) enum DnsPattern {
    Exact(String),
    Suffix(String),
}

#[derive(Debug)]
pub(crate) struct CompiledPeer {
    pub(crate) pod: Option<Selector>,
    pub(crate) cidr: Option<IpNet>,
    /// `cidr` as bits to compare with one mask.
    range: Option<Range>,
    pub(crate) dns: Option<DnsPattern>,
}

/// A CIDR as a masked 128-bit number (IPv4 in the low 32 bits).
#[derive(Debug, Clone, Copy)]
struct Range {
    v4: bool,
    network: u128,
    mask: u128,
}

impl Range {
    fn new(net: IpNet) -> Self {
        let (v4, bits, width) = match net {
            IpNet::V4(n) => (true, u128::from(u32::from(n.network())), 32),
            IpNet::V6(n) => (false, u128::from(n.network()), 128),
        };
        let prefix = u32::from(net.prefix_len());
        let ones = u128::MAX >> (128 - width);
        let mask = if prefix == 0 {
            0
        } else {
            (u128::MAX << (width - prefix)) & ones
        };
        Range {
            v4,
            network: bits & mask,
            mask,
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let bits = match (self.v4, ip) {
            (true, IpAddr::V4(a)) => u128::from(u32::from(a)),
            (false, IpAddr::V6(a)) => u128::from(a),
            _ => return false,
        };
        bits & self.mask == self.network
    }
}

impl CompiledPeer {
    fn matches(&self, peer: &PeerView<'_>, ip: IpAddr) -> bool {
        self.pod.as_ref().is_none_or(|s| s.matches(peer))
            && self.range.is_none_or(|r| r.contains(ip))
            && self.dns.as_ref().is_none_or(|p| {
                let name = peer.dns_name.unwrap_or_default().trim_end_matches('.');
                match p {
                    DnsPattern::Exact(n) => name.eq_ignore_ascii_case(n),
                    DnsPattern::Suffix(s) => {
                        // Bytes, so a multi-byte name can never be cut mid-character.
                        let (name, s) = (name.as_bytes(), s.as_bytes());
                        name.len() > s.len() && name[name.len() - s.len()..].eq_ignore_ascii_case(s)
                    }
                }
            })
    }

    pub(crate) fn specificity(&self) -> u32 {
        self.pod.as_ref().map_or(0, |s| 1 + s.specificity())
            + u32::from(self.cidr.is_some())
            + u32::from(self.dns.is_some())
    }
}

#[derive(Debug)]
pub(crate) struct NetRule {
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) peers: Vec<CompiledPeer>,
    pub(crate) ports: Vec<u16>,
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) when: Option<Filter>,
}

impl NetRule {
    /// The rule's specificity when it matches.
    fn matches(
        &self,
        e: &Subject<'_, '_>,
        peer: &PeerView<'_>,
        ip: IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> Option<u32> {
        if !self.ports.is_empty() && !self.ports.contains(&port) {
            return None;
        }
        if !self.protocols.is_empty() && !self.protocols.contains(&protocol) {
            return None;
        }
        let peer_spec = if self.peers.is_empty() {
            0
        } else {
            self.peers
                .iter()
                .filter(|p| p.matches(peer, ip))
                .map(CompiledPeer::specificity)
                .max()?
        };
        if !condition_holds(self.when.as_ref(), e) {
            return None;
        }
        Some(
            peer_spec
                + u32::from(!self.ports.is_empty())
                + u32::from(!self.protocols.is_empty())
                + u32::from(self.when.is_some()),
        )
    }
}

#[derive(Debug)]
pub(crate) struct RtRule {
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) executables: Option<GlobSet>,
    pub(crate) files: Option<(GlobSet, Vec<RuntimeKind>)>,
    pub(crate) when: Option<Filter>,
}

/// Whether a rule's KFL condition holds for `e` (no condition: it does).
/// `now()` in a condition is the event's own time, so a replayed event is
/// judged as it was live.
fn condition_holds(when: Option<&Filter>, e: &Subject<'_, '_>) -> bool {
    when.is_none_or(|f| {
        let now_ms = e.view.header().timestamp_ns.div_euclid(1_000_000);
        e.owned()
            .is_some_and(|owned| f.matches(&EventEntry::event(owned), now_ms))
    })
}

/// An event being judged: its view, and where the whole event comes from
/// when a KFL condition needs it.
pub(crate) struct Subject<'e, 'a> {
    view: &'e EnrichedEventView<'a>,
    owned: Owned<'e>,
}

enum Owned<'e> {
    /// The caller's owned event.
    Event(&'e EnrichedEvent),
    /// Decoded from the message the first time a condition asks.
    Message(&'e [u8], OnceCell<Option<Box<EnrichedEvent>>>),
}

impl Subject<'_, '_> {
    /// The whole event (`None` only if a message whose view decoded does
    /// not decode owned, which the codec tests rule out).
    fn owned(&self) -> Option<&EnrichedEvent> {
        match &self.owned {
            Owned::Event(e) => Some(e),
            Owned::Message(bytes, cell) => cell
                .get_or_init(|| tapwire_schemas::decode(bytes).ok().map(Box::new))
                .as_deref(),
        }
    }
}

/// Hash maps keyed by our own short keys (ports, namespaces).
type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

fn condition(policy: &str, at: &str, when: Option<&str>) -> Result<Option<Filter>, CompileError> {
    when.map(|q| {
        tapwire_kfl::compile_dissected(q).map_err(|e| {
            err(
                policy,
                format!("{at}.when"),
                format!("invalid KFL condition:\n{}", e.render(q)),
            )
        })
    })
    .transpose()
}

/// The network rules of one direction, indexed by port so that judging an
/// event looks at the rules for its port and the port-less ones only.
#[derive(Debug, Default)]
pub(crate) struct NetRules {
    pub(crate) rules: Vec<NetRule>,
    by_port: FxMap<u16, Vec<usize>>,
    any_port: Vec<usize>,
    /// Any allow rule makes the direction an allow-list.
    pub(crate) allow_list: bool,
}

impl NetRules {
    fn new(rules: Vec<NetRule>) -> Self {
        let mut by_port: FxMap<u16, Vec<usize>> = FxMap::default();
        let mut any_port = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if r.ports.is_empty() {
                any_port.push(i);
            }
            for &port in &r.ports {
                let at = by_port.entry(port).or_default();
                if at.last() != Some(&i) {
                    at.push(i);
                }
            }
        }
        NetRules {
            allow_list: rules.iter().any(|r| r.action == Action::Allow),
            rules,
            by_port,
            any_port,
        }
    }

    /// The rules that can match an event to `port`.
    pub(crate) fn for_port(&self, port: u16) -> impl Iterator<Item = &NetRule> {
        self.by_port
            .get(&port)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .chain(&self.any_port)
            .map(|&i| &self.rules[i])
    }
}

#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) mode: PolicyMode,
    pub(crate) selector: Selector,
    pub(crate) egress: NetRules,
    pub(crate) ingress: NetRules,
    pub(crate) rules: Vec<RtRule>,
    /// Some rule allows executables: exec is an allow-list.
    pub(crate) exec_allow_list: bool,
}

/// Every policy, compiled.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// In name order.
    pub(crate) policies: Vec<Policy>,
    /// Policies selecting pods of one namespace, by namespace (indices
    /// into `policies`, ascending).
    by_namespace: FxMap<String, Vec<usize>>,
    /// Policies selecting pods of every namespace.
    any_namespace: Vec<usize>,
}

fn err(policy: &str, field: String, message: impl Into<String>) -> CompileError {
    CompileError {
        policy: policy.to_owned(),
        field,
        message: message.into(),
    }
}

fn globs(policy: &str, field: &str, patterns: &[String]) -> Result<GlobSet, CompileError> {
    let mut b = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        b.add(Glob::new(p).map_err(|e| err(policy, format!("{field}[{i}]"), e.to_string()))?);
    }
    b.build()
        .map_err(|e| err(policy, field.to_owned(), e.to_string()))
}

fn net_rules(
    policy: &str,
    direction: &str,
    rules: &[NetworkRule],
) -> Result<Vec<NetRule>, CompileError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("spec.{direction}[{i}]");
            let when = condition(policy, &at, r.when.as_deref())?;
            let (peers, key) = if direction == "egress" {
                (&r.to, "to")
            } else {
                (&r.from, "from")
            };
            let other = if direction == "egress" {
                &r.from
            } else {
                &r.to
            };
            if !other.is_empty() {
                return Err(err(
                    policy,
                    at.clone(),
                    format!("{direction} rules name their peers in `{key}`"),
                ));
            }
            let peers = peers
                .iter()
                .enumerate()
                .map(|(j, p)| compile_peer(policy, &format!("{at}.{key}[{j}]"), p))
                .collect::<Result<_, _>>()?;
            let protocols = r
                .protocols
                .iter()
                .enumerate()
                .map(|(j, p)| match p.to_ascii_lowercase().as_str() {
                    "tcp" => Ok(Protocol::Tcp),
                    "udp" => Ok(Protocol::Udp),
                    other => Err(err(
                        policy,
                        format!("{at}.protocols[{j}]"),
                        format!("{other:?} is not tcp or udp"),
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok(NetRule {
                name: r.name.clone(),
                action: r.action,
                peers,
                ports: r.ports.clone(),
                protocols,
                when,
            })
        })
        .collect()
}

fn compile_peer(policy: &str, at: &str, p: &Peer) -> Result<CompiledPeer, CompileError> {
    let cidr = p
        .cidr
        .as_deref()
        .map(|c| {
            c.parse::<IpNet>()
                .map_err(|e| err(policy, format!("{at}.cidr"), format!("{c:?}: {e}")))
        })
        .transpose()?;
    let dns = p.dns_name.as_deref().map(|n| {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        match n.strip_prefix("*.") {
            Some(rest) => DnsPattern::Suffix(format!(".{rest}")),
            None => DnsPattern::Exact(n),
        }
    });
    if p.pod.is_none() && cidr.is_none() && dns.is_none() {
        return Err(err(
            policy,
            at.to_owned(),
            "a peer needs pod, cidr or dnsName",
        ));
    }
    Ok(CompiledPeer {
        pod: p.pod.as_ref().map(|s| Selector::new(s, None)),
        range: cidr.map(Range::new),
        cidr,
        dns,
    })
}

fn rt_rules(policy: &str, rules: &[RuntimeRule]) -> Result<Vec<RtRule>, CompileError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("spec.rules[{i}]");
            let when = condition(policy, &at, r.when.as_deref())?;
            let executables = (!r.executables.is_empty())
                .then(|| globs(policy, &format!("{at}.executables"), &r.executables))
                .transpose()?;
            let files = r
                .files
                .as_ref()
                .map(|f| {
                    let set = globs(policy, &format!("{at}.files.paths"), &f.paths)?;
                    let ops = f
                        .operations
                        .iter()
                        .map(|op| match op {
                            FileOp::Open => RuntimeKind::FileOpen,
                            FileOp::Create => RuntimeKind::FileCreate,
                            FileOp::Write => RuntimeKind::FileWrite,
                            FileOp::Delete => RuntimeKind::FileDelete,
                            FileOp::Chmod => RuntimeKind::FileChmod,
                            FileOp::Chown => RuntimeKind::FileChown,
                            FileOp::Rename => RuntimeKind::FileRename,
                        })
                        .collect();
                    Ok::<_, CompileError>((set, ops))
                })
                .transpose()?;
            if executables.is_none() && files.is_none() {
                return Err(err(policy, at, "a runtime rule needs executables or files"));
            }
            Ok(RtRule {
                name: r.name.clone(),
                action: r.action,
                executables,
                files,
                when,
            })
        })
        .collect()
}

impl PolicySet {
    /// Compiles documents; names are `namespace/name` and must be unique.
    pub fn compile(documents: &[Document]) -> Result<PolicySet, CompileError> {
        let mut policies = Vec::with_capacity(documents.len());
        for d in documents {
            let name = format!(
                "{}/{}",
                d.metadata.namespace.as_deref().unwrap_or("-"),
                d.metadata.name
            );
            if policies.iter().any(|p: &Policy| p.name == name) {
                return Err(err(&name, "metadata.name".into(), "defined twice"));
            }
            let s = &d.spec;
            match d.kind {
                Kind::NetworkPolicy if !s.rules.is_empty() => {
                    return Err(err(
                        &name,
                        "spec.rules".into(),
                        "a NetworkPolicy has egress and ingress rules",
                    ));
                }
                Kind::RuntimePolicy if !s.egress.is_empty() || !s.ingress.is_empty() => {
                    return Err(err(
                        &name,
                        "spec.egress".into(),
                        "a RuntimePolicy has rules, not egress or ingress",
                    ));
                }
                _ => {}
            }
            policies.push(Policy {
                kind: d.kind,
                mode: s.mode,
                selector: Selector::new(&s.selector, d.metadata.namespace.as_deref()),
                egress: NetRules::new(net_rules(&name, "egress", &s.egress)?),
                ingress: NetRules::new(net_rules(&name, "ingress", &s.ingress)?),
                rules: rt_rules(&name, &s.rules)?,
                exec_allow_list: s
                    .rules
                    .iter()
                    .any(|r| !r.executables.is_empty() && r.action == Action::Allow),
                name,
            });
        }
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_namespace: FxMap<String, Vec<usize>> = FxMap::default();
        let mut any_namespace = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            match &p.selector.namespace {
                Some(ns) => by_namespace.entry(ns.clone()).or_default().push(i),
                None => any_namespace.push(i),
            }
        }
        Ok(PolicySet {
            policies,
            by_namespace,
            any_namespace,
        })
    }

    /// Policies compiled.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The verdict for `event`.
    pub fn judge(&self, event: EnrichedEvent) -> Verdict {
        let (mode, outcome, policy, rule, signature_id, severity, sides) = {
            let view = event.view();
            let j = self.judgement(&Subject {
                view: &view,
                owned: Owned::Event(&event),
            });
            (
                j.mode,
                j.outcome,
                j.policy.map(str::to_owned),
                j.rule.map(str::to_owned),
                j.signature.id.to_owned(),
                j.signature.severity,
                j.sides.iter().map(owned_side).collect(),
            )
        };
        Verdict {
            event,
            mode,
            policy,
            rule,
            signature_id,
            severity,
            outcome,
            sides,
        }
    }

    /// Judges an `EnrichedEvent` message of the current schema version and
    /// appends the verdict message to `out` (the event's datum copied as it
    /// is: [`codec::write_verdict`]). `Ok(false)`, writing nothing, when the
    /// message is not a current `EnrichedEvent` (decode it with
    /// `decode_any` and use [`PolicySet::judge`]); an error when it is one
    /// but does not decode.
    pub fn judge_message(&self, message: &[u8], out: &mut Vec<u8>) -> Result<bool, DecodeError> {
        if !codec::is_current(message, SchemaKind::EnrichedEvent) {
            return Ok(false);
        }
        let view = codec::decode_enriched_view(message)?;
        let subject = Subject {
            view: &view,
            owned: Owned::Message(message, OnceCell::new()),
        };
        let j = self.judgement(&subject);
        let tail = VerdictTail {
            mode: j.mode,
            policy: j.policy,
            rule: j.rule,
            signature_id: j.signature.id,
            severity: j.signature.severity,
            outcome: j.outcome,
            sides: &j.sides,
        };
        Ok(codec::write_verdict(message, &tail, out))
    }

    /// The decision about one event.
    fn judgement<'x>(&'x self, subject: &Subject<'_, 'x>) -> Judgement<'x> {
        let event = subject.view;
        // The event is judged from the side that saw it (the connect from the
        // source's egress policies, the accept from the destination's
        // ingress policies): that decides its mode, outcome and CEF.
        let own = match &event.body {
            EventBodyView::L4(l4) if l4.direction != Direction::Egress => &event.dst,
            EventBodyView::L4(_) | EventBodyView::Dns(_) | EventBodyView::Runtime(_) => &event.src,
        };
        let best = self.best(own, |p| decide(p, subject));
        // A connection also gets the other side's decision, so that it is
        // counted under the most severe of the two (`Verdict::sides`).
        let mut sides: SmallVec<[SideView<'x>; 2]> = match &event.body {
            EventBodyView::L4(l4) if l4.direction != Direction::None => {
                let other = match l4.direction {
                    Direction::Egress => Direction::Ingress,
                    _ => Direction::Egress,
                };
                let other_peer = match other {
                    Direction::Egress => &event.src,
                    _ => &event.dst,
                };
                let theirs = self.best(other_peer, |p| {
                    (p.kind == Kind::NetworkPolicy)
                        .then(|| network(p, subject, l4, other))
                        .flatten()
                });
                [(l4.direction, best.as_ref()), (other, theirs.as_ref())]
                    .into_iter()
                    .filter_map(|(direction, d)| d.map(|d| d.side(direction)))
                    .collect()
            }
            EventBodyView::L4(_) | EventBodyView::Dns(_) | EventBodyView::Runtime(_) => {
                SmallVec::new()
            }
        };
        let refused = blocked_by(event.body.blocked_by());
        if let (Some(_), EventBodyView::L4(l4)) = (refused, &event.body) {
            let own_side = if l4.direction == Direction::Ingress {
                Side::Ingress
            } else {
                Side::Egress
            };
            for side in sides.iter_mut().filter(|s| s.side == own_side) {
                side.mode = Mode::Enforce;
                side.outcome = Outcome::Blocked;
            }
        }
        let kind = match &event.body {
            EventBodyView::L4(e) => EventKind::L4(e.kind),
            EventBodyView::Dns(e) => EventKind::Dns(e.kind),
            EventBodyView::Runtime(e) => EventKind::Runtime(e.kind),
        };
        let (mode, outcome, policy, rule) = match (&best, refused) {
            // The kernel refused it: that is what happened, whatever the
            // policies say now (a policy may have changed since).
            (Some(d), Some(_)) if d.violation && d.policy.mode == PolicyMode::Enforce => (
                Mode::Enforce,
                Outcome::Blocked,
                Some(d.policy.name.as_str()),
                d.rule,
            ),
            (_, Some((policy, rule))) => (Mode::Enforce, Outcome::Blocked, Some(policy), rule),
            (None, None) => (Mode::Other, Outcome::Allowed, None, None),
            (Some(d), None) => (d.mode(), d.outcome(), Some(d.policy.name.as_str()), d.rule),
        };
        Judgement {
            mode,
            outcome,
            policy,
            rule,
            signature: signature(kind, outcome),
            sides,
        }
    }

    /// The highest-ranked decision of the policies that can cover `local`
    /// (scoped by its namespace, plus those for any namespace); the lower
    /// index (earlier name) wins a tie in rank.
    fn best<'p>(
        &'p self,
        local: &PeerView<'_>,
        decide: impl Fn(&'p Policy) -> Option<Decision<'p>>,
    ) -> Option<Decision<'p>> {
        let scoped = local
            .namespace
            .and_then(|ns| self.by_namespace.get(ns))
            .map_or(&[][..], Vec::as_slice);
        let mut best: Option<(usize, Decision<'_>)> = None;
        for &i in scoped.iter().chain(&self.any_namespace) {
            if let Some(d) = decide(&self.policies[i])
                && best
                    .as_ref()
                    .is_none_or(|(j, b)| d.rank() > b.rank() || (d.rank() == b.rank() && i < *j))
            {
                best = Some((i, d));
            }
        }
        best.map(|(_, d)| d)
    }
}

/// The decision about one event, borrowing the policies' and the event's
/// text.
struct Judgement<'x> {
    mode: Mode,
    outcome: Outcome,
    policy: Option<&'x str>,
    rule: Option<&'x str>,
    signature: Signature,
    sides: SmallVec<[SideView<'x>; 2]>,
}

fn owned_side(side: &SideView<'_>) -> SideDecision {
    SideDecision {
        side: side.side,
        mode: side.mode,
        outcome: side.outcome,
        policy: side.policy.map(str::to_owned),
        rule: side.rule.map(str::to_owned),
    }
}

/// The policy (`namespace/name`) and rule of the kernel's refusal, when the
/// event says the node refused it (`blocked_by` is `namespace/name/rule`, or
/// `namespace/name` for an allow-list with no rule).
fn blocked_by(by: Option<&str>) -> Option<(&str, Option<&str>)> {
    let by = by?;
    let mut parts = by.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(name), rule) => Some((&by[..ns.len() + 1 + name.len()], rule)),
        _ => Some((by, None)),
    }
}

struct Decision<'p> {
    policy: &'p Policy,
    rule: Option<&'p str>,
    violation: bool,
    specificity: u32,
}

impl<'p> Decision<'p> {
    fn mode(&self) -> Mode {
        match self.policy.mode {
            PolicyMode::Audit => Mode::Audit,
            PolicyMode::Enforce => Mode::Enforce,
        }
    }

    fn outcome(&self) -> Outcome {
        match (self.violation, self.policy.mode) {
            (false, _) => Outcome::Allowed,
            (true, PolicyMode::Audit) => Outcome::Audited,
            // Blocked only when the node's kernel says it refused the
            // action (its own event); a judgement alone prevents nothing.
            (true, PolicyMode::Enforce) => Outcome::NotPrevented,
        }
    }

    /// This decision as the `direction` side of a connection.
    fn side(&self, direction: Direction) -> SideView<'p> {
        SideView {
            side: match direction {
                Direction::Ingress => Side::Ingress,
                Direction::Egress | Direction::None => Side::Egress,
            },
            mode: self.mode(),
            outcome: self.outcome(),
            policy: Some(self.policy.name.as_str()),
            rule: self.rule,
        }
    }

    /// Higher decides: violations over allows, enforce over audit, then
    /// the more specific rule; the earlier policy name wins ties.
    fn rank(&self) -> (bool, bool, u32) {
        (
            self.violation,
            self.policy.mode == PolicyMode::Enforce,
            self.specificity,
        )
    }
}

pub(crate) fn pick<'p, I>(candidates: I, allow_list: bool) -> (Option<&'p str>, bool, u32)
where
    I: Iterator<Item = (&'p str, Action, u32)>,
{
    // Most specific; a tie goes to deny.
    let best = candidates.max_by_key(|(_, action, spec)| (*spec, *action == Action::Deny));
    match best {
        Some((name, action, spec)) => (Some(name), action == Action::Deny, spec),
        None => (None, allow_list, 0),
    }
}

fn decide<'p>(policy: &'p Policy, e: &Subject<'_, '_>) -> Option<Decision<'p>> {
    match &e.view.body {
        EventBodyView::L4(l4) => (policy.kind == Kind::NetworkPolicy)
            .then(|| network(policy, e, l4, l4.direction))
            .flatten(),
        EventBodyView::Dns(_) => (policy.kind == Kind::NetworkPolicy
            && policy.selector.matches(&e.view.src))
        .then_some(Decision {
            policy,
            rule: None,
            violation: false,
            specificity: 0,
        }),
        EventBodyView::Runtime(rt) => runtime(policy, e, rt),
    }
}

fn runtime<'p>(
    policy: &'p Policy,
    e: &Subject<'_, '_>,
    rt: &RuntimeEventView<'_>,
) -> Option<Decision<'p>> {
    if policy.kind != Kind::RuntimePolicy || !policy.selector.matches(&e.view.src) {
        return None;
    }
    let (rule, violation, specificity) =
        match rt.kind {
            RuntimeKind::ProcessExec => {
                let matching =
                    policy.rules.iter().filter_map(|r| {
                        let set = r.executables.as_ref()?;
                        (set.is_match(rt.binary) && condition_holds(r.when.as_ref(), e))
                            .then_some((r.name.as_str(), r.action, 1 + u32::from(r.when.is_some())))
                    });
                pick(matching, policy.exec_allow_list)
            }
            RuntimeKind::ProcessExit => (None, false, 0),
            kind => {
                let path = rt.path.unwrap_or_default();
                let applies = |(set, ops): &(GlobSet, Vec<RuntimeKind>)| {
                    (ops.is_empty() || ops.contains(&kind)) && set.is_match(path)
                };
                let matching = policy.rules.iter().filter_map(|r| {
                    let files = r.files.as_ref()?;
                    (applies(files) && condition_holds(r.when.as_ref(), e)).then_some((
                        r.name.as_str(),
                        r.action,
                        1 + u32::from(!files.1.is_empty()) + u32::from(r.when.is_some()),
                    ))
                });
                let allow_list = policy.rules.iter().any(|r| {
                    r.action == Action::Allow
                        && r.files
                            .as_ref()
                            .is_some_and(|(_, ops)| ops.is_empty() || ops.contains(&kind))
                });
                pick(matching, allow_list)
            }
        };
    Some(Decision {
        policy,
        rule,
        violation,
        specificity,
    })
}

/// `policy`'s decision about the `direction` side of the connection `l4`
/// (egress: the source's policies; ingress: the destination's).
fn network<'p>(
    policy: &'p Policy,
    e: &Subject<'_, '_>,
    l4: &L4EventView<'_>,
    direction: Direction,
) -> Option<Decision<'p>> {
    let v = e.view;
    let (local, remote, remote_ip, rules) = match direction {
        Direction::Egress => (&v.src, &v.dst, l4.dst.ip.0, &policy.egress),
        Direction::Ingress => (&v.dst, &v.src, l4.src.ip.0, &policy.ingress),
        Direction::None => (&v.dst, &v.src, l4.src.ip.0, &policy.ingress),
    };
    if !policy.selector.matches(local) {
        return None;
    }
    if direction == Direction::None {
        return Some(Decision {
            policy,
            rule: None,
            violation: false,
            specificity: 0,
        });
    }
    let matching = rules.for_port(l4.dst.port).filter_map(|r| {
        r.matches(e, remote, remote_ip, l4.dst.port, l4.protocol)
            .map(|s| (r.name.as_str(), r.action, s))
    });
    let (rule, violation, specificity) = pick(matching, rules.allow_list);
    Some(Decision {
        policy,
        rule,
        violation,
        specificity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_what_their_cidr_contains() {
        let nets = [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.1.2.0/24",
            "10.1.2.3/32",
            "169.254.169.254/32",
            "::/0",
            "fd00::/8",
            "fd00::1:0/112",
            "fd00::1/128",
            "::ffff:10.0.0.0/104",
        ];
        let ips = [
            "10.1.2.3",
            "10.1.3.3",
            "10.255.0.1",
            "11.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "fd00::1",
            "fd00::1:5",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::",
        ];
        for net in nets {
            let net: IpNet = net.parse().expect("net");
            let range = Range::new(net);
            for ip in ips {
                let ip: IpAddr = ip.parse().expect("ip");
                assert_eq!(range.contains(ip), net.contains(&ip), "{net} {ip}");
            }
        }
    }
}
