//! Sensor liveness from `agent_heartbeats` (issue 15): per sensor, its
//! latest heartbeat, its interval, whether it is connected, disconnected or
//! reconnected at a given time, and the events it lost recently.
//!
//! The rule is the one the CEF stage applies for its `AG` messages
//! (`tapwire_schemas::alive_at`): a sensor is disconnected when its latest
//! heartbeat said it was stopping, or is older than two of its intervals.
//! It is reconnected when it is alive now and was disconnected at some time
//! within [`WINDOW_NS`] before `now` (a gap of more than two intervals
//! between two of its heartbeats, or a heartbeat after a stopping one).
//! Everything is judged "as of `now`": heartbeats after `now` are ignored,
//! so a past `now` gives the state at that time.
//!
//! Two reads, both valid on ClickHouse 18.16: the latest heartbeat of every
//! sensor (`argMax`), and the heartbeats of the window in order.

use std::collections::{BTreeMap, HashMap};

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use tapwire_schemas::events::{alive_at, silent_at_ns};

use crate::query::QueryError;

/// How far back reconnections and losses are looked for: the 15 minutes
/// of the connections view.
pub const WINDOW_NS: i64 = 15 * 60 * 1_000_000_000;

/// A sensor's state at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Alive, and not disconnected within the window.
    Connected,
    /// Stopped, or silent for more than two heartbeat intervals.
    Disconnected,
    /// Alive again after being disconnected within the window.
    Reconnected,
}

impl AgentState {
    /// `connected`, `disconnected` or `reconnected`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Connected => "connected",
            AgentState::Disconnected => "disconnected",
            AgentState::Reconnected => "reconnected",
        }
    }

    /// Whether the sensor is alive (its connections are current).
    pub fn is_alive(self) -> bool {
        self != AgentState::Disconnected
    }
}

/// One sensor's liveness at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SensorLiveness {
    /// The sensor.
    pub sensor_id: String,
    /// Its node (of the latest heartbeat).
    pub node: String,
    /// Agent version (of the latest heartbeat).
    pub agent_version: String,
    /// Time of the latest heartbeat, epoch nanoseconds.
    pub last_heartbeat_ns: i64,
    /// The interval the latest heartbeat announced.
    pub interval_ms: u64,
    /// Connected, disconnected or reconnected.
    pub state: AgentState,
    /// The latest heartbeat said the agent was stopping (a clean stop).
    pub stopped: bool,
    /// Since when it is disconnected (the stop, or two intervals after the
    /// latest heartbeat), epoch nanoseconds; `None` while alive.
    pub disconnected_since_ns: Option<i64>,
    /// Sources running at the latest heartbeat.
    pub sources: Vec<String>,
    /// Events lost within the window, over every loss counter.
    pub lost_events: u64,
    /// Events lost within the window, per loss counter (`ringbuf`,
    /// `packet_queue`), zero counters left out.
    pub lost_by_source: BTreeMap<String, u64>,
}

/// The latest heartbeat of a sensor, as read.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct Latest {
    /// Sensor.
    pub sensor_id: String,
    /// Node.
    pub node: String,
    /// Agent version.
    pub agent_version: String,
    /// Time, epoch ns.
    pub time_ns: i64,
    /// Interval announced.
    pub interval_ms: u64,
    /// 1 for a stopping heartbeat.
    pub stopping: u8,
    /// Sources running.
    pub sources: Vec<String>,
}

/// A heartbeat of the window, as read.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct Beat {
    /// Sensor.
    pub sensor_id: String,
    /// Time, epoch ns.
    pub time_ns: i64,
    /// Interval announced.
    pub interval_ms: u64,
    /// 1 for a stopping heartbeat.
    pub stopping: u8,
    /// Loss counter names.
    pub loss_sources: Vec<String>,
    /// Events lost per counter since the previous heartbeat.
    pub loss_counts: Vec<u64>,
}

/// Every sensor that ever sent a heartbeat (up to `now_ns`), with its
/// state at `now_ns` (epoch nanoseconds), sorted by sensor id.
///
/// `client` has the database selected (as [`crate::sink::client`] makes
/// it).
pub async fn liveness(client: &Client, now_ns: i64) -> Result<Vec<SensorLiveness>, QueryError> {
    let latest: Vec<Latest> = client
        .query(
            "SELECT sensor_id, argMax(node, time_ns) AS node_name,
                argMax(agent_version, time_ns) AS version,
                max(time_ns) AS latest_ns, argMax(interval_ms, time_ns) AS interval,
                argMax(stopping, time_ns) AS stopped, argMax(sources, time_ns) AS running
             FROM agent_heartbeats WHERE time_ns <= ?
             GROUP BY sensor_id ORDER BY sensor_id",
        )
        .bind(now_ns)
        .fetch_all()
        .await?;
    let window: Vec<Beat> = client
        .query(
            "SELECT sensor_id, time_ns, interval_ms, stopping, loss_sources, loss_counts
             FROM agent_heartbeats WHERE time_ns > ? AND time_ns <= ?
             ORDER BY sensor_id, time_ns",
        )
        .bind(now_ns.saturating_sub(WINDOW_NS))
        .bind(now_ns)
        .fetch_all()
        .await?;
    Ok(judge(latest, &window, now_ns))
}

