//! Connection counts kept in memory, for `tapwire run` and `tapwire demo`
//! (no ClickHouse): the same rows and tabs as the ClickHouse view, over
//! everything seen since start rather than a time window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::{BatchHandler, HandlerError};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::stage::{BoxError, BuildContext, Stage};
use tapwire_schemas::events::Verdict;
use tapwire_schemas::{AnyEvent, decode_any, topics};

use crate::query::{Connection, ConnectionsView, Edge, TabTotals};
use crate::rows::{CountRow, Counts};

/// Connection counts since start.
#[derive(Debug)]
pub struct MemoryConnections {
    counts: Counts,
    verdicts: u64,
    blocked: u64,
    not_prevented: u64,
}

impl Default for MemoryConnections {
    fn default() -> Self {
        MemoryConnections {
            counts: Counts::whole_run(),
            verdicts: 0,
            blocked: 0,
            not_prevented: 0,
        }
    }
}

impl MemoryConnections {
    /// Counts `v` if it is a connection (the rule and the code of the
    /// ClickHouse ingest, without minute buckets).
    pub fn add(&mut self, v: &Verdict) {
        self.verdicts += 1;
        match v.outcome {
            tapwire_schemas::events::Outcome::Blocked => self.blocked += 1,
            tapwire_schemas::events::Outcome::NotPrevented => self.not_prevented += 1,
            _ => {}
        }
        self.counts.add(&v.view(), 0, 0);
    }

    /// Verdicts seen (connections or not).
    pub fn verdicts(&self) -> u64 {
        self.verdicts
    }

    /// Enforce-mode violations counted: (refused by a node's kernel, went
    /// through), over every event kind.
    pub fn enforce_outcomes(&self) -> (u64, u64) {
        (self.blocked, self.not_prevented)
    }

    /// The view: tabs sorted like the ClickHouse view, at most `limit` rows
    /// each, and the edges.
    pub fn view(&self, limit: usize) -> ConnectionsView {
        self.view_of(limit, None)
    }

    /// The view of the connections of one edge (`pair`, names as the
    /// view's edges give them), or of all.
    pub fn view_of(&self, limit: usize, pair: Option<&crate::query::Pair>) -> ConnectionsView {
        let counted: Vec<CountRow> = self.counts.iter().collect();
        let mut rows: Vec<Connection> = counted
            .iter()
            .map(|r| Connection {
                mode: r.mode.clone(),
                protocol: r.protocol.clone(),
                src_kind: r.src_kind.clone(),
                src_namespace: r.src_namespace.clone(),
                src_workload: r.src_workload.clone(),
                src_pod: r.src_pod.clone(),
                src_ip: r.src_ip.clone(),
                src_port: r.src_port,
                src_domain: r.src_domain.clone(),
                dst_kind: r.dst_kind.clone(),
                dst_namespace: r.dst_namespace.clone(),
                dst_workload: r.dst_workload.clone(),
                dst_pod: r.dst_pod.clone(),
                dst_ip: r.dst_ip.clone(),
                dst_port: r.dst_port,
                dst_domain: r.dst_domain.clone(),
                connections: r.connections,
                last_seen_ns: r.last_seen_ns,
            })
            .collect();
        if let Some(pair) = pair {
            rows.retain(|r| {
                let (src, dst) = edge_names(r);
                r.src_namespace == pair.src_namespace
                    && src == pair.src
                    && r.dst_namespace == pair.dst_namespace
                    && dst == pair.dst
            });
        }
        rows.sort_by(|a, b| {
            b.connections
                .cmp(&a.connections)
                .then(b.last_seen_ns.cmp(&a.last_seen_ns))
                .then_with(|| {
                    (&a.src_pod, &a.dst_ip, a.dst_port).cmp(&(&b.src_pod, &b.dst_ip, b.dst_port))
                })
        });
        let mut totals = TabTotals::default();
        let mut row_counts = TabTotals::default();
        for r in &rows {
            let (total, count) = match r.mode.as_str() {
                "audit" => (&mut totals.audit, &mut row_counts.audit),
                "enforce" => (&mut totals.enforce, &mut row_counts.enforce),
                _ => (&mut totals.other, &mut row_counts.other),
            };
            *total += r.connections;
            *count += 1;
        }
        let tab = |m: &str| -> Vec<Connection> {
            rows.iter()
                .filter(|r| r.mode == m)
                .take(limit)
                .cloned()
                .collect()
        };
        let mut edges: HashMap<(String, String, String, String), Edge> = HashMap::new();
        for r in &rows {
            let (src, dst) = edge_names(r);
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
        ConnectionsView {
            from_s: counted.iter().map(|r| r.first_seen).min().unwrap_or(0),
            until_s: counted.iter().map(|r| r.last_seen).max().unwrap_or(0),
            totals,
            rows: row_counts,
            audit: tab("audit"),
            enforce: tab("enforce"),
            other: tab("other"),
            edges,
        }
    }
}

/// The names an edge gives a connection's ends: workload, else pod, else
/// domain name, else address (as ClickHouse's view names them).
fn edge_names(r: &Connection) -> (String, String) {
    let or = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else {
            a.to_owned()
        }
    };
    (
        or(
            &r.src_workload,
            &or(&r.src_pod, &or(&r.src_domain, &r.src_ip)),
        ),
        or(
            &r.dst_workload,
            &or(&r.dst_pod, &or(&r.dst_domain, &r.dst_ip)),
        ),
    )
}

/// The aggregate stage of `tapwire run`: verdicts counted into shared
/// [`MemoryConnections`] instead of ClickHouse.
pub struct MemoryCounts {
    /// Consumer group.
    pub group: String,
    /// Where the counts go (read by whoever holds the other end).
    pub counts: Arc<Mutex<MemoryConnections>>,
}

impl Stage for MemoryCounts {
    type Handler = MemoryAggregate;

    fn name(&self) -> &'static str {
        "aggregate"
    }

    fn group(&self) -> String {
        self.group.clone()
    }

    fn inputs(&self) -> Vec<String> {
        vec![topics::VERDICTS.into()]
    }

    async fn build(self, _cx: &BuildContext) -> Result<MemoryAggregate, BoxError> {
        Ok(MemoryAggregate(self.counts))
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

    fn report(&self) -> String {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        format!("{} verdicts counted", counts.verdicts())
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
            v.event.body.as_l4_mut().expect("l4").kind = L4Kind::NetworkConnect;
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
