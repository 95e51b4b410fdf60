//! Events derived from packets, so a replayed capture (or live AF_PACKET
//! traffic) yields the same kinds of events as the eBPF sources of a live
//! node:
//!
//! - `dns_query` for each DNS query on UDP 53 and 5353 (and TCP 53, one
//!   message per segment): emitted when its answer arrives (with answers and
//!   response code) or, unanswered, when it times out or the capture ends;
//!   the same query again within half a second (a copy seen on a second
//!   interface, before or after its answer) is not a second query;
//! - TCP 853 connections as DNS over TLS: a `dns_query` with query type
//!   `DOT`, no name and the resolver, since the payload is encrypted;
//! - `network_connect` (the initiator's view, on the SYN or the first
//!   datagram of a UDP flow), `network_accept` (the responder's view, on the
//!   SYN-ACK) and `network_flow` when the connection ends: payload bytes
//!   each way (from sequence numbers, so retransmissions count once),
//!   duration, and the final state: `established` (closed by FIN or RST
//!   after the handshake), `refused` (reset during the handshake),
//!   `half_closed` (one FIN only) or `stale` (idle timeout, table full or
//!   end of capture without a close).
//!
//! Packets do not say which end is local, nor which process owns it: pid is
//! 0 and binary empty. A flow whose SYN was not captured predates the
//! capture: its duration is null.

use std::collections::HashMap;
use std::net::IpAddr;

use tapwire_packet::{FlowKey, Packet, Transport, dns};
use tapwire_schemas::{
    Direction, DnsEvent, DnsKind, Endpoint, FinalState, Ip, L4Event, L4Kind, Protocol,
};

use crate::Identity;

/// An event derived from packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derived {
    /// Connect, accept or flow.
    L4(L4Event),
    /// A DNS query.
    Dns(DnsEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// SYN seen, no SYN-ACK yet.
    SynSent,
    /// SYN-ACK seen.
    SynAcked,
    /// Handshake done or data seen.
    Established,
}

#[derive(Debug)]
struct Side {
    /// Sequence number of the first payload byte.
    base: Option<u32>,
    /// Highest payload byte seen, relative to `base`.
    sent: u64,
    fin: bool,
}

impl Side {
    fn new() -> Self {
        Side {
            base: None,
            sent: 0,
            fin: false,
        }
    }

    fn payload(&mut self, seq: u32, syn: bool, len: usize) {
        let first = if syn { seq.wrapping_add(1) } else { seq };
        let base = *self.base.get_or_insert(first);
        if len > 0 {
            let end = u64::from(first.wrapping_sub(base)) + len as u64;
            // A segment from before `base` (wrapped far ahead) is ignored.
            if end < (1 << 31) {
                self.sent = self.sent.max(end);
            }
        }
    }
}

#[derive(Debug)]
struct Flow {
    /// Initiator -> responder.
    key: FlowKey,
    first_ns: i64,
    last_ns: i64,
    /// Whether the flow's start was captured (SYN, or any UDP datagram).
    start_seen: bool,
    phase: Phase,
    initiator: Side,
    responder: Side,
    udp_bytes: [u64; 2],
    reset: bool,
    /// The initiator's SYN sequence number, when the SYN was captured.
    isn: Option<u32>,
}

/// A TCP flow that ended: when its last packet was seen, and its SYN's
/// sequence number.
#[derive(Debug, Clone, Copy)]
struct Closed {
    last_ns: i64,
    isn: Option<u32>,
}

/// An unanswered DNS query.
#[derive(Debug)]
struct PendingQuery {
    ts_ns: i64,
    event: DnsEvent,
}

/// A query seen again within this long is a copy of the same packet.
const DNS_COPY_WINDOW_NS: i64 = 500_000_000;

/// Turns packets into events. Feed packets in capture order.
#[derive(Debug)]
pub struct Deriver {
    identity: Identity,
    flows: HashMap<FlowKey, Flow>,
    queries: HashMap<(FlowKey, u16), PendingQuery>,
    /// Queries answered lately, by when: a copy of the query seen on a
    /// second interface after its answer is not a new query.
    answered: HashMap<(FlowKey, u16), i64>,
    /// Recently closed TCP flows: their trailing ACKs and retransmitted
    /// FINs, and copies of its packets seen on another interface, do not
    /// open a new flow (a SYN of another sequence number does).
    closed: HashMap<FlowKey, Closed>,
    idle_timeout_ns: i64,
    max_flows: usize,
    /// Flows closed as stale because the table was full.
    pub evicted: u64,
}

