//! Every analyst query in `aggregator/queries/` runs against a real
//! ClickHouse loaded with known events, and returns what those events imply.

use std::collections::BTreeMap;

use serde_json::Value;
use tapwire_aggregator::query::json_rows;
use tapwire_aggregator::sink::AggregateStage;
use tapwire_plumbing::consumer::BatchHandler;
use tapwire_schemas::events::*;
use tapwire_schemas::samples;

mod common;
use common::*;

const QUERIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/queries");

/// A number from JSONEachRow (64-bit integers arrive quoted).
fn num(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().expect("unsigned"),
        Value::String(s) => s.parse().expect("number in a string"),
        other => panic!("not a number: {other}"),
    }
}

fn text(v: &Value) -> &str {
    v.as_str().expect("string")
}

fn runtime(pod: &str, binary: &str, mode: Mode, outcome: Outcome, ns: i64, seq: u64) -> Verdict {
    let mut rt = samples::file_rename(samples::header("node-a", "sensor-a", seq, ns));
    rt.kind = RuntimeKind::ProcessExec;
    rt.binary = binary.to_owned();
    rt.command_line = Some(format!("{binary} -i"));
    rt.path = None;
    rt.old_path = None;
    let mut v = samples::verdict(
        EnrichedEvent {
            body: EventBody::Runtime(rt),
            src: samples::pod_peer(pod, "shop"),
            dst: PeerContext::of_kind(PeerKind::None),
        },
        mode,
        outcome,
    );
    v.policy = Some("shop/web-runtime".to_owned());
    v.rule = Some("no-shells".to_owned());
    v.signature_id = "FPM-001".to_owned();
    v
}

fn dns(pod: &str, name: &str, ns: i64, seq: u64) -> Verdict {
    let mut d = samples::dns_resolution(samples::header("node-a", "sensor-a", seq, ns));
    d.kind = DnsKind::DnsQuery;
    d.name = name.to_owned();
    samples::verdict(
        EnrichedEvent {
            body: EventBody::Dns(d),
            src: samples::pod_peer(pod, "shop"),
            dst: PeerContext::of_kind(PeerKind::None),
        },
        Mode::Other,
        Outcome::Allowed,
    )
}

