//! The fields a KFL query sees on an enriched event and, when there is one,
//! its verdict: policy `when` conditions read [`EventEntry::event`], the CEF
//! filter (`cef.filter`) reads [`EventEntry::verdict`]. Built with feature
//! `kfl`.
//!
//! | path | value |
//! |---|---|
//! | `src.ip`, `dst.ip` | addresses (DNS events: `dst` is the resolver) |
//! | `src.port`, `dst.port` | ports |
//! | `src.name`, `dst.name` | pod name, else DNS name, else node (host) |
//! | `src.namespace`, `src.pod.name`, `src.pod.namespace` (and `dst.`) | pod context |
//! | `src.labels.KEY`, `dst.labels.KEY` | pod labels |
//! | `src.kind`, `dst.kind` | `pod`, `host`, `service`, `external`, `unresolved`, `none` |
//! | `node.name`, `node.ip` | the node that saw the event |
//! | `protocol.name`, `protocol.abbr` | `tcp`/`TCP`, `udp`/`UDP`, `dns`/`DNS`; missing for runtime events |
//! | `transport` | `tcp` or `udp` (the `tcp` and `udp` macros) |
//! | `timestamp` | epoch milliseconds |
//! | `kind` | `network_flow`, `dns_query`, `process_exec`, `file_rename`, ... |
//! | `direction` | `egress`, `ingress`, `none` (L4 events) |
//! | `mode`, `outcome` | `audit`/`enforce`/`other`, `allowed`/`audited`/`blocked` (verdicts only) |
//! | `policy`, `rule`, `signature_id`, `severity` | the verdict (verdicts only) |
//! | `binary`, `container_id`, `path`, `old_path`, `command_line`, `uid` | process and file fields |
//! | `bytes_sent`, `bytes_received`, `duration_ms` | flow counters (network_flow) |
//! | `dns.name` | the queried name of a DNS event |

use crate::events::{EnrichedEvent, EventBody, PeerContext, PeerKind, Protocol, Verdict};
use tapwire_kfl::{Entry, Lookup, Path, Segment, Value};

/// An enriched event, and its verdict when judged, as KFL sees it.
#[derive(Debug, Clone, Copy)]
pub struct EventEntry<'a> {
    event: &'a EnrichedEvent,
    verdict: Option<&'a Verdict>,
}

impl<'a> EventEntry<'a> {
    /// An event before judgement: the verdict paths are missing.
    pub fn event(event: &'a EnrichedEvent) -> Self {
        EventEntry {
            event,
            verdict: None,
        }
    }

    /// A verdict and the event it judged.
    pub fn verdict(verdict: &'a Verdict) -> Self {
        EventEntry {
            event: &verdict.event,
            verdict: Some(verdict),
        }
    }
}

fn str_or_missing(s: Option<&str>) -> Lookup<'_> {
    s.map_or(Lookup::Missing, |s| Lookup::One(Value::Str(s)))
}

fn peer_name(peer: &PeerContext) -> Option<&str> {
    match peer.kind {
        PeerKind::Pod => peer.pod.as_deref(),
        PeerKind::Host => peer.node.as_deref(),
        _ => peer.dns_name.as_deref(),
    }
}

