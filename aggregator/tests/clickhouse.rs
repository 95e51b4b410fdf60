//! The aggregator against a real ClickHouse: migrations, exact counts and
//! last-connection times, replays that must not inflate counts, the HTTP
//! API's pages and errors.

use std::collections::BTreeMap;

use clickhouse::Client;
use tapwire_aggregator::query::{self, SocketKind};
use tapwire_aggregator::schema;
use tapwire_aggregator::sink::{AggregateStage, TABLES};
use tapwire_plumbing::consumer::BatchHandler;
use tapwire_schemas::events::*;

mod common;
use common::*;

async fn observed(c: &Client, until_s: u32) -> BTreeMap<(String, String, String), (u64, i64)> {
    let view = query::connections_view(c, until_s, 3600, None, 1000)
        .await
        .expect("view");
    let mut seen = BTreeMap::new();
    for row in view.audit.iter().chain(&view.enforce).chain(&view.other) {
        let old = seen.insert(
            (row.mode.clone(), row.src_pod.clone(), row.destination()),
            (row.connections, row.last_seen_ns),
        );
        assert!(old.is_none(), "one row per pair: {row:?}");
    }
    seen
}

#[tokio::test]
async fn known_pairs_give_exact_counts_and_last_connection_times() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let (c, db) = fresh(&url).await;
    let base = now_ns() - 600_000_000_000;
    let f = fixture(base);
    let mut stage = AggregateStage::new(c.clone());
    for (i, chunk) in f.verdicts.chunks(25).enumerate() {
        let rejected = stage
            .handle(&messages(chunk, 0, (i * 25) as i64))
            .await
            .expect("batch inserted");
        assert!(rejected.is_empty());
    }
    let until = (now_ns() / 1_000_000_000) as u32;
    assert_eq!(observed(&c, until).await, f.expected, "database {db}");

    // The console tabs and the edges agree with the pairs.
    let view = query::connections_view(&c, until, 3600, Some("audit"), 100)
        .await
        .expect("audit tab");
    assert!(view.enforce.is_empty() && view.other.is_empty() && !view.audit.is_empty());
    let web_db = view
        .edges
        .iter()
        .find(|e| e.src == "web-1" && e.dst == "db-0")
        .expect("web-1 -> db-0 edge");
    assert_eq!((web_db.audit, web_db.other), (0, 0));
    assert_eq!(
        web_db.enforce,
        f.expected[&(
            "enforce".into(),
            "web-1".into(),
            "db-0 10.1.5.5:5432".into()
        )]
            .0
    );
    let bad = query::connections_view(&c, until, 3600, Some("block"), 100).await;
    assert!(matches!(bad, Err(query::QueryError::BadRequest(_))));

    // Fewer count rows than connections (batches of 25 here; the stage's
    // default batch is 50,000).
    let connections: u64 = f.expected.values().map(|v| v.0).sum();
    assert!(count(&c, "connection_counts").await < connections);
    assert_eq!(count(&c, "verdicts").await, f.verdicts.len() as u64);
    assert_eq!(count(&c, "network_events").await, f.verdicts.len() as u64);
    let flows = f
        .verdicts
        .iter()
        .filter(|v| {
            v.event
                .body
                .as_l4()
                .is_some_and(|l| l.kind == L4Kind::NetworkFlow)
        })
        .count() as u64;
    assert_eq!(count(&c, "flows").await, flows);
}