const DNS_PORTS: [u16; 2] = [53, 5353];
const DOT_PORT: u16 = 853;

impl Deriver {
    /// A deriver; flows idle for `idle_timeout_ns` are closed as stale, at
    /// most `max_flows` are tracked.
    pub fn new(identity: Identity, idle_timeout_ns: i64, max_flows: usize) -> Self {
        Deriver {
            identity,
            flows: HashMap::new(),
            queries: HashMap::new(),
            answered: HashMap::new(),
            closed: HashMap::new(),
            idle_timeout_ns,
            max_flows: max_flows.max(1),
            evicted: 0,
        }
    }

    /// Flows being tracked.
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Takes one packet captured at `ts_ns`.
    pub fn packet(&mut self, ts_ns: i64, packet: &Packet<'_>, out: &mut Vec<Derived>) {
        self.dns(ts_ns, packet, out);
        let canonical = packet.flow.canonical();
        if let Some(closed) = self.closed.get_mut(&canonical) {
            // A new connection on the same ports starts with a SYN of another
            // sequence number; the same SYN again is a copy (captured on a
            // second interface, such as both pods' veths, or retransmitted).
            let new_syn = packet
                .tcp
                .is_some_and(|t| t.syn && !t.ack && closed.isn != Some(t.seq));
            if !new_syn {
                closed.last_ns = ts_ns;
                return;
            }
            self.closed.remove(&canonical);
        }
        if !self.flows.contains_key(&canonical) {
            if self.flows.len() >= self.max_flows {
                self.evict_oldest(out);
            }
            let Some(flow) = self.open(ts_ns, packet, out) else {
                return;
            };
            self.flows.insert(canonical, flow);
        }
        let Some(flow) = self.flows.get_mut(&canonical) else {
            return;
        };
        flow.last_ns = ts_ns;
        let from_initiator = packet.flow == flow.key;
        let Some(tcp) = packet.tcp else {
            flow.udp_bytes[usize::from(!from_initiator)] += packet.payload.len() as u64;
            return;
        };
        if tcp.syn && tcp.ack && !from_initiator && flow.phase == Phase::SynSent {
            flow.phase = Phase::SynAcked;
            out.push(Derived::L4(l4(
                &self.identity,
                L4Kind::NetworkAccept,
                &flow.key,
                ts_ns,
                Direction::Ingress,
            )));
        } else if flow.phase == Phase::SynAcked && !tcp.syn && !tcp.rst {
            flow.phase = Phase::Established;
        }
        let side = if from_initiator {
            &mut flow.initiator
        } else {
            &mut flow.responder
        };
        side.payload(tcp.seq, tcp.syn, packet.payload.len());
        if tcp.fin {
            side.fin = true;
        }
        if tcp.rst {
            flow.reset = true;
        }
        let done = flow.reset || (flow.initiator.fin && flow.responder.fin);
        if done && let Some(flow) = self.flows.remove(&canonical) {
            if self.closed.len() >= self.max_flows {
                self.closed.clear();
            }
            self.closed.insert(
                canonical,
                Closed {
                    last_ns: ts_ns,
                    isn: flow.isn,
                },
            );
            out.push(Derived::L4(self.close(flow, None)));
        }
    }

    /// Starts tracking a flow on its first packet; `None` for a packet that
    /// cannot start one (a stray RST).
    fn open(&self, ts_ns: i64, packet: &Packet<'_>, out: &mut Vec<Derived>) -> Option<Flow> {
        let (key, start_seen, phase) = match packet.tcp {
            Some(tcp) if tcp.rst => return None,
            Some(tcp) if tcp.syn && !tcp.ack => (packet.flow, true, Phase::SynSent),
            // Mid-stream: the lower port is most likely the server.
            Some(tcp) if tcp.syn => (packet.flow.reversed(), false, Phase::SynAcked),
            Some(_) => {
                let key = if packet.flow.src_port < packet.flow.dst_port {
                    packet.flow.reversed()
                } else {
                    packet.flow
                };
                (key, false, Phase::Established)
            }
            None => (packet.flow, true, Phase::Established),
        };
        if start_seen {
            out.push(Derived::L4(l4(
                &self.identity,
                L4Kind::NetworkConnect,
                &key,
                ts_ns,
                Direction::Egress,
            )));
            if key.protocol == Transport::Tcp && key.dst_port == DOT_PORT {
                out.push(Derived::Dns(self.dot(ts_ns, &key)));
            }
        }
        Some(Flow {
            key,
            first_ns: ts_ns,
            last_ns: ts_ns,
            start_seen,
            phase,
            initiator: Side::new(),
            responder: Side::new(),
            udp_bytes: [0, 0],
            reset: false,
            isn: packet.tcp.filter(|t| t.syn && !t.ack).map(|t| t.seq),
        })
    }

