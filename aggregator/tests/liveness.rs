//! Issue 15: sensor liveness from the heartbeats the aggregate stage
//! stores, against a real ClickHouse (18.16 in the test bed): connected,
//! disconnected after two silent intervals or a clean stop, reconnected,
//! and the losses the heartbeats report.

use tapwire_aggregator::liveness::{AgentState, liveness};
use tapwire_aggregator::sink::AggregateStage;
use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::BatchHandler;
use tapwire_schemas::events::AgentHeartbeat;
use tapwire_schemas::{encode, samples, topics};

mod common;
use common::*;

const S: i64 = 1_000_000_000;

fn beat(sensor: &str, seq: u64, t: i64, stopping: bool, ringbuf: u64) -> AgentHeartbeat {
    let mut hb = samples::heartbeat(samples::header("node-l", sensor, seq, t), 1, seq, ringbuf);
    hb.interval_ms = 1000;
    hb.stopping = stopping;
    hb
}

fn messages(beats: &[AgentHeartbeat], first_offset: i64) -> Vec<Message> {
    beats
        .iter()
        .enumerate()
        .map(|(i, hb)| Message {
            topic: topics::AGENTS.to_owned(),
            partition: 0,
            offset: first_offset + i as i64,
            key: Some(hb.header.sensor_id.clone().into_bytes()),
            payload: encode(hb).expect("encode"),
            headers: Vec::new(),
        })
        .collect()
}

#[tokio::test]
async fn heartbeats_in_clickhouse_give_each_sensors_state() {
    let Some(url) = tapwire_tests::clickhouse::shared() else {
        return;
    };
    let (c, db) = fresh(&url).await;
    let t0 = now_ns() - 60 * S;
    let beats = vec![
        // steady: every second until t0 + 10 s, ringbuf losses twice.
        beat("steady", 0, t0, false, 0),
        beat("steady", 1, t0 + S, false, 4),
        beat("steady", 2, t0 + 2 * S, false, 0),
        beat("steady", 3, t0 + 3 * S, false, 6),
        // stopped cleanly at t0 + 1 s.
        beat("stopper", 0, t0, false, 0),
        beat("stopper", 1, t0 + S, true, 0),
        // silent from t0 + 1 s on, back at t0 + 9 s.
        beat("flaky", 0, t0, false, 0),
        beat("flaky", 1, t0 + S, false, 0),
        beat("flaky", 2, t0 + 9 * S, false, 0),
    ];
    let mut stage = AggregateStage::new(c.clone());
    let rejected = stage.handle(&messages(&beats, 0)).await.expect("insert");
    assert!(rejected.is_empty());
    assert_eq!(stage.written().rows[6], 9, "one row per heartbeat");
    // A replay of the same messages writes nothing twice.
    let mut again = AggregateStage::new(c.clone());
    again.handle(&messages(&beats, 0)).await.expect("replay");
    assert_eq!(again.written().rows[6], 0);

    let at = |offset_s: i64| {
        let c = c.clone();
        async move {
            liveness(&c, t0 + offset_s * S + S / 2)
                .await
                .expect("liveness")
                .into_iter()
                .map(|s| (s.sensor_id.clone(), s))
                .collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    // At t0 + 2.5 s: steady connected, stopper disconnected by its stop,
    // flaky still within two intervals of its heartbeat at t0 + 1 s.
    let early = at(2).await;
    assert_eq!(early.len(), 3, "database {db}: {early:?}");
    assert_eq!(early["steady"].state, AgentState::Connected);
    assert_eq!(early["steady"].lost_events, 4, "losses up to now");
    assert_eq!(early["stopper"].state, AgentState::Disconnected);
    assert!(early["stopper"].stopped);
    assert_eq!(early["flaky"].state, AgentState::Connected);
    // At t0 + 5.5 s: steady (last at t0 + 3 s) and flaky silent too long.
    let mid = at(5).await;
    assert_eq!(mid["steady"].state, AgentState::Disconnected);
    assert_eq!(mid["steady"].disconnected_since_ns, Some(t0 + 5 * S));
    assert_eq!(mid["steady"].lost_by_source["ringbuf"], 10);
    assert_eq!(mid["flaky"].state, AgentState::Disconnected);
    assert_eq!(mid["flaky"].last_heartbeat_ns, t0 + S);
    // At t0 + 9.5 s flaky is back.
    let late = at(9).await;
    assert_eq!(late["flaky"].state, AgentState::Reconnected);
    assert_eq!(late["flaky"].interval_ms, 1000);
    assert_eq!(late["flaky"].sources, ["inventory", "ebpf"]);
    assert_eq!(late["flaky"].node, "node-l");
}