#[tokio::test]
async fn replays_after_a_crash_do_not_inflate_counts() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let (c, _db) = fresh(&url).await;
    let f = fixture(now_ns() - 600_000_000_000);
    let all = messages(&f.verdicts, 3, 1000);
    let half = all.len() / 2;

    // The first aggregator inserts everything but its offsets are stored
    // only up to a quarter: its replacement reads from there again.
    let mut first = AggregateStage::new(c.clone());
    first.handle(&all[..half]).await.expect("first half");
    first.handle(&all[half..]).await.expect("second half");
    let before = first.written().rows;
    let mut second = AggregateStage::new(c.clone());
    for chunk in all[half / 2..].chunks(7) {
        second.handle(chunk).await.expect("replayed");
    }
    assert_eq!(
        second.written().rows,
        [0; TABLES.len()],
        "nothing is written twice"
    );
    // And the same stage rewound (a rebalance handing a partition back).
    first.handle(&all[..10]).await.expect("rewound");
    assert_eq!(first.written().rows, before, "nothing is written twice");
    let until = (now_ns() / 1_000_000_000) as u32;
    assert_eq!(observed(&c, until).await, f.expected);
    assert_eq!(count(&c, "verdicts").await, f.verdicts.len() as u64);
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let (_c, db) = fresh(&url).await;
    let admin = Client::default().with_url(&url).with_validation(false);
    let (features, applied) = schema::migrate(&admin, &db, 30).await.expect("again");
    assert!(applied.is_empty(), "nothing applied twice");
    let tables: Vec<String> = admin
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(&db)
        .fetch_all()
        .await
        .expect("tables");
    assert_eq!(
        tables,
        [
            "agent_heartbeats",
            "api_requests",
            "connection_counts",
            "flows",
            "inventory_sockets",
            "losses",
            "network_events",
            "pods",
            "runtime_events",
            "scan_events",
            "scan_findings",
            "scan_jobs",
            "scan_status",
            "scanner_states",
            "schema_migrations",
            "verdicts"
        ]
    );
    eprintln!("server features: {features:?}");
}

