//! Enforcement at the node: what of the enforce-mode policies a node's
//! kernel can apply, worked out with the same compiled rules the verdicts
//! use, so the kernel never refuses what a verdict would allow.
//!
//! - [`EnforcementRecord`]: one enforce-mode policy as published by the
//!   policy stage on the compacted `tapwire.enforcement` topic (key: the
//!   policy's `namespace/name`; a tombstone when it is deleted or no longer
//!   enforce-mode). JSON, versioned by its `version` field.
//! - [`plan`]: for the pods of one node, the kernel's tables: per pod and
//!   direction, a decision for every protocol, port class and address
//!   prefix the rules mention ([`NetEntry`]: longest prefix decides, as the
//!   kernel's LPM trie looks it up), and the executables to kill at exec
//!   ([`ExecEntry`]).
//!
//! What the kernel cannot express is left out and said so in
//! [`Plan::not_enforced`] (verdicts then say `not_prevented`): a policy
//! direction with a `when` condition or a `dnsName` peer (the decision
//! depends on more than address, port and protocol), executables outside
//! the candidate paths the agent lists (globs cannot be matched in the
//! kernel), and file operations (a tracepoint cannot refuse them).
//! Leaving a whole policy out only ever removes denials: across policies a
//! violation of any one decides.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tapwire_schemas::events::{PodMetadata, Protocol};

use crate::compile::{NetRule, NetRules, Policy, PolicySet, pick};
use crate::document::{Document, Kind, PolicyMode};

/// The version of [`EnforcementRecord`] this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// One enforce-mode policy on `tapwire.enforcement`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcementRecord {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// `namespace/name`, also the record key.
    pub policy: String,
    /// The policy as the policy stage compiled it.
    pub document: Document,
}

/// An enforcement record that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not JSON of the record's shape.
    #[error("enforcement record does not decode: {0}")]
    Decode(String),
    /// Written by a newer version.
    #[error("enforcement record version {0} is not {RECORD_VERSION}")]
    Version(u32),
    /// The key is not the policy the record carries.
    #[error("enforcement record key {key:?} names another policy than {policy:?}")]
    Key {
        /// The record key.
        key: String,
        /// The policy in the value.
        policy: String,
    },
    /// The document does not compile.
    #[error("enforcement record: {0}")]
    Compile(#[from] crate::CompileError),
}

/// The `namespace/name` a policy is known by.
pub fn policy_name(d: &Document) -> String {
    format!(
        "{}/{}",
        d.metadata.namespace.as_deref().unwrap_or("-"),
        d.metadata.name
    )
}

/// The records to publish for `documents`: one per enforce-mode policy,
/// keyed by its name (audit policies are not enforced anywhere).
pub fn records(documents: &[Document]) -> BTreeMap<String, Vec<u8>> {
    documents
        .iter()
        .filter(|d| d.spec.mode == PolicyMode::Enforce)
        .map(|d| {
            let record = EnforcementRecord {
                version: RECORD_VERSION,
                policy: policy_name(d),
                document: d.clone(),
            };
            // A document always serializes: plain strings, numbers, maps.
            let payload = serde_json::to_vec(&record).unwrap_or_default();
            (record.policy, payload)
        })
        .collect()
}

/// Reads the record under `key`, checking it compiles on its own.
pub fn decode(key: &str, payload: &[u8]) -> Result<EnforcementRecord, RecordError> {
    let record: EnforcementRecord =
        serde_json::from_slice(payload).map_err(|e| RecordError::Decode(e.to_string()))?;
    if record.version != RECORD_VERSION {
        return Err(RecordError::Version(record.version));
    }
    if record.policy != key || policy_name(&record.document) != key {
        return Err(RecordError::Key {
            key: key.to_owned(),
            policy: record.policy,
        });
    }
    PolicySet::compile(std::slice::from_ref(&record.document))?;
    Ok(record)
}

/// Which side of a connection an entry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlanDirection {
    /// Connections the pod makes (the kernel's connect and sendmsg hooks).
    Egress,
    /// Connections to the pod (the kernel's ingress hook).
    Ingress,
}

