//! Who owned an address when: pod metadata indexed by IP over time, by
//! container id, the nodes' own addresses and the Services' cluster IPs.
//!
//! Pods reuse IPs: an address has a history of owners, each with the time
//! range it held the address ([start, end), from the pod's start and
//! deletion times; a pod whose start is unknown holds it from the beginning
//! of time). A lookup names the owner at the event's time, never "whoever
//! has it now". Memory is bounded ([`IndexLimits`]): at most `max_pods` pods
//! (the ones that ended longest ago are evicted first, running pods never)
//! and `max_owners_per_ip` owners per address (the earliest-starting go
//! first).
//!
//! One index serves both readers: the enricher asks [`OwnerIndex::owner`]
//! (pod, host, Service or nobody), the pcap recorder asks
//! [`OwnerIndex::pod_at`] and [`OwnerIndex::history`]; they agree because
//! `pod_at` is `owner` restricted to pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::ClusterRecord;
use serde::Deserialize;
use tapwire_schemas::events::{Container, NodeMetadata, PodMetadata, ServiceMetadata};

/// The bounds of an [`OwnerIndex`], as a configuration section spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexLimits {
    /// Pods remembered at most; beyond it the pods that ended longest ago
    /// are forgotten first (running pods are never evicted).
    pub max_pods: usize,
    /// Owners remembered per IP address (its history of reuse); the
    /// earliest-starting go first.
    pub max_owners_per_ip: usize,
}

impl Default for IndexLimits {
    fn default() -> Self {
        IndexLimits {
            max_pods: 200_000,
            max_owners_per_ip: 16,
        }
    }
}

/// A bound of [`IndexLimits`] that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{key}: must be at least 1")]
pub struct IndexLimitsError {
    /// The key (`max_pods` or `max_owners_per_ip`).
    pub key: &'static str,
}

impl IndexLimits {
    /// Checks that each bound is at least 1.
    pub fn validate(&self) -> Result<(), IndexLimitsError> {
        for (key, value) in [
            ("max_pods", self.max_pods),
            ("max_owners_per_ip", self.max_owners_per_ip),
        ] {
            if value == 0 {
                return Err(IndexLimitsError { key });
            }
        }
        Ok(())
    }

    /// An empty index within these bounds.
    pub fn build(&self) -> Result<OwnerIndex, IndexLimitsError> {
        self.validate()?;
        Ok(OwnerIndex::new(self.max_pods, self.max_owners_per_ip))
    }
}

/// One pod holding one address for a time (`start_ns` is `i64::MIN` when
/// the pod's start is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tenancy {
    start_ns: i64,
    end_ns: Option<i64>,
    uid: Arc<str>,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    /// A pod owned the address at that time.
    Pod(Arc<PodMetadata>),
    /// The address is a node's (its name, when a node record named it).
    Host(Option<Arc<str>>),
    /// The address is a Service's cluster IP.
    Service(Arc<ServiceMetadata>),
    /// Nobody known.
    Unknown,
}

/// A pod's hold on an address, as [`OwnerIndex::history`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTenancy {
    /// The pod (its latest record).
    pub pod: Arc<PodMetadata>,
    /// Since when, ns since the epoch; `None` when the pod's start is
    /// unknown (it is taken to hold the address since before anything).
    pub start_ns: Option<i64>,
    /// Until when (exclusive), ns since the epoch; `None`: still.
    pub end_ns: Option<i64>,
}

/// The index. Single owner (a stage applies records in topic order and
/// looks up; no lock inside).
pub struct OwnerIndex {
    pods: HashMap<Arc<str>, Arc<PodMetadata>>,
    by_ip: HashMap<IpAddr, Vec<Tenancy>>,
    by_container: HashMap<String, Arc<str>>,
    node_ips: HashSet<IpAddr>,
    /// Node addresses from node records: which node.
    nodes: HashMap<IpAddr, Arc<str>>,
    /// Service cluster IPs (the latest record of each address's Service).
    services: HashMap<IpAddr, Arc<ServiceMetadata>>,
    /// Ended pods by end time, for eviction.
    ended: BTreeMap<(i64, Arc<str>), ()>,
    max_pods: usize,
    max_owners_per_ip: usize,
    evicted: u64,
}

impl OwnerIndex {
    /// An empty index with the given bounds (see [`IndexLimits`]; use
    /// [`IndexLimits::build`] to have them checked).
    pub fn new(max_pods: usize, max_owners_per_ip: usize) -> Self {
        OwnerIndex {
            pods: HashMap::new(),
            by_ip: HashMap::new(),
            by_container: HashMap::new(),
            node_ips: HashSet::new(),
            nodes: HashMap::new(),
            services: HashMap::new(),
            ended: BTreeMap::new(),
            max_pods,
            max_owners_per_ip,
            evicted: 0,
        }
    }