/// `GET path` on the API; (status, body as JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_pages_and_errors() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let (c, _db) = fresh(&url).await;
    let t0 = now_ns() - 60_000_000_000;
    let snaps = [
        // An older heartbeat of s1: superseded.
        snapshot("s1", t0, 5, &[(22, "/usr/sbin/sshd")]),
        snapshot(
            "s1",
            t0 + 15_000_000_000,
            250,
            &[(22, "/usr/sbin/sshd"), (443, "/usr/sbin/nginx")],
        ),
        snapshot(
            "s2",
            t0 + 1,
            10,
            &[(5432, "/usr/lib/postgresql/bin/postgres")],
        ),
    ];
    let mut stage = AggregateStage::new(c.clone());
    stage
        .handle(&inventory_messages(&snaps))
        .await
        .expect("inventory");
    stage
        .handle(&messages(&fixture(t0).verdicts, 0, 0))
        .await
        .expect("verdicts");

    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tapwire_aggregator::serve::serve(
        "127.0.0.1:0".parse().expect("addr"),
        c.clone(),
        tapwire_tests::api_auth(),
        None,
        None,
        async move {
            let _ = stopped.await;
        },
        move |a| {
            let _ = tx.send(a);
        },
    ));
    let addr = rx.await.expect("bound");
    let api = move |path: String| {
        tokio::task::spawn_blocking(move || tapwire_tests::http_get_json(addr, &path))
    };

    let (status, page) =
        api("/api/v1/network/connections?sensor_id=s1&page=3&page_size=100".into())
            .await
            .expect("join");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 250);
    assert_eq!(page["page_count"], 3);
    assert_eq!(page["current_page"], 3);
    assert_eq!(page["page_size"], 100);
    assert_eq!(page["connections"].as_array().expect("rows").len(), 50);
    assert_eq!(
        page["flows"].as_array().map(Vec::len),
        Some(0),
        "no flows of s1"
    );
    assert_eq!(
        page["connections"][0]["duration_ns"],
        serde_json::Value::Null
    );

    let (_, all) = api("/api/v1/network/connections".into())
        .await
        .expect("join");
    assert_eq!(
        (all["total"].as_u64(), all["page_size"].as_u64()),
        (Some(260), Some(100))
    );
    assert_eq!(all["page_count"], 3);
    assert_eq!(
        all["flows"].as_array().map(Vec::len),
        Some(20),
        "the newest flows"
    );

    for (path, needle) in [
        (
            "/api/v1/network/connections?page_size=0",
            "page_size must be between 1 and 500",
        ),
        (
            "/api/v1/network/connections?page_size=501",
            "page_size must be between 1 and 500",
        ),
        ("/api/v1/network/connections?page=0", "page starts at 1"),
        (
            "/api/v1/network/connections?page=two",
            "page must be a whole number",
        ),
        (
            "/api/v1/network/connections?pagesize=5",
            "unknown parameter \"pagesize\"",
        ),
        ("/api/v2/network/connections?cursor=zz", "cursor is not one"),
        (
            "/api/v1/network/connections-view?window=15x",
            "unit must be s, m, h or d",
        ),
        (
            "/api/v1/network/connections-view?mode=block",
            "mode must be audit, enforce or other",
        ),
        ("/api/v1/network/edge?dst=db-0", "src is required"),
        (
            "/api/v1/network/edge?src=web-1&dst=db-0&mode=audit",
            "unknown parameter \"mode\"",
        ),
    ] {
        let (status, body) = api(path.into()).await.expect("join");
        assert_eq!(status, 400, "{path}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{path}: {msg}");
    }

    // One edge's detail: that pair's tabs and totals, nothing else.
    // (The fixture runs three minutes from a minute ago: a window ending
    // later holds all of it.)
    let until = now_ns() / 1_000_000_000 + 600;
    let (status, edge) = api(format!(
        "/api/v1/network/edge?src_namespace=shop&src=web-1&dst_namespace=shop&dst=db-0&window=1h&until={until}"
    ))
    .await
    .expect("join");
    assert_eq!(status, 200, "{edge}");
    let fixture = fixture(t0);
    let want: u64 = fixture
        .expected
        .iter()
        .filter(|((_, src, dst), _)| src == "web-1" && dst.starts_with("db-0 "))
        .map(|(_, (n, _))| n)
        .sum();
    let view = &edge["view"];
    let totals = &view["totals"];
    let got = ["audit", "enforce", "other"]
        .iter()
        .map(|m| totals[m].as_u64().expect("total"))
        .sum::<u64>();
    assert!(want > 0);
    assert_eq!(got, want, "{edge}");
    for tab in ["audit", "enforce", "other"] {
        for row in view[tab].as_array().expect("rows") {
            assert_eq!(
                (row["src_pod"].as_str(), row["dst_pod"].as_str()),
                (Some("web-1"), Some("db-0"))
            );
        }
    }
    assert_eq!(view["edges"].as_array().map(Vec::len), Some(1));

    // A pod's page: its record, addresses over time, connections and
    // verdicts (web-1 was replaced by a new pod of the same name and a new IP).
    let mut old = tapwire_schemas::samples::pod(
        tapwire_schemas::samples::header("node-a", "k8s-watch", 0, t0 - 7_200_000_000_000),
        "web-1",
        "shop",
        "10.1.0.3".parse().expect("ip"),
    );
    old.uid = "web-1-old".into();
    old.end_ns = Some(t0 - 3_600_000_000_000);
    let mut new = tapwire_schemas::samples::pod(
        tapwire_schemas::samples::header("node-a", "k8s-watch", 1, t0 - 3_000_000_000_000),
        "web-1",
        "shop",
        "10.1.0.7".parse().expect("ip"),
    );
    new.uid = "web-1-new".into();
    let pod_messages: Vec<tapwire_plumbing::bus::Message> = [old, new]
        .iter()
        .enumerate()
        .map(|(i, p)| tapwire_plumbing::bus::Message {
            topic: tapwire_schemas::topics::PODS.into(),
            partition: 0,
            offset: i as i64,
            key: Some(p.uid.clone().into_bytes()),
            payload: tapwire_schemas::encode(p).expect("encode"),
            headers: Vec::new(),
        })
        .collect();
    let mut pod_stage = AggregateStage::new(c.clone());
    assert!(
        pod_stage
            .handle(&pod_messages)
            .await
            .expect("pods")
            .is_empty()
    );
    let (status, page) = api(format!(
        "/api/v1/pod?namespace=shop&name=web-1&window=1h&until={until}"
    ))
    .await
    .expect("join");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["pod"]["uid"], "web-1-new");
    assert_eq!(page["pod"]["labels"]["app"], "web-1");
    assert_eq!(
        page["pod"]["containers"][0]["image_digest"],
        "sha256:0123abcd"
    );
    let ips: Vec<&serde_json::Value> = page["ips"].as_array().expect("ips").iter().collect();
    assert_eq!(ips.len(), 2, "{page}");
    assert_eq!(ips[0]["ips"][0], "10.1.0.3");
    assert_eq!(ips[1]["ips"][0], "10.1.0.7");
    assert!(
        !page["edges"].as_array().expect("edges").is_empty(),
        "{page}"
    );
    assert!(
        !page["verdicts"].as_array().expect("verdicts").is_empty(),
        "{page}"
    );
    let (status, _) = api("/api/v1/pod?namespace=shop&name=nobody".into())
        .await
        .expect("join");
    assert_eq!(status, 404);
    let (status, body) = api("/api/v1/pod?namespace=shop".into())
        .await
        .expect("join");
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("name is required")
    );

    // The process name and the executable's path, side by side.
    let (_, listeners) = api("/api/v1/network/listeners".into()).await.expect("join");
    let rows = listeners["listeners"].as_array().expect("listeners");
    assert!(!rows.is_empty());
    for row in rows {
        let binary = row["binary"].as_str().expect("binary");
        assert_eq!(row["binary_path"], format!("/usr/sbin/{binary}"), "{row}");
    }

    // v2 flows and listeners: each page after the last, every row once.
    let v1_rows = |route: &'static str| async move {
        let (_, all) = api(format!("/api/v1/network/{route}")).await.expect("join");
        all["listeners"].as_array().map_or(0, Vec::len) as u64
    };
    for (route, field, want) in [
        ("flows", "flows", count(&c, "flows").await),
        ("listeners", "listeners", v1_rows("listeners").await),
        ("udp-listeners", "listeners", v1_rows("udp-listeners").await),
    ] {
        assert!(want > 0, "{route}");
        let mut seen = 0u64;
        let mut cursor = String::new();
        let mut pages = 0;
        loop {
            let (status, page) = api(format!("/api/v2/network/{route}?limit=2&cursor={cursor}"))
                .await
                .expect("join");
            assert_eq!(status, 200, "{route}: {page}");
            seen += page[field].as_array().expect("rows").len() as u64;
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
        }
        assert_eq!(seen, want, "{route}");
        assert!(pages >= 2 || want <= 2, "{route} pages");
    }

    // Active flows: connects and accepts whose close (a flow of the same
    // sensor and ends) has not been seen.
    let closed: std::collections::HashSet<(String, String, u16, String, u16)> = fixture
        .verdicts
        .iter()
        .filter_map(|v| match &v.event.body {
            EventBody::L4(e) if e.kind == L4Kind::NetworkFlow => Some((
                e.header.sensor_id.clone(),
                e.src.ip.to_string(),
                e.src.port,
                e.dst.ip.to_string(),
                e.dst.port,
            )),
            _ => None,
        })
        .collect();
    let open = fixture
        .verdicts
        .iter()
        .filter(|v| match &v.event.body {
            EventBody::L4(e) => {
                matches!(e.kind, L4Kind::NetworkConnect | L4Kind::NetworkAccept)
                    && !closed.contains(&(
                        e.header.sensor_id.clone(),
                        e.src.ip.to_string(),
                        e.src.port,
                        e.dst.ip.to_string(),
                        e.dst.port,
                    ))
            }
            _ => false,
        })
        .count();
    let (status, active) = api("/api/v1/network/flows?state=active".into())
        .await
        .expect("join");
    assert_eq!(status, 200, "{active}");
    assert!(open > 0 && !closed.is_empty(), "the fixture has both");
    assert_eq!(active["flows"].as_array().map(Vec::len), Some(open));
    let (status, _) = api("/api/v1/network/flows?state=open".into())
        .await
        .expect("join");
    assert_eq!(status, 400);

    // Investigate: every event of the window once, newest first, page by
    // page; a KFL filter over the columns; errors named.
    let mut walked = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = api(format!(
            "/api/v1/events?window=1h&until={until}&limit=7&cursor={cursor}"
        ))
        .await
        .expect("join");
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().expect("events").clone();
        assert!(events.len() <= 7);
        walked.extend(events);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let in_tables = count(&c, "network_events").await + count(&c, "runtime_events").await;
    assert_eq!(walked.len() as u64, in_tables);
    let times: Vec<i64> = walked
        .iter()
        .map(|e| e["time_ns"].as_i64().expect("time"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let ids: std::collections::HashSet<&str> = walked
        .iter()
        .map(|e| e["event_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), walked.len(), "each event once");
    let (status, pg) = api(format!(
        "/api/v1/events?window=1h&until={until}&limit=1000&kfl=dst_port%20%3D%3D%205432"
    ))
    .await
    .expect("join");
    assert_eq!(status, 200, "{pg}");
    let want = walked.iter().filter(|e| e["dst_port"] == 5432).count();
    assert!(want > 0);
    assert_eq!(pg["events"].as_array().map(Vec::len), Some(want));
    for (path, needle) in [
        ("/api/v1/events?kfl=dst_port%20%3D", "kfl is not valid KFL"),
        ("/api/v1/events?kind=DROP", "is not an event kind"),
        ("/api/v1/events?limit=0", "limit must be between 1 and 5000"),
        ("/api/v1/events?cursor=zz", "cursor is not one"),
    ] {
        let (status, body) = api(path.into()).await.expect("join");
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(needle),
            "{path}: {body}"
        );
    }

    // v2: the cursor walks every connection once.
    let mut seen = std::collections::HashSet::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = api(format!(
            "/api/v2/network/connections?limit=70&cursor={cursor}"
        ))
        .await
        .expect("join");
        assert_eq!(status, 200, "{page}");
        for row in page["connections"].as_array().expect("rows") {
            let key = format!("{}:{}", row["sensor_id"], row["remote_port"]);
            assert!(seen.insert(key), "no row twice");
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 260);

    let (_, tcp) = api("/api/v1/network/listeners?sensor_id=s1".into())
        .await
        .expect("join");
    let ports: Vec<u64> = tcp["listeners"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|l| l["local_port"].as_u64())
        .collect();
    assert_eq!(ports, [22, 443], "the latest heartbeat only");
    let (_, udp) = api("/api/v1/network/udp-listeners".into())
        .await
        .expect("join");
    assert_eq!(udp["listeners"].as_array().map(Vec::len), Some(2));
    let (_, summary) = api("/api/v1/network/summary".into()).await.expect("join");
    assert_eq!(summary["sensors"][0]["sensor_id"], "s1");
    assert_eq!(summary["sensors"][0]["tcp_connections"], 250);
    assert_eq!(summary["sensors"][1]["tcp_listeners"], 1);
    let (status, view) = api("/api/v1/network/connections-view?window=1h".into())
        .await
        .expect("join");
    assert_eq!(status, 200);
    assert!(!view["enforce"].as_array().expect("tab").is_empty());
    let (status, flows) = api("/api/v1/network/flows?sensor_id=sensor-a&limit=5".into())
        .await
        .expect("join");
    assert_eq!(
        (status, flows["flows"].as_array().map(Vec::len)),
        (200, Some(5))
    );
    // Without a limit, v1 returns every flow; durations in seconds beside
    // nanoseconds, null when unknown.
    let (status, every) = api("/api/v1/network/flows".into()).await.expect("join");
    assert_eq!(status, 200);
    let every = every["flows"].as_array().expect("flows").clone();
    assert_eq!(every.len() as u64, count(&c, "flows").await);
    assert!(every.len() > 5);
    for f in &every {
        match f["duration_ns"].as_i64() {
            Some(ns) => assert_eq!(f["duration_secs"].as_i64(), Some(ns / 1_000_000_000)),
            None => assert!(f["duration_secs"].is_null()),
        }
    }
    let (_, page) = api("/api/v1/network/connections?sensor_id=s1".into())
        .await
        .expect("join");
    assert!(page["connections"][0]["duration_secs"].is_null(), "{page}");

    let _ = stop.send(());
    server.await.expect("join").expect("server");
    let udp = query::listeners(&c, SocketKind::UdpListener, Some("s2"))
        .await
        .expect("listeners");
    assert_eq!(udp.len(), 1);
}
