//! The enrichment of one event: pod context for each side, by the time the
//! event happened; host and external peers; DNS names for external peers;
//! runtime events through their container id.

use std::net::IpAddr;

use ipnet::IpNet;
use tapwire_schemas::events::{
    Container, Direction, DnsEvent, EnrichedEvent, EventHeader, L4Event, PeerContext, PeerKind,
    PodMetadata, RuntimeEvent,
};

use crate::dns::DnsCache;
use crate::index::{Owner, PodIndex};

/// An event that cannot be enriched yet: the metadata of an in-cluster
/// address or container has not arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    /// A connection event.
    L4(L4Event),
    /// A DNS event.
    Dns(DnsEvent),
    /// A runtime event.
    Runtime(RuntimeEvent),
}

/// Counts of what enrichment decided.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Sides that went out `unresolved` after the wait.
    pub unresolved: u64,
}

/// State and rules of the enrich stage.
pub struct Enricher {
    index: PodIndex,
    dns: DnsCache,
    pod_cidrs: Vec<IpNet>,
    /// What was decided so far.
    pub tally: Tally,
}

impl Enricher {
    /// An enricher with empty state.
    pub fn new(index: PodIndex, dns: DnsCache, pod_cidrs: Vec<IpNet>) -> Self {
        Enricher {
            index,
            dns,
            pod_cidrs,
            tally: Tally::default(),
        }
    }

    /// Applies a pod metadata record.
    pub fn apply_pod(&mut self, pod: PodMetadata) {
        self.index.apply(pod);
    }

    /// The pod index (for sizes and eviction counts).
    pub fn index(&self) -> &PodIndex {
        &self.index
    }

    /// Enriches `held`. With `last_chance` false, an event whose in-cluster
    /// metadata is missing comes back as `Err` to be held; with it true, the
    /// missing side is marked `unresolved`.
    pub fn enrich(&mut self, held: Held, last_chance: bool) -> Result<EnrichedEvent, Held> {
        match held {
            Held::L4(e) => self.l4(e, last_chance).map_err(Held::L4),
            Held::Dns(e) => self.dns(e, last_chance).map_err(Held::Dns),
            Held::Runtime(e) => self.runtime(e, last_chance).map_err(Held::Runtime),
        }
    }

    /// Enriches `held` for the last time: missing sides are `unresolved`.
    pub fn finish(&mut self, held: Held) -> EnrichedEvent {
        match self.enrich(held, true) {
            Ok(enriched) => enriched,
            // `last_chance` never holds; should it, both sides say so.
            Err(held) => {
                self.tally.unresolved += 2;
                let (l4, dns, runtime) = match held {
                    Held::L4(e) => (Some(e), None, None),
                    Held::Dns(e) => (None, Some(e), None),
                    Held::Runtime(e) => (None, None, Some(e)),
                };
                EnrichedEvent {
                    l4,
                    dns,
                    runtime,
                    src: PeerContext::of_kind(PeerKind::Unresolved),
                    dst: PeerContext::of_kind(PeerKind::Unresolved),
                }
            }
        }
    }

    fn observe(&mut self, h: &EventHeader) {
        if let Some(ip) = h.node_ip {
            self.index.add_node_ip(ip.0);
        }
    }

    fn l4(&mut self, e: L4Event, last_chance: bool) -> Result<EnrichedEvent, L4Event> {
        self.observe(&e.header);
        let ts = e.header.timestamp_ns;
        // The local side's container names its pod even when its address
        // does not (host network, not yet indexed).
        let (src_ctr, dst_ctr) = match e.direction {
            Direction::Egress => (e.container_id.as_deref(), None),
            _ => (None, e.container_id.as_deref()),
        };
        let src = self.peer(e.src.ip.0, ts, src_ctr, &e.header);
        let dst = self.peer(e.dst.ip.0, ts, dst_ctr, &e.header);
        let (src, dst) = match (src, dst) {
            (Some(s), Some(d)) => (s, d),
            _ if !last_chance => return Err(e),
            (s, d) => (self.or_unresolved(s), self.or_unresolved(d)),
        };
        Ok(EnrichedEvent {
            l4: Some(e),
            dns: None,
            runtime: None,
            src,
            dst,
        })
    }