/// One decision of the kernel's network table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetEntry {
    /// The local pod (its containers' cgroups get the entry).
    pub pod_uid: String,
    /// Egress or ingress.
    pub direction: PlanDirection,
    /// IP protocol number (6 TCP, 17 UDP).
    pub protocol: u8,
    /// The accepting side's port; 0: every port with no entry of its own.
    pub port: u16,
    /// The remote addresses; the longest matching prefix decides.
    pub net: IpNet,
    /// Refuse (true) or let through.
    pub deny: bool,
    /// `namespace/policy/rule` (or `namespace/policy` for an allow-list
    /// nothing allowed) when `deny`.
    pub rule: String,
}

/// An executable the kernel kills at exec in one pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecEntry {
    /// The pod.
    pub pod_uid: String,
    /// The path as exec names it.
    pub path: String,
    /// `namespace/policy/rule`, or `namespace/policy` for an allow-list.
    pub rule: String,
}

/// The kernel's tables for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Network decisions, sorted.
    pub network: Vec<NetEntry>,
    /// Executables to kill, sorted.
    pub exec: Vec<ExecEntry>,
    /// What of the enforce-mode policies covering these pods the kernel
    /// does not apply, and why (one line each, sorted, no repeats).
    pub not_enforced: Vec<String>,
}

/// Works out the kernel's tables for `local` (the pods of one node) under
/// the enforce-mode policies of `set`. `cluster` is every known pod (pod
/// peers resolve to their addresses); `candidates` are the executable
/// paths worth listing (the kernel matches exact paths, not globs).
pub fn plan(
    set: &PolicySet,
    cluster: &[&PodMetadata],
    local: &[&PodMetadata],
    candidates: &[String],
) -> Plan {
    let mut out = Plan::default();
    let mut not_enforced = BTreeSet::new();
    for pod in local {
        for direction in [PlanDirection::Egress, PlanDirection::Ingress] {
            network(
                set,
                cluster,
                pod,
                direction,
                &mut out.network,
                &mut not_enforced,
            );
        }
        executables(set, pod, candidates, &mut out.exec, &mut not_enforced);
    }
    out.network.sort();
    out.exec.sort();
    out.not_enforced = not_enforced.into_iter().collect();
    out
}

fn covers(policy: &Policy, pod: &PodMetadata) -> bool {
    policy.mode == PolicyMode::Enforce
        && policy
            .selector
            .matches_pod(Some(pod.namespace.as_str()), &pod.labels)
}

fn rules_of(policy: &Policy, direction: PlanDirection) -> &NetRules {
    match direction {
        PlanDirection::Egress => &policy.egress,
        PlanDirection::Ingress => &policy.ingress,
    }
}

/// Why the kernel cannot apply `rule` exactly, if it cannot.
fn inexpressible(rule: &NetRule) -> Option<&'static str> {
    if rule.when.is_some() {
        Some("a `when` condition")
    } else if rule.peers.iter().any(|p| p.dns.is_some()) {
        Some("a dnsName peer")
    } else {
        None
    }
}

/// A peer of a rule, at the prefix the kernel looks it up by.
struct Listed {
    policy: usize,
    rule: usize,
    specificity: u32,
}

