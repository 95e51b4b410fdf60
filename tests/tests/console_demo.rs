//! `tapwire demo --serve`: the console over the demo's in-memory results,
//! in headless Chromium, with no ClickHouse: the sign-in link the demo
//! prints signs in, the graph's edges equal the API's, the tooltip and the
//! sidebar's tabs count what the API counts. Screenshots go to
//! `target/console-screenshots/demo-*.png`.

use std::process::Stdio;

use serde_json::{Value, json};
use tapwire_tests::browser::Browser;
use tapwire_tests::http_get_json_as;

#[test]
fn the_demo_serves_the_console_over_its_results() {
    let Some(shots) = Some(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"),
    ) else {
        return;
    };
    if tapwire_tests::browser::chromium().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = tapwire_tests::free_port();
    let mut demo = std::process::Command::new(tapwire_tests::tapwire_binary())
        .args(["demo", "--events", "100", "--out"])
        .arg(dir.path())
        .args(["--serve", &format!("127.0.0.1:{port}")])
        .env_remove("TAPWIRE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("demo");
    let (link, token) = tapwire_tests::browser::sign_in_link(&mut demo);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let api = |path: &str| -> Value {
        let (status, body) = http_get_json_as(addr, path, Some(&token));
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    assert_eq!(
        http_get_json_as(addr, "/api/v1/network/connections-view", None).0,
        401
    );

    let b = Browser::start(&shots).expect("browser");
    b.goto(&link);
    b.wait_for(
        "the graph",
        "return document.body.dataset.loaded === 'graph'",
    );
    let view = api("/api/v1/network/connections-view?limit=2000");
    let edges = view["edges"].as_array().expect("edges");
    assert!(!edges.is_empty(), "{view}");
    let drawn = b.eval(
        "return [...document.querySelectorAll('#graph-svg path.edge')].map(p => \
         [p.dataset.src, p.dataset.dst, +p.dataset.audit, +p.dataset.enforce, +p.dataset.other])",
        json!([]),
    );
    let mut want: Vec<Value> = edges
        .iter()
        .map(|e| json!([e["src"], e["dst"], e["audit"], e["enforce"], e["other"]]))
        .collect();
    let mut got = drawn.as_array().expect("drawn").clone();
    want.sort_by_key(Value::to_string);
    got.sort_by_key(Value::to_string);
    assert_eq!(got, want);
    b.screenshot("demo-01-graph");

    // The busiest enforce-mode edge: hover, then click.
    let edge = edges
        .iter()
        .find(|e| e["enforce"].as_u64() > Some(0))
        .expect("an enforce-mode edge in the demo");
    let (src, dst) = (
        edge["src"].as_str().expect("src"),
        edge["dst"].as_str().expect("dst"),
    );
    let (x, y) = b.edge_point(src, dst);
    b.pointer(x, y, false);
    let tip = b.wait_for(
        "the tooltip",
        "const t = document.querySelector('#tooltip'); return !t.hidden && t.innerText",
    );
    let counts = format!(
        "Audit-mode: {} · Enforce-mode: {} · Other: {}",
        edge["audit"], edge["enforce"], edge["other"]
    );
    assert!(tip.as_str().expect("tip").contains(&counts), "{tip}");
    b.pointer(x, y, true);
    b.wait_for(
        "the sidebar",
        "const s = document.querySelector('#sidebar'); return !s.hidden && s.querySelector('.tabs')",
    );
    let tabs = b.eval(
        "return [...document.querySelectorAll('#sidebar .tabs button')].map(b => b.textContent)",
        json!([]),
    );
    let q = |s: &str| s.replace(' ', "%20");
    let detail = api(&format!(
        "/api/v1/network/edge?src_namespace={}&src={}&dst_namespace={}&dst={}",
        q(edge["src_namespace"].as_str().unwrap_or_default()),
        q(src),
        q(edge["dst_namespace"].as_str().unwrap_or_default()),
        q(dst)
    ));
    let totals = &detail["view"]["totals"];
    assert_eq!(
        tabs,
        json!([
            format!("Audit-mode ({})", totals["audit"]),
            format!("Enforce-mode ({})", totals["enforce"]),
            format!("Other ({})", totals["other"]),
        ])
    );
    assert_eq!(totals["enforce"], edge["enforce"], "{detail}");
    b.screenshot("demo-02-sidebar");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "JavaScript console errors: {errors:#?}");
    drop(b);
    let _ = demo.kill();
    let _ = demo.wait();
}