    fn dns(&mut self, e: DnsEvent, last_chance: bool) -> Result<EnrichedEvent, DnsEvent> {
        self.observe(&e.header);
        // Learned before anything else, so later events in the stream see it.
        self.dns.learn(&e);
        let ts = e.header.timestamp_ns;
        let src = match e.container_id.as_deref() {
            Some(id) => self.container_peer(id),
            None => Some(host_peer(&e.header)),
        };
        let dst = match e.resolver {
            Some(r) => self.peer(r.ip.0, ts, None, &e.header),
            None => Some(PeerContext::of_kind(PeerKind::None)),
        };
        match (src, dst) {
            (Some(src), Some(dst)) => Ok(EnrichedEvent {
                l4: None,
                dns: Some(e),
                runtime: None,
                src,
                dst,
            }),
            _ if !last_chance => Err(e),
            (s, d) => {
                let (src, dst) = (self.or_unresolved(s), self.or_unresolved(d));
                Ok(EnrichedEvent {
                    l4: None,
                    dns: Some(e),
                    runtime: None,
                    src,
                    dst,
                })
            }
        }
    }

    fn runtime(
        &mut self,
        e: RuntimeEvent,
        last_chance: bool,
    ) -> Result<EnrichedEvent, RuntimeEvent> {
        self.observe(&e.header);
        let src = match e.container_id.as_deref() {
            Some(id) => self.container_peer(id),
            None => Some(host_peer(&e.header)),
        };
        let src = match src {
            Some(src) => src,
            None if !last_chance => return Err(e),
            None => self.or_unresolved(None),
        };
        Ok(EnrichedEvent {
            l4: None,
            dns: None,
            runtime: Some(e),
            src,
            dst: PeerContext::of_kind(PeerKind::None),
        })
    }

    fn or_unresolved(&mut self, peer: Option<PeerContext>) -> PeerContext {
        peer.unwrap_or_else(|| {
            self.tally.unresolved += 1;
            PeerContext::of_kind(PeerKind::Unresolved)
        })
    }

    fn container_peer(&self, container_id: &str) -> Option<PeerContext> {
        self.index
            .container(container_id)
            .map(|(pod, container)| pod_peer(&pod, Some(container)))
    }

    /// `None` when the address is in a pod range and its owner at `ts` is
    /// not known yet.
    fn peer(
        &mut self,
        ip: IpAddr,
        ts: i64,
        container_id: Option<&str>,
        h: &EventHeader,
    ) -> Option<PeerContext> {
        if let Some(id) = container_id
            && let Some(peer) = self.container_peer(id)
        {
            return Some(peer);
        }
        match self.index.owner(ip, ts) {
            Owner::Pod(pod) => {
                let container = match pod.containers.as_slice() {
                    [only] => Some(only),
                    _ => None,
                };
                Some(pod_peer(&pod, container))
            }
            Owner::Host => Some(host_peer(h)),
            Owner::Unknown if ip.is_loopback() || ip.is_unspecified() => Some(host_peer(h)),
            Owner::Unknown if self.pod_cidrs.iter().any(|net| net.contains(&ip)) => None,
            Owner::Unknown => {
                let mut peer = PeerContext::of_kind(PeerKind::External);
                peer.dns_name = self.dns.name(ip).map(str::to_owned);
                Some(peer)
            }
        }
    }
}

fn host_peer(h: &EventHeader) -> PeerContext {
    let mut peer = PeerContext::of_kind(PeerKind::Host);
    peer.node = Some(h.node.clone());
    peer
}

fn pod_peer(pod: &PodMetadata, container: Option<&Container>) -> PeerContext {
    PeerContext {
        kind: PeerKind::Pod,
        pod_uid: Some(pod.uid.clone()),
        pod: Some(pod.name.clone()),
        namespace: Some(pod.namespace.clone()),
        container: container.map(|c| c.name.clone()),
        node: Some(pod.header.node.clone()),
        labels: pod.labels.clone(),
        workload: pod.workload.clone(),
        image: container.map(|c| c.image.clone()),
        image_digest: container.and_then(|c| c.image_digest.clone()),
        dns_name: None,
    }
}
