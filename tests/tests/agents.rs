//! Issue 15, agent liveness: a capture agent's heartbeats (1 s apart; a
//! busy test machine can delay one by half a second)
//! through a real broker to `tapwire cef` (syslog-ng over TCP) and
//! `tapwire aggregate` (ClickHouse). Killed with SIGKILL, the agent is
//! reported disconnected (`AG-002`) within two intervals and the liveness
//! view says so; started again it is reconnected (`AG-001`); stopped with
//! SIGTERM its last heartbeat says so (`AG-002`, `act=stopped`). Every
//! message passes the strict CEF parser.

use std::time::{Duration, Instant};

use tapwire_aggregator::liveness::{AgentState, SensorLiveness, liveness};
use tapwire_tests::cef::{CefMessage, parse_line};
use tapwire_tests::{Broker, Lines, Storage, SyslogNg, run_ok, tapwire, wait_until};

const SENSOR: &str = "sensor-ag";
const INTERVAL_MS: u64 = 1000;

fn agent(brokers: &str) -> Lines {
    Lines::spawn(tapwire(brokers).args([
        "capture",
        "--source",
        "inventory",
        "--inventory-interval-ms",
        "5000",
        "--heartbeat-interval-ms",
        &INTERVAL_MS.to_string(),
        "--node-name",
        "node-ag",
        "--sensor-id",
        SENSOR,
    ]))
}

