//! Name lookups: `getaddrinfo` calls seen by the uprobes become
//! `dns_lookup` events, and a connect from the same container (or, on the
//! host, the same process) to an address a lookup returned, within a window,
//! becomes a `dns_resolution` naming the host name, the address and the
//! connect event.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use tapwire_schemas::{DnsEvent, DnsKind, EventId, L4Event};

use super::owners::Owner;
use super::wire::{LookupEvent, c_str};
use crate::Identity;

/// Who a lookup and a connect must share: the container, else the process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Asker {
    Container(String),
    Process(u32),
}

impl Asker {
    fn of(container_id: Option<&str>, pid: u32) -> Asker {
        match container_id {
            Some(id) => Asker::Container(id.to_owned()),
            None => Asker::Process(pid),
        }
    }
}

#[derive(Debug)]
struct Answer {
    name: String,
    ip: IpAddr,
    ts_ns: i64,
}

/// Names of `getaddrinfo`'s error codes (glibc's and musl's values).
fn eai_name(ret: i32) -> String {
    match ret {
        0 => "NOERROR".to_owned(),
        -1 => "EAI_BADFLAGS".to_owned(),
        -2 => "EAI_NONAME".to_owned(),
        -3 => "EAI_AGAIN".to_owned(),
        -4 => "EAI_FAIL".to_owned(),
        -5 => "EAI_NODATA".to_owned(),
        -6 => "EAI_FAMILY".to_owned(),
        -8 => "EAI_SERVICE".to_owned(),
        -10 => "EAI_MEMORY".to_owned(),
        -11 => "EAI_SYSTEM".to_owned(),
        other => format!("EAI_{other}"),
    }
}

/// Keeps recent answers per asker and matches connects against them.
#[derive(Debug)]
pub struct Lookups {
    identity: Identity,
    window_ns: i64,
    answers: HashMap<Asker, VecDeque<Answer>>,
    seq: u64,
}

/// Answers kept per asker; askers kept before the map starts over.
const PER_ASKER: usize = 64;
const ASKERS: usize = 20_000;

impl Lookups {
    /// Resolutions are connects within `window_ns` of their lookup.
    pub fn new(identity: Identity, window_ns: i64) -> Self {
        Lookups {
            identity,
            window_ns,
            answers: HashMap::new(),
            seq: 0,
        }
    }

    /// The `dns_lookup` of record `e` made by `owner` at wall time `ts_ns`;
    /// its answers are kept for the connects that follow.
    pub fn lookup(&mut self, e: &LookupEvent, owner: Owner, ts_ns: i64) -> DnsEvent {
        self.seq += 1;
        let name = c_str(&e.name);
        let mut answers: Vec<IpAddr> = Vec::new();
        for i in 0..(e.naddrs as usize).min(e.families.len()) {
            let ip = match e.families[i] {
                2 | 10 => super::tcp::ip(e.families[i], &e.addrs[i]).0,
                _ => continue,
            };
            // One entry per socket type (stream, datagram, raw) repeats it.
            if !answers.contains(&ip) {
                answers.push(ip);
            }
        }
        let query_type = match (
            answers.iter().any(IpAddr::is_ipv4),
            answers.iter().any(IpAddr::is_ipv6),
        ) {
            (true, true) => "A,AAAA",
            (true, false) => "A",
            (false, true) => "AAAA",
            (false, false) => "",
        };
        let asker = Asker::of(owner.container_id.as_deref(), owner.pid);
        if self.answers.len() >= ASKERS && !self.answers.contains_key(&asker) {
            self.answers.clear();
        }
        let kept = self.answers.entry(asker).or_default();
        for ip in &answers {
            if kept.len() >= PER_ASKER {
                kept.pop_front();
            }
            kept.push_back(Answer {
                name: name.clone(),
                ip: *ip,
                ts_ns,
            });
        }
        DnsEvent {
            header: self.identity.header(
                ts_ns,
                &[
                    b"dns_lookup",
                    &e.pid.to_le_bytes(),
                    &ts_ns.to_le_bytes(),
                    &self.seq.to_le_bytes(),
                ],
            ),
            kind: DnsKind::DnsLookup,
            pid: owner.pid,
            binary: owner.comm,
            container_id: owner.container_id,
            name,
            query_type: query_type.to_owned(),
            answers: answers.iter().map(ToString::to_string).collect(),
            resolver: None,
            response_code: Some(eai_name(e.ret)),
            client: None,
            connection: None,
        }
    }

