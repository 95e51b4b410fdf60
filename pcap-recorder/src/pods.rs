//! Which pod held an address when: [`PodLookup`], answered by the cluster's
//! [`OwnerIndex`] (built from `tapwire.pods` records, the same index the
//! enricher names pods with) while recording, and by an index's `pods` list
//! offline.
//!
//! Pod IPs are reused, so a name is resolved at the packet's time, not now;
//! the index carries the history for its time range so that offline readers
//! need no cluster.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tapwire_cluster::OwnerIndex;
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

impl PodRef {
    /// How streams and the index name `pod`.
    pub fn of(pod: &PodMetadata) -> PodRef {
        PodRef {
            name: pod.name.clone(),
            namespace: pod.namespace.clone(),
            uid: Some(pod.uid.clone()),
        }
    }
}

impl PodLookup for OwnerIndex {
    /// The tenant [`OwnerIndex::pod_at`] names (the one the enricher names).
    fn pod_at(&self, ip: IpAddr, t_ns: i64) -> Option<PodRef> {
        OwnerIndex::pod_at(self, ip, t_ns).map(|pod| PodRef::of(&pod))
    }

    /// Every tenancy of [`OwnerIndex::history`]; one whose start is unknown
    /// has no `from_ns`.
    fn history(&self, ip: IpAddr, from_ns: i64, to_ns: i64) -> Vec<PodInterval> {
        OwnerIndex::history(self, ip, from_ns, to_ns)
            .map(|t| PodInterval {
                ip,
                pod: PodRef::of(&t.pod),
                from_ns: t.start_ns,
                until_ns: t.end_ns,
            })
            .collect()
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

    fn pod(name: &str, ip: IpAddr, start: i64, end: Option<i64>) -> PodMetadata {
        let mut p = tapwire_schemas::samples::pod(
            tapwire_schemas::samples::header("node-a", "watch", 0, start),
            name,
            "shop",
            ip,
        );
        p.uid = format!("uid-{name}");
        p.start_ns = Some(start);
        p.end_ns = end;
        p
    }

    fn name(found: Option<PodRef>) -> Option<String> {
        found.map(|p| p.name)
    }

    #[test]
    fn an_address_reused_resolves_by_time_live_and_offline() {
        let ip: IpAddr = "10.1.0.4".parse().unwrap();
        let mut index = OwnerIndex::new(100, 16);
        index.apply(pod("old", ip, 100, None));
        index.apply(pod("new", ip, 200, None));
        assert_eq!(
            name(index.pod_at(ip, 150).map(|p| PodRef::of(&p))),
            Some("old".into())
        );
        assert_eq!(name(PodLookup::pod_at(&index, ip, 200)), Some("new".into()));
        assert_eq!(PodLookup::pod_at(&index, ip, 50), None);
        // Its deletion, seen later, ends its interval.
        index.apply(pod("old", ip, 100, Some(190)));
        assert_eq!(PodLookup::pod_at(&index, ip, 195), None);
        assert_eq!(PodLookup::history(&index, ip, 0, 150).len(), 1);
        let offline: Vec<PodInterval> = PodLookup::history(&index, ip, 0, 1000);
        assert_eq!(offline.len(), 2);
        assert_eq!(name(offline.pod_at(ip, 150)), Some("old".into()));
        assert_eq!(name(offline.pod_at(ip, 5000)), Some("new".into()));
        assert_eq!(offline.pod_at(ip, 195), None);
    }

    #[test]
    fn owners_per_address_are_bounded_oldest_first() {
        let ip: IpAddr = "10.1.0.4".parse().unwrap();
        let mut index = OwnerIndex::new(100, 2);
        for i in 0..5 {
            index.apply(pod(&format!("p{i}"), ip, i * 10, Some(i * 10 + 10)));
        }
        assert_eq!(PodLookup::history(&index, ip, 0, 100).len(), 2);
        assert_eq!(name(PodLookup::pod_at(&index, ip, 45)), Some("p4".into()));
        assert_eq!(PodLookup::pod_at(&index, ip, 5), None);
    }
}
