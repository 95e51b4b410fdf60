//! The web console in a real browser: headless Chromium (Debian's
//! `chromium` with `chromium-driver`) against `tapwire serve`'s router over
//! a real ClickHouse holding the connection fixture. What the pages show
//! must equal what the API answers; screenshots of each page go to
//! `target/console-screenshots/` (or `$TAPWIRE_SCREENSHOTS`).

use std::net::SocketAddr;

use serde_json::{Value, json};
use tapwire_aggregator::sink::AggregateStage;
use tapwire_plumbing::consumer::BatchHandler;
use tapwire_tests::browser::Browser;
use tapwire_tests::{API_TOKEN, API_VIEWER_TOKEN, http_get_json_as};

mod common;
use common::*;

/// The fixture in a fresh database, served on a free port; the address and
/// a handle that stops the server when dropped.
async fn served(url: &str) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, String) {
    let (c, db) = fresh(url).await;
    let t0 = now_ns() - 200_000_000_000;
    let mut stage = AggregateStage::new(c.clone());
    stage
        .handle(&messages(&fixture(t0).verdicts, 0, 0))
        .await
        .expect("verdicts");
    // The pod records the pod page shows.
    let pods: Vec<tapwire_plumbing::bus::Message> = [("web-1", "10.1.0.7"), ("db-0", "10.1.5.5")]
        .iter()
        .enumerate()
        .map(|(i, (name, ip))| {
            let header = tapwire_schemas::samples::header("node-a", "s1", i as u64, t0);
            let pod = tapwire_schemas::samples::pod(header, name, "shop", ip.parse().expect("ip"));
            tapwire_plumbing::bus::Message {
                topic: tapwire_schemas::topics::PODS.to_owned(),
                partition: 0,
                offset: i as i64,
                key: Some(pod.uid.clone().into_bytes()),
                payload: tapwire_schemas::encode(&pod).expect("encode"),
                headers: Vec::new(),
            }
        })
        .collect();
    stage.handle(&pods).await.expect("pods");
    // Two sensors' inventories: 120 and 10 open connections, a UDP listener
    // each.
    let snaps = [
        snapshot("s1", now_ns() - 5_000_000_000, 120, &[(443, "nginx")]),
        snapshot("s2", now_ns() - 5_000_000_000, 10, &[(5432, "postgres")]),
    ];
    stage
        .handle(&inventory_messages(&snaps))
        .await
        .expect("inventory");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tapwire_aggregator::serve::serve(
        "127.0.0.1:0".parse().expect("addr"),
        c,
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
    (rx.await.expect("bound"), stop, db)
}

fn screenshots() -> std::path::PathBuf {
    std::env::var_os("TAPWIRE_SCREENSHOTS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"),
        Into::into,
    )
}

/// Sign-in: no token, a wrong one: 401 and no data; a viewer may read but
/// not reach an admin route; an admin may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_a_token_and_admin_routes_an_admin() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let (addr, _stop, _db) = served(&url).await;
    let get = move |path: &'static str, token: Option<&'static str>| {
        tokio::task::spawn_blocking(move || http_get_json_as(addr, path, token))
    };
    let view = "/api/v1/network/connections-view?window=15m";
    let (status, body) = get(view, None).await.expect("join");
    assert_eq!(status, 401, "{body}");
    assert!(
        body.get("edges").is_none(),
        "no data without a token: {body}"
    );
    let (status, _) = get(view, Some("wrong-token-0123456789"))
        .await
        .expect("join");
    assert_eq!(status, 401);
    let (status, body) = get(view, Some(API_VIEWER_TOKEN)).await.expect("join");
    assert_eq!(status, 200, "{body}");
    assert!(!body["edges"].as_array().expect("edges").is_empty());
    let (status, _) = get("/api/v1/admin/tokens", Some(API_VIEWER_TOKEN))
        .await
        .expect("join");
    assert_eq!(status, 403);
    let (status, body) = get("/api/v1/admin/tokens", Some(API_TOKEN))
        .await
        .expect("join");
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains(API_TOKEN), "secrets never leave");
    let (status, _) = get("/healthz", None).await.expect("join");
    assert_eq!(status, 200, "healthz stays open");
}

/// The graph, its tooltip and sidebar, a pod page, the network pages and
/// Investigate's KFL error, each equal to the API, with screenshots and no
/// JavaScript error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_the_api_says() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let (addr, _stop, _db) = served(&url).await;
    tokio::task::spawn_blocking(move || in_browser(addr))
        .await
        .expect("browser test");
}

