//! Connection counts kept in memory, for `tapwire run` and `tapwire demo`
//! (no ClickHouse): the same rows and tabs as the ClickHouse view, over
//! everything seen since start rather than a time window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::{BatchHandler, HandlerError};
use tapwire_plumbing::dlq::Rejection;
use tapwire_schemas::events::Verdict;
use tapwire_schemas::{AnyEvent, decode_any};

use crate::query::{Connection, ConnectionsView, Edge};
use crate::rows::{counts_as_connection, domain, s, workload};

type Key = (
    &'static str, // mode
    &'static str, // protocol
    (&'static str, String, String, String, String),
    (&'static str, String, String, String, String, u16),
);

#[derive(Debug, Default)]
struct Acc {
    connections: u64,
    first_ns: i64,
    last_ns: i64,
    last_src_port: u16,
    dst_domain: String,
}

/// Connection counts since start.
#[derive(Debug, Default)]
pub struct MemoryConnections {
    map: HashMap<Key, Acc>,
    verdicts: u64,
}

impl MemoryConnections {
    /// Counts `v` if it is a connection (same rule as ClickHouse ingest).
    pub fn add(&mut self, v: &Verdict) {
        self.verdicts += 1;
        let e = &v.event;
        let Some(l4) = &e.l4 else { return };
        if !counts_as_connection(l4, &e.src) {
            return;
        }
        let key = (
            v.mode.as_str(),
            l4.protocol.as_str(),
            (
                e.src.kind.as_str(),
                s(&e.src.namespace),
                workload(&e.src),
                s(&e.src.pod),
                l4.src.ip.to_string(),
            ),
            (
                e.dst.kind.as_str(),
                s(&e.dst.namespace),
                workload(&e.dst),
                s(&e.dst.pod),
                l4.dst.ip.to_string(),
                l4.dst.port,
            ),
        );
        let ns = l4.header.timestamp_ns;
        let acc = self.map.entry(key).or_insert_with(|| Acc {
            first_ns: ns,
            last_ns: ns,
            last_src_port: l4.src.port,
            ..Acc::default()
        });
        acc.connections += 1;
        acc.first_ns = acc.first_ns.min(ns);
        if ns >= acc.last_ns {
            acc.last_ns = ns;
            acc.last_src_port = l4.src.port;
        }
        if acc.dst_domain.is_empty() {
            acc.dst_domain = domain(&e.dst);
        }
    }

    /// Verdicts seen (connections or not).
    pub fn verdicts(&self) -> u64 {
        self.verdicts
    }

    /// The view: tabs sorted like the ClickHouse view, at most `limit` rows
    /// each, and the edges.
    pub fn view(&self, limit: usize) -> ConnectionsView {
        let mut rows: Vec<Connection> = self
            .map
            .iter()
            .map(|(k, a)| Connection {
                mode: k.0.to_owned(),
                protocol: k.1.to_owned(),
                src_kind: k.2.0.to_owned(),
                src_namespace: k.2.1.clone(),
                src_workload: k.2.2.clone(),
                src_pod: k.2.3.clone(),
                src_ip: k.2.4.clone(),
                src_port: a.last_src_port,
                dst_kind: k.3.0.to_owned(),
                dst_namespace: k.3.1.clone(),
                dst_workload: k.3.2.clone(),
                dst_pod: k.3.3.clone(),
                dst_ip: k.3.4.clone(),
                dst_port: k.3.5,
                dst_domain: a.dst_domain.clone(),
                connections: a.connections,
                last_seen_ns: a.last_ns,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.connections
                .cmp(&a.connections)
                .then(b.last_seen_ns.cmp(&a.last_seen_ns))
                .then_with(|| {
                    (&a.src_pod, &a.dst_ip, a.dst_port).cmp(&(&b.src_pod, &b.dst_ip, b.dst_port))
                })
        });
        let tab = |m: &str| -> Vec<Connection> {
            rows.iter()
                .filter(|r| r.mode == m)
                .take(limit)
                .cloned()
                .collect()
        };
        let mut edges: HashMap<(String, String, String, String), Edge> = HashMap::new();
        for r in &rows {
            let or = |a: &str, b: &str| {
                if a.is_empty() {
                    b.to_owned()
                } else {
                    a.to_owned()
                }
            };
            let src = or(&r.src_workload, &or(&r.src_pod, &r.src_ip));
            let dst = or(
                &r.dst_workload,
                &or(&r.dst_pod, &or(&r.dst_domain, &r.dst_ip)),
            );
            let e = edges
                .entry((
                    r.src_namespace.clone(),
                    src.clone(),
                    r.dst_namespace.clone(),
                    dst.clone(),
                ))
                .or_insert_with(|| Edge {
                    src_namespace: r.src_namespace.clone(),
                    src,
                    dst_namespace: r.dst_namespace.clone(),
                    dst,
                    audit: 0,
                    enforce: 0,
                    other: 0,
                    last_seen_ns: 0,
                });
            match r.mode.as_str() {
                "audit" => e.audit += r.connections,
                "enforce" => e.enforce += r.connections,
                _ => e.other += r.connections,
            }
            e.last_seen_ns = e.last_seen_ns.max(r.last_seen_ns);
        }
        let mut edges: Vec<Edge> = edges.into_values().collect();
        edges.sort_by(|a, b| {
            (b.audit + b.enforce + b.other)
                .cmp(&(a.audit + a.enforce + a.other))
                .then_with(|| (&a.src, &a.dst).cmp(&(&b.src, &b.dst)))
        });
        edges.truncate(limit);
        let secs = |ns: i64| u32::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0);
        ConnectionsView {
            from_s: secs(self.map.values().map(|a| a.first_ns).min().unwrap_or(0)),
            until_s: secs(self.map.values().map(|a| a.last_ns).max().unwrap_or(0)),
            audit: tab("audit"),
            enforce: tab("enforce"),
            other: tab("other"),
            edges,
        }
    }
}

/// A consumer-loop handler counting verdicts into shared
/// [`MemoryConnections`].
pub struct MemoryAggregate(pub Arc<Mutex<MemoryConnections>>);

impl BatchHandler for MemoryAggregate {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let mut rejections = Vec::new();
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (index, m) in batch.iter().enumerate() {
            match decode_any(&m.payload) {
                Ok(AnyEvent::Verdict(v)) => counts.add(&v),
                Ok(AnyEvent::LossRecord(_) | AnyEvent::InventorySnapshot(_)) => {}
                Ok(other) => rejections.push(Rejection::wrong_schema(
                    index,
                    "the connection counts read verdicts",
                    other.kind(),
                )),
                Err(err) => rejections.push(Rejection::undecodable(index, &err)),
            }
        }
        Ok(rejections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_schemas::events::{L4Kind, Mode, Outcome};
    use tapwire_schemas::samples;

    #[test]
    fn tabs_and_edges_count_connections_once() {
        let mut m = MemoryConnections::default();
        for i in 0..10 {
            let mut v = samples::flow_verdict(samples::header("n", "s", i, i as i64 * 1000), 1);
            v.event.l4.as_mut().expect("l4").kind = L4Kind::NetworkConnect;
            (v.mode, v.outcome) = if i < 7 {
                (Mode::Enforce, Outcome::Blocked)
            } else {
                (Mode::Audit, Outcome::Audited)
            };
            m.add(&v);
            // The flow of the same connection does not count.
            let flow = samples::flow_verdict(samples::header("n", "s", i + 100, 1), 1);
            m.add(&flow);
        }
        let view = m.view(10);
        assert_eq!(view.enforce.len(), 1);
        assert_eq!(view.enforce[0].connections, 7);
        assert_eq!(view.enforce[0].last_seen_ns, 6000);
        assert_eq!(view.audit[0].connections, 3);
        assert!(view.other.is_empty());
        assert_eq!((view.edges[0].enforce, view.edges[0].audit), (7, 3));
        assert_eq!(m.verdicts(), 20);
    }
}