#[tokio::test]
async fn every_analyst_query_answers_from_the_events() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let (c, db) = fresh(&url).await;
    let now = now_ns();
    let base = now - 1_200_000_000_000; // 20 minutes ago
    let f = fixture(base);
    let mut extra = Vec::new();
    let mut seq = 10_000;
    let mut next = || {
        seq += 1;
        seq
    };
    // An external destination first contacted two days ago: not new.
    let old = |ns, seq| {
        let to = To {
            peer: external("old.example.org"),
            ip: "198.51.100.20",
            port: 443,
        };
        l4(
            L4Kind::NetworkConnect,
            samples::pod_peer("web-1", "shop"),
            to,
            Mode::Other,
            ns,
            seq,
        )
    };
    extra.push(old(now - 2 * 86_400_000_000_000, next()));
    extra.push(old(base, next()));
    // Flows: one big upload, two refused connections.
    let flow = |bytes: u64, state: FinalState, ip: &'static str, port: u16, seq: u64| {
        let to = To {
            peer: external(""),
            ip,
            port,
        };
        let mut v = l4(
            L4Kind::NetworkFlow,
            samples::pod_peer("cart-0", "shop"),
            to,
            Mode::Other,
            base + 9,
            seq,
        );
        let l = v.event.body.as_l4_mut().expect("l4");
        l.bytes_sent = Some(bytes);
        l.final_state = Some(state);
        v
    };
    extra.push(flow(
        9_000_000,
        FinalState::Established,
        "52.1.2.3",
        443,
        next(),
    ));
    extra.push(flow(0, FinalState::Refused, "10.1.9.9", 6379, next()));
    extra.push(flow(0, FinalState::Refused, "10.1.9.9", 6379, next()));
    // DNS: example.com from two pods, api.example.com once.
    extra.push(dns("web-1", "example.com", base + 1, next()));
    extra.push(dns("cart-0", "example.com", base + 2, next()));
    extra.push(dns("web-1", "api.example.com", base + 3, next()));
    // Shells: two blocked bash runs in web-1.
    for i in 0..2 {
        extra.push(runtime(
            "web-1",
            "/bin/bash",
            Mode::Enforce,
            Outcome::Blocked,
            base + 10 + i,
            next(),
        ));
    }
    // Package managers run in cart-0 under an enforce-mode rule that no
    // node enforced: violations that went through, not blocks.
    for i in 0..3 {
        let mut v = runtime(
            "cart-0",
            "/usr/bin/apt",
            Mode::Enforce,
            Outcome::NotPrevented,
            base + 20 + i,
            next(),
        );
        v.rule = Some("no-package-managers".to_owned());
        extra.push(v);
    }
    let mut stage = AggregateStage::new(c.clone());
    stage
        .handle(&messages(&f.verdicts, 0, 0))
        .await
        .expect("fixture");
    stage.handle(&messages(&extra, 1, 0)).await.expect("extra");
    stage
        .handle(&inventory_messages(&[
            snapshot(
                "s1",
                base,
                3,
                &[(22, "/usr/sbin/sshd"), (443, "/usr/sbin/nginx")],
            ),
            snapshot("s2", base, 1, &[(22, "/usr/sbin/sshd")]),
        ]))
        .await
        .expect("inventory");

    let mut files: Vec<_> = std::fs::read_dir(QUERIES)
        .expect("queries dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "ten analyst queries at least");
    let mut results: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for path in &files {
        let sql = std::fs::read_to_string(path)
            .expect("read")
            .replace("tapwire.", &format!("{db}."));
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let rows = json_rows(&c, &sql)
            .await
            .unwrap_or_else(|e| panic!("{name} fails: {e}"));
        results.insert(name, rows);
    }
    let r = |name: &str| &results[name];

    // Connections per source pod and per mode, from the fixture's pairs
    // plus the two connects to old.example.org.
    let mut per_source: BTreeMap<&str, u64> = BTreeMap::new();
    let mut per_mode: BTreeMap<&str, u64> = BTreeMap::new();
    for ((mode, src, _), (n, _)) in &f.expected {
        *per_source.entry(src.as_str()).or_default() += n;
        *per_mode.entry(mode.as_str()).or_default() += n;
    }
    *per_source.entry("web-1").or_default() += 1; // the recent one; the other is 2 days old
    *per_mode.entry("other").or_default() += 1;

    let top = r("01_top_talkers");
    assert_eq!(text(&top[0]["source"]), "web-1");
    for row in top {
        assert_eq!(
            num(&row["connections"]),
            per_source[text(&row["source"])],
            "{row}"
        );
    }
    assert_eq!(
        num(&top[0]["destinations"]),
        3,
        "db-0, api.example.com, old.example.org"
    );

    let new = r("02_new_external_destinations");
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(text(&new[0]["dst_domain"]), "api.example.com");

    let mut over_time: BTreeMap<String, u64> = BTreeMap::new();
    for row in r("03_connections_by_mode_over_time") {
        *over_time.entry(text(&row["mode"]).to_owned()).or_default() += num(&row["connections"]);
    }
    let expected: BTreeMap<String, u64> = per_mode
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    assert_eq!(over_time, expected);

    let blocked = r("04_blocked_by_policy");
    let fixture_blocked = f
        .verdicts
        .iter()
        .filter(|v| v.outcome == Outcome::Blocked)
        .count() as u64;
    let by_rule: BTreeMap<(&str, &str), u64> = blocked
        .iter()
        .map(|row| {
            (
                (text(&row["policy"]), text(&row["rule"])),
                num(&row["blocked"]),
            )
        })
        .collect();
    assert_eq!(
        by_rule,
        BTreeMap::from([
            (("shop/p", "r"), fixture_blocked),
            (("shop/web-runtime", "no-shells"), 2)
        ])
    );

    let audited = r("05_audit_violations_by_namespace");
    let mut expect_audit: BTreeMap<(String, String), u64> = BTreeMap::new();
    for v in f.verdicts.iter().filter(|v| v.outcome == Outcome::Audited) {
        let kind = v.event.body.as_l4().expect("l4").kind.as_str().to_owned();
        *expect_audit
            .entry((v.event.src.namespace.clone().unwrap_or_default(), kind))
            .or_default() += 1;
    }
    let got: BTreeMap<(String, String), u64> = audited
        .iter()
        .map(|row| {
            (
                (
                    text(&row["src_namespace"]).to_owned(),
                    text(&row["kind"]).to_owned(),
                ),
                num(&row["violations"]),
            )
        })
        .collect();
    assert_eq!(got, expect_audit);

    let names = r("06_top_dns_names");
    assert_eq!(text(&names[0]["dns_name"]), "example.com");
    assert_eq!((num(&names[0]["queries"]), num(&names[0]["pods"])), (2, 2));
    assert_eq!(text(&names[1]["dns_name"]), "api.example.com");

    let big = r("07_biggest_flows");
    assert_eq!(num(&big[0]["bytes_sent"]), 9_000_000);
    assert_eq!(text(&big[0]["dst_ip"]), "52.1.2.3");

    let refused = r("08_refused_connections");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (
            text(&refused[0]["dst_ip"]),
            num(&refused[0]["dst_port"]),
            num(&refused[0]["refused"])
        ),
        ("10.1.9.9", 6379, 2)
    );

    let listeners: Vec<(String, String, u64, u64)> = r("09_listeners_by_binary")
        .iter()
        .map(|row| {
            (
                text(&row["socket_kind"]).to_owned(),
                text(&row["binary"]).to_owned(),
                num(&row["local_port"]),
                num(&row["sensors"]),
            )
        })
        .collect();
    assert_eq!(
        listeners,
        [
            ("tcp_listener".into(), "/usr/sbin/sshd".into(), 22, 2),
            ("tcp_listener".into(), "/usr/sbin/nginx".into(), 443, 1),
            ("udp_listener".into(), "?".into(), 2152, 2),
        ]
    );

    let cross = r("10_cross_namespace_edges");
    assert_eq!(cross.len(), 1, "{cross:?}");
    assert_eq!(
        (
            text(&cross[0]["src_namespace"]),
            text(&cross[0]["dst_namespace"])
        ),
        ("dev", "shop")
    );
    assert_eq!(
        num(&cross[0]["audit"]),
        f.expected[&("audit".into(), "tool-0".into(), "db-0 10.1.5.5:5432".into())].0
    );

    let shells = r("11_shells_in_pods");
    assert_eq!(shells.len(), 1, "{shells:?}");
    assert_eq!(
        (
            text(&shells[0]["pod"]),
            text(&shells[0]["outcome"]),
            num(&shells[0]["runs"])
        ),
        ("web-1", "blocked", 2)
    );

    // What enforce did not prevent is its own list, and not among the blocks.
    let through = r("12_enforce_violations_not_prevented");
    let by_rule: Vec<(&str, &str, u64, u64)> = through
        .iter()
        .map(|row| {
            (
                text(&row["policy"]),
                text(&row["rule"]),
                num(&row["not_prevented"]),
                num(&row["pods"]),
            )
        })
        .collect();
    assert_eq!(by_rule, [("shop/web-runtime", "no-package-managers", 3, 1)]);
}