    fn close(&self, flow: Flow, forced: Option<FinalState>) -> L4Event {
        let tcp = flow.key.protocol == Transport::Tcp;
        let final_state = if !tcp {
            None
        } else if let Some(state) = forced {
            Some(match (flow.initiator.fin, flow.responder.fin) {
                (true, false) | (false, true) => FinalState::HalfClosed,
                _ => state,
            })
        } else if flow.reset && flow.phase != Phase::Established {
            Some(FinalState::Refused)
        } else {
            Some(FinalState::Established)
        };
        let (sent, received) = if tcp {
            (flow.initiator.sent, flow.responder.sent)
        } else {
            (flow.udp_bytes[0], flow.udp_bytes[1])
        };
        let mut event = l4(
            &self.identity,
            L4Kind::NetworkFlow,
            &flow.key,
            flow.first_ns,
            Direction::Egress,
        );
        event.header.timestamp_ns = flow.last_ns;
        event.duration_ns = flow
            .start_seen
            .then(|| (flow.last_ns - flow.first_ns).max(0) as u64);
        event.bytes_sent = Some(sent);
        event.bytes_received = Some(received);
        event.final_state = final_state;
        event
    }

    fn evict_oldest(&mut self, out: &mut Vec<Derived>) {
        let Some(oldest) = self
            .flows
            .iter()
            .min_by_key(|(_, f)| f.last_ns)
            .map(|(k, _)| *k)
        else {
            return;
        };
        if let Some(flow) = self.flows.remove(&oldest) {
            self.evicted += 1;
            out.push(Derived::L4(self.close(flow, Some(FinalState::Stale))));
        }
    }