fn network(
    set: &PolicySet,
    cluster: &[&PodMetadata],
    pod: &PodMetadata,
    direction: PlanDirection,
    out: &mut Vec<NetEntry>,
    not_enforced: &mut BTreeSet<String>,
) {
    let label = match direction {
        PlanDirection::Egress => "egress",
        PlanDirection::Ingress => "ingress",
    };
    let mut policies: Vec<&Policy> = Vec::new();
    for p in &set.policies {
        if p.kind != Kind::NetworkPolicy
            || !covers(p, pod)
            || rules_of(p, direction).rules.is_empty()
        {
            continue;
        }
        match rules_of(p, direction)
            .rules
            .iter()
            .find_map(|r| inexpressible(r).map(|why| (r.name.as_str(), why)))
        {
            Some((rule, why)) => {
                not_enforced.insert(format!(
                    "{}: {label} not enforced in the kernel: rule {rule} has {why}",
                    p.name
                ));
            }
            None => policies.push(p),
        }
    }
    if policies.is_empty() {
        return;
    }
    // Every prefix a peer names, with who names it there.
    let mut listed: HashMap<IpNet, Vec<Listed>> = HashMap::new();
    let mut ports = BTreeSet::new();
    for (pi, p) in policies.iter().enumerate() {
        for (ri, r) in rules_of(p, direction).rules.iter().enumerate() {
            ports.extend(r.ports.iter().copied());
            let fixed = u32::from(!r.ports.is_empty()) + u32::from(!r.protocols.is_empty());
            for peer in &r.peers {
                let specificity = fixed + peer.specificity();
                let nets: Vec<IpNet> = match &peer.pod {
                    None => peer.cidr.iter().map(IpNet::trunc).collect(),
                    Some(selector) => cluster
                        .iter()
                        .filter(|c| c.end_ns.is_none() && !c.host_network)
                        .filter(|c| selector.matches_pod(Some(c.namespace.as_str()), &c.labels))
                        .flat_map(|c| c.ips.iter().map(|ip| IpNet::from(ip.0)))
                        .filter(|net| peer.cidr.is_none_or(|cidr| cidr.contains(net)))
                        .collect(),
                };
                for net in nets {
                    listed.entry(net).or_default().push(Listed {
                        policy: pi,
                        rule: ri,
                        specificity,
                    });
                }
            }
        }
    }
    let mut prefixes: Vec<IpNet> = listed.keys().copied().collect();
    for any in ["0.0.0.0/0", "::/0"] {
        let net: IpNet = any.parse().expect("literal");
        if !listed.contains_key(&net) {
            prefixes.push(net);
        }
    }
    prefixes.sort();
    let port_classes: Vec<u16> = std::iter::once(0).chain(ports).collect();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let mut other: Vec<(bool, String)> = Vec::new();
        for &port in &port_classes {
            let decisions: Vec<(bool, String)> = prefixes
                .iter()
                .map(|net| decide(&policies, direction, &listed, *net, port, protocol))
                .collect();
            let denies = decisions.iter().any(|(deny, _)| *deny);
            let keep = if port == 0 {
                denies
            } else {
                // A port with no entry of its own is looked up as port 0:
                // it needs entries only where that would decide otherwise.
                decisions != other && (denies || other.iter().any(|(d, _)| *d))
            };
            if keep {
                for (net, (deny, rule)) in prefixes.iter().zip(&decisions) {
                    out.push(NetEntry {
                        pod_uid: pod.uid.clone(),
                        direction,
                        protocol: match protocol {
                            Protocol::Tcp => 6,
                            Protocol::Udp => 17,
                        },
                        port,
                        net: *net,
                        deny: *deny,
                        rule: rule.clone(),
                    });
                }
            }
            if port == 0 {
                other = decisions;
            }
        }
    }
}

/// The decision for remote addresses in `net` (and in no longer listed
/// prefix) on `port` (0: a port no rule names): a violation of any policy
/// refuses, as in the verdicts.
fn decide(
    policies: &[&Policy],
    direction: PlanDirection,
    listed: &HashMap<IpNet, Vec<Listed>>,
    net: IpNet,
    port: u16,
    protocol: Protocol,
) -> (bool, String) {
    // The peers matching every address of `net`: those listed at `net` or
    // at a shorter prefix containing it.
    let mut peer_spec: HashMap<(usize, usize), u32> = HashMap::new();
    for len in 0..=net.prefix_len() {
        let Ok(at) = IpNet::new(net.addr(), len).map(|n| n.trunc()) else {
            continue;
        };
        for l in listed.get(&at).into_iter().flatten() {
            let spec = peer_spec.entry((l.policy, l.rule)).or_insert(0);
            *spec = (*spec).max(l.specificity);
        }
    }
    for (pi, p) in policies.iter().enumerate() {
        let rules = rules_of(p, direction);
        let candidates = rules.rules.iter().enumerate().filter_map(|(ri, r)| {
            let port_ok = if port == 0 {
                r.ports.is_empty()
            } else {
                r.ports.is_empty() || r.ports.contains(&port)
            };
            if !port_ok || (!r.protocols.is_empty() && !r.protocols.contains(&protocol)) {
                return None;
            }
            let spec = if r.peers.is_empty() {
                u32::from(!r.ports.is_empty()) + u32::from(!r.protocols.is_empty())
            } else {
                *peer_spec.get(&(pi, ri))?
            };
            Some((r.name.as_str(), r.action, spec))
        });
        let (rule, violation, _) = pick(candidates, rules.allow_list);
        if violation {
            let name = match rule {
                Some(rule) => format!("{}/{rule}", p.name),
                None => p.name.clone(),
            };
            return (true, name);
        }
    }
    (false, String::new())
}

