//! TCP lifecycle from `sock:inet_sock_set_state`: which state changes are
//! connects, accepts, listens and closes, who owns each socket, and the
//! flow at close with payload bytes and final state.
//!
//! Ownership: a connect (CLOSE -> SYN_SENT) and a listen (CLOSE -> LISTEN)
//! run in the owner's process context, so the current task is the owner
//! (identity taken by the program, see [`super::owners`]). An accept
//! (SYN_RECV -> ESTABLISHED of the child socket) runs in softirq context, so
//! its owner is the process that listens on that local port in the
//! socket's network namespace: every pod has its own, and many listen on
//! the same port. Listeners that predate the agent are seeded from the
//! sockets of every namespace at start ([`TcpTracker::seed_listener`]).
//!
//! Bytes: `bytes_acked` and `bytes_received` count sequence space. The
//! active opener's SYN is in its `bytes_acked`; a FIN is in `bytes_acked`
//! once acknowledged (the socket closes from LAST_ACK or FIN_WAIT2) and the
//! peer's FIN in `bytes_received` once processed, which the program reports
//! (`fin_received`, the socket's SOCK_DONE flag: an orphaned FIN_WAIT2
//! socket may close before or after the peer's FIN arrives). Those are
//! taken off.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tapwire_schemas::{Direction, Endpoint, FinalState, Ip, L4Event, L4Kind, Protocol};

use super::owners::{Cgroups, Owner, Processes};
use super::wire::{TcpEvent, c_str};
use crate::Identity;

const ESTABLISHED: i32 = 1;
const SYN_SENT: i32 = 2;
const SYN_RECV: i32 = 3;
const FIN_WAIT1: i32 = 4;
const FIN_WAIT2: i32 = 5;
const CLOSE: i32 = 7;
const CLOSE_WAIT: i32 = 8;
const LAST_ACK: i32 = 9;
const LISTEN: i32 = 10;

#[derive(Debug, Clone)]
struct Conn {
    owner: Owner,
    start_ns: i64,
    direction: Direction,
    src: Endpoint,
    dst: Endpoint,
}

/// Turns TCP state changes into L4 events.
#[derive(Debug)]
pub struct TcpTracker {
    identity: Identity,
    conns: HashMap<u64, Conn>,
    /// (network namespace inode, local port) -> the listener's owner.
    listeners: HashMap<(u32, u16), Owner>,
    seq: u64,
    /// Closes of sockets opened before the sensor started (no owner known).
    pub untracked_closes: u64,
}

/// The address in a record's 16 address bytes.
pub fn ip(family: u16, bytes: &[u8; 16]) -> Ip {
    if family == 2 {
        Ip(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        )))
    } else {
        let v6 = Ipv6Addr::from(*bytes);
        Ip(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
    }
}

impl TcpTracker {
    /// A tracker whose events carry `identity`.
    pub fn new(identity: Identity) -> Self {
        TcpTracker {
            identity,
            conns: HashMap::new(),
            listeners: HashMap::new(),
            seq: 0,
            untracked_closes: 0,
        }
    }

    /// A listener that was there before the agent: (network namespace
    /// inode, port) owned by `owner`.
    pub fn seed_listener(&mut self, netns: u32, port: u16, owner: Owner) {
        self.listeners.entry((netns, port)).or_insert(owner);
    }

    /// How many listeners are known.
    pub fn listeners(&self) -> usize {
        self.listeners.len()
    }

    fn event(&mut self, kind: L4Kind, conn: &Conn, ts_ns: i64) -> L4Event {
        self.seq += 1;
        L4Event {
            header: self.identity.header(
                ts_ns,
                &[
                    b"ebpf",
                    kind.as_str().as_bytes(),
                    &ts_ns.to_le_bytes(),
                    &self.seq.to_le_bytes(),
                ],
            ),
            kind,
            pid: conn.owner.pid,
            binary: conn.owner.comm.clone(),
            container_id: conn.owner.container_id.clone(),
            src: conn.src,
            dst: conn.dst,
            protocol: Protocol::Tcp,
            direction: conn.direction,
            duration_ns: None,
            bytes_sent: None,
            bytes_received: None,
            final_state: None,
            ppid: conn.owner.ppid,
            euid: conn.owner.euid,
            egid: conn.owner.egid,
            binary_path: conn.owner.binary_path.clone(),
            command_line: conn.owner.command_line.clone(),
            blocked_by: None,
        }
    }

