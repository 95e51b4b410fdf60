//! Issue 15, connection semantics: one connection counts once, whoever sees
//! it (the connect and the accept of a pod-to-pod or host-to-pod connection,
//! both ends of a connection in packets), and its tab is the most severe of
//! the source's egress and the destination's ingress decisions. Events are
//! judged by the real policy engine and counted into a real ClickHouse, and
//! by the in-memory counts of `tapwire run`, with exact numbers per tab.

use std::collections::BTreeMap;

use tapwire_aggregator::memory::MemoryConnections;
use tapwire_aggregator::query;
use tapwire_aggregator::sink::AggregateStage;
use tapwire_plumbing::consumer::BatchHandler;
use tapwire_policy_engine::{PolicySet, parse};
use tapwire_schemas::events::*;
use tapwire_schemas::samples;

mod common;
use common::*;

const POLICIES: &str = "\
apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: shop}
spec:
  mode: enforce
  selector: {matchLabels: {app: web}}
  egress:
    - name: to-api
      to: [{pod: {namespace: shop, matchLabels: {app: api}}}]
      ports: [8080]
---
apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  mode: enforce
  selector: {matchLabels: {app: db}}
  ingress:
    - name: from-shop
      from: [{pod: {namespace: shop}}]
---
apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {name: api-ingress, namespace: shop}
spec:
  mode: audit
  selector: {matchLabels: {app: api}}
  ingress:
    - name: from-web
      from: [{pod: {namespace: shop, matchLabels: {app: web}}}]
";

fn host() -> PeerContext {
    let mut p = PeerContext::of_kind(PeerKind::Host);
    p.node = Some("node-a".into());
    p
}

/// An L4 event `kind` of the connection `src:sport -> dst:dport`.
#[allow(clippy::too_many_arguments)]
fn event(
    kind: L4Kind,
    src: (&PeerContext, &str, u16),
    dst: (&PeerContext, &str, u16),
    ns: i64,
    seq: u64,
) -> EnrichedEvent {
    let mut e = samples::l4_flow(samples::header("node-a", "sensor-a", seq, ns), seq);
    e.kind = kind;
    e.direction = match kind {
        L4Kind::NetworkAccept => Direction::Ingress,
        _ => Direction::Egress,
    };
    e.protocol = Protocol::Tcp;
    e.src = Endpoint {
        ip: src.1.parse().expect("ip"),
        port: src.2,
    };
    e.dst = Endpoint {
        ip: dst.1.parse().expect("ip"),
        port: dst.2,
    };
    EnrichedEvent {
        body: EventBody::L4(e),
        src: src.0.clone(),
        dst: dst.0.clone(),
    }
}