    /// Closes flows and gives up on DNS answers idle since before
    /// `now_ns - idle timeout`.
    pub fn expire(&mut self, now_ns: i64, out: &mut Vec<Derived>) {
        let cutoff = now_ns.saturating_sub(self.idle_timeout_ns);
        let idle: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| f.last_ns < cutoff)
            .map(|(k, _)| *k)
            .collect();
        self.close_all(idle, out);
        self.closed.retain(|_, c| c.last_ns >= cutoff);
        self.answered
            .retain(|_, t| now_ns - *t < DNS_COPY_WINDOW_NS);
        let late: Vec<(FlowKey, u16)> = self
            .queries
            .iter()
            .filter(|(_, q)| q.ts_ns < cutoff)
            .map(|(k, _)| *k)
            .collect();
        for k in late {
            if let Some(q) = self.queries.remove(&k) {
                out.push(Derived::Dns(q.event));
            }
        }
    }

    /// The end of the capture: every open flow is closed (stale, or
    /// half-closed after one FIN) and unanswered queries go out.
    pub fn finish(&mut self, out: &mut Vec<Derived>) {
        let all: Vec<FlowKey> = self.flows.keys().copied().collect();
        self.close_all(all, out);
        let mut pending: Vec<PendingQuery> = self.queries.drain().map(|(_, q)| q).collect();
        pending.sort_by_key(|q| q.ts_ns);
        out.extend(pending.into_iter().map(|q| Derived::Dns(q.event)));
    }

    fn close_all(&mut self, mut keys: Vec<FlowKey>, out: &mut Vec<Derived>) {
        keys.sort_by_key(|k| self.flows.get(k).map(|f| f.first_ns));
        for k in keys {
            if let Some(flow) = self.flows.remove(&k) {
                let event = if flow.key.protocol == Transport::Tcp {
                    self.close(flow, Some(FinalState::Stale))
                } else {
                    self.close(flow, None)
                };
                out.push(Derived::L4(event));
            }
        }
    }

    fn dns(&mut self, ts_ns: i64, packet: &Packet<'_>, out: &mut Vec<Derived>) {
        let f = &packet.flow;
        let is_dns_port = |p| DNS_PORTS.contains(&p);
        if !is_dns_port(f.src_port) && !is_dns_port(f.dst_port) {
            return;
        }
        if packet.payload.is_empty() {
            return;
        }
        match f.protocol {
            Transport::Udp => self.dns_message(ts_ns, f, packet.payload, out),
            Transport::Tcp if f.src_port == 53 || f.dst_port == 53 => {
                for message in dns::TcpFrames::new(packet.payload) {
                    self.dns_message(ts_ns, f, message, out);
                }
            }
            Transport::Tcp => {}
        }
    }

    fn dns_message(&mut self, ts_ns: i64, f: &FlowKey, bytes: &[u8], out: &mut Vec<Derived>) {
        let Ok(message) = dns::parse(bytes) else {
            return;
        };
        let canonical = f.canonical();
        if message.is_response {
            let answers: Vec<String> = message.answers.iter().map(|a| a.data.clone()).collect();
            let rcode = message.rcode_name().to_owned();
            if let Some(mut q) = self.queries.remove(&(canonical, message.id)) {
                if self.answered.len() >= self.max_flows {
                    self.answered.clear();
                }
                self.answered.insert((canonical, message.id), ts_ns);
                q.event.answers = answers;
                q.event.response_code = Some(rcode);
                out.push(Derived::Dns(q.event));
            }
            // mDNS answers are multicast without a query; an unmatched
            // response is not a query and is not reported as one.
            return;
        }
        let (name, qtype) = message
            .questions
            .first()
            .map(|q| (q.name.clone(), q.qtype.clone()))
            .unwrap_or_default();
        let key = (canonical, message.id);
        // The same query again within moments is a copy (the packet seen on
        // a second interface: both pods' veths), not a retry: resolvers
        // retry after a second or more, and only when unanswered.
        let copy = |seen: i64| (ts_ns - seen).abs() < DNS_COPY_WINDOW_NS;
        if self.queries.get(&key).is_some_and(|q| copy(q.ts_ns))
            || self.answered.get(&key).is_some_and(|&t| copy(t))
        {
            return;
        }
        let event = DnsEvent {
            header: self.identity.header(
                ts_ns,
                &[
                    b"dns_query",
                    &flow_bytes(f),
                    &message.id.to_be_bytes(),
                    &ts_ns.to_le_bytes(),
                ],
            ),
            kind: DnsKind::DnsQuery,
            pid: 0,
            binary: String::new(),
            container_id: None,
            name,
            query_type: qtype,
            answers: Vec::new(),
            resolver: Some(endpoint(f.dst_ip, f.dst_port)),
            response_code: None,
            client: Some(endpoint(f.src_ip, f.src_port)),
            connection: None,
        };
        // A query retransmitted with the same id replaces nothing: the
        // earlier one goes out unanswered.
        if let Some(previous) = self.queries.insert(key, PendingQuery { ts_ns, event }) {
            out.push(Derived::Dns(previous.event));
        }
    }

    fn dot(&self, ts_ns: i64, key: &FlowKey) -> DnsEvent {
        DnsEvent {
            header: self.identity.header(
                ts_ns,
                &[b"dns_over_tls", &flow_bytes(key), &ts_ns.to_le_bytes()],
            ),
            kind: DnsKind::DnsQuery,
            pid: 0,
            binary: String::new(),
            container_id: None,
            name: String::new(),
            query_type: "DOT".to_owned(),
            answers: Vec::new(),
            resolver: Some(endpoint(key.dst_ip, key.dst_port)),
            response_code: None,
            client: Some(endpoint(key.src_ip, key.src_port)),
            connection: None,
        }
    }
}

fn endpoint(ip: IpAddr, port: u16) -> Endpoint {
    Endpoint { ip: Ip(ip), port }
}

fn flow_bytes(f: &FlowKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(37);
    out.push(f.protocol.ip_number());
    for (ip, port) in [(f.src_ip, f.src_port), (f.dst_ip, f.dst_port)] {
        match ip {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        }
        out.extend_from_slice(&port.to_be_bytes());
    }
    out
}