    /// Takes one state change seen at wall time `ts_ns`; owners of
    /// connects and listens are completed from `procs` and `cgroups`.
    pub fn handle(
        &mut self,
        e: &TcpEvent,
        ts_ns: i64,
        procs: &mut Processes,
        cgroups: &mut Cgroups,
        out: &mut Vec<L4Event>,
    ) {
        let local = Endpoint {
            ip: ip(e.family, &e.saddr),
            port: e.sport,
        };
        let remote = Endpoint {
            ip: ip(e.family, &e.daddr),
            port: e.dport,
        };
        let comm = c_str(&e.comm);
        match (e.oldstate, e.newstate) {
            // The local port is bound after this change: the connect is
            // reported on the next one (established or refused).
            (CLOSE, SYN_SENT) => {
                let conn = Conn {
                    owner: procs.owner(cgroups, e.pid, comm, &e.task),
                    start_ns: ts_ns,
                    direction: Direction::Egress,
                    src: local,
                    dst: remote,
                };
                self.conns.insert(e.skaddr, conn);
            }
            (SYN_SENT, ESTABLISHED) => {
                if let Some(mut conn) = self.conns.remove(&e.skaddr) {
                    conn.src = local;
                    out.push(self.event(L4Kind::NetworkConnect, &conn, conn.start_ns));
                    self.conns.insert(e.skaddr, conn);
                }
            }
            (CLOSE, LISTEN) => {
                let owner = procs.owner(cgroups, e.pid, comm, &e.task);
                self.listeners.insert((e.netns, e.sport), owner.clone());
                let conn = Conn {
                    owner,
                    start_ns: ts_ns,
                    direction: Direction::None,
                    src: local,
                    dst: local,
                };
                out.push(self.event(L4Kind::NetworkListen, &conn, ts_ns));
            }
            (LISTEN, CLOSE) => {
                self.listeners.remove(&(e.netns, e.sport));
            }
            (SYN_RECV, ESTABLISHED) => {
                let owner = self
                    .listeners
                    .get(&(e.netns, e.sport))
                    .cloned()
                    .unwrap_or_default();
                let conn = Conn {
                    owner,
                    start_ns: ts_ns,
                    direction: Direction::Ingress,
                    src: remote,
                    dst: local,
                };
                out.push(self.event(L4Kind::NetworkAccept, &conn, ts_ns));
                self.conns.insert(e.skaddr, conn);
            }
            (old, CLOSE) => {
                let Some(mut conn) = self.conns.remove(&e.skaddr) else {
                    self.untracked_closes += 1;
                    return;
                };
                if old == SYN_SENT {
                    conn.src = local;
                    out.push(self.event(L4Kind::NetworkConnect, &conn, conn.start_ns));
                }
                let final_state = match old {
                    SYN_SENT | SYN_RECV => FinalState::Refused,
                    CLOSE_WAIT | FIN_WAIT1 => FinalState::HalfClosed,
                    _ => FinalState::Established,
                };
                let syn = u64::from(conn.direction == Direction::Egress);
                let fin_acked = u64::from(matches!(old, LAST_ACK | FIN_WAIT2));
                let peer_fin = u64::from(e.fin_received != 0);
                let mut flow = self.event(L4Kind::NetworkFlow, &conn, ts_ns);
                flow.duration_ns = Some((ts_ns - conn.start_ns).max(0) as u64);
                if final_state == FinalState::Refused {
                    flow.bytes_sent = Some(0);
                    flow.bytes_received = Some(0);
                } else {
                    flow.bytes_sent = Some(e.bytes_acked.saturating_sub(syn + fin_acked));
                    flow.bytes_received = Some(e.bytes_received.saturating_sub(peer_fin));
                }
                flow.final_state = Some(final_state);
                out.push(flow);
            }
            _ => {}
        }
    }

