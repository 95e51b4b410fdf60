//! Enforcement at the node: the agent follows `tapwire.enforcement` (the
//! enforce-mode policies the policy stage publishes) and `tapwire.pods`,
//! works out the kernel's tables for the pods of its own node
//! ([`tapwire_policy_engine::enforce::plan`]) and keeps the programs' maps
//! in line with them.
//!
//! - [`EnforceState`]: the policies and pods followed, and the plan; no
//!   kernel in it (tested on its own).
//! - [`Tables`]: the `enforced`, `net_rules` and `exec_rules` maps, written
//!   as differences so that what is unchanged is never briefly missing.
//! - [`Names`]: rule names and pod addresses behind the indices the
//!   kernel's refusals carry, shared with the ring buffer reader.
//!
//! A pod's containers are found by their ids in the cgroup v2 filesystem
//! (the kubelet's naming: `cri-containerd-<id>.scope` and alike); a pod whose
//! containers have no cgroup yet is enforced as soon as they have one (the
//! tables are checked every second). The cgroup programs are attached to the
//! root of the cgroup v2 hierarchy and look a process's own cgroup up, so a
//! cgroup without entries costs one hash lookup per connect.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tapwire_cluster::ClusterRecord;
use tapwire_policy_engine::enforce::{self, ExecEntry, NetEntry, Plan, PlanDirection};
use tapwire_policy_engine::{Document, PolicySet};
use tapwire_schemas::PodMetadata;

use super::owners::container_in_path;
use super::wire::{
    DIR_EGRESS, DIR_INGRESS, ENFORCE_EGRESS, ENFORCE_EXEC, ENFORCE_INGRESS, ExecKey, NetMatch,
    NetVerdict,
};

/// Counts of what was not used, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Enforcement records that do not decode or compile.
    pub undecodable: u64,
    /// Pod records that do not decode.
    pub bad_pods: u64,
}

/// The policies and pods followed.
#[derive(Debug, Default)]
pub struct EnforceState {
    node: String,
    documents: BTreeMap<String, Document>,
    pods: HashMap<String, PodMetadata>,
    /// What was not used.
    pub skipped: Skipped,
}

impl EnforceState {
    /// For the pods of `node`.
    pub fn new(node: &str) -> Self {
        EnforceState {
            node: node.to_owned(),
            ..Default::default()
        }
    }

