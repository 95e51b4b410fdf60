//! The agents' liveness as the SIEM sees it (issue 15, family `AG`): the
//! CEF stage reads `tapwire.agents`, keeps the latest heartbeat of every
//! sensor, and turns changes into messages:
//!
//! - `AG-001` (severity 5) when a sensor is first seen alive, or alive again
//!   after it was reported disconnected (`act=reconnected`);
//! - `AG-002` (severity 10) when a sensor's heartbeat says it stops
//!   (`act=stopped`), or when it is silent for two of its intervals
//!   (`act=disconnected`): a killed agent sends nothing, so the stage's
//!   periodic [`AgentTracker::tick`] notices it;
//! - `AG-003` (severity 10) for every heartbeat that reports lost events.
//!
//! The rule is `tapwire_schemas::alive_at`, which the aggregator's liveness
//! view applies too. Heartbeats are judged by their own times (a gap of two
//! intervals between two of them is a disconnection, reported before the
//! reconnection), so a backlog read late tells the true story with the true
//! times (`rt`); only the tick compares the latest heartbeat with the
//! stage's wall clock, so a stage that reads `tapwire.agents` more than two
//! intervals late reports a silence that the next heartbeat ends
//! (`reconnected`). Delivery is at least once: after a restart of the stage
//! every sensor is announced again from the first heartbeat it reads, and a
//! message's `externalId` is derived from the heartbeat (or, for a silence,
//! from the last heartbeat) so that repeats carry the same id.
//!
//! With several CEF replicas in one consumer group, each follows the sensors
//! of its partitions of `tapwire.agents` (keyed by sensor id); a rebalance
//! that moves a sensor to another replica makes the old one report it
//! disconnected and the new one connected.

use std::collections::HashMap;

use tapwire_schemas::events::{AgentHeartbeat, EventHeader, SourceLoss, alive_at, silent_at_ns};
use tapwire_schemas::signature::AgentEventKind;

/// What changed for one sensor, ready to format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEvent {
    /// Connected, disconnected or loss.
    pub kind: AgentEventKind,
    /// What happened, for `act`: `connected`, `reconnected`, `stopped`,
    /// `disconnected`, `lost`.
    pub action: &'static str,
    /// The sensor's node and id, the time of the change (the heartbeat's, or
    /// for a silence the moment it became two intervals long) and a stable id.
    pub header: EventHeader,
    /// For errors: why (the seed's `reason`).
    pub reason: Option<String>,
    /// For a loss: events lost, per counter.
    pub losses: Vec<SourceLoss>,
}