impl Entry for EventEntry<'_> {
    fn get(&self, path: &Path) -> Lookup<'_> {
        let e = self.event;
        let h = e.header();
        let (l4, dns, rt) = match &e.body {
            EventBody::L4(l) => (Some(l), None, None),
            EventBody::Dns(d) => (None, Some(d), None),
            EventBody::Runtime(r) => (None, None, Some(r)),
        };
        let one = Lookup::One;
        match path.as_str() {
            "src.ip" => l4.map_or(Lookup::Missing, |l| one(Value::Ip(l.src.ip.0))),
            "dst.ip" => l4
                .map(|l| l.dst.ip.0)
                .or(dns.and_then(|d| d.resolver.map(|r| r.ip.0)))
                .map_or(Lookup::Missing, |ip| one(Value::Ip(ip))),
            "src.port" => l4.map_or(Lookup::Missing, |l| one(Value::Int(i64::from(l.src.port)))),
            "dst.port" => l4
                .map(|l| l.dst.port)
                .or(dns.and_then(|d| d.resolver.map(|r| r.port)))
                .map_or(Lookup::Missing, |p| one(Value::Int(i64::from(p)))),
            "src.name" => str_or_missing(peer_name(&e.src)),
            "dst.name" => str_or_missing(peer_name(&e.dst)),
            "src.namespace" | "src.pod.namespace" => str_or_missing(e.src.namespace.as_deref()),
            "dst.namespace" | "dst.pod.namespace" => str_or_missing(e.dst.namespace.as_deref()),
            "src.pod.name" => str_or_missing(e.src.pod.as_deref()),
            "dst.pod.name" => str_or_missing(e.dst.pod.as_deref()),
            "node.name" => one(Value::Str(&h.node)),
            "node.ip" => h.node_ip.map_or(Lookup::Missing, |ip| one(Value::Ip(ip.0))),
            "transport" | "protocol.name" | "protocol.abbr" => {
                // (transport, protocol name, protocol abbreviation)
                let names = match (l4.map(|l| l.protocol), dns.is_some()) {
                    (Some(Protocol::Tcp), _) => ("tcp", "tcp", "TCP"),
                    (Some(Protocol::Udp), _) => ("udp", "udp", "UDP"),
                    (None, true) => ("udp", "dns", "DNS"),
                    (None, false) => return Lookup::Missing,
                };
                one(Value::Str(match path.as_str() {
                    "transport" => names.0,
                    "protocol.name" => names.1,
                    _ => names.2,
                }))
            }
            "timestamp" => one(Value::Int(h.timestamp_ns.div_euclid(1_000_000))),
            "kind" => one(Value::Str(match &e.body {
                EventBody::L4(l) => l.kind.as_str(),
                EventBody::Dns(d) => d.kind.as_str(),
                EventBody::Runtime(r) => r.kind.as_str(),
            })),
            "mode" | "outcome" | "policy" | "rule" | "signature_id" | "severity" => self
                .verdict
                .map_or(Lookup::Missing, |v| verdict_field(v, path.as_str())),
            "direction" => l4.map_or(Lookup::Missing, |l| one(Value::Str(l.direction.as_str()))),
            "binary" => one(Value::Str(e.body.binary())),
            "container_id" => str_or_missing(e.body.container_id()),
            "path" => str_or_missing(rt.and_then(|r| r.path.as_deref())),
            "old_path" => str_or_missing(rt.and_then(|r| r.old_path.as_deref())),
            "command_line" => str_or_missing(rt.and_then(|r| r.command_line.as_deref())),
            "dns.name" => str_or_missing(dns.map(|d| d.name.as_str())),
            "uid" => rt.map_or(Lookup::Missing, |r| one(Value::Int(i64::from(r.uid)))),
            "bytes_sent" => l4
                .and_then(|l| l.bytes_sent)
                .map_or(Lookup::Missing, |b| one(Value::Int(b as i64))),
            "bytes_received" => l4
                .and_then(|l| l.bytes_received)
                .map_or(Lookup::Missing, |b| one(Value::Int(b as i64))),
            "duration_ms" => l4
                .and_then(|l| l.duration_ns)
                .map_or(Lookup::Missing, |d| one(Value::Int((d / 1_000_000) as i64))),
            "src.kind" => one(Value::Str(e.src.kind.as_str())),
            "dst.kind" => one(Value::Str(e.dst.kind.as_str())),
            // `src.labels.app`, `dst.labels["app.kubernetes.io/name"]`
            _ => match path.segments() {
                [Segment::Key(side), Segment::Key(labels), Segment::Key(key)]
                    if &**labels == "labels" =>
                {
                    let peer = match &**side {
                        "src" => &e.src,
                        "dst" => &e.dst,
                        _ => return Lookup::Missing,
                    };
                    str_or_missing(peer.labels.get(&**key).map(String::as_str))
                }
                _ => Lookup::Missing,
            },
        }
    }
}

fn verdict_field<'v>(v: &'v Verdict, path: &str) -> Lookup<'v> {
    Lookup::One(match path {
        "mode" => Value::Str(v.mode.as_str()),
        "outcome" => Value::Str(v.outcome.as_str()),
        "policy" => return str_or_missing(v.policy.as_deref()),
        "rule" => return str_or_missing(v.rule.as_deref()),
        "signature_id" => Value::Str(&v.signature_id),
        _ => Value::Int(i64::from(v.severity)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Mode, Outcome};
    use crate::samples;

    #[test]
    fn filters_see_the_verdict_and_its_event() {
        let mut v = samples::flow_verdict(samples::header("node-a", "s", 1, 5_000_000), 1);
        let entry = EventEntry::verdict(&v);
        let matches = |q: &str, e: &EventEntry<'_>| tapwire_kfl::compile(q).expect(q).matches(e, 0);
        assert!(matches(
            r#"tcp and src.name == "web-1" and dst.name == "example.com""#,
            &entry
        ));
        assert!(matches(
            r#"mode == "other" and kind == "network_flow" and dst.port == 8080"#,
            &entry
        ));
        assert!(matches(
            r#"src.ip == "10.1.1.1" and timestamp == 5"#,
            &entry
        ));
        assert!(!matches("udp or dns", &entry));
        assert!(matches(
            r#"src.labels.app == "web-1" and src.kind == "pod" and dst.kind == "external""#,
            &entry
        ));
        assert!(!matches(
            r#"src.labels["app.kubernetes.io/name"] == "web-1""#,
            &entry
        ));
        assert!(
            !matches(r#"path == "/etc""#, &entry),
            "a missing field never matches"
        );
        let mut dns = v.clone();
        dns.event.body = EventBody::Dns(samples::dns_resolution(samples::header(
            "node-a", "s", 2, 1,
        )));
        let entry = EventEntry::verdict(&dns);
        assert!(matches(
            r#"dns and udp and protocol.name == "dns" and dns.name == "example.com""#,
            &entry
        ));
        assert!(!matches("tcp", &entry));
        let before = EventEntry::event(&v.event);
        assert!(matches(r#"kind == "network_flow""#, &before));
        assert!(
            !matches(r#"mode == "other""#, &before),
            "an unjudged event has no verdict fields"
        );
        v.mode = Mode::Enforce;
        v.outcome = Outcome::Blocked;
        assert!(matches(
            r#"outcome == "blocked" && src.namespace == "shop""#,
            &EventEntry::verdict(&v)
        ));
    }
}