    /// Applies a record of `tapwire.enforcement` (an empty payload is a
    /// tombstone: the policy is withdrawn). A record that cannot be used is
    /// counted and returned as an error; the policy's previous version
    /// stays in force (enforcement of everything else is unaffected).
    pub fn policy_record(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<bool, enforce::RecordError> {
        let key = String::from_utf8_lossy(key.unwrap_or_default()).into_owned();
        if payload.is_empty() {
            return Ok(self.documents.remove(&key).is_some());
        }
        match enforce::decode(&key, payload) {
            Ok(record) => {
                let changed = self.documents.get(&key) != Some(&record.document);
                self.documents.insert(key, record.document);
                Ok(changed)
            }
            Err(err) => {
                self.skipped.undecodable += 1;
                Err(err)
            }
        }
    }

    /// Applies a record of `tapwire.pods`; whether a pod changed.
    pub fn cluster_record(&mut self, record: ClusterRecord) -> bool {
        match record {
            ClusterRecord::Pod(pod) => {
                if pod.end_ns.is_some() {
                    self.pods.remove(&pod.uid).is_some()
                } else if self.pods.get(&pod.uid) != Some(&pod) {
                    self.pods.insert(pod.uid.clone(), pod);
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    /// Policies followed.
    pub fn policies(&self) -> usize {
        self.documents.len()
    }

    /// The live pods of this node.
    pub fn local_pods(&self) -> Vec<&PodMetadata> {
        let mut pods: Vec<&PodMetadata> = self
            .pods
            .values()
            .filter(|p| p.header.node == self.node && !p.host_network)
            .collect();
        pods.sort_by(|a, b| a.uid.cmp(&b.uid));
        pods
    }

    /// A pod by uid.
    pub fn pod(&self, uid: &str) -> Option<&PodMetadata> {
        self.pods.get(uid)
    }

    /// The kernel's tables for this node's pods; `roots` are the file
    /// systems whose executables are listed (the node's, the containers').
    pub fn plan(&self, roots: &[PathBuf]) -> Plan {
        let documents: Vec<Document> = self.documents.values().cloned().collect();
        // Each record compiled on its own when it came; together they
        // compile unless two share a name, which keys rule out.
        let set = match PolicySet::compile(&documents) {
            Ok(set) => set,
            Err(err) => {
                tracing::error!(error = %err, "enforce-mode policies do not compile together: nothing enforced");
                return Plan::default();
            }
        };
        let cluster: Vec<&PodMetadata> = self.pods.values().collect();
        let patterns = enforce::executable_patterns(&documents);
        let mut candidates = BTreeSet::new();
        if !patterns.is_empty() {
            for root in roots {
                candidates.extend(enforce::candidate_paths(root, &patterns));
            }
        }
        let candidates: Vec<String> = candidates.into_iter().collect();
        enforce::plan(&set, &cluster, &self.local_pods(), &candidates)
    }
}

/// cgroup v2 directories (id, path) of every container, by container id.
pub fn container_cgroups(root: &Path) -> HashMap<String, Vec<(u64, PathBuf)>> {
    let mut out: HashMap<String, Vec<(u64, PathBuf)>> = HashMap::new();
    super::owners::each_cgroup(root, |id, path| {
        if let Some(container) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(container_in_path)
        {
            out.entry(container)
                .or_default()
                .push((id, path.to_path_buf()));
        }
    });
    out
}

/// What the kernel's refusals name by index.
#[derive(Debug, Default)]
pub struct Names {
    rules: Vec<String>,
    index: HashMap<String, u32>,
    /// Pod addresses by cgroup id (the source of a refused connect, which
    /// has no bound address yet).
    addresses: HashMap<u64, Vec<IpAddr>>,
}

impl Names {
    /// The index of `rule`, added when new.
    fn index(&mut self, rule: &str) -> u32 {
        if let Some(&i) = self.index.get(rule) {
            return i;
        }
        let i = self.rules.len() as u32;
        self.rules.push(rule.to_owned());
        self.index.insert(rule.to_owned(), i);
        i
    }

    /// The rule behind index `i`.
    pub fn rule(&self, i: u32) -> Option<&str> {
        self.rules.get(i as usize).map(String::as_str)
    }

    /// An address of the pod of cgroup `id` in the family of `like`.
    pub fn address(&self, id: u64, v4: bool) -> Option<IpAddr> {
        self.addresses
            .get(&id)?
            .iter()
            .copied()
            .find(|ip| ip.is_ipv4() == v4)
    }
}

/// Names shared between the tables and the reader.
pub type SharedNames = Arc<Mutex<Names>>;

/// The net table key of an entry for one cgroup.
fn net_key(cgroup: u64, e: &NetEntry) -> (u32, NetMatch) {
    let mut addr = [0u8; 16];
    let family = match e.net.addr() {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            addr.copy_from_slice(&v6.octets());
            6
        }
    };
    (
        128 + u32::from(e.net.prefix_len()),
        NetMatch {
            cgroup_lo: cgroup as u32,
            cgroup_hi: (cgroup >> 32) as u32,
            direction: match e.direction {
                PlanDirection::Egress => DIR_EGRESS,
                PlanDirection::Ingress => DIR_INGRESS,
            },
            protocol: e.protocol,
            port: e.port,
            family,
            pad: [0; 3],
            addr,
        },
    )
}

fn exec_key(cgroup: u64, e: &ExecEntry) -> Option<ExecKey> {
    let bytes = e.path.as_bytes();
    // The kernel reads at most 255 bytes and a NUL.
    if bytes.len() >= 256 {
        return None;
    }
    let mut path = [0u8; 256];
    path[..bytes.len()].copy_from_slice(bytes);
    Some(ExecKey {
        cgroup_id: cgroup,
        path,
    })
}

/// The tables a plan asks for, per cgroup.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// cgroup id -> `tw_enforce_flags`.
    pub enforced: BTreeMap<u64, u32>,
    /// (prefixlen, match) -> verdict.
    pub net: HashMap<(u32, NetMatch), NetVerdict>,
    /// key -> rule index.
    pub exec: HashMap<ExecKey, u32>,
    /// Pods of the plan without any container cgroup yet.
    pub waiting: usize,
}

/// The tables for `plan` over the cgroups of `state`'s pods.
pub fn wanted(
    state: &EnforceState,
    plan: &Plan,
    cgroups: &HashMap<String, Vec<(u64, PathBuf)>>,
    names: &mut Names,
) -> Wanted {
    let mut out = Wanted::default();
    let mut of_pod: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut addresses = HashMap::new();
    let uids: BTreeSet<&str> = plan
        .network
        .iter()
        .map(|e| e.pod_uid.as_str())
        .chain(plan.exec.iter().map(|e| e.pod_uid.as_str()))
        .collect();
    for uid in uids {
        let Some(pod) = state.pod(uid) else { continue };
        let ids: Vec<u64> = pod
            .containers
            .iter()
            .flat_map(|c| cgroups.get(&c.id).into_iter().flatten())
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            out.waiting += 1;
        }
        for id in &ids {
            addresses.insert(*id, pod.ips.iter().map(|ip| ip.0).collect::<Vec<_>>());
        }
        of_pod.insert(uid, ids);
    }
    for e in &plan.network {
        let rule = if e.deny { names.index(&e.rule) } else { 0 };
        for &cg in of_pod.get(e.pod_uid.as_str()).into_iter().flatten() {
            *out.enforced.entry(cg).or_default() |= match e.direction {
                PlanDirection::Egress => ENFORCE_EGRESS,
                PlanDirection::Ingress => ENFORCE_INGRESS,
            };
            out.net.insert(
                net_key(cg, e),
                NetVerdict {
                    deny: u32::from(e.deny),
                    rule,
                },
            );
        }
    }
    for e in &plan.exec {
        let rule = names.index(&e.rule);
        for &cg in of_pod.get(e.pod_uid.as_str()).into_iter().flatten() {
            if let Some(key) = exec_key(cg, e) {
                *out.enforced.entry(cg).or_default() |= ENFORCE_EXEC;
                out.exec.insert(key, rule);
            }
        }
    }
    names.addresses = addresses;
    out
}

/// The programs' enforcement maps, and what was written to them.
#[cfg(not(tapwire_no_bpf))]
pub struct Tables {
    enforced: aya::maps::HashMap<aya::maps::MapData, u64, u32>,
    net: aya::maps::LpmTrie<aya::maps::MapData, [u8; 32], [u32; 2]>,
    exec: aya::maps::HashMap<aya::maps::MapData, [u8; 264], u32>,
    have: Wanted,
}

#[cfg(not(tapwire_no_bpf))]
impl Tables {
    /// Takes the maps out of the loaded object.
    pub fn take(bpf: &mut aya::Ebpf) -> Result<Tables, String> {
        let mut map = |name: &str| {
            bpf.take_map(name)
                .ok_or_else(|| format!("no {name} map in the object"))
        };
        let enforced = map("enforced")?;
        let net = map("net_rules")?;
        let exec = map("exec_rules")?;
        Ok(Tables {
            enforced: aya::maps::HashMap::try_from(enforced).map_err(|e| e.to_string())?,
            net: aya::maps::LpmTrie::try_from(net).map_err(|e| e.to_string())?,
            exec: aya::maps::HashMap::try_from(exec).map_err(|e| e.to_string())?,
            have: Wanted::default(),
        })
    }

    /// Brings the maps to `want`: new and changed entries first, then the
    /// cgroups' flags, then what is no longer wanted.
    pub fn write(&mut self, want: Wanted) -> Result<bool, String> {
        use aya::maps::lpm_trie::Key;
        let e = |what: &str, err: aya::maps::MapError| format!("writing {what}: {err}");
        for (k, v) in &want.net {
            if self.have.net.get(k) != Some(v) {
                self.net
                    .insert(&Key::new(k.0, k.1.to_bytes()), v.to_words(), 0)
                    .map_err(|err| e("net_rules", err))?;
            }
        }
        for (k, v) in &want.exec {
            if self.have.exec.get(k) != Some(v) {
                self.exec
                    .insert(k.to_bytes(), v, 0)
                    .map_err(|err| e("exec_rules", err))?;
            }
        }
        for (k, v) in &want.enforced {
            if self.have.enforced.get(k) != Some(v) {
                self.enforced
                    .insert(k, v, 0)
                    .map_err(|err| e("enforced", err))?;
            }
        }
        for k in self.have.enforced.keys() {
            if !want.enforced.contains_key(k) {
                let _ = self.enforced.remove(k);
            }
        }
        for k in self.have.net.keys() {
            if !want.net.contains_key(k) {
                let _ = self.net.remove(&Key::new(k.0, k.1.to_bytes()));
            }
        }
        for k in self.have.exec.keys() {
            if !want.exec.contains_key(k) {
                let _ = self.exec.remove(&k.to_bytes());
            }
        }
        let changed = self.have != want;
        self.have = want;
        Ok(changed)
    }
}

/// The cgroup programs: connect and sendmsg (egress) and ingress, attached
/// to the root of the cgroup v2 hierarchy.
#[cfg(not(tapwire_no_bpf))]
pub fn attach(bpf: &mut aya::Ebpf, root: &Path) -> Result<(), String> {
    use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr};
    // aya attaches through a bpf_link, which the kernel runs next to every
    // other program of the cgroup (links take no flags: `Single` is 0).
    const LINK: CgroupAttachMode = CgroupAttachMode::Single;
    let cgroup = std::fs::File::open(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for name in [
        "tw_enforce_connect4",
        "tw_enforce_connect6",
        "tw_enforce_sendmsg4",
        "tw_enforce_sendmsg6",
    ] {
        let prog: &mut CgroupSockAddr = bpf
            .program_mut(name)
            .ok_or_else(|| format!("{name} is not in the object"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| format!("{name}: {e}"))?;
        prog.load().map_err(|e| format!("loading {name}: {e}"))?;
        prog.attach(&cgroup, LINK)
            .map_err(|e| format!("attaching {name} to {}: {}", root.display(), chain(&e)))?;
    }
    let name = "tw_enforce_ingress";
    let prog: &mut CgroupSkb = bpf
        .program_mut(name)
        .ok_or_else(|| format!("{name} is not in the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| format!("{name}: {e}"))?;
    prog.load().map_err(|e| format!("loading {name}: {e}"))?;
    prog.attach(&cgroup, CgroupSkbAttachType::Ingress, LINK)
        .map_err(|e| format!("attaching {name} to {}: {}", root.display(), chain(&e)))?;
    Ok(())
}

/// An error and its causes, one after the other (aya's errors keep the
/// kernel's errno in their source).
#[cfg(not(tapwire_no_bpf))]
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// The file systems whose executables are listed: the node's and, for each
/// container cgroup of a local pod with a process, that process's root.
pub fn roots(state: &EnforceState, cgroups: &HashMap<String, Vec<(u64, PathBuf)>>) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/")];
    for pod in state.local_pods() {
        for c in &pod.containers {
            for (_, dir) in cgroups.get(&c.id).into_iter().flatten() {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                if let Some(pid) = procs.split_whitespace().next() {
                    out.push(PathBuf::from(format!("/proc/{pid}/root")));
                }
            }
        }
    }
    out
}

/// The agent's enforcement: the followed topics, the state, the maps.
#[cfg(not(tapwire_no_bpf))]
pub struct Enforcer {
    state: EnforceState,
    tables: Tables,
    /// Shared with the ring buffer reader.
    pub names: SharedNames,
    policies: tapwire_plumbing::bus::Follower,
    pods: tapwire_cluster::feed::ClusterFeed,
    root: PathBuf,
    plan: Plan,
    cgroups: HashMap<String, Vec<(u64, PathBuf)>>,
    /// Pods of the plan whose containers have no cgroup yet.
    waiting: usize,
}

#[cfg(not(tapwire_no_bpf))]
impl Enforcer {
    /// Attaches the cgroup programs, follows `tapwire.enforcement` and
    /// `tapwire.pods` on `bus` and writes the tables for everything they
    /// hold before returning, so an agent (re)started enforces what was
    /// enforced before it says it is ready. `Err`: why enforcement is off
    /// (the agent captures on).
    pub async fn start(
        bpf: &mut aya::Ebpf,
        bus: &tapwire_plumbing::stage::Bus,
        node: &str,
        shutdown: &tapwire_plumbing::shutdown::CancellationToken,
    ) -> Result<Option<Enforcer>, String> {
        let root = super::owners::cgroup2_root()
            .ok_or("no cgroup v2 hierarchy is mounted (the cgroup programs attach to it)")?;
        attach(bpf, &root)?;
        let tables = Tables::take(bpf)?;
        let mut policies = bus
            .follow(tapwire_schemas::topics::ENFORCEMENT, shutdown.clone())
            .map_err(|e| format!("following {}: {e}", tapwire_schemas::topics::ENFORCEMENT))?;
        let mut pods = tapwire_cluster::feed::ClusterFeed::open(bus, shutdown.clone())
            .map_err(|e| format!("following {}: {e}", tapwire_schemas::topics::PODS))?;
        let mut state = EnforceState::new(node);
        let loaded = policies
            .load(|m| apply_policy(&mut state, &m), shutdown)
            .await
            .map_err(|e| format!("reading {}: {e}", tapwire_schemas::topics::ENFORCEMENT))?;
        if loaded.is_none() {
            return Ok(None);
        }
        let loaded = pods
            .load(
                |r| {
                    state.cluster_record(r);
                },
                shutdown,
            )
            .await
            .map_err(|e| format!("reading {}: {e}", tapwire_schemas::topics::PODS))?;
        if loaded.is_none() {
            return Ok(None);
        }
        let mut enforcer = Enforcer {
            state,
            tables,
            names: SharedNames::default(),
            policies,
            pods,
            root,
            plan: Plan::default(),
            cgroups: HashMap::new(),
            waiting: 0,
        };
        enforcer.replan()?;
        Ok(Some(enforcer))
    }

    /// Policies followed and pods of this node.
    pub fn summary(&self) -> (usize, usize) {
        (self.state.policies(), self.state.local_pods().len())
    }

    /// Waits for the next change on either topic, applies it and whatever
    /// else already arrived; then the tables follow.
    pub async fn next_change(&mut self) -> Result<(), String> {
        tokio::select! {
            m = self.policies.records.recv() => match m {
                Some(m) => apply_policy(&mut self.state, &m),
                None => return std::future::pending().await,
            },
            r = self.pods.next() => match r {
                Some(r) => { self.state.cluster_record(r); }
                None => return std::future::pending().await,
            },
        }
        while let Ok(m) = self.policies.records.try_recv() {
            apply_policy(&mut self.state, &m);
        }
        let state = &mut self.state;
        self.pods.drain(|r| {
            state.cluster_record(r);
        });
        self.replan()
    }

    /// Every second: containers whose cgroup appeared since are enforced.
    pub fn tick(&mut self) -> Result<(), String> {
        if self.plan.network.is_empty() && self.plan.exec.is_empty() {
            return Ok(());
        }
        let cgroups = container_cgroups(&self.root);
        if cgroups != self.cgroups {
            self.cgroups = cgroups;
            self.write()?;
        }
        Ok(())
    }

    fn replan(&mut self) -> Result<(), String> {
        self.cgroups = container_cgroups(&self.root);
        let started = std::time::Instant::now();
        self.plan = self.state.plan(&roots(&self.state, &self.cgroups));
        for line in &self.plan.not_enforced {
            tracing::info!("{line}");
        }
        tracing::debug!(elapsed = ?started.elapsed(), "enforcement planned");
        self.write()
    }

    fn write(&mut self) -> Result<(), String> {
        let want = {
            let mut names = self.names.lock().map_err(|_| "names lock poisoned")?;
            wanted(&self.state, &self.plan, &self.cgroups, &mut names)
        };
        let (waiting, cgroups) = (want.waiting, want.enforced.len());
        let (net, exec) = (want.net.len(), want.exec.len());
        if self.tables.write(want)? {
            eprintln!(
                "capture: enforcing {} policies: {net} network entries, {exec} executables in {cgroups} cgroups",
                self.state.policies()
            );
        }
        if waiting != self.waiting && waiting > 0 {
            tracing::info!(
                pods = waiting,
                "pods to enforce have no container cgroup yet"
            );
        }
        self.waiting = waiting;
        tracing::info!(
            policies = self.state.policies(),
            cgroups,
            network_entries = net,
            executables = exec,
            "enforcement tables written"
        );
        Ok(())
    }

    /// Records that could not be used.
    pub fn skipped(&self) -> &Skipped {
        &self.state.skipped
    }
}

#[cfg(not(tapwire_no_bpf))]
fn apply_policy(state: &mut EnforceState, m: &tapwire_plumbing::bus::Message) {
    if let Err(err) = state.policy_record(m.key.as_deref(), &m.payload) {
        // tapwire_messages_dropped_total{stage="capture",reason="enforcement_record"}
        crate::agent::metrics().dropped("enforcement_record", 1);
        tracing::warn!(
            partition = m.partition,
            offset = m.offset,
            error = %err,
            skipped = state.skipped.undecodable,
            "enforcement record ignored; the rest stays enforced"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_schemas::{Container, EventHeader, EventId, Ip};

    fn pod(uid: &str, node: &str, ns: &str, app: &str, ip: &str, container: &str) -> PodMetadata {
        PodMetadata {
            header: EventHeader {
                id: EventId([0; 16]),
                timestamp_ns: 0,
                node: node.to_owned(),
                sensor_id: "s".to_owned(),
                node_ip: None,
            },
            uid: uid.to_owned(),
            name: app.to_owned(),
            namespace: ns.to_owned(),
            ips: vec![Ip(ip.parse().unwrap())],
            host_network: false,
            containers: vec![Container {
                id: container.to_owned(),
                name: "app".to_owned(),
                image: "i".to_owned(),
                image_digest: None,
            }],
            labels: [("app".to_owned(), app.to_owned())].into(),
            workload: None,
            start_ns: None,
            end_ns: None,
            security: None,
        }
    }

    const EGRESS: &str = r#"
apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: shop}
spec:
  mode: enforce
  selector: {matchLabels: {app: web}}
  egress:
    - {name: no-db-admin, action: deny, to: [{pod: {matchLabels: {app: db}}}], ports: [9000]}
"#;

    fn record(doc: &str) -> (String, Vec<u8>) {
        let docs = tapwire_policy_engine::parse("p.yaml", doc).unwrap();
        enforce::records(&docs).into_iter().next().unwrap()
    }

    #[test]
    fn a_denied_pod_port_gets_a_deny_entry_for_the_local_pods_only() {
        let mut state = EnforceState::new("n1");
        let (key, payload) = record(EGRESS);
        assert!(state.policy_record(Some(key.as_bytes()), &payload).unwrap());
        let c = "a".repeat(64);
        state.cluster_record(ClusterRecord::Pod(pod(
            "u1", "n1", "shop", "web", "10.0.0.1", &c,
        )));
        state.cluster_record(ClusterRecord::Pod(pod(
            "u2",
            "n2",
            "shop",
            "web",
            "10.0.0.2",
            &"b".repeat(64),
        )));
        state.cluster_record(ClusterRecord::Pod(pod(
            "u3",
            "n2",
            "shop",
            "db",
            "10.0.0.3",
            &"c".repeat(64),
        )));
        let plan = state.plan(&[]);
        let denies: Vec<&NetEntry> = plan.network.iter().filter(|e| e.deny).collect();
        assert_eq!(denies.len(), 2, "tcp and udp to the db pod: {denies:?}");
        for d in &denies {
            assert_eq!(d.pod_uid, "u1");
            assert_eq!(d.port, 9000);
            assert_eq!(d.net, "10.0.0.3/32".parse().unwrap());
            assert_eq!(d.rule, "shop/web-egress/no-db-admin");
        }
        // Any other address on that port is let through.
        assert!(
            plan.network
                .iter()
                .any(|e| !e.deny && e.port == 9000 && e.net.prefix_len() == 0)
        );

        let mut cgroups = HashMap::new();
        cgroups.insert(c.clone(), vec![(77u64, PathBuf::from("/x"))]);
        let mut names = Names::default();
        let want = wanted(&state, &plan, &cgroups, &mut names);
        assert_eq!(want.enforced.get(&77), Some(&ENFORCE_EGRESS));
        let (_, deny) = want.net.iter().find(|(_, v)| v.deny == 1).unwrap();
        assert_eq!(names.rule(deny.rule), Some("shop/web-egress/no-db-admin"));
        assert_eq!(names.address(77, true), Some("10.0.0.1".parse().unwrap()));

        // A tombstone withdraws the policy: nothing is enforced.
        assert!(state.policy_record(Some(key.as_bytes()), &[]).unwrap());
        let plan = state.plan(&[]);
        assert!(plan.network.is_empty());
        assert!(
            wanted(&state, &plan, &cgroups, &mut names)
                .enforced
                .is_empty()
        );
    }

    #[test]
    fn a_record_that_does_not_decode_is_counted_and_the_others_stay() {
        let mut state = EnforceState::new("n1");
        let (key, payload) = record(EGRESS);
        state.policy_record(Some(key.as_bytes()), &payload).unwrap();
        let err = state
            .policy_record(Some(b"shop/other"), b"{not json")
            .unwrap_err();
        assert!(err.to_string().contains("does not decode"), "{err}");
        let err = state
            .policy_record(Some(b"shop/wrong-key"), &payload)
            .unwrap_err();
        assert!(err.to_string().contains("names another policy"), "{err}");
        assert_eq!(state.skipped.undecodable, 2);
        assert_eq!(state.policies(), 1);
    }
}