impl AgentEvent {
    /// Events lost (a loss report), else 0.
    pub fn lost(&self) -> u64 {
        self.losses.iter().map(|l| l.lost).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Announced {
    /// Never reported: first known from stale heartbeats.
    Nothing,
    /// Reported connected.
    Alive,
    /// Reported disconnected.
    Down,
}

#[derive(Debug)]
struct Sensor {
    /// The latest heartbeat (by its timestamp).
    last: AgentHeartbeat,
    announced: Announced,
}

/// The latest heartbeat and the last reported state of every sensor.
#[derive(Debug, Default)]
pub struct AgentTracker {
    sensors: HashMap<String, Sensor>,
}

impl AgentTracker {
    /// Sensors known.
    pub fn len(&self) -> usize {
        self.sensors.len()
    }

    /// Whether no sensor is known.
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }

    /// Takes a heartbeat in; pushes the changes it makes to `out`. Changes
    /// are judged by the heartbeats' own times, so a heartbeat read late
    /// (a backlog, a slow broker) tells the same story as one read at once;
    /// only [`AgentTracker::tick`] compares with the wall clock.
    pub fn heartbeat(&mut self, hb: &AgentHeartbeat, out: &mut Vec<AgentEvent>) {
        if hb.lost() > 0 {
            out.push(AgentEvent {
                kind: AgentEventKind::Loss,
                action: "lost",
                header: hb.header.clone(),
                reason: Some(loss_reason(&hb.losses)),
                losses: hb.losses.iter().filter(|l| l.lost > 0).cloned().collect(),
            });
        }
        let sensor = match self.sensors.get_mut(&hb.header.sensor_id) {
            Some(s) if s.last.header.timestamp_ns > hb.header.timestamp_ns => return,
            Some(s) => s,
            None => self
                .sensors
                .entry(hb.header.sensor_id.clone())
                .or_insert(Sensor {
                    last: hb.clone(),
                    announced: Announced::Nothing,
                }),
        };
        // Alive, yet silent for two intervals before this heartbeat (no
        // tick ran in between): the silence is reported first.
        if sensor.announced == Announced::Alive
            && !alive_at(
                sensor.last.header.timestamp_ns,
                sensor.last.interval_ms,
                sensor.last.stopping,
                hb.header.timestamp_ns,
            )
        {
            out.push(silence(&sensor.last));
            sensor.announced = Announced::Down;
        }
        sensor.last = hb.clone();
        let change = match (hb.stopping, sensor.announced) {
            (true, Announced::Down) => None,
            (true, _) => Some((
                AgentEventKind::Disconnected,
                "stopped",
                Some("the agent stopped".to_owned()),
            )),
            (false, Announced::Alive) => None,
            (false, Announced::Nothing) => Some((AgentEventKind::Connected, "connected", None)),
            (false, Announced::Down) => Some((AgentEventKind::Connected, "reconnected", None)),
        };
        if let Some((kind, action, reason)) = change {
            sensor.announced = match kind {
                AgentEventKind::Connected => Announced::Alive,
                _ => Announced::Down,
            };
            let mut header = hb.header.clone();
            header.id = tapwire_schemas::EventId::derive(&[&hb.header.id.0, action.as_bytes()]);
            out.push(AgentEvent {
                kind,
                action,
                header,
                reason,
                losses: Vec::new(),
            });
        }
    }

    /// Reports every sensor announced alive whose latest heartbeat is now
    /// (`now_ns`) older than two of its intervals.
    pub fn tick(&mut self, now_ns: i64, out: &mut Vec<AgentEvent>) {
        let mut silent: Vec<&mut Sensor> = self
            .sensors
            .values_mut()
            .filter(|s| {
                s.announced == Announced::Alive
                    && !alive_at(
                        s.last.header.timestamp_ns,
                        s.last.interval_ms,
                        false,
                        now_ns,
                    )
            })
            .collect();
        silent.sort_by(|a, b| a.last.header.sensor_id.cmp(&b.last.header.sensor_id));
        for sensor in silent {
            sensor.announced = Announced::Down;
            out.push(silence(&sensor.last));
        }
    }
}

/// `AG-002` for a sensor whose latest heartbeat is `last`: at the moment
/// the silence reached two intervals.
fn silence(last: &AgentHeartbeat) -> AgentEvent {
    let since = silent_at_ns(last.header.timestamp_ns, last.interval_ms);
    let mut header = last.header.clone();
    header.timestamp_ns = since;
    header.id = tapwire_schemas::EventId::derive(&[&last.header.id.0, b"disconnected"]);
    AgentEvent {
        kind: AgentEventKind::Disconnected,
        action: "disconnected",
        header,
        reason: Some(format!(
            "no heartbeat for {} ms (two intervals of {} ms)",
            (since - last.header.timestamp_ns) / 1_000_000,
            last.interval_ms
        )),
        losses: Vec::new(),
    }
}

fn loss_reason(losses: &[SourceLoss]) -> String {
    let parts: Vec<String> = losses
        .iter()
        .filter(|l| l.lost > 0)
        .map(|l| format!("{} {}", l.source, l.lost))
        .collect();
    format!(
        "events lost since the previous heartbeat: {}",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_schemas::samples;

    const MS: i64 = 1_000_000;

    fn hb(sensor: &str, seq: u64, t_ms: i64) -> AgentHeartbeat {
        let mut h =
            samples::heartbeat(samples::header("node-a", sensor, seq, t_ms * MS), 1, seq, 0);
        h.interval_ms = 500;
        h
    }

    fn actions(out: &[AgentEvent]) -> Vec<(&str, &str)> {
        out.iter()
            .map(|e| (e.header.sensor_id.as_str(), e.action))
            .collect()
    }

    #[test]
    fn connect_silence_reconnect_stop() {
        let mut t = AgentTracker::default();
        let mut out = Vec::new();
        t.heartbeat(&hb("s1", 0, 0), &mut out);
        t.heartbeat(&hb("s1", 1, 500), &mut out);
        t.tick(1500 * MS, &mut out);
        assert_eq!(actions(&out), [("s1", "connected")], "within two intervals");
        t.tick(1501 * MS, &mut out);
        assert_eq!(out[1].action, "disconnected");
        assert_eq!(out[1].kind, AgentEventKind::Disconnected);
        assert_eq!(out[1].header.timestamp_ns, 1500 * MS);
        assert!(
            out[1]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("1000 ms"))
        );
        t.tick(5000 * MS, &mut out);
        assert_eq!(out.len(), 2, "reported once");
        t.heartbeat(&hb("s1", 0, 6000), &mut out);
        assert_eq!(out[2].action, "reconnected");
        assert_eq!(out[2].kind, AgentEventKind::Connected);
        let mut stop = hb("s1", 1, 6200);
        stop.stopping = true;
        t.heartbeat(&stop, &mut out);
        assert_eq!(out[3].action, "stopped");
        t.tick(99_000 * MS, &mut out);
        assert_eq!(out.len(), 4, "a stopped sensor is not reported again");
    }

    /// A backlog read late tells the same story, with the heartbeats' times.
    #[test]
    fn a_backlog_gives_the_gaps_by_the_heartbeats_times() {
        let mut t = AgentTracker::default();
        let mut out = Vec::new();
        for (seq, at) in [(0, 0), (1, 500), (2, 5000), (3, 5500)] {
            t.heartbeat(&hb("old", seq, at), &mut out);
        }
        assert_eq!(
            actions(&out),
            [
                ("old", "connected"),
                ("old", "disconnected"),
                ("old", "reconnected")
            ]
        );
        assert_eq!(out[1].header.timestamp_ns, 1500 * MS);
        t.tick(60_000 * MS, &mut out);
        assert_eq!(out[3].action, "disconnected");
        assert_eq!(out[3].header.timestamp_ns, 6500 * MS);
    }

    #[test]
    fn losses_and_out_of_order_heartbeats() {
        let mut t = AgentTracker::default();
        let mut out = Vec::new();
        let mut lossy = hb("s2", 3, 1000);
        lossy.losses[0].lost = 9;
        t.heartbeat(&lossy, &mut out);
        assert_eq!(actions(&out), [("s2", "lost"), ("s2", "connected")]);
        assert_eq!(out[0].kind, AgentEventKind::Loss);
        assert_eq!(out[0].lost(), 9);
        assert_eq!(out[0].losses.len(), 1, "zero counters left out");
        // An older heartbeat after a newer one changes nothing.
        t.heartbeat(&hb("s2", 2, 900), &mut out);
        t.tick(2000 * MS, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(t.len(), 1);
    }

    /// The ids are derived from the heartbeats: a replay repeats them.
    #[test]
    fn ids_are_stable() {
        let run = || {
            let mut t = AgentTracker::default();
            let mut out = Vec::new();
            t.heartbeat(&hb("s3", 0, 0), &mut out);
            t.tick(2000 * MS, &mut out);
            out.iter().map(|e| e.header.id).collect::<Vec<_>>()
        };
        let ids = run();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(ids, run());
    }

    /// The message for a silence passes the strict shape MAPPING.md gives.
    #[test]
    fn agent_messages_format_as_the_mapping_says() {
        let mut t = AgentTracker::default();
        let mut out = Vec::new();
        let mut first = hb("s4", 0, 1_700_000_000_000);
        first.losses[1].lost = 2;
        t.heartbeat(&first, &mut out);
        t.tick(1_700_000_002_000 * MS, &mut out);
        let formatter = crate::format::Formatter::new(&crate::CefConfig {
            cluster_name: Some("prod-eu".into()),
            ..crate::CefConfig::default()
        });
        let lines: Vec<String> = out
            .iter()
            .map(|e| {
                let mut buf = Vec::new();
                formatter.format_agent(e, &mut buf);
                String::from_utf8(buf).expect("utf-8")
            })
            .collect();
        assert!(
            lines[0].starts_with("<162>Nov 14 22:13:20 node-a CEF:0|tapwire|tapwire|"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("|AG-003|Agent|10|rt=1700000000000 act=lost outcome=Error reason=events lost since the previous heartbeat: packet_queue 2 source=s4 dvchost=node-a deviceExternalId=s4 cn1=2 cn1Label=Events lost cs1=prod-eu"), "{}", lines[0]);
        assert!(
            lines[1].contains(
                "|AG-001|Agent|5|rt=1700000000000 act=connected outcome=Success source=s4 "
            ),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("|AG-002|Agent|10|rt=1700000001000 act=disconnected outcome=Error reason=no heartbeat for 1000 ms (two intervals of 500 ms) source=s4"), "{}", lines[2]);
        assert!(
            lines[2].contains(" cs7=192.168.10.11 cs7Label=Node IP externalId="),
            "{}",
            lines[2]
        );
    }
}
