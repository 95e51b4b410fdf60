//! Which pod held an address when: [`PodLookup`], and [`PodHistory`], the
//! in-memory history built from `tapwire.pods` records.
//!
//! Pod IPs are reused, so a name is resolved at the packet's time, not now;
//! the index carries the history for its time range so that offline readers
//! need no cluster.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tapwire_schemas::events::PodMetadata;

/// A pod, as streams and the index name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodRef {
    /// Pod name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Pod uid, when known (names are reused, uids are not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A pod's ownership of an address over a time range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInterval {
    /// The address.
    pub ip: IpAddr,
    /// The pod.
    pub pod: PodRef,
    /// Since when, ns since the epoch (`None`: since before anything known).
    #[serde(default)]
    pub from_ns: Option<i64>,
    /// Until when (`None`: still).
    #[serde(default)]
    pub until_ns: Option<i64>,
}

impl PodInterval {
    /// Whether the interval covers `t_ns`.
    pub fn covers(&self, t_ns: i64) -> bool {
        self.from_ns.is_none_or(|f| f <= t_ns) && self.until_ns.is_none_or(|u| t_ns < u)
    }

    /// Whether the interval meets `[from_ns, to_ns]`.
    pub fn overlaps(&self, from_ns: i64, to_ns: i64) -> bool {
        self.from_ns.is_none_or(|f| f <= to_ns) && self.until_ns.is_none_or(|u| from_ns < u)
    }
}

/// Resolves an address to the pod that held it at a time.
pub trait PodLookup {
    /// The pod holding `ip` at `t_ns`, if any.
    fn pod_at(&self, ip: IpAddr, t_ns: i64) -> Option<PodRef>;

    /// Every ownership of `ip` meeting `[from_ns, to_ns]`.
    fn history(&self, ip: IpAddr, from_ns: i64, to_ns: i64) -> Vec<PodInterval>;
}

/// No pods: every address is unresolved.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPods;

impl PodLookup for NoPods {
    fn pod_at(&self, _ip: IpAddr, _t_ns: i64) -> Option<PodRef> {
        None
    }

    fn history(&self, _ip: IpAddr, _from_ns: i64, _to_ns: i64) -> Vec<PodInterval> {
        Vec::new()
    }
}

/// The address history of pods, from `tapwire.pods` records, bounded.
///
/// A pod owns its IPs from its start time (or from when it was first seen)
/// until its end time. Host-network pods are skipped (they share the node's
/// address). Each address keeps at most `max_per_ip` intervals, oldest
/// dropped first.
#[derive(Debug, Clone)]
pub struct PodHistory {
    by_ip: HashMap<IpAddr, Vec<PodInterval>>,
    max_per_ip: usize,
    max_ips: usize,
    /// Intervals dropped to stay within the bounds.
    pub dropped: u64,
}

impl Default for PodHistory {
    fn default() -> Self {
        PodHistory::new(16, 1 << 20)
    }
}

impl PodHistory {
    /// An empty history keeping `max_per_ip` intervals per address and at
    /// most `max_ips` addresses.
    pub fn new(max_per_ip: usize, max_ips: usize) -> PodHistory {
        PodHistory {
            by_ip: HashMap::new(),
            max_per_ip: max_per_ip.max(1),
            max_ips: max_ips.max(1),
            dropped: 0,
        }
    }

    /// Applies one pod record (new pod, update or deletion).
    pub fn apply(&mut self, pod: &PodMetadata) {
        if pod.host_network {
            return;
        }
        let seen_ns = pod.header.timestamp_ns;
        for ip in &pod.ips {
            let pod_ref = PodRef {
                name: pod.name.clone(),
                namespace: pod.namespace.clone(),
                uid: Some(pod.uid.clone()),
            };
            let from = pod.start_ns.or(Some(seen_ns));
            self.record(ip.0, pod_ref, from, pod.end_ns);
        }
    }