    /// Connections open for longer than `older_than_ns` (or all, with 0)
    /// are reported as stale flows and forgotten.
    pub fn expire(&mut self, now_ns: i64, older_than_ns: i64, out: &mut Vec<L4Event>) {
        let stale: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| now_ns - c.start_ns >= older_than_ns)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(conn) = self.conns.remove(&k) {
                let mut flow = self.event(L4Kind::NetworkFlow, &conn, now_ns);
                flow.duration_ns = Some((now_ns - conn.start_ns).max(0) as u64);
                flow.final_state = Some(FinalState::Stale);
                out.push(flow);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(old: i32, new: i32, sk: u64, sport: u16, dport: u16, pid: u32, comm: &str) -> TcpEvent {
        let mut e = TcpEvent {
            oldstate: old,
            newstate: new,
            skaddr: sk,
            sport,
            dport,
            pid,
            family: 2,
            ..TcpEvent::default()
        };
        e.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        e
    }

    #[test]
    fn a_client_server_exchange_and_a_refused_connect() {
        let id = Identity {
            node: "n".into(),
            sensor_id: "s".into(),
            node_ip: None,
        };
        let mut t = TcpTracker::new(id);
        let (mut procs, mut cg) = (Processes::default(), Cgroups::new(None));
        let mut out = Vec::new();
        t.handle(
            &ev(CLOSE, LISTEN, 1, 8080, 0, 100, "server"),
            0,
            &mut procs,
            &mut cg,
            &mut out,
        );
        t.handle(
            &ev(CLOSE, SYN_SENT, 2, 0, 8080, 200, "client"),
            10,
            &mut procs,
            &mut cg,
            &mut out,
        );
        t.handle(
            &ev(SYN_SENT, ESTABLISHED, 2, 40000, 8080, 0, "swapper"),
            11,
            &mut procs,
            &mut cg,
            &mut out,
        );
        // The accept runs in softirq: another task is current.
        t.handle(
            &ev(SYN_RECV, ESTABLISHED, 3, 8080, 40000, 999, "swapper"),
            12,
            &mut procs,
            &mut cg,
            &mut out,
        );
        let mut close = ev(LAST_ACK, CLOSE, 2, 40000, 8080, 0, "");
        close.fin_received = 1;
        close.bytes_acked = 5002;
        close.bytes_received = 123_457;
        t.handle(&close, 50, &mut procs, &mut cg, &mut out);
        let mut close = ev(FIN_WAIT2, CLOSE, 3, 8080, 40000, 0, "");
        close.bytes_acked = 123_457;
        close.bytes_received = 5000;
        t.handle(&close, 51, &mut procs, &mut cg, &mut out);
        t.handle(
            &ev(CLOSE, SYN_SENT, 4, 0, 9, 200, "client"),
            60,
            &mut procs,
            &mut cg,
            &mut out,
        );
        t.handle(
            &ev(SYN_SENT, CLOSE, 4, 40001, 9, 0, ""),
            61,
            &mut procs,
            &mut cg,
            &mut out,
        );

        let kinds: Vec<L4Kind> = out.iter().map(|e| e.kind).collect();
        use L4Kind::*;
        assert_eq!(
            kinds,
            [
                NetworkListen,
                NetworkConnect,
                NetworkAccept,
                NetworkFlow,
                NetworkFlow,
                NetworkConnect,
                NetworkFlow
            ]
        );
        assert_eq!((out[2].pid, out[2].binary.as_str()), (100, "server"));
        assert_eq!(out[1].src.port, 40000, "the bound port");
        assert_eq!((out[1].pid, out[1].binary.as_str()), (200, "client"));
        assert_eq!(out[2].src.port, 40000, "src is the initiator");
        let client = &out[3];
        assert_eq!(
            (client.pid, client.bytes_sent, client.bytes_received),
            (200, Some(5000), Some(123_456))
        );
        assert_eq!(client.final_state, Some(FinalState::Established));
        assert_eq!(client.duration_ns, Some(40));
        let server = &out[4];
        assert_eq!(
            (server.bytes_sent, server.bytes_received),
            (Some(123_456), Some(5000))
        );
        assert_eq!(out[5].src.port, 40001);
        assert_eq!(out[5].pid, 200);
        assert_eq!(out[6].final_state, Some(FinalState::Refused));
    }

    #[test]
    fn accepts_go_to_the_listener_of_their_network_namespace() {
        let id = Identity {
            node: "n".into(),
            sensor_id: "s".into(),
            node_ip: None,
        };
        let mut t = TcpTracker::new(id);
        let (mut procs, mut cg) = (Processes::default(), Cgroups::new(None));
        let mut out = Vec::new();
        // Pod A's server predates the agent; pod B's listens while it runs.
        t.seed_listener(
            4026531111,
            8080,
            Owner {
                pid: 100,
                comm: "server-a".into(),
                container_id: Some("a".repeat(64)),
                ..Owner::default()
            },
        );
        let mut listen = ev(CLOSE, LISTEN, 1, 8080, 0, 200, "server-b");
        listen.netns = 4026532222;
        t.handle(&listen, 0, &mut procs, &mut cg, &mut out);
        for (sk, netns) in [(10, 4026532222u32), (11, 4026531111), (12, 4026533333)] {
            let mut accept = ev(SYN_RECV, ESTABLISHED, sk, 8080, 40000, 999, "swapper");
            accept.netns = netns;
            t.handle(&accept, 5, &mut procs, &mut cg, &mut out);
        }
        let accepts: Vec<(u32, &str)> = out
            .iter()
            .filter(|e| e.kind == L4Kind::NetworkAccept)
            .map(|e| (e.pid, e.binary.as_str()))
            .collect();
        assert_eq!(accepts, [(200, "server-b"), (100, "server-a"), (0, "")]);
        assert_eq!(out[2].container_id, Some("a".repeat(64)));
        // A listener that closes is forgotten in its namespace only.
        let mut close = ev(LISTEN, CLOSE, 1, 8080, 0, 200, "server-b");
        close.netns = 4026532222;
        t.handle(&close, 9, &mut procs, &mut cg, &mut out);
        assert_eq!(t.listeners(), 1);
    }
}