/// The `AG` messages about the sensor so far, parsed strictly.
fn agent_messages(receiver: &SyslogNg) -> Vec<CefMessage> {
    receiver
        .received("tcp")
        .iter()
        .map(|l| parse_line(l).unwrap_or_else(|e| panic!("{e}\n{l}")))
        .filter(|m| m.signature_id.starts_with("AG-") && m.get("deviceExternalId") == Some(SENSOR))
        .collect()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_disconnected_within_two_intervals_and_reconnects() {
    let Some(ch) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let Some(receiver) = SyslogNg::start() else {
        return;
    };
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    let brokers = broker.address();
    run_ok(tapwire(&brokers).args(["topics", "create", "--partitions", "2"]));
    let db = format!("tapwire_agents_{}", std::process::id());
    let stages = [
        Lines::spawn(tapwire(&brokers).args([
            "cef",
            "--target",
            &format!("tcp://127.0.0.1:{}", receiver.tcp_port),
            "--group",
            "ag-cef",
            "--cluster-name",
            "agents",
        ])),
        Lines::spawn(
            tapwire(&brokers)
                .args(["aggregate", "--clickhouse-url", &ch, "--database", &db])
                .args(["--group", "ag-aggregate"])
                .env("TAPWIRE_AGGREGATE__FLUSH_INTERVAL_MS", "50"),
        ),
    ];
    let logs = || {
        stages
            .iter()
            .map(Lines::stderr)
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let client = tapwire_aggregator::sink::client(&ch, &db, "default", "");
    let state = || async {
        liveness(&client, now_ns())
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|s| s.sensor_id == SENSOR))
    };
    let wait_for = |what: &str, timeout: Duration, done: &dyn Fn(&[CefMessage]) -> bool| {
        let ok = tokio::task::block_in_place(|| {
            wait_until(timeout, || done(&agent_messages(&receiver)))
        });
        assert!(
            ok,
            "{what}; AG messages: {:#?}\nlogs:\n{}",
            agent_messages(&receiver),
            logs()
        );
    };

    // Started: connected.
    let first = agent(&brokers);
    wait_for("AG-001 connected", Duration::from_secs(60), &|m| {
        m.iter().any(|m| m.get("act") == Some("connected"))
    });
    let connected = &agent_messages(&receiver)[0];
    assert_eq!(
        (
            connected.signature_id.as_str(),
            connected.name.as_str(),
            connected.severity.as_str()
        ),
        ("AG-001", "Agent", "5")
    );
    assert_eq!(connected.get("outcome"), Some("Success"));
    assert_eq!(connected.get("reason"), None, "no reason on success");
    assert_eq!(connected.get("cs1"), Some("agents"));
    assert_eq!(connected.get("cs2"), Some("node-ag"));
    assert_eq!(connected.get("dvchost"), Some("node-ag"));
    let mut alive: Option<SensorLiveness> = None;
    for _ in 0..100 {
        alive = state().await;
        if alive
            .as_ref()
            .is_some_and(|s| s.state == AgentState::Connected)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alive = alive.unwrap_or_else(|| panic!("no liveness for {SENSOR}; logs:\n{}", logs()));
    assert_eq!(alive.state, AgentState::Connected, "{alive:?}");
    assert_eq!(
        (alive.interval_ms, alive.node.as_str()),
        (INTERVAL_MS, "node-ag")
    );
    assert_eq!(alive.sources, ["inventory"]);

    // The API a console reads: the sensor is connected and has active
    // connections (its inventory heartbeat).
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tapwire_aggregator::serve::serve(
        "127.0.0.1:0".parse().expect("addr"),
        client.clone(),
        tapwire_tests::api_auth(),
        None,
        None,
        async move {
            let _ = api_stopped.await;
        },
        move |a| {
            let _ = tx.send(a);
        },
    ));
    let addr = rx.await.expect("bound");
    let api = move |path: &str| {
        let path = path.to_owned();
        tokio::task::block_in_place(|| tapwire_tests::http_get_json(addr, &path))
    };
    let sensor_summary = || {
        let (status, body) = api("/api/v1/network/summary");
        assert_eq!(status, 200, "{body}");
        body["sensors"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["sensor_id"] == SENSOR).cloned())
            .unwrap_or(serde_json::Value::Null)
    };
    let active = || {
        api(&format!("/api/v1/network/connections?sensor_id={SENSOR}")).1["total"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        tokio::task::block_in_place(|| wait_until(Duration::from_secs(30), || {
            sensor_summary()["state"] == "connected" && active() > 0
        })),
        "connected with active connections: {}",
        sensor_summary()
    );

    // Killed: no last heartbeat; two intervals of silence.
    let killed_at = Instant::now();
    first.kill();
    let due = Duration::from_millis(2 * INTERVAL_MS) + Duration::from_secs(2);
    wait_for("AG-002 within two intervals", due, &|m| {
        m.iter().any(|m| m.get("act") == Some("disconnected"))
    });
    let after = killed_at.elapsed();
    assert!(after <= due, "AG-002 after {after:?}");
    let messages = agent_messages(&receiver);
    let down = messages
        .iter()
        .find(|m| m.get("act") == Some("disconnected"))
        .expect("AG-002");
    assert_eq!(
        (down.signature_id.as_str(), down.severity.as_str()),
        ("AG-002", "10")
    );
    assert_eq!(down.get("outcome"), Some("Error"));
    assert!(
        down.get("reason")
            .is_some_and(|r| r.contains(&format!("no heartbeat for {} ms", 2 * INTERVAL_MS))),
        "{down:?}"
    );
    assert_eq!(down.get("source"), Some(SENSOR));
    assert_eq!(down.pri, Some(20 * 8 + 2), "local4, critical");
    let gone = state().await.expect("liveness");
    assert_eq!(gone.state, AgentState::Disconnected, "{gone:?}");
    // Its connections leave the active view; the summary says disconnected.
    let summary = sensor_summary();
    assert_eq!(summary["state"], "disconnected", "{summary}");
    assert_eq!(summary["tcp_connections"], 0, "{summary}");
    assert_eq!(active(), 0);
    assert!(!gone.stopped);
    assert!(gone.disconnected_since_ns.is_some());

    // Started again: reconnected.
    let second = agent(&brokers);
    wait_for("AG-001 reconnected", Duration::from_secs(60), &|m| {
        m.iter().any(|m| m.get("act") == Some("reconnected"))
    });
    let mut back = None;
    for _ in 0..100 {
        back = state().await;
        if back.as_ref().is_some_and(|s| s.state.is_alive()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = back.expect("liveness");
    assert_eq!(back.state, AgentState::Reconnected, "{back:?}");

    // Stopped cleanly: its last heartbeat says so.
    let (clean, _) = second.terminate(Duration::from_secs(15));
    assert!(clean, "the agent stops on SIGTERM");
    wait_for("AG-002 stopped", Duration::from_secs(30), &|m| {
        m.iter().any(|m| m.get("act") == Some("stopped"))
    });
    let all = agent_messages(&receiver);
    let acts: Vec<&str> = all.iter().filter_map(|m| m.get("act")).collect();
    assert_eq!(
        acts,
        ["connected", "disconnected", "reconnected", "stopped"],
        "each change once"
    );
    let mut stopped = None;
    for _ in 0..100 {
        stopped = state().await;
        if stopped.as_ref().is_some_and(|s| s.stopped) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = stopped.expect("liveness");
    assert_eq!(
        (stopped.state, stopped.stopped),
        (AgentState::Disconnected, true)
    );
    let _ = stop_api.send(());
    server.await.expect("join").expect("server");
    for stage in stages {
        let (clean, _) = stage.terminate(Duration::from_secs(15));
        assert!(clean, "every stage stops cleanly on SIGTERM");
    }
}