fn executables(
    set: &PolicySet,
    pod: &PodMetadata,
    candidates: &[String],
    out: &mut Vec<ExecEntry>,
    not_enforced: &mut BTreeSet<String>,
) {
    let mut policies = Vec::new();
    for p in &set.policies {
        let exec_rules = || p.rules.iter().filter(|r| r.executables.is_some());
        if p.kind != Kind::RuntimePolicy || !covers(p, pod) || exec_rules().next().is_none() {
            continue;
        }
        if let Some(r) = exec_rules().find(|r| r.when.is_some()) {
            not_enforced.insert(format!(
                "{}: executables not enforced in the kernel: rule {} has a `when` condition",
                p.name, r.name
            ));
            continue;
        }
        if p.exec_allow_list {
            not_enforced.insert(format!(
                "{}: an executable allow-list is enforced in the kernel only for the paths the agent lists",
                p.name
            ));
        }
        policies.push(p);
    }
    for p in &set.policies {
        if p.kind == Kind::RuntimePolicy
            && covers(p, pod)
            && p.rules.iter().any(|r| r.files.is_some())
        {
            not_enforced.insert(format!(
                "{}: file operations cannot be refused from a tracepoint; violations are reported as not prevented",
                p.name
            ));
        }
    }
    if policies.is_empty() {
        return;
    }
    for path in candidates {
        for p in &policies {
            let matching = p.rules.iter().filter_map(|r| {
                let set = r.executables.as_ref()?;
                set.is_match(path).then_some((r.name.as_str(), r.action, 1))
            });
            let (rule, violation, _) = pick(matching, p.exec_allow_list);
            if violation {
                out.push(ExecEntry {
                    pod_uid: pod.uid.clone(),
                    path: path.clone(),
                    rule: match rule {
                        Some(rule) => format!("{}/{rule}", p.name),
                        None => p.name.clone(),
                    },
                });
                break;
            }
        }
    }
}

/// The paths under the usual executable directories of the file system at
/// `root` (`/` for the node, `/proc/PID/root` for a container), as exec
/// names them (`/bin/sh`, `/usr/bin/sh`, ...), plus the literal paths in
/// `patterns` (glob patterns without wildcards).
pub fn candidate_paths(root: &std::path::Path, patterns: &[String]) -> Vec<String> {
    const DIRS: [&str; 8] = [
        "/bin",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/usr/lib/apt",
        "/opt/bin",
    ];
    let mut out = BTreeSet::new();
    for dir in DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir.trim_start_matches('/'))) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                out.insert(format!("{dir}/{name}"));
            }
        }
    }
    for p in patterns {
        if p.starts_with('/') && !p.contains(['*', '?', '[', '{']) {
            out.insert(p.clone());
        }
    }
    out.into_iter().collect()
}

/// The executable patterns of every runtime rule in `documents`.
pub fn executable_patterns(documents: &[Document]) -> Vec<String> {
    documents
        .iter()
        .flat_map(|d| d.spec.rules.iter())
        .flat_map(|r| r.executables.iter().cloned())
        .collect()
}