    /// Pods known.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether no pod is known.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Pods forgotten to stay within `max_pods`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Records a node's own address (from event headers).
    pub fn add_node_ip(&mut self, ip: IpAddr) {
        self.node_ips.insert(ip);
    }

    /// Applies the latest record of a pod (a newer record of the same uid
    /// replaces the older one). Returns the uids evicted to make room.
    pub fn apply(&mut self, pod: PodMetadata) -> Vec<Arc<str>> {
        let mut evicted = Vec::new();
        let uid: Arc<str> = Arc::from(pod.uid.as_str());
        if let Some(old) = self.pods.remove(&uid) {
            self.unlink(&uid, &old);
        }
        if pod.host_network {
            // Host-network pods show the node's address: that is the host.
            self.node_ips.extend(pod.ips.iter().map(|ip| ip.0));
        } else {
            let tenancy = Tenancy {
                start_ns: pod.start_ns.unwrap_or(i64::MIN),
                end_ns: pod.end_ns,
                uid: uid.clone(),
            };
            for ip in &pod.ips {
                let owners = self.by_ip.entry(ip.0).or_default();
                let at = owners.partition_point(|t| t.start_ns <= tenancy.start_ns);
                owners.insert(at, tenancy.clone());
                if owners.len() > self.max_owners_per_ip {
                    owners.remove(0);
                }
            }
        }
        for c in &pod.containers {
            self.by_container.insert(c.id.clone(), uid.clone());
        }
        if let Some(end) = pod.end_ns {
            self.ended.insert((end, uid.clone()), ());
        }
        self.pods.insert(uid, Arc::new(pod));
        while self.pods.len() > self.max_pods {
            let Some(((end, oldest), ())) = self.ended.pop_first() else {
                break; // only running pods left: they are never evicted
            };
            let _ = end;
            if let Some(old) = self.pods.remove(&oldest) {
                self.unlink(&oldest, &old);
                self.evicted += 1;
                evicted.push(oldest);
            }
        }
        evicted
    }

    fn unlink(&mut self, uid: &Arc<str>, pod: &PodMetadata) {
        for ip in &pod.ips {
            if let Some(owners) = self.by_ip.get_mut(&ip.0) {
                owners.retain(|t| &t.uid != uid);
                if owners.is_empty() {
                    self.by_ip.remove(&ip.0);
                }
            }
        }
        for c in &pod.containers {
            if self.by_container.get(&c.id) == Some(uid) {
                self.by_container.remove(&c.id);
            }
        }
        if let Some(end) = pod.end_ns {
            self.ended.remove(&(end, uid.clone()));
        }
    }

    /// Applies any cluster record: pod, node or Service. Returns the uids of
    /// pods evicted to make room (see [`OwnerIndex::apply`]).
    pub fn apply_record(&mut self, record: ClusterRecord) -> Vec<Arc<str>> {
        match record {
            ClusterRecord::Pod(pod) => self.apply(pod),
            ClusterRecord::Node(node) => {
                self.apply_node(&node);
                Vec::new()
            }
            ClusterRecord::Service(service) => {
                self.apply_service(service);
                Vec::new()
            }
        }
    }

    /// Applies a node record: its addresses are the host's. Deleted nodes
    /// keep their addresses known (they stay host addresses in the history).
    pub fn apply_node(&mut self, node: &NodeMetadata) {
        let name: Arc<str> = Arc::from(node.name.as_str());
        for ip in &node.addresses {
            self.nodes.insert(ip.0, name.clone());
        }
    }

    /// Applies a Service record. A deleted Service's addresses are forgotten
    /// (the cluster may give them to a new Service).
    pub fn apply_service(&mut self, service: ServiceMetadata) {
        let service = Arc::new(service);
        for ip in &service.cluster_ips {
            if service.end_ns.is_some() {
                if self
                    .services
                    .get(&ip.0)
                    .is_some_and(|s| s.uid == service.uid)
                {
                    self.services.remove(&ip.0);
                }
            } else {
                self.services.insert(ip.0, service.clone());
            }
        }
    }

    /// The owner of `ip` at `timestamp_ns`: the pod holding it then, else
    /// the node, else the Service it is the cluster IP of.
    pub fn owner(&self, ip: IpAddr, timestamp_ns: i64) -> Owner {
        if let Some(pod) = self.tenant(ip, timestamp_ns) {
            return Owner::Pod(pod.clone());
        }
        if let Some(name) = self.nodes.get(&ip) {
            Owner::Host(Some(name.clone()))
        } else if self.node_ips.contains(&ip) {
            Owner::Host(None)
        } else if let Some(service) = self.services.get(&ip) {
            Owner::Service(service.clone())
        } else {
            Owner::Unknown
        }
    }