    /// The `dns_resolution` of connect event `c`, when its asker looked its
    /// destination up within the window (each answer resolves one connect).
    pub fn connect(&mut self, c: &L4Event) -> Option<DnsEvent> {
        let asker = Asker::of(c.container_id.as_deref(), c.pid);
        let ts = c.header.timestamp_ns;
        let kept = self.answers.get_mut(&asker)?;
        while kept.front().is_some_and(|a| ts - a.ts_ns > self.window_ns) {
            kept.pop_front();
        }
        let at = kept
            .iter()
            .rposition(|a| a.ip == c.dst.ip.0 && a.ts_ns <= ts)?;
        let answer = kept.remove(at)?;
        if kept.is_empty() {
            self.answers.remove(&asker);
        }
        Some(DnsEvent {
            header: self.identity.header(
                ts,
                &[b"dns_resolution", &c.header.id.0, answer.name.as_bytes()],
            ),
            kind: DnsKind::DnsResolution,
            pid: c.pid,
            binary: c.binary.clone(),
            container_id: c.container_id.clone(),
            name: answer.name,
            query_type: if answer.ip.is_ipv4() { "A" } else { "AAAA" }.to_owned(),
            answers: vec![answer.ip.to_string()],
            resolver: None,
            response_code: Some("NOERROR".to_owned()),
            client: Some(c.src),
            connection: Some(EventId(c.header.id.0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_schemas::{Direction, Endpoint, Ip, L4Kind, Protocol};

    fn identity() -> Identity {
        Identity {
            node: "n".into(),
            sensor_id: "s".into(),
            node_ip: None,
        }
    }

    fn lookup_record(name: &str, addrs: &[[u8; 4]]) -> LookupEvent {
        let mut e = LookupEvent {
            kind: super::super::wire::TW_DNS_LOOKUP,
            pid: 42,
            ts_ns: 0,
            task: Default::default(),
            ret: 0,
            naddrs: addrs.len() as u32 * 2,
            families: [0; 8],
            addrs: [[0; 16]; 8],
            comm: [0; 16],
            name: [0; 256],
        };
        e.name[..name.len()].copy_from_slice(name.as_bytes());
        for (i, a) in addrs.iter().enumerate() {
            // Each address twice, as getaddrinfo lists it per socket type.
            for j in [2 * i, 2 * i + 1] {
                e.families[j] = 2;
                e.addrs[j][..4].copy_from_slice(a);
            }
        }
        e
    }

    fn connect(pid: u32, container: Option<&str>, dst: [u8; 4], ts: i64) -> L4Event {
        let ip = |a: [u8; 4]| Ip(IpAddr::from(a));
        L4Event {
            header: identity().header(ts, &[&ts.to_le_bytes()]),
            kind: L4Kind::NetworkConnect,
            pid,
            binary: "curl".into(),
            container_id: container.map(str::to_owned),
            src: Endpoint {
                ip: ip([10, 0, 0, 5]),
                port: 40000,
            },
            dst: Endpoint {
                ip: ip(dst),
                port: 443,
            },
            protocol: Protocol::Tcp,
            direction: Direction::Egress,
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

    #[test]
    fn a_connect_after_a_lookup_of_its_address_is_a_resolution() {
        let mut l = Lookups::new(identity(), 30_000_000_000);
        let owner = Owner {
            pid: 42,
            comm: "curl".into(),
            container_id: Some("c1".into()),
            ..Owner::default()
        };
        let ev = l.lookup(
            &lookup_record("api.shop.test", &[[10, 9, 9, 9], [10, 9, 9, 8]]),
            owner,
            1_000,
        );
        assert_eq!(ev.kind, DnsKind::DnsLookup);
        assert_eq!(
            ev.answers,
            ["10.9.9.9", "10.9.9.8"],
            "one entry per address"
        );
        assert_eq!(
            (ev.query_type.as_str(), ev.response_code.as_deref()),
            ("A", Some("NOERROR"))
        );
        // Another container connecting there is not this lookup's resolution.
        assert!(
            l.connect(&connect(7, Some("c2"), [10, 9, 9, 9], 2_000))
                .is_none()
        );
        let c = connect(43, Some("c1"), [10, 9, 9, 9], 2_000);
        let r = l.connect(&c).expect("resolution");
        assert_eq!(
            (r.name.as_str(), r.answers.as_slice()),
            ("api.shop.test", &["10.9.9.9".to_owned()][..])
        );
        assert_eq!(r.connection, Some(c.header.id));
        assert_eq!(r.client, Some(c.src));
        assert!(l.connect(&c).is_none(), "an answer resolves one connect");
        // Past the window, the other answer no longer resolves anything.
        assert!(
            l.connect(&connect(43, Some("c1"), [10, 9, 9, 8], 40_000_000_000))
                .is_none()
        );
    }

    #[test]
    fn failed_lookups_name_the_error() {
        let mut l = Lookups::new(identity(), 1);
        let mut e = lookup_record("nope.invalid", &[]);
        e.ret = -2;
        let ev = l.lookup(&e, Owner::default(), 5);
        assert_eq!(ev.response_code.as_deref(), Some("EAI_NONAME"));
        assert!(ev.answers.is_empty());
    }
}