/// The states at `now_ns` from the latest heartbeat of every sensor and
/// the window's heartbeats in time order.
pub fn judge(latest: Vec<Latest>, window: &[Beat], now_ns: i64) -> Vec<SensorLiveness> {
    let mut by_sensor: HashMap<&str, Vec<&Beat>> = HashMap::new();
    for beat in window {
        by_sensor.entry(&beat.sensor_id).or_default().push(beat);
    }
    let mut out: Vec<SensorLiveness> = latest
        .into_iter()
        .map(|l| {
            let beats = by_sensor.get(l.sensor_id.as_str()).map_or(&[][..], |b| b);
            let stopped = l.stopping != 0;
            let alive = alive_at(l.time_ns, l.interval_ms, stopped, now_ns);
            let was_down = beats.windows(2).any(|pair| {
                pair[0].stopping != 0
                    || pair[1].time_ns > silent_at_ns(pair[0].time_ns, pair[0].interval_ms)
            });
            let state = match (alive, was_down) {
                (false, _) => AgentState::Disconnected,
                (true, true) => AgentState::Reconnected,
                (true, false) => AgentState::Connected,
            };
            let mut lost_by_source = BTreeMap::new();
            for beat in beats {
                for (source, lost) in beat.loss_sources.iter().zip(&beat.loss_counts) {
                    if *lost > 0 {
                        *lost_by_source.entry(source.clone()).or_insert(0) += lost;
                    }
                }
            }
            SensorLiveness {
                disconnected_since_ns: (!alive).then(|| {
                    if stopped {
                        l.time_ns
                    } else {
                        silent_at_ns(l.time_ns, l.interval_ms)
                    }
                }),
                lost_events: lost_by_source.values().sum(),
                lost_by_source,
                sensor_id: l.sensor_id,
                node: l.node,
                agent_version: l.agent_version,
                last_heartbeat_ns: l.time_ns,
                interval_ms: l.interval_ms,
                state,
                stopped,
                sources: l.sources,
            }
        })
        .collect();
    out.sort_by(|a, b| a.sensor_id.cmp(&b.sensor_id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn beat(t: i64, stopping: bool, ringbuf: u64) -> Beat {
        Beat {
            sensor_id: "s1".into(),
            time_ns: t,
            interval_ms: 1000,
            stopping: u8::from(stopping),
            loss_sources: vec!["ringbuf".into(), "packet_queue".into()],
            loss_counts: vec![ringbuf, 0],
        }
    }

    fn latest(b: &Beat) -> Latest {
        Latest {
            sensor_id: b.sensor_id.clone(),
            node: "n".into(),
            agent_version: "0.1.0".into(),
            time_ns: b.time_ns,
            interval_ms: b.interval_ms,
            stopping: b.stopping,
            sources: vec!["inventory".into()],
        }
    }

    fn state(beats: &[Beat], now: i64) -> SensorLiveness {
        let last = beats.last().expect("a beat");
        judge(vec![latest(last)], beats, now).remove(0)
    }

    #[test]
    fn two_intervals_of_silence_disconnect() {
        let beats = [beat(0, false, 0), beat(S, false, 3)];
        let at = |now| state(&beats, now);
        assert_eq!(at(3 * S).state, AgentState::Connected);
        let late = at(3 * S + 1);
        assert_eq!(late.state, AgentState::Disconnected);
        assert_eq!(late.disconnected_since_ns, Some(3 * S));
        assert_eq!(late.lost_events, 3);
        assert_eq!(late.lost_by_source.get("ringbuf"), Some(&3));
        assert!(!late.lost_by_source.contains_key("packet_queue"));
    }

    #[test]
    fn a_clean_stop_disconnects_at_once_and_a_comeback_reconnects() {
        let stopped = [beat(0, false, 0), beat(S / 2, true, 0)];
        let s = state(&stopped, S);
        assert_eq!((s.state, s.stopped), (AgentState::Disconnected, true));
        assert_eq!(s.disconnected_since_ns, Some(S / 2));
        let back = [beat(0, false, 0), beat(S / 2, true, 0), beat(S, false, 0)];
        assert_eq!(state(&back, S).state, AgentState::Reconnected);
        let gap = [beat(0, false, 0), beat(5 * S, false, 0)];
        assert_eq!(state(&gap, 5 * S).state, AgentState::Reconnected);
        assert!(state(&gap, 5 * S).state.is_alive());
    }
}