    /// The pod holding `ip` at `t_ns`: the latest-starting tenancy that
    /// started at or before `t_ns`, when it had not ended by then. The same
    /// answer as [`OwnerIndex::owner`] gives when that is a pod.
    pub fn pod_at(&self, ip: IpAddr, t_ns: i64) -> Option<Arc<PodMetadata>> {
        self.tenant(ip, t_ns).cloned()
    }

    fn tenant(&self, ip: IpAddr, t_ns: i64) -> Option<&Arc<PodMetadata>> {
        let owners = self.by_ip.get(&ip)?;
        let at = owners.partition_point(|t| t.start_ns <= t_ns);
        let t = &owners[at.checked_sub(1)?];
        if t.end_ns.is_some_and(|end| end <= t_ns) {
            return None;
        }
        self.pods.get(&t.uid)
    }

    /// Every tenancy of `ip` meeting `[from_ns, to_ns]` (started at or
    /// before `to_ns`, or at an unknown time, and not ended by `from_ns`),
    /// earliest start first. Host-network pods hold no tenancies: their
    /// addresses are the node's.
    pub fn history(
        &self,
        ip: IpAddr,
        from_ns: i64,
        to_ns: i64,
    ) -> impl Iterator<Item = PodTenancy> + '_ {
        self.by_ip
            .get(&ip)
            .into_iter()
            .flatten()
            .filter(move |t| t.start_ns <= to_ns && t.end_ns.is_none_or(|end| from_ns < end))
            .filter_map(|t| {
                Some(PodTenancy {
                    pod: self.pods.get(&t.uid)?.clone(),
                    start_ns: (t.start_ns != i64::MIN).then_some(t.start_ns),
                    end_ns: t.end_ns,
                })
            })
    }

    /// The pod and container a container id belongs to.
    pub fn container(&self, id: &str) -> Option<(Arc<PodMetadata>, &Container)> {
        let pod = self.pods.get(self.by_container.get(id)?)?;
        let container = pod.containers.iter().find(|c| c.id == id)?;
        Some((pod.clone(), container))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_schemas::samples;

    fn pod(name: &str, ip: &str, start: i64, end: Option<i64>) -> PodMetadata {
        let mut p = samples::pod(
            samples::header("node-a", "watch", 0, start),
            name,
            "shop",
            ip.parse().expect("ip"),
        );
        p.uid = format!("uid-{name}");
        p.containers[0].id = format!("ctr-{name}");
        p.start_ns = Some(start);
        p.end_ns = end;
        p
    }

    fn name(o: Owner) -> String {
        match o {
            Owner::Pod(p) => p.name.clone(),
            Owner::Host(_) => "host".into(),
            Owner::Service(s) => format!("service {}", s.name),
            Owner::Unknown => "unknown".into(),
        }
    }

    #[test]
    fn a_reused_ip_resolves_by_time() {
        let ip: IpAddr = "10.1.0.7".parse().expect("ip");
        let mut index = OwnerIndex::new(100, 16);
        index.apply(pod("a", "10.1.0.7", 100, Some(200)));
        index.apply(pod("b", "10.1.0.7", 300, None));
        assert_eq!(name(index.owner(ip, 150)), "a");
        assert_eq!(name(index.owner(ip, 199)), "a");
        assert_eq!(
            name(index.owner(ip, 200)),
            "unknown",
            "a is gone, b not yet there"
        );
        assert_eq!(name(index.owner(ip, 300)), "b");
        assert_eq!(name(index.owner(ip, 99)), "unknown");
    }

    #[test]
    fn an_update_replaces_the_previous_record() {
        let ip: IpAddr = "10.1.0.7".parse().expect("ip");
        let mut index = OwnerIndex::new(100, 16);
        index.apply(pod("a", "10.1.0.7", 100, None));
        assert_eq!(name(index.owner(ip, 500)), "a");
        index.apply(pod("a", "10.1.0.7", 100, Some(200))); // deleted
        assert_eq!(name(index.owner(ip, 500)), "unknown");
        assert_eq!(index.len(), 1, "the deleted pod's record stays for history");
        assert_eq!(name(index.owner(ip, 150)), "a");
    }

    #[test]
    fn ended_pods_are_evicted_first_and_running_ones_never() {
        let mut index = OwnerIndex::new(2, 16);
        index.apply(pod("running", "10.1.0.1", 0, None));
        index.apply(pod("old", "10.1.0.2", 0, Some(10)));
        index.apply(pod("newer", "10.1.0.3", 0, Some(20)));
        assert_eq!(index.len(), 2);
        assert_eq!(index.evicted(), 1);
        assert_eq!(
            name(index.owner("10.1.0.2".parse().expect("ip"), 5)),
            "unknown"
        );
        assert_eq!(
            name(index.owner("10.1.0.1".parse().expect("ip"), 5)),
            "running"
        );
        assert!(index.container("ctr-old").is_none());
        assert!(index.container("ctr-newer").is_some());
    }

    #[test]
    fn host_network_pods_and_node_ips_are_the_host() {
        let mut index = OwnerIndex::new(100, 16);
        let mut p = pod("agent", "192.168.10.11", 0, None);
        p.host_network = true;
        index.apply(p);
        index.add_node_ip("192.168.10.12".parse().expect("ip"));
        assert_eq!(
            index.owner("192.168.10.11".parse().expect("ip"), 5),
            Owner::Host(None)
        );
        assert_eq!(
            index.owner("192.168.10.12".parse().expect("ip"), 5),
            Owner::Host(None)
        );
    }

    fn names(
        index: &OwnerIndex,
        ip: IpAddr,
        from: i64,
        to: i64,
    ) -> Vec<(String, Option<i64>, Option<i64>)> {
        index
            .history(ip, from, to)
            .map(|t| (t.pod.name.clone(), t.start_ns, t.end_ns))
            .collect()
    }

    #[test]
    fn pod_at_and_history_follow_the_reuse_of_an_address() {
        let ip: IpAddr = "10.1.0.7".parse().expect("ip");
        let mut index = OwnerIndex::new(100, 16);
        index.apply(pod("a", "10.1.0.7", 100, Some(200)));
        index.apply(pod("b", "10.1.0.7", 300, None));
        let at = |t| index.pod_at(ip, t).map(|p| p.name.clone());
        assert_eq!(at(99), None);
        assert_eq!(at(100).as_deref(), Some("a"));
        assert_eq!(at(200), None, "a is gone, b not yet there");
        assert_eq!(at(300).as_deref(), Some("b"));
        for t in [50, 150, 250, 350] {
            assert_eq!(
                at(t),
                match index.owner(ip, t) {
                    Owner::Pod(p) => Some(p.name.clone()),
                    _ => None,
                },
                "pod_at and owner agree at {t}"
            );
        }
        let a = ("a".to_owned(), Some(100), Some(200));
        let b = ("b".to_owned(), Some(300), None);
        assert_eq!(names(&index, ip, 0, 1000), [a.clone(), b.clone()]);
        assert_eq!(names(&index, ip, 0, 100), std::slice::from_ref(&a));
        assert_eq!(names(&index, ip, 199, 299), [a]);
        assert_eq!(names(&index, ip, 200, 299), []);
        assert_eq!(names(&index, ip, 300, 300), [b]);
        assert_eq!(names(&index, "10.9.9.9".parse().expect("ip"), 0, 1000), []);
    }

    #[test]
    fn a_pod_without_a_start_holds_its_address_from_the_beginning() {
        let ip: IpAddr = "10.1.0.8".parse().expect("ip");
        let mut index = OwnerIndex::new(100, 16);
        let mut p = pod("early", "10.1.0.8", 0, Some(50));
        p.start_ns = None;
        index.apply(p);
        assert_eq!(
            index
                .pod_at(ip, i64::MIN + 1)
                .map(|p| p.name.clone())
                .as_deref(),
            Some("early")
        );
        assert_eq!(
            names(&index, ip, -10, 10),
            [("early".to_owned(), None, Some(50))]
        );
        assert_eq!(names(&index, ip, 50, 60), []);
    }

    #[test]
    fn records_of_every_kind_apply() {
        let mut index = OwnerIndex::new(100, 16);
        index.apply_record(ClusterRecord::Pod(pod("a", "10.1.0.7", 0, None)));
        index.apply_record(ClusterRecord::Node(samples::node(
            "node-b",
            "10.0.0.2".parse().expect("ip"),
        )));
        assert_eq!(name(index.owner("10.1.0.7".parse().expect("ip"), 5)), "a");
        assert_eq!(
            index.owner("10.0.0.2".parse().expect("ip"), 5),
            Owner::Host(Some(Arc::from("node-b")))
        );
    }

    #[test]
    fn limits_default_parse_strictly_and_refuse_zero() {
        assert_eq!(
            IndexLimits::default(),
            IndexLimits {
                max_pods: 200_000,
                max_owners_per_ip: 16
            }
        );
        let limits: IndexLimits = toml::from_str("max_pods = 10").expect("limits");
        assert_eq!((limits.max_pods, limits.max_owners_per_ip), (10, 16));
        assert!(toml::from_str::<IndexLimits>("max_ips = 10").is_err());
        let err = IndexLimits {
            max_pods: 1,
            max_owners_per_ip: 0,
        }
        .build()
        .err()
        .expect("zero refused");
        assert_eq!(err.key, "max_owners_per_ip");
        assert!(limits.build().expect("index").is_empty());
    }
}
