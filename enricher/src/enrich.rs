//! The enrichment of one event: pod context for each side, by the time the
//! event happened; host and external peers; DNS names for external peers;
//! runtime events through their container id.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tapwire_cluster::{Owner, OwnerIndex};
use tapwire_schemas::events::{
    Container, Direction, DnsEvent, EnrichedEvent, EventBody, EventHeader, L4Event, L4EventView,
    PeerContext, PeerKind, PodMetadata, RuntimeEvent, ServiceMetadata, Workload,
};

use crate::dns::DnsCache;

pub use tapwire_cluster::ClusterRecord;

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
    index: OwnerIndex,
    dns: DnsCache,
    pod_cidrs: Vec<IpNet>,
    service_cidrs: Vec<IpNet>,
    /// In-pod-range addresses whose wait ran out, and no pod has claimed
    /// since: later events for them do not wait again.
    gave_up: lru::LruCache<IpAddr, ()>,
    /// Encoded contexts of pods: per uid, per container index (MAX: none).
    peer_bytes: HashMap<Arc<str>, Vec<EncodedPeer>>,
    scratch: (Vec<u8>, Vec<u8>),
    /// What was decided so far.
    pub tally: Tally,
}

// Held events travel back to the caller by value on the (rare) wait path;
// boxing them would cost an allocation per event on every path.
#[allow(clippy::result_large_err)]
impl Enricher {
    /// An enricher with empty state. `gave_up_entries` bounds the memory of
    /// addresses whose wait ran out.
    pub fn new(
        index: OwnerIndex,
        dns: DnsCache,
        pod_cidrs: Vec<IpNet>,
        service_cidrs: Vec<IpNet>,
        gave_up_entries: usize,
    ) -> Self {
        Enricher {
            index,
            dns,
            pod_cidrs,
            service_cidrs,
            gave_up: lru::LruCache::new(
                std::num::NonZeroUsize::new(gave_up_entries).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
            peer_bytes: HashMap::new(),
            scratch: (Vec::new(), Vec::new()),
            tally: Tally::default(),
        }
    }

    /// Applies a pod metadata record.
    pub fn apply_pod(&mut self, pod: PodMetadata) {
        for ip in &pod.ips {
            self.gave_up.pop(&ip.0);
        }
        let uid: Arc<str> = Arc::from(pod.uid.as_str());
        let evicted = self.index.apply(pod);
        self.peer_bytes.remove(&uid);
        for gone in &evicted {
            self.peer_bytes.remove(gone);
        }
    }

    /// Applies any cluster record: pod, node or Service.
    pub fn apply(&mut self, record: ClusterRecord) {
        match record {
            ClusterRecord::Pod(pod) => self.apply_pod(pod),
            ClusterRecord::Node(node) => self.index.apply_node(&node),
            ClusterRecord::Service(service) => self.index.apply_service(service),
        }
    }

    /// The owner index (for sizes and eviction counts).
    pub fn index(&self) -> &OwnerIndex {
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
                let body = match held {
                    Held::L4(e) => EventBody::L4(e),
                    Held::Dns(e) => EventBody::Dns(e),
                    Held::Runtime(e) => EventBody::Runtime(e),
                };
                EnrichedEvent {
                    body,
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
            (s, d) => {
                // Not waited for again until a pod claims the address.
                if s.is_none() {
                    self.gave_up.put(e.src.ip.0, ());
                }
                if d.is_none() {
                    self.gave_up.put(e.dst.ip.0, ());
                }
                (self.or_unresolved(s), self.or_unresolved(d))
            }
        };
        Ok(EnrichedEvent {
            body: EventBody::L4(e),
            src,
            dst,
        })
    }

    fn dns(&mut self, e: DnsEvent, last_chance: bool) -> Result<EnrichedEvent, DnsEvent> {
        self.observe(&e.header);
        // Learned before anything else, so later events in the stream see it.
        self.dns.learn(&e);
        let ts = e.header.timestamp_ns;
        // The asking process's container, else the address that asked (a
        // pod's, from packets), else the node itself.
        let src = match (e.container_id.as_deref(), e.client) {
            (Some(id), _) => self.container_peer(id),
            (None, Some(client)) => self.peer(client.ip.0, ts, None, &e.header),
            (None, None) => Some(host_peer(&e.header)),
        };
        let dst = match e.resolver {
            Some(r) => self.peer(r.ip.0, ts, None, &e.header),
            None => Some(PeerContext::of_kind(PeerKind::None)),
        };
        match (src, dst) {
            (Some(src), Some(dst)) => Ok(EnrichedEvent {
                body: EventBody::Dns(e),
                src,
                dst,
            }),
            _ if !last_chance => Err(e),
            (s, d) => {
                let (src, dst) = (self.or_unresolved(s), self.or_unresolved(d));
                Ok(EnrichedEvent {
                    body: EventBody::Dns(e),
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
            body: EventBody::Runtime(e),
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

    fn container_side(&self, container_id: &str) -> Option<Side> {
        let (pod, container) = self.index.container(container_id)?;
        let at = pod.containers.iter().position(|c| c.id == container.id);
        Some(Side::Pod(pod.clone(), at))
    }

    fn container_peer(&self, container_id: &str) -> Option<PeerContext> {
        self.container_side(container_id).map(|s| s.context())
    }

    fn peer(
        &mut self,
        ip: IpAddr,
        ts: i64,
        container_id: Option<&str>,
        h: &EventHeader,
    ) -> Option<PeerContext> {
        self.side(ip, ts, container_id, &h.node)
            .map(|s| s.context())
    }

    /// Who `ip` is at `ts`; `None` when the address is in a pod range and
    /// its owner at `ts` is not known yet.
    fn side(
        &mut self,
        ip: IpAddr,
        ts: i64,
        container_id: Option<&str>,
        node: &str,
    ) -> Option<Side> {
        if let Some(id) = container_id
            && let Some(side) = self.container_side(id)
        {
            return Some(side);
        }
        match self.index.owner(ip, ts) {
            Owner::Pod(pod) => {
                let only = (pod.containers.len() == 1).then_some(0);
                Some(Side::Pod(pod, only))
            }
            Owner::Host(name) => Some(Side::Host(
                name.map_or_else(|| node.to_owned(), |n| n.to_string()),
            )),
            Owner::Service(service) => Some(Side::Service(service)),
            Owner::Unknown if ip.is_loopback() || ip.is_unspecified() => {
                Some(Side::Host(node.to_owned()))
            }
            // Service addresses: no pod will claim them, so nothing to wait for.
            Owner::Unknown if self.service_cidrs.iter().any(|net| net.contains(&ip)) => {
                self.tally.unresolved += 1;
                Some(Side::Unresolved(self.dns.name(ip).map(str::to_owned)))
            }
            Owner::Unknown if self.pod_cidrs.iter().any(|net| net.contains(&ip)) => {
                if self.gave_up.contains(&ip) {
                    self.tally.unresolved += 1;
                    Some(Side::Unresolved(None))
                } else {
                    None
                }
            }
            Owner::Unknown => Some(Side::External(self.dns.name(ip).map(str::to_owned))),
        }
    }

    /// The fast path for a connection event whose message is a current
    /// `L4Event` (`e` is that message, read with
    /// [`tapwire_schemas::codec::decode_l4_view`]): the same decisions as
    /// [`Enricher::enrich`], written by copying the event's bytes and each
    /// pod's pre-encoded context instead of re-encoding everything. Returns
    /// `false`, writing nothing, when the event must wait for metadata or the
    /// message is of an older version; the caller then takes
    /// [`Enricher::enrich`].
    pub fn enrich_l4_into(
        &mut self,
        e: &L4EventView<'_>,
        message: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let current = tapwire_schemas::codec::writer_schema(message)
            .is_ok_and(|w| w.current && w.kind == tapwire_schemas::SchemaKind::L4Event);
        if !current {
            return false;
        }
        if let Some(ip) = e.header.node_ip {
            self.index.add_node_ip(ip.0);
        }
        let ts = e.header.timestamp_ns;
        let (src_ctr, dst_ctr) = match e.direction {
            Direction::Egress => (e.container_id, None),
            _ => (None, e.container_id),
        };
        // A held event is decided again later: count nothing now.
        let tally = self.tally;
        let (Some(src), Some(dst)) = (
            self.side(e.src.ip.0, ts, src_ctr, e.header.node),
            self.side(e.dst.ip.0, ts, dst_ctr, e.header.node),
        ) else {
            self.tally = tally;
            return false;
        };
        let (mut a, mut b) = (
            std::mem::take(&mut self.scratch.0),
            std::mem::take(&mut self.scratch.1),
        );
        a.clear();
        b.clear();
        self.side_bytes(&src, &mut a);
        self.side_bytes(&dst, &mut b);
        let written = tapwire_schemas::codec::write_enriched_l4(message, &a, &b, out);
        self.scratch = (a, b);
        written
    }

    fn side_bytes(&mut self, side: &Side, out: &mut Vec<u8>) {
        if let Side::Pod(pod, container) = side {
            let slot = container.map_or(u16::MAX, |c| c as u16);
            if let Some((_, bytes)) = self
                .peer_bytes
                .get(pod.uid.as_str())
                .and_then(|list| list.iter().find(|(s, _)| *s == slot))
            {
                out.extend_from_slice(bytes);
                return;
            }
            let mut bytes = Vec::new();
            if tapwire_schemas::codec::peer_context_datum(&side.context(), &mut bytes).is_ok() {
                out.extend_from_slice(&bytes);
                self.peer_bytes
                    .entry(Arc::from(pod.uid.as_str()))
                    .or_default()
                    .push((slot, Arc::from(bytes)));
            }
            return;
        }
        // Small, rare contexts: encoded each time. Our types always encode.
        let _ = tapwire_schemas::codec::peer_context_datum(&side.context(), out);
    }
}

/// A pod's encoded context for one container slot (`u16::MAX`: none).
type EncodedPeer = (u16, Arc<[u8]>);

/// One side of an event, decided; turned into a context or its bytes.
enum Side {
    Pod(Arc<PodMetadata>, Option<usize>),
    Service(Arc<ServiceMetadata>),
    Host(String),
    External(Option<String>),
    Unresolved(Option<String>),
}

impl Side {
    fn context(&self) -> PeerContext {
        match self {
            Side::Pod(pod, container) => {
                pod_peer(pod, container.and_then(|i| pod.containers.get(i)))
            }
            Side::Host(node) => {
                let mut peer = PeerContext::of_kind(PeerKind::Host);
                peer.node = Some(node.clone());
                peer
            }
            Side::Service(service) => {
                let mut peer = PeerContext::of_kind(PeerKind::Service);
                peer.namespace = Some(service.namespace.clone());
                peer.dns_name = Some(format!("{}.{}.svc", service.name, service.namespace));
                peer.workload = Some(Workload {
                    kind: "Service".to_owned(),
                    name: service.name.clone(),
                });
                peer
            }
            Side::External(name) => {
                let mut peer = PeerContext::of_kind(PeerKind::External);
                peer.dns_name = name.clone();
                peer
            }
            Side::Unresolved(name) => {
                let mut peer = PeerContext::of_kind(PeerKind::Unresolved);
                peer.dns_name = name.clone();
                peer
            }
        }
    }
}

fn host_peer(h: &EventHeader) -> PeerContext {
    Side::Host(h.node.clone()).context()
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

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_schemas::{Ip, samples};

    fn enricher() -> Enricher {
        let nets = |list: &[&str]| list.iter().map(|c| c.parse().expect("cidr")).collect();
        Enricher::new(
            OwnerIndex::new(100, 16),
            DnsCache::new(100),
            nets(&["10.0.0.0/8"]),
            nets(&["10.96.0.0/12"]),
            100,
        )
    }

    fn conn(src: &str, dst: &str) -> Held {
        let mut e = samples::l4_flow(samples::header("node-a", "s", 1, 5), 1);
        e.src.ip = Ip(src.parse().expect("ip"));
        e.dst.ip = Ip(dst.parse().expect("ip"));
        e.container_id = None;
        Held::L4(e)
    }

    #[test]
    fn an_address_that_timed_out_is_not_waited_for_again_until_a_pod_claims_it() {
        let mut enricher = enricher();
        let held = enricher
            .enrich(conn("10.1.0.9", "8.8.8.8"), false)
            .expect_err("waits");
        let out = enricher.finish(held);
        assert_eq!(out.src.kind, PeerKind::Unresolved);
        assert_eq!(out.dst.kind, PeerKind::External);
        let again = enricher
            .enrich(conn("10.1.0.9", "8.8.8.8"), false)
            .expect("no second wait");
        assert_eq!(again.src.kind, PeerKind::Unresolved);
        assert_eq!(enricher.tally.unresolved, 2);

        let mut pod = samples::pod(
            samples::header("node-a", "w", 0, 0),
            "late",
            "shop",
            "10.1.0.9".parse().expect("ip"),
        );
        pod.start_ns = Some(0);
        enricher.apply_pod(pod);
        let resolved = enricher
            .enrich(conn("10.1.0.9", "8.8.8.8"), false)
            .expect("resolves");
        assert_eq!(resolved.src.pod.as_deref(), Some("late"));
    }

    #[test]
    fn the_fast_path_writes_exactly_what_the_slow_path_encodes() {
        let mut fast = enricher();
        let mut slow = enricher();
        for e in [&mut fast, &mut slow] {
            for (i, ip) in ["10.1.0.7", "10.1.5.5", "fd00::1:8"].iter().enumerate() {
                let mut pod = samples::pod(
                    samples::header("node-a", "w", 0, 0),
                    &format!("p{i}"),
                    "shop",
                    ip.parse().expect("ip"),
                );
                pod.uid = format!("uid-{i}");
                pod.start_ns = Some(0);
                e.apply_pod(pod);
            }
        }
        let events = [
            ("10.1.0.7", "10.1.5.5"),
            ("10.1.0.7", "93.184.215.14"),
            ("127.0.0.1", "10.96.0.1"),
            ("fd00::1:8", "fd00::1:8"),
            ("10.1.0.7", "10.1.5.5"), // the pods' contexts now come from the cache
        ];
        for (src, dst) in events {
            let Held::L4(e) = conn(src, dst) else {
                unreachable!()
            };
            let message = tapwire_schemas::encode(&e).expect("encode");
            let view = tapwire_schemas::codec::decode_l4_view(&message).expect("view");
            let mut out = Vec::new();
            assert!(
                fast.enrich_l4_into(&view, &message, &mut out),
                "{src} -> {dst}"
            );
            let enriched = slow.enrich(Held::L4(e), false).expect("no wait");
            assert_eq!(
                out,
                tapwire_schemas::encode(&enriched).expect("encode"),
                "{src} -> {dst}"
            );
        }
        assert_eq!(fast.tally, slow.tally);
        // An unknown in-cluster address must wait: no fast path.
        let Held::L4(e) = conn("10.1.0.99", "10.1.5.5") else {
            unreachable!()
        };
        let message = tapwire_schemas::encode(&e).expect("encode");
        let view = tapwire_schemas::codec::decode_l4_view(&message).expect("view");
        assert!(!fast.enrich_l4_into(&view, &message, &mut Vec::new()));
    }

    #[test]
    fn node_records_name_the_host_and_service_records_the_service() {
        let mut enricher = enricher();
        enricher.apply(ClusterRecord::Node(samples::node(
            "node-b",
            "10.0.0.2".parse().expect("ip"),
        )));
        enricher.apply(ClusterRecord::Service(samples::kube_dns()));
        let out = enricher
            .enrich(conn("10.0.0.2", "10.96.0.10"), false)
            .expect("no wait");
        assert_eq!(
            (out.src.kind, out.src.node.as_deref()),
            (PeerKind::Host, Some("node-b"))
        );
        assert_eq!(out.dst.kind, PeerKind::Service);
        assert_eq!(
            out.dst.dns_name.as_deref(),
            Some("kube-dns.kube-system.svc")
        );
        assert_eq!(enricher.tally.unresolved, 0);
    }

    #[test]
    fn service_addresses_and_loopback_do_not_wait() {
        let mut enricher = enricher();
        let out = enricher
            .enrich(conn("127.0.0.1", "10.96.0.1"), false)
            .expect("no wait");
        assert_eq!(out.src.kind, PeerKind::Host);
        assert_eq!(out.dst.kind, PeerKind::Unresolved);
    }

    #[test]
    fn a_dns_query_from_packets_is_the_pod_that_sent_it() {
        let mut enricher = enricher();
        let mut pod = samples::pod(
            samples::header("node-a", "w", 0, 0),
            "asker",
            "shop",
            "10.1.0.7".parse().expect("ip"),
        );
        pod.start_ns = Some(0);
        enricher.apply_pod(pod);
        let query = |client: Option<&str>| {
            let mut e = samples::dns_resolution(samples::header("node-a", "s", 2, 5));
            e.container_id = None;
            e.client = client.map(|c| tapwire_schemas::Endpoint {
                ip: Ip(c.parse().expect("ip")),
                port: 40053,
            });
            Held::Dns(e)
        };
        let out = enricher
            .enrich(query(Some("10.1.0.7")), false)
            .expect("known pod");
        assert_eq!(
            (out.src.kind, out.src.pod.as_deref()),
            (PeerKind::Pod, Some("asker"))
        );
        // No client and no container: the node asked.
        let out = enricher.enrich(query(None), false).expect("host");
        assert_eq!(out.src.kind, PeerKind::Host);
        // A pod address not known yet waits, like a connection's.
        assert!(enricher.enrich(query(Some("10.1.0.99")), false).is_err());
    }
}