    /// Records that `pod` held `ip` from `from_ns` until `until_ns`. A record
    /// for the same pod (uid, else namespace/name) updates its interval.
    pub fn record(&mut self, ip: IpAddr, pod: PodRef, from_ns: Option<i64>, until_ns: Option<i64>) {
        if !self.by_ip.contains_key(&ip) && self.by_ip.len() >= self.max_ips {
            self.dropped += 1;
            return;
        }
        let list = self.by_ip.entry(ip).or_default();
        let same = |p: &PodRef| match (&p.uid, &pod.uid) {
            (Some(a), Some(b)) => a == b,
            _ => p.name == pod.name && p.namespace == pod.namespace,
        };
        if let Some(existing) = list.iter_mut().find(|i| same(&i.pod)) {
            existing.from_ns = match (existing.from_ns, from_ns) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
            if until_ns.is_some() {
                existing.until_ns = until_ns;
            }
            return;
        }
        list.push(PodInterval {
            ip,
            pod,
            from_ns,
            until_ns,
        });
        list.sort_by_key(|i| i.from_ns.unwrap_or(i64::MIN));
        if list.len() > self.max_per_ip {
            list.remove(0);
            self.dropped += 1;
        }
    }
}

impl PodLookup for PodHistory {
    /// The latest-starting interval covering `t_ns` (a new pod wins over a
    /// deleted one whose end was not seen yet).
    fn pod_at(&self, ip: IpAddr, t_ns: i64) -> Option<PodRef> {
        self.by_ip
            .get(&ip)?
            .iter()
            .rev()
            .find(|i| i.covers(t_ns))
            .map(|i| i.pod.clone())
    }

    fn history(&self, ip: IpAddr, from_ns: i64, to_ns: i64) -> Vec<PodInterval> {
        self.by_ip.get(&ip).map_or_else(Vec::new, |list| {
            list.iter()
                .filter(|i| i.overlaps(from_ns, to_ns))
                .cloned()
                .collect()
        })
    }
}

impl PodLookup for Vec<PodInterval> {
    /// Offline: resolves from an index's `pods` list.
    fn pod_at(&self, ip: IpAddr, t_ns: i64) -> Option<PodRef> {
        self.iter()
            .filter(|i| i.ip == ip && i.covers(t_ns))
            .max_by_key(|i| i.from_ns.unwrap_or(i64::MIN))
            .map(|i| i.pod.clone())
    }

    fn history(&self, ip: IpAddr, from_ns: i64, to_ns: i64) -> Vec<PodInterval> {
        self.iter()
            .filter(|i| i.ip == ip && i.overlaps(from_ns, to_ns))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> PodRef {
        PodRef {
            name: name.to_owned(),
            namespace: "shop".to_owned(),
            uid: Some(format!("uid-{name}")),
        }
    }

    #[test]
    fn an_address_reused_resolves_by_time() {
        let ip: IpAddr = "10.1.0.4".parse().unwrap();
        let mut h = PodHistory::default();
        h.record(ip, pod("old"), Some(100), Some(200));
        h.record(ip, pod("new"), Some(200), None);
        assert_eq!(h.pod_at(ip, 150).unwrap().name, "old");
        assert_eq!(h.pod_at(ip, 200).unwrap().name, "new");
        assert_eq!(h.pod_at(ip, 50), None);
        assert_eq!(h.history(ip, 0, 150).len(), 1);
        assert_eq!(h.history(ip, 0, 1000).len(), 2);
        // An update of the old pod (its deletion seen later) keeps one interval.
        h.record(ip, pod("old"), Some(100), Some(190));
        assert_eq!(h.history(ip, 0, 1000).len(), 2);
        assert_eq!(h.pod_at(ip, 195), None);
        let offline: Vec<PodInterval> = h.history(ip, 0, 1000);
        assert_eq!(offline.pod_at(ip, 150).unwrap().name, "old");
        assert_eq!(offline.pod_at(ip, 5000).unwrap().name, "new");
    }

    #[test]
    fn bounded_per_address() {
        let ip: IpAddr = "10.1.0.4".parse().unwrap();
        let mut h = PodHistory::new(2, 10);
        for i in 0..5 {
            h.record(ip, pod(&format!("p{i}")), Some(i * 10), Some(i * 10 + 10));
        }
        assert_eq!(h.history(ip, 0, 100).len(), 2);
        assert_eq!(h.dropped, 3);
        assert_eq!(h.pod_at(ip, 45).unwrap().name, "p4");
    }
}
