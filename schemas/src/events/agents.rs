//! The capture agent's heartbeat (`agent_heartbeat.avsc`) and the liveness
//! rule every reader applies to it (the CEF stage's `AG` messages, the
//! aggregator's liveness view), so they cannot disagree.

use serde::{Deserialize, Serialize};

use super::EventHeader;

/// A capture agent saying it is alive (`agent_heartbeat.avsc`), on
/// `tapwire.agents` keyed by sensor id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHeartbeat {
    /// Node, sensor id and the time it was sent.
    pub header: EventHeader,
    /// Version of the agent binary.
    pub agent_version: String,
    /// When this agent process started (epoch ns): a new value is a restart.
    pub started_ns: i64,
    /// Heartbeats this process sent before this one.
    pub sequence: u64,
    /// Time until the next heartbeat.
    pub interval_ms: u64,
    /// Sources running when it was sent.
    pub sources: Vec<String>,
    /// Events lost per loss counter since the previous heartbeat.
    pub losses: Vec<SourceLoss>,
    /// The last heartbeat of an agent stopping cleanly.
    pub stopping: bool,
    /// Whether the agent applies enforce-mode policies at its node.
    #[serde(default)]
    pub enforcing: bool,
}

/// Events one loss counter of an agent lost since its previous heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLoss {
    /// `ringbuf` (eBPF ring buffer) or `packet_queue` (live capture queue).
    pub source: String,
    /// Events lost there since the previous heartbeat.
    pub lost: u64,
}

/// How many heartbeat intervals a sensor may stay silent before it is
/// disconnected.
pub const SILENT_INTERVALS: i64 = 2;

impl AgentHeartbeat {
    /// Events lost since the previous heartbeat, over every counter.
    pub fn lost(&self) -> u64 {
        self.losses.iter().map(|l| l.lost).sum()
    }

    /// When a sensor whose latest heartbeat is this one becomes
    /// disconnected (epoch ns): two intervals after it was sent.
    pub fn silent_at_ns(&self) -> i64 {
        silent_at_ns(self.header.timestamp_ns, self.interval_ms)
    }
}

/// When a sensor whose latest heartbeat was sent at `last_ns` with
/// `interval_ms` becomes disconnected: [`SILENT_INTERVALS`] intervals later.
pub fn silent_at_ns(last_ns: i64, interval_ms: u64) -> i64 {
    let interval_ns = i64::try_from(interval_ms)
        .unwrap_or(i64::MAX / 4)
        .saturating_mul(1_000_000);
    last_ns.saturating_add(interval_ns.saturating_mul(SILENT_INTERVALS))
}

/// Whether a sensor is alive at `now_ns`, judging by its latest heartbeat:
/// sent at `last_ns` with `interval_ms`, `stopping` or not. A sensor whose
/// latest heartbeat said it was stopping, or that is silent for more than
/// two intervals, is not.
pub fn alive_at(last_ns: i64, interval_ms: u64, stopping: bool, now_ns: i64) -> bool {
    !stopping && now_ns <= silent_at_ns(last_ns, interval_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_for_two_intervals_or_stopping_is_not_alive() {
        let s = 1_000_000_000;
        assert!(alive_at(0, 500, false, s));
        assert!(!alive_at(0, 500, false, s + 1));
        assert!(!alive_at(0, 500, true, 1));
        assert_eq!(silent_at_ns(i64::MAX - 1, u64::MAX), i64::MAX);
    }
}