fn l4(
    identity: &Identity,
    kind: L4Kind,
    key: &FlowKey,
    ts_ns: i64,
    direction: Direction,
) -> L4Event {
    L4Event {
        header: identity.header(
            ts_ns,
            &[
                kind.as_str().as_bytes(),
                &flow_bytes(key),
                &ts_ns.to_le_bytes(),
            ],
        ),
        kind,
        pid: 0,
        binary: String::new(),
        container_id: None,
        src: endpoint(key.src_ip, key.src_port),
        dst: endpoint(key.dst_ip, key.dst_port),
        protocol: match key.protocol {
            Transport::Tcp => Protocol::Tcp,
            Transport::Udp => Protocol::Udp,
        },
        direction,
        duration_ns: None,
        bytes_sent: None,
        bytes_received: None,
        final_state: None,
        ppid: None,
        euid: None,
        egid: None,
        binary_path: None,
        command_line: None,
        blocked_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::CaptureFile;

    fn derive_fixture() -> Vec<Derived> {
        let bytes: &[u8] = include_bytes!("../tests/fixtures/loopback.pcap");
        let identity = Identity {
            node: "n".to_owned(),
            sensor_id: "s".to_owned(),
            node_ip: None,
        };
        let mut deriver = Deriver::new(identity, 120_000_000_000, 1000);
        let mut out = Vec::new();
        for frame in CaptureFile::new("fixture", bytes).expect("open") {
            let frame = frame.expect("frame");
            if let Ok(p) = tapwire_packet::parse(frame.link_type, &frame.data) {
                deriver.packet(frame.timestamp_ns, &p, &mut out);
            }
        }
        deriver.finish(&mut out);
        out
    }

    #[test]
    fn the_fixture_gives_queries_with_answers_and_flows_with_states() {
        // See tests/fixtures/README.md for how the capture was made.
        let out = derive_fixture();
        let dns: Vec<&DnsEvent> = out
            .iter()
            .filter_map(|d| match d {
                Derived::Dns(e) => Some(e),
                _ => None,
            })
            .collect();
        let a = dns
            .iter()
            .find(|e| e.name == "other.test")
            .expect("other.test asked");
        assert_eq!(a.query_type, "A");
        assert_eq!(a.answers, ["10.9.8.7"]);
        assert_eq!(a.response_code.as_deref(), Some("NOERROR"));
        assert_eq!(a.resolver.expect("resolver").port, 53);
        let refused = dns.iter().find(|e| e.query_type == "AAAA").expect("AAAA");
        assert_eq!(refused.response_code.as_deref(), Some("REFUSED"));
        assert!(dns.iter().all(|e| e.kind == DnsKind::DnsQuery));

        let flows: Vec<&L4Event> = out
            .iter()
            .filter_map(|d| match d {
                Derived::L4(e) if e.kind == L4Kind::NetworkFlow => Some(e),
                _ => None,
            })
            .collect();
        let to_closed = flows
            .iter()
            .find(|f| f.dst.port == 18766)
            .expect("refused flow");
        assert_eq!(to_closed.final_state, Some(FinalState::Refused));
        let page = flows
            .iter()
            .filter(|f| f.dst.port == 18765)
            .collect::<Vec<_>>();
        assert_eq!(page.len(), 2, "two fetches");
        for f in &page {
            assert_eq!(f.final_state, Some(FinalState::Established));
            assert!(f.duration_ns.is_some());
            assert_eq!(f.direction, Direction::Egress);
        }
        // index.html is 14 bytes plus the HTTP header; big.txt is larger.
        let mut received: Vec<u64> = page.iter().map(|f| f.bytes_received.unwrap()).collect();
        received.sort_unstable();
        assert!(received[0] > 14 && received[1] > 60_000, "{received:?}");
        let accepts = out
            .iter()
            .filter(|d| matches!(d, Derived::L4(e) if e.kind == L4Kind::NetworkAccept))
            .count();
        // The refused connect got no SYN-ACK.
        let connects_tcp = out
            .iter()
            .filter(|d| matches!(d, Derived::L4(e) if e.kind == L4Kind::NetworkConnect && e.protocol == Protocol::Tcp))
            .count();
        assert_eq!(accepts + 1, connects_tcp);
    }

    #[test]
    fn dns_over_tls_is_marked_without_payload() {
        let identity = Identity {
            node: "n".to_owned(),
            sensor_id: "s".to_owned(),
            node_ip: None,
        };
        let mut d = Deriver::new(identity, 1_000_000_000, 10);
        let syn = Packet {
            flow: FlowKey {
                protocol: Transport::Tcp,
                src_ip: "10.0.0.1".parse().unwrap(),
                src_port: 40000,
                dst_ip: "1.1.1.1".parse().unwrap(),
                dst_port: 853,
            },
            tcp: Some(tapwire_packet::TcpInfo {
                syn: true,
                ..Default::default()
            }),
            payload: &[],
        };
        let mut out = Vec::new();
        d.packet(1, &syn, &mut out);
        let dot = out
            .iter()
            .find_map(|e| match e {
                Derived::Dns(e) => Some(e),
                _ => None,
            })
            .expect("DoT marked");
        assert_eq!(dot.query_type, "DOT");
        assert!(dot.name.is_empty());
        assert_eq!(dot.resolver.unwrap().port, 853);
        // Idle past the timeout: closed as stale.
        d.expire(3_000_000_000, &mut out);
        assert!(
            out.iter()
                .any(|e| matches!(e, Derived::L4(f) if f.final_state == Some(FinalState::Stale)))
        );
    }

    #[test]
    fn copies_of_a_connection_from_a_second_interface_are_one_connection() {
        let identity = Identity {
            node: "n".to_owned(),
            sensor_id: "s".to_owned(),
            node_ip: None,
        };
        let mut d = Deriver::new(identity, 60_000_000_000, 100);
        let client = "10.0.0.7:40000".parse().unwrap();
        let server = "10.0.0.9:8080".parse().unwrap();
        let frames = tapwire_packet::synth::tcp_session(1_000, client, server, &[(b"GET", b"OK")]);
        let mut out = Vec::new();
        // The client's veth first, then the server's: the whole connection
        // again, after it closed. Then a new connection on the same ports.
        let again =
            tapwire_packet::synth::tcp_session(9_000_000, client, server, &[(b"GET", b"OK")]);
        for f in frames.iter().chain(&frames).chain(&again) {
            let p = tapwire_packet::parse(1, &f.data).expect("parses");
            d.packet(f.ts_ns, &p, &mut out);
        }
        let kinds = |k: L4Kind| {
            out.iter()
                .filter(|e| matches!(e, Derived::L4(l) if l.kind == k))
                .count()
        };
        assert_eq!(kinds(L4Kind::NetworkConnect), 2, "{out:#?}");
        assert_eq!(kinds(L4Kind::NetworkFlow), 2);
    }

    #[test]
    fn a_dns_query_seen_on_two_interfaces_is_one_query() {
        let identity = Identity {
            node: "n".to_owned(),
            sensor_id: "s".to_owned(),
            node_ip: None,
        };
        let mut d = Deriver::new(identity, 60_000_000_000, 100);
        let frames = tapwire_packet::synth::udp_exchange(
            0,
            "10.0.0.7:40000".parse().unwrap(),
            "10.0.0.53:53".parse().unwrap(),
            &tapwire_packet::synth::dns_query(9, "copy.test"),
            &tapwire_packet::synth::dns_answer(9, "copy.test", [10, 9, 9, 9].into()),
        );
        let (query, answer) = (&frames[0].data, &frames[1].data);
        let mut out = Vec::new();
        let mut feed = |t: i64, data: &Vec<u8>, out: &mut Vec<Derived>| {
            let p = tapwire_packet::parse(1, data).expect("parses");
            d.packet(t, &p, out);
        };
        // Query and answer each seen on both veths, the query's second
        // copy even after the answer.
        feed(1_000, query, &mut out);
        feed(2_000, answer, &mut out);
        feed(2_500, query, &mut out);
        feed(3_000, answer, &mut out);
        // A real retry, seconds later and unanswered.
        feed(3_000_000_000, query, &mut out);
        d.finish(&mut out);
        let queries: Vec<(Vec<String>, Option<String>)> = out
            .iter()
            .filter_map(|e| match e {
                Derived::Dns(q) => Some((q.answers.clone(), q.response_code.clone())),
                Derived::L4(_) => None,
            })
            .collect();
        assert_eq!(
            queries,
            [
                (vec!["10.9.9.9".to_owned()], Some("NOERROR".to_owned())),
                (vec![], None)
            ]
        );
    }
}
