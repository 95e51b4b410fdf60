//! The API's audit trail, end to end: `tapwire serve` records every API
//! request (signed in or refused) on `tapwire.audit`; `tapwire cef` sends
//! them to a real syslog receiver as the seed's API family (`API-001`
//! severity 3 when it succeeded, `API-002` severity 8 on an error, with
//! `suser` and `src`); `tapwire aggregate` writes them to ClickHouse.

use std::time::Duration;

use tapwire_tests::{Broker, Lines, Storage, http_get_json_as, tapwire, wait_until};

#[test]
fn every_api_request_reaches_the_siem_and_clickhouse() {
    let Some(ch) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let Some(receiver) = tapwire_tests::SyslogNg::start() else {
        return;
    };
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    tapwire_tests::run_ok(tapwire(&broker.address()).args([
        "topics",
        "create",
        "--partitions",
        "1",
    ]));
    let port = tapwire_tests::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tapwire.toml");
    std::fs::write(
        &config,
        format!(
            "[aggregate]\nlisten = \"127.0.0.1:{port}\"\n\
             tokens = [{{name = \"soc\", role = \"viewer\", token = \"soc-secret-0123456789\"}}]\n"
        ),
    )
    .expect("config");
    let serve = Lines::spawn(
        tapwire(&broker.address())
            .arg("-c")
            .arg(&config)
            .arg("serve"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || serve
            .stderr()
            .contains("serving the console")),
        "{}",
        serve.stderr()
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let token = Some("soc-secret-0123456789");
    assert_eq!(
        http_get_json_as(addr, "/api/v1/whoami?probe=1", token).0,
        200
    );
    assert_eq!(
        http_get_json_as(addr, "/api/v1/network/summary", None).0,
        401
    );
    assert_eq!(http_get_json_as(addr, "/api/v1/admin/tokens", token).0, 403);

    // The SIEM.
    let cef = Lines::spawn(tapwire(&broker.address()).args([
        "cef",
        "--target",
        &format!("tcp://127.0.0.1:{}", receiver.tcp_port),
        "--group",
        "audit-cef",
    ]));
    let api_lines = || -> Vec<String> {
        receiver
            .received("tcp")
            .into_iter()
            .filter(|l| l.contains("|API-00"))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || api_lines().len() >= 3),
        "three API lines at the receiver: {:#?}\n{}",
        api_lines(),
        cef.stderr()
    );
    let lines = api_lines();
    let find = |route: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("request={route}")))
            .unwrap_or_else(|| panic!("no line for {route}: {lines:#?}"))
            .clone()
    };
    let ok = find("/api/v1/whoami?probe\\=1");
    assert!(ok.contains("|API-001|API|3|"), "{ok}");
    assert!(
        ok.contains("suser=soc") && ok.contains("src=127.0.0.1"),
        "{ok}"
    );
    assert!(ok.contains("cn1=200"), "{ok}");
    let refused = find("/api/v1/network/summary");
    assert!(refused.contains("|API-002|API|8|"), "{refused}");
    assert!(!refused.contains("suser="), "no user signed it: {refused}");
    assert!(refused.contains("cn1=401"), "{refused}");
    let forbidden = find("/api/v1/admin/tokens");
    assert!(
        forbidden.contains("|API-002|API|8|") && forbidden.contains("suser=soc"),
        "{forbidden}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("soc-secret")),
        "the secret is never sent"
    );

    // ClickHouse.
    let db = format!("audit_{}", std::process::id());
    let aggregate = Lines::spawn(tapwire(&broker.address()).args([
        "aggregate",
        "--clickhouse-url",
        &ch,
        "--database",
        &db,
        "--group",
        "audit-agg",
    ]));
    let rows = || {
        tapwire_tests::clickhouse::scalar(&ch, &db, "SELECT count() AS n FROM tapwire.api_requests")
    };
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::panic::catch_unwind(rows).is_ok_and(|n| n >= 3)
        }),
        "{}",
        aggregate.stderr()
    );
    let refused_rows = tapwire_tests::clickhouse::scalar(
        &ch,
        &db,
        "SELECT count() AS n FROM tapwire.api_requests WHERE status = 401 AND user = ''",
    );
    assert_eq!(refused_rows, 1);
    let soc_rows = tapwire_tests::clickhouse::scalar(
        &ch,
        &db,
        "SELECT count() AS n FROM tapwire.api_requests WHERE user = 'soc' AND source_ip = '127.0.0.1'",
    );
    assert_eq!(soc_rows, 2);
    aggregate.terminate(Duration::from_secs(15));
    cef.terminate(Duration::from_secs(15));
    serve.terminate(Duration::from_secs(15));
}