#[tokio::test]
async fn each_connection_counts_once_under_the_most_severe_side() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let documents = parse("policies.yaml", POLICIES).expect("policies parse");
    let policies = PolicySet::compile(&documents).expect("policies compile");
    let (web, api, db, tool, peer) = (
        samples::pod_peer("web", "shop"),
        samples::pod_peer("api", "shop"),
        samples::pod_peer("db", "shop"),
        samples::pod_peer("tool", "dev"),
        samples::pod_peer("peer", "dev"),
    );
    let (outside, node) = (external("scanner.example"), host());
    let base = now_ns() - 120_000_000_000;
    let mut events = Vec::new();
    let mut seq = 0;
    let mut add =
        |kinds: &[L4Kind], src: (&PeerContext, &str, u16), dst: (&PeerContext, &str, u16)| {
            for kind in kinds {
                seq += 1;
                events.push(event(*kind, src, dst, base + seq as i64 * 1_000_000, seq));
            }
        };
    use L4Kind::{NetworkAccept as Accept, NetworkConnect as Connect, NetworkFlow as Flow};
    let both = [Connect, Accept, Flow];
    // web -> api: web's egress allows it (enforce), api's ingress allows it
    // (audit): Enforce, once, though both sensors saw it.
    for port in 40000..40003 {
        add(&both, (&web, "10.1.0.7", port), (&api, "10.1.2.3", 8080));
    }
    // tool (dev, no policy) -> db: db's enforce-mode ingress denies it.
    add(&both, (&tool, "10.2.0.9", 41000), (&db, "10.1.5.5", 5432));
    // tool -> api: api's audit-mode ingress denies it.
    add(&both, (&tool, "10.2.0.9", 41001), (&api, "10.1.2.3", 8080));
    // The kubelet probing api: the host's connect and api's accept are one
    // connection; the ingress policy audits it.
    for port in 50000..50004 {
        add(
            &[Connect, Accept],
            (&node, "192.168.10.11", port),
            (&api, "10.1.2.3", 8080),
        );
    }
    // web -> outside: web's egress denies it (enforce).
    add(
        &[Connect, Flow],
        (&web, "10.1.0.7", 42000),
        (&outside, "203.0.113.9", 443),
    );
    // outside -> db, seen only at db's accept: db's ingress denies it.
    add(
        &[Accept],
        (&outside, "203.0.113.9", 43000),
        (&db, "10.1.5.5", 5432),
    );
    // outside -> api from packets (both ends derived): once, audited.
    add(
        &[Connect, Accept],
        (&outside, "203.0.113.9", 43001),
        (&api, "10.1.2.3", 8080),
    );
    // tool -> peer in dev: no policy on either side.
    add(
        &both,
        (&tool, "10.2.0.9", 44000),
        (&peer, "10.2.0.10", 9000),
    );

    let verdicts: Vec<Verdict> = events.into_iter().map(|e| policies.judge(e)).collect();
    // Each event keeps its own side's decision (what CEF reports): the
    // accept of tool -> db is the violation, its connect is not covered.
    let tool_db: Vec<&Verdict> = verdicts
        .iter()
        .filter(|v| {
            v.event.dst.pod.as_deref() == Some("db") && v.event.src.pod.as_deref() == Some("tool")
        })
        .collect();
    assert_eq!(
        tool_db[0].mode,
        Mode::Other,
        "the connect: no egress policy"
    );
    assert_eq!(
        tool_db[1].outcome,
        Outcome::NotPrevented,
        "the accept: db's enforce-mode ingress, which no node enforced"
    );
    for v in &tool_db[..2] {
        assert_eq!(v.connection_mode(), Mode::Enforce);
        assert_eq!(v.sides.len(), 1);
        assert_eq!(v.sides[0].side, Side::Ingress);
        assert_eq!(v.sides[0].policy.as_deref(), Some("shop/db-ingress"));
    }

    let want: BTreeMap<(String, String, String), u64> = [
        ("enforce", "web", "api 10.1.2.3:8080", 3),
        ("enforce", "tool", "db 10.1.5.5:5432", 1),
        ("audit", "tool", "api 10.1.2.3:8080", 1),
        ("audit", "", "api 10.1.2.3:8080", 4 + 1),
        ("enforce", "web", "scanner.example 203.0.113.9:443", 1),
        ("enforce", "", "db 10.1.5.5:5432", 1),
        ("other", "tool", "peer 10.2.0.10:9000", 1),
    ]
    .into_iter()
    .map(|(m, s, d, n)| ((m.to_owned(), s.to_owned(), d.to_owned()), n))
    .collect();
    let tabs = |audit: u64, enforce: u64, other: u64| (audit, enforce, other);

    // In ClickHouse.
    let (c, db_name) = fresh(&url).await;
    let mut stage = AggregateStage::new(c.clone());
    let rejected = stage
        .handle(&messages(&verdicts, 0, 0))
        .await
        .expect("inserted");
    assert!(rejected.is_empty());
    let until = (now_ns() / 1_000_000_000) as u32 + 60;
    let view = query::connections_view(&c, until, 3600, None, 1000)
        .await
        .expect("view");
    let mut got: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for row in view.audit.iter().chain(&view.enforce).chain(&view.other) {
        *got.entry((row.mode.clone(), row.src_pod.clone(), row.destination()))
            .or_default() += row.connections;
    }
    assert_eq!(got, want, "database {db_name}");
    // A source outside the cluster shows its domain name and address.
    let scanner = view
        .enforce
        .iter()
        .find(|r| r.src_kind == "external")
        .expect("outside -> db");
    assert_eq!(scanner.source(), "scanner.example 203.0.113.9:43000");
    assert!(
        view.edges
            .iter()
            .any(|e| e.src == "scanner.example" && e.dst == "db"),
        "{:?}",
        view.edges
    );
    let total = |rows: &[query::Connection]| rows.iter().map(|r| r.connections).sum::<u64>();
    assert_eq!(
        tabs(total(&view.audit), total(&view.enforce), total(&view.other)),
        tabs(5 + 1, 3 + 1 + 1 + 1, 1)
    );

    assert_eq!(
        view.totals,
        query::TabTotals {
            audit: 6,
            enforce: 6,
            other: 1
        }
    );
    // The numbers next to the tabs count the whole window, not the rows shown.
    let cut = query::connections_view(&c, until, 3600, None, 1)
        .await
        .expect("view");
    assert_eq!((cut.audit.len(), cut.enforce.len()), (1, 1));
    assert_eq!(cut.totals, view.totals);
    assert_eq!(
        (cut.rows.audit, cut.rows.enforce, cut.rows.other),
        (
            view.audit.len() as u64,
            view.enforce.len() as u64,
            view.other.len() as u64
        )
    );

    // A loss record is a row next to the events it concerns.
    let loss = LossRecord {
        header: samples::header("node-a", "sensor-a", 999, base),
        source: "ringbuf".into(),
        lost: 42,
    };
    let message = tapwire_plumbing::bus::Message {
        topic: tapwire_schemas::topics::VERDICTS.into(),
        partition: 0,
        offset: verdicts.len() as i64,
        key: None,
        payload: tapwire_schemas::encode(&loss).expect("encode"),
        headers: Vec::new(),
    };
    assert!(stage.handle(&[message]).await.expect("loss").is_empty());
    let lost = tapwire_aggregator::query::json_rows(&c, "SELECT node, source, lost FROM losses")
        .await
        .expect("losses");
    assert_eq!(lost.len(), 1);
    assert_eq!(
        (lost[0]["source"].as_str(), lost[0]["node"].as_str()),
        (Some("ringbuf"), Some("node-a"))
    );
    assert!(lost[0]["lost"] == 42 || lost[0]["lost"] == "42", "{lost:?}");

    // Both sides' decisions are stored with each verdict, for analysts.
    let sides = tapwire_aggregator::query::json_rows(
        &c,
        "SELECT side, side_mode, side_outcome, side_policy, connection_mode FROM verdicts
         WHERE src_pod = 'tool' AND dst_pod = 'db' ORDER BY time_ns",
    )
    .await
    .expect("sides");
    assert_eq!(sides.len(), 3, "connect, accept, flow: {sides:?}");
    for row in &sides[..2] {
        assert_eq!(row["side"], serde_json::json!(["ingress"]), "{row}");
        assert_eq!(
            row["side_outcome"],
            serde_json::json!(["not_prevented"]),
            "{row}"
        );
        assert_eq!(
            row["side_policy"],
            serde_json::json!(["shop/db-ingress"]),
            "{row}"
        );
        assert_eq!(row["connection_mode"], "enforce");
    }

    // The edge's detail shows both sides' decisions: db's ingress denied
    // tool (enforce), no egress policy covers tool.
    let pair = query::Pair {
        src_namespace: "dev".into(),
        src: "tool".into(),
        dst_namespace: "shop".into(),
        dst: "db".into(),
    };
    let sides = query::edge_sides(&c, until, 3600, &pair)
        .await
        .expect("sides");
    assert_eq!(sides.len(), 1, "{sides:?}");
    assert_eq!(
        (
            sides[0]["side"].as_str(),
            sides[0]["mode"].as_str(),
            sides[0]["outcome"].as_str()
        ),
        (Some("ingress"), Some("enforce"), Some("not_prevented"))
    );
    let pair = query::Pair {
        src_namespace: "shop".into(),
        src: "web".into(),
        dst_namespace: "shop".into(),
        dst: "api".into(),
    };
    let sides = query::edge_sides(&c, until, 3600, &pair)
        .await
        .expect("sides");
    let named: Vec<(&str, &str)> = sides
        .iter()
        .map(|s| {
            (
                s["side"].as_str().unwrap_or(""),
                s["mode"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        named,
        [("egress", "enforce"), ("ingress", "audit")],
        "{sides:?}"
    );

    // In memory (`tapwire run`), the same numbers.
    let mut memory = MemoryConnections::default();
    for v in &verdicts {
        memory.add(v);
    }
    let view = memory.view(1000);
    let mut got: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for row in view.audit.iter().chain(&view.enforce).chain(&view.other) {
        *got.entry((row.mode.clone(), row.src_pod.clone(), row.destination()))
            .or_default() += row.connections;
    }
    assert_eq!(got, want, "in memory");
    assert_eq!(
        memory.view(1).totals,
        query::TabTotals {
            audit: 6,
            enforce: 6,
            other: 1
        }
    );
}

/// Issue 15: the view's window is the `window` before `until`, to the
/// second, not rounded to the start of a minute.
#[tokio::test]
async fn the_window_starts_exactly_window_before_until() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let (c, _db) = fresh(&url).await;
    // Two connections 20 s apart in the same minute.
    let minute_ns = (now_ns() / 60_000_000_000 - 5) * 60_000_000_000;
    let (early, late) = (minute_ns + 10_000_000_000, minute_ns + 30_000_000_000);
    let to = |port| To {
        peer: samples::pod_peer("db", "shop"),
        ip: "10.1.5.5",
        port,
    };
    let verdicts = [
        l4(
            L4Kind::NetworkConnect,
            samples::pod_peer("web", "shop"),
            to(5432),
            Mode::Audit,
            early,
            1,
        ),
        l4(
            L4Kind::NetworkConnect,
            samples::pod_peer("web", "shop"),
            to(5432),
            Mode::Audit,
            late,
            2,
        ),
    ];
    let mut stage = AggregateStage::new(c.clone());
    stage
        .handle(&messages(&verdicts, 0, 0))
        .await
        .expect("inserted");
    let until = u32::try_from(late / 1_000_000_000 + 60).expect("secs");
    // A window starting between the two (20 s after the first).
    let window = until - u32::try_from((early + 20_000_000_000) / 1_000_000_000).expect("secs");
    let view = query::connections_view(&c, until, window, None, 100)
        .await
        .expect("view");
    assert_eq!(view.from_s, until - window, "the window is not rounded");
    assert_eq!(view.totals.audit, 1, "only the later connection: {view:?}");
    let wider = query::connections_view(&c, until, window + 20, None, 100)
        .await
        .expect("view");
    assert_eq!(wider.totals.audit, 2);
}