fn api(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http_get_json_as(addr, path, Some(API_VIEWER_TOKEN));
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn in_browser(addr: SocketAddr) {
    let Some(b) = Browser::start(&screenshots()) else {
        return;
    };
    let base = format!("http://{addr}/");

    // No token: the page asks for one.
    b.goto(&base);
    b.wait_for(
        "the sign-in dialog",
        "return document.querySelector('#signin').open",
    );
    b.screenshot("00-sign-in");

    // A sign-in link signs in; the token leaves the address bar.
    b.goto(&format!("{base}?token={API_VIEWER_TOKEN}#/graph"));
    b.wait_for(
        "the graph",
        "return document.body.dataset.loaded === 'graph'",
    );
    let href = b.eval("return location.href", json!([]));
    assert!(
        !href.as_str().unwrap_or_default().contains("token"),
        "{href}"
    );
    assert_eq!(
        b.eval(
            "return document.querySelector('#user').textContent",
            json!([])
        ),
        json!("test-viewer (viewer)")
    );
    let view = api(
        addr,
        "/api/v1/network/connections-view?window=15m&limit=2000",
    );
    let edges = view["edges"].as_array().expect("edges");
    let drawn = b.eval(
        "return [...document.querySelectorAll('#graph-svg path.edge')].map(p => \
         [p.dataset.src, p.dataset.dst, +p.dataset.audit, +p.dataset.enforce, +p.dataset.other, p.getAttribute('class')])",
        json!([]),
    );
    let mut want: Vec<Value> = edges
        .iter()
        .map(|e| {
            let mode = if e["enforce"].as_u64() > Some(0) {
                "enforce"
            } else if e["audit"].as_u64() > Some(0) {
                "audit"
            } else {
                "other"
            };
            json!([
                e["src"],
                e["dst"],
                e["audit"],
                e["enforce"],
                e["other"],
                format!("edge {mode}")
            ])
        })
        .collect();
    let mut got = drawn.as_array().expect("drawn").clone();
    want.sort_by_key(Value::to_string);
    got.sort_by_key(Value::to_string);
    assert_eq!(got, want, "one drawn edge per API edge, styled by mode");
    b.screenshot("01-graph");

    // Hover the web-1 -> db-0 edge: the tooltip's counts.
    let edge = edges
        .iter()
        .find(|e| e["src"] == "web-1" && e["dst"] == "db-0")
        .expect("web-1 -> db-0 in the fixture");
    let (x, y) = b.edge_point("web-1", "db-0");
    b.pointer(x, y, false);
    let tip = b.wait_for(
        "the tooltip",
        "const t = document.querySelector('#tooltip'); return !t.hidden && t.innerText",
    );
    let counts = format!(
        "Audit-mode: {} · Enforce-mode: {} · Other: {}",
        edge["audit"], edge["enforce"], edge["other"]
    );
    assert!(
        tip.as_str().expect("text").contains(&counts),
        "{tip} vs {counts}"
    );
    b.screenshot("02-graph-tooltip");

    // Click it: the sidebar's tabs and rows equal the edge API's.
    b.pointer(x, y, true);
    b.wait_for(
        "the sidebar",
        "const s = document.querySelector('#sidebar'); return !s.hidden && s.querySelector('.tabs')",
    );
    let detail = api(
        addr,
        "/api/v1/network/edge?src_namespace=shop&src=web-1&dst_namespace=shop&dst=db-0&window=15m",
    );
    let tabs = b.eval(
        "return [...document.querySelectorAll('#sidebar .tabs button')].map(b => b.textContent)",
        json!([]),
    );
    let totals = &detail["view"]["totals"];
    assert_eq!(
        tabs,
        json!([
            format!("Audit-mode ({})", totals["audit"]),
            format!("Enforce-mode ({})", totals["enforce"]),
            format!("Other ({})", totals["other"]),
        ])
    );
    let rows = b.eval(
        "return [...document.querySelectorAll('#sidebar table.connections tbody tr')]\
           .map(r => [...r.cells].map(c => c.innerText))",
        json!([]),
    );
    let api_rows = detail["view"]["enforce"].as_array().expect("rows");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), api_rows.len(), "{rows:?}");
    for (row, r) in rows.iter().zip(api_rows) {
        assert!(
            row[0].as_str().expect("source").starts_with("web-1 "),
            "{row}"
        );
        assert_eq!(
            row[1],
            json!(r["protocol"].as_str().expect("p").to_uppercase())
        );
        assert!(
            row[2].as_str().expect("destination").starts_with(&format!(
                "db-0 {}:{}",
                r["dst_ip"].as_str().expect("ip"),
                r["dst_port"]
            )),
            "{row}"
        );
        assert_eq!(row[3], json!(r["connections"].to_string()));
    }
    b.screenshot("03-graph-sidebar");

    // A pod name in the sidebar opens that pod's page.
    b.click("#sidebar a.pod");
    b.wait_for(
        "the pod page",
        "return document.body.dataset.loaded === 'pod'",
    );
    let pod = b.eval(
        "return document.querySelector('#pod-json').textContent",
        json!([]),
    );
    let pod: Value = serde_json::from_str(pod.as_str().expect("json")).expect("pod JSON");
    assert_eq!(pod, api(addr, "/api/v1/pod?namespace=shop&name=web-1"));
    b.screenshot("04-pod");

    // Connections: paging and the sensor filter, as the API pages.
    b.goto(&format!("{base}#/connections"));
    let rows_shown = |b: &Browser, page: u64| {
        b.wait_for(
            "a connections page",
            &format!(
                "return document.body.dataset.loaded === 'connections' && \
                 document.querySelector('#page-no').textContent.startsWith('page {page} ') && \
                 document.querySelectorAll('#page table tbody tr').length"
            ),
        )
    };
    let total = api(addr, "/api/v1/network/connections?page=1&page_size=50");
    assert_eq!(total["total"], 130, "{total}");
    assert_eq!(rows_shown(&b, 1), json!(50));
    b.click("#next");
    assert_eq!(rows_shown(&b, 2), json!(50));
    b.click("#next");
    assert_eq!(rows_shown(&b, 3), json!(30));
    b.screenshot("05-connections-page-3");
    b.eval(
        "const s = document.querySelector('#sensor'); s.value = 's2'; \
         s.dispatchEvent(new Event('change'));",
        json!([]),
    );
    assert_eq!(rows_shown(&b, 1), json!(10), "the sensor filter");
    b.screenshot("05-connections-sensor-s2");

    // Listening services, UDP tab: the API's UDP listeners.
    b.goto(&format!("{base}#/listeners?proto=udp"));
    let udp = b.wait_for(
        "the UDP tab",
        "return document.body.dataset.loaded === 'listeners' && \
         [...document.querySelectorAll('#page table tbody tr')].map(r => r.innerText)",
    );
    let want = api(addr, "/api/v1/network/udp-listeners");
    assert_eq!(
        udp.as_array().expect("rows").len(),
        want["listeners"].as_array().expect("listeners").len(),
        "{udp} vs {want}"
    );
    assert!(udp.to_string().contains("2152"), "{udp}");

    // The other network pages.
    for (hash, name, shot) in [
        ("#/connections", "connections", "05-connections"),
        ("#/listeners?proto=udp", "listeners", "06-listeners-udp"),
        ("#/flows?state=completed", "flows", "07-flows"),
        ("#/summary", "summary", "08-summary"),
    ] {
        b.goto(&format!("{base}{hash}"));
        b.wait_for(
            name,
            &format!("return document.body.dataset.loaded === '{name}'"),
        );
        assert!(
            b.eval(
                "return document.querySelectorAll('#page .error').length",
                json!([])
            ) == json!(0),
            "{name}: {}",
            b.eval("return document.body.innerText", json!([]))
        );
        b.screenshot(shot);
    }

    // Investigate: a bad KFL query shows the error with its caret.
    b.goto(&format!("{base}#/investigate?kfl=dst.port%20%3D%3D"));
    let error = b.wait_for(
        "the KFL error",
        "const e = document.querySelector('#inv-error'); return e && e.textContent",
    );
    assert!(error.as_str().expect("text").contains('^'), "{error}");
    b.screenshot("09-investigate-error");

    let errors: Vec<String> = b
        .console_errors()
        .into_iter()
        // The unsigned first visit's 401 is the sign-in working.
        .filter(|e| !e.contains("401"))
        // Investigate's bad query is answered 400 on purpose.
        .filter(|e| !e.contains("400"))
        .collect();
    assert!(errors.is_empty(), "JavaScript console errors: {errors:#?}");
}
