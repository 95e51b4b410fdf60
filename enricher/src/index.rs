//! Who owned an address when: pod metadata indexed by IP over time, by
//! container id, and the nodes' own addresses.
//!
//! Pods reuse IPs: an address has a history of owners, each with the time
//! range it held the address ([start, end), from the pod's start and
//! deletion times). A lookup names the owner at the event's time, never
//! "whoever has it now". Memory is bounded: at most `max_pods` pods (the ones
//! that ended longest ago are evicted first) and `max_owners_per_ip` owners
//! per address.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use tapwire_schemas::events::{Container, NodeMetadata, PodMetadata, ServiceMetadata};

/// One pod holding one address for a time.
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

/// The index. Single owner (the enrich stage); updates arrive in order.
pub struct PodIndex {
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

impl PodIndex {
    /// An empty index with the given bounds.
    pub fn new(max_pods: usize, max_owners_per_ip: usize) -> Self {
        PodIndex {
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

    /// The owner of `ip` at `timestamp_ns`.
    pub fn owner(&self, ip: IpAddr, timestamp_ns: i64) -> Owner {
        if let Some(owners) = self.by_ip.get(&ip) {
            // The latest tenancy that started at or before the event.
            let at = owners.partition_point(|t| t.start_ns <= timestamp_ns);
            if let Some(t) = at.checked_sub(1).map(|i| &owners[i])
                && t.end_ns.is_none_or(|end| timestamp_ns < end)
                && let Some(pod) = self.pods.get(&t.uid)
            {
                return Owner::Pod(pod.clone());
            }
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
        let mut index = PodIndex::new(100, 16);
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
        let mut index = PodIndex::new(100, 16);
        index.apply(pod("a", "10.1.0.7", 100, None));
        assert_eq!(name(index.owner(ip, 500)), "a");
        index.apply(pod("a", "10.1.0.7", 100, Some(200))); // deleted
        assert_eq!(name(index.owner(ip, 500)), "unknown");
        assert_eq!(index.len(), 1, "the deleted pod's record stays for history");
        assert_eq!(name(index.owner(ip, 150)), "a");
    }

    #[test]
    fn ended_pods_are_evicted_first_and_running_ones_never() {
        let mut index = PodIndex::new(2, 16);
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
        let mut index = PodIndex::new(100, 16);
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
}
