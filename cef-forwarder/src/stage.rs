//! The CEF stage: [`CefConfig`] declares it (`cef.topics` in, a syslog
//! receiver, a file or stdout out) and builds [`CefStage`]: decode verdicts,
//! format them, send the batch and return only when TCP/TLS (or the file)
//! flushed it, so the loop stores offsets only for messages the receiver's
//! socket took.
//!
//! Loss records (forwarded by enrich and policy so that later stages see
//! gaps) are not bad data: each becomes an `AG-003` message (events lost)
//! and is counted (`tapwire_messages_marked_total{reason="upstream_loss"}`,
//! per lost event), never dead-lettered.
//!
//! Agent heartbeats (`tapwire.agents`, always read besides `cef.topics`)
//! become `AG` messages when a sensor connects, stops, goes silent for two
//! intervals (noticed on the stage's tick, every 200 ms, also while nothing
//! arrives) or reports lost events; see [`crate::liveness`]. They pass no
//! KFL filter and no rate limit.
//!
//! Delivery: TCP and TLS are at least once (a batch retried after a broken
//! connection may repeat messages the receiver already got; `externalId`
//! carries the event id for de-duplication); UDP is best effort.

use std::ops::Range;
use std::time::{Duration, Instant};

use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::{BatchHandler, HandlerError};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::stage::{BoxError, BuildContext, Stage};
use tapwire_plumbing::telemetry::{RateLimit, StageMetrics};
use tapwire_schemas::events::{AgentHeartbeat, LossRecord, Mode, Outcome};
use tapwire_schemas::signature::{EventKind, signature};
use tapwire_schemas::{AnyEvent, Verdict, decode_any};

use crate::config::CefConfig;
use crate::format::Formatter;
use crate::liveness::{AgentEvent, AgentTracker};
use crate::transport::{Sender, TransportError};

impl Stage for CefConfig {
    type Handler = CefStage;

    fn name(&self) -> &'static str {
        "cef"
    }

    fn group(&self) -> String {
        self.group.clone()
    }

    /// `cef.topics`, and always `tapwire.agents` (the agents' liveness,
    /// `AG` messages, [`crate::liveness`]), `tapwire.audit` (`API`),
    /// `tapwire.scan.status` (`SJ`) and `tapwire.scan.events` (`MLW`, `SD`,
    /// `MS`, `CMP`, `NCMP`).
    fn inputs(&self) -> Vec<String> {
        let mut topics = self.topics.clone();
        for always in [
            tapwire_schemas::topics::AGENTS,
            tapwire_schemas::topics::AUDIT,
            tapwire_schemas::topics::SCAN_STATUS,
            tapwire_schemas::topics::SCAN_EVENTS,
        ] {
            if !topics.iter().any(|t| t == always) {
                topics.push(always.to_owned());
            }
        }
        topics
    }

    async fn build(self, cx: &BuildContext) -> Result<CefStage, BoxError> {
        self.validate()?;
        tracing::info!(target = %self.target, group = %self.group, "forwarding verdicts as CEF");
        Ok(CefStage::new(&self, cx.stage.metrics.clone())?)
    }
}

/// Sends one CEF message per verdict.
pub struct CefStage {
    formatter: Formatter,
    sender: Sender,
    limiter: Option<TokenBucket>,
    filter: Option<tapwire_kfl::Filter>,
    metrics: StageMetrics,
    cut_log: RateLimit,
    loss_log: RateLimit,
    sent: u64,
    lost_upstream: u64,
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
    agents: AgentTracker,
    /// Agent events not delivered yet (a failed send), by id.
    pending: Vec<AgentEvent>,
    agent_messages: u64,
    api_messages: u64,
}

/// How often silent sensors are looked for.
const LIVENESS_TICK: Duration = Duration::from_millis(200);

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl CefStage {
    /// Builds the stage from a validated configuration (reads TLS files).
    pub fn new(config: &CefConfig, metrics: StageMetrics) -> Result<CefStage, TransportError> {
        Ok(CefStage {
            formatter: Formatter::new(config),
            sender: Sender::new(config)?,
            limiter: config.rate_limit_per_s.map(TokenBucket::new),
            // Checked by `CefConfig::validate`; an invalid query never gets here.
            filter: config
                .filter
                .as_deref()
                .and_then(|q| tapwire_kfl::compile_dissected(q).ok()),
            metrics,
            cut_log: RateLimit::new(std::time::Duration::from_secs(60)),
            loss_log: RateLimit::new(std::time::Duration::from_secs(10)),
            sent: 0,
            lost_upstream: 0,
            buf: Vec::with_capacity(1 << 20),
            ranges: Vec::new(),
            agents: AgentTracker::default(),
            pending: Vec::new(),
            agent_messages: 0,
            api_messages: 0,
        })
    }

    /// Queues agent events (once per id) for the next send.
    fn queue(&mut self, events: Vec<AgentEvent>) {
        for event in events {
            if !self.pending.iter().any(|p| p.header.id == event.header.id) {
                self.pending.push(event);
            }
        }
    }

    /// Formats the queued agent events into the send buffer.
    fn format_pending(&mut self) -> u64 {
        let mut cut = 0;
        for event in &self.pending {
            let start = self.buf.len();
            cut += u64::from(self.formatter.format_agent(event, &mut self.buf));
            self.ranges.push(start..self.buf.len());
        }
        cut
    }

    /// After a send that delivered: the queued agent events are out.
    fn pending_sent(&mut self) {
        self.agent_messages += self.pending.len() as u64;
        self.pending.clear();
    }
}

impl BatchHandler for CefStage {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let Decoded {
            verdicts,
            rejections,
            losses,
            heartbeats,
            api,
            scan_status,
            scan_events,
        } = decode_verdicts(batch);
        let mut changes = Vec::new();
        for hb in &heartbeats {
            self.agents.heartbeat(hb, &mut changes);
        }
        self.queue(changes);
        let mut lost_events = Vec::new();
        for loss in &losses {
            self.lost_upstream += loss.lost;
            self.metrics.marked("upstream_loss", loss.lost);
            if let Some(suppressed) = self.loss_log.allow() {
                tracing::warn!(node = %loss.header.node, source = %loss.source, lost = loss.lost,
                    suppressed, "events were lost upstream; the SIEM gets an AG-003 for them");
            }
            // The SIEM learns of the gap: an AG-003 (events lost) per record.
            lost_events.push(AgentEvent {
                kind: tapwire_schemas::signature::AgentEventKind::Loss,
                action: "lost",
                header: loss.header.clone(),
                reason: Some(format!(
                    "{} events lost at {} on {}",
                    loss.lost, loss.source, loss.header.node
                )),
                losses: vec![tapwire_schemas::events::SourceLoss {
                    source: loss.source.clone(),
                    lost: loss.lost,
                }],
            });
        }
        self.queue(lost_events);
        self.buf.clear();
        self.ranges.clear();
        let mut limited = 0u64;
        // Agent events pass no filter and no rate limit: they are few, and
        // the SIEM must see them.
        let mut cut = self.format_pending();
        // The API's audit trail, like agent events: no filter, no limit.
        for request in &api {
            let start = self.buf.len();
            cut += u64::from(self.formatter.format_api(request, &mut self.buf));
            self.ranges.push(start..self.buf.len());
        }
        self.api_messages += api.len() as u64;
        // The scanner's events and what happened after scans: no filter,
        // no limit either.
        for change in &scan_status {
            let start = self.buf.len();
            cut += u64::from(self.formatter.format_scan_status(change, &mut self.buf));
            if self.buf.len() > start {
                self.ranges.push(start..self.buf.len());
            }
        }
        for event in &scan_events {
            let start = self.buf.len();
            cut += u64::from(self.formatter.format_scan_event(event, &mut self.buf));
            self.ranges.push(start..self.buf.len());
        }
        let mut filtered = 0u64;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for verdict in verdicts {
            if let Some(filter) = &self.filter
                && !filter.matches(&tapwire_schemas::kfl::EventEntry::verdict(&verdict), now_ms)
            {
                filtered += 1;
                continue;
            }
            if let Some(limiter) = &mut self.limiter
                && !limiter.take()
            {
                limited += 1;
                continue;
            }
            let start = self.buf.len();
            cut += u64::from(self.formatter.format(&verdict, &mut self.buf));
            self.ranges.push(start..self.buf.len());
        }
        let report = self
            .sender
            .send(&self.buf, &self.ranges)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        self.pending_sent();
        self.metrics.messages_out.inc_by(report.sent);
        self.sent += report.sent;
        if report.dropped > 0 {
            self.metrics.dropped("udp_send", report.dropped);
        }
        if filtered > 0 {
            self.metrics.marked("filtered_out", filtered);
        }
        if limited > 0 {
            self.metrics.dropped("rate_limit", limited);
            tracing::warn!(dropped = limited, "rate limit: messages dropped");
        }
        if cut > 0
            && let Some(suppressed) = self.cut_log.allow()
        {
            tracing::info!(
                values = cut,
                suppressed,
                "values cut to the CEF maximum lengths"
            );
        }
        Ok(rejections)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(LIVENESS_TICK)
    }

    /// Reports sensors silent for two intervals (`AG-002`). A failed send
    /// keeps them queued for the next tick or batch: a tick error would
    /// stop the stage.
    async fn tick(&mut self) -> Result<(), HandlerError> {
        let mut changes = Vec::new();
        self.agents.tick(now_ns(), &mut changes);
        self.queue(changes);
        if self.pending.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        self.ranges.clear();
        self.format_pending();
        match self.sender.send(&self.buf, &self.ranges).await {
            Ok(report) => {
                self.pending_sent();
                self.metrics.messages_out.inc_by(report.sent);
                self.sent += report.sent;
            }
            Err(err) => {
                if let Some(suppressed) = self.loss_log.allow() {
                    tracing::warn!(error = %err, pending = self.pending.len(), suppressed,
                        "agent messages not sent; retrying");
                }
            }
        }
        Ok(())
    }

    fn report(&self) -> String {
        format!(
            "{} CEF messages sent, {} events lost upstream, {} agent messages, {} API requests",
            self.sent, self.lost_upstream, self.agent_messages, self.api_messages
        )
    }
}

/// A batch decoded.
struct Decoded {
    verdicts: Vec<Verdict>,
    rejections: Vec<Rejection>,
    losses: Vec<LossRecord>,
    heartbeats: Vec<AgentHeartbeat>,
    api: Vec<tapwire_schemas::events::ApiRequest>,
    scan_status: Vec<tapwire_schemas::scan::StatusChange>,
    scan_events: Vec<tapwire_schemas::scan::ScanEvent>,
}

/// Verdicts, and enriched events forwarded as they are (a topic such as
/// `tapwire.l4.enriched` in `cef.topics`): those read as mode `other`, not a
/// violation. Anything else is rejected with the reason.
fn decode_verdicts(batch: &[Message]) -> Decoded {
    let mut verdicts = Vec::with_capacity(batch.len());
    let mut rejections = Vec::new();
    let mut losses = Vec::new();
    let mut heartbeats = Vec::new();
    let mut api = Vec::new();
    let mut scan_status = Vec::new();
    let mut scan_events = Vec::new();
    for (index, message) in batch.iter().enumerate() {
        // The scan queue's topics carry JSON.
        let json = |e: serde_json::Error| Rejection {
            index,
            error: "bad_scan_message",
            reason: format!("{}: not a scan message: {e}", message.topic),
        };
        if message.topic == tapwire_schemas::topics::SCAN_STATUS {
            match serde_json::from_slice(&message.payload) {
                Ok(change) => scan_status.push(change),
                Err(e) => rejections.push(json(e)),
            }
            continue;
        }
        if message.topic == tapwire_schemas::topics::SCAN_EVENTS {
            match serde_json::from_slice(&message.payload) {
                Ok(event) => scan_events.push(event),
                Err(e) => rejections.push(json(e)),
            }
            continue;
        }
        match decode_any(&message.payload) {
            Ok(AnyEvent::Verdict(v)) => verdicts.push(v),
            Ok(AnyEvent::AgentHeartbeat(hb)) => heartbeats.push(hb),
            Ok(AnyEvent::ApiRequest(r)) => api.push(r),
            Ok(AnyEvent::LossRecord(loss)) => losses.push(loss),
            Ok(AnyEvent::EnrichedEvent(event)) => {
                let sig = signature(EventKind::of(&event), Outcome::Allowed);
                verdicts.push(Verdict {
                    event,
                    mode: Mode::Other,
                    policy: None,
                    rule: None,
                    signature_id: sig.id.to_owned(),
                    severity: sig.severity,
                    outcome: Outcome::Allowed,
                    sides: Vec::new(),
                });
            }
            Ok(other) => rejections.push(Rejection::wrong_schema(
                index,
                "cef forwards verdicts, enriched events, agent heartbeats and API requests",
                other.kind(),
            )),
            Err(err) => rejections.push(Rejection::undecodable(index, &err)),
        }
    }
    Decoded {
        verdicts,
        rejections,
        losses,
        heartbeats,
        api,
        scan_status,
        scan_events,
    }
}

/// At most `rate` messages per second, with a burst of one second's worth.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enriched_events_pass_as_mode_other_and_raw_events_are_rejected() {
        use tapwire_schemas::{encode, samples};
        let verdict = samples::flow_verdict(samples::header("n", "s", 1, 1), 1);
        let tapwire_schemas::EventBody::L4(l4) = &verdict.event.body else {
            panic!("a flow verdict holds an L4 event")
        };
        let message = |payload: Vec<u8>| Message {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: None,
            payload,
            headers: vec![],
        };
        let batch = [
            message(encode(&verdict).expect("encode")),
            message(encode(&verdict.event).expect("encode")),
            message(encode(l4).expect("encode")),
        ];
        let Decoded {
            verdicts,
            rejections,
            ..
        } = decode_verdicts(&batch);
        assert_eq!(verdicts.len(), 2);
        assert_eq!(verdicts[1].mode, Mode::Other);
        assert_eq!(verdicts[1].signature_id, "NT-004");
        assert_eq!(rejections.len(), 1);
        assert_eq!(rejections[0].index, 2);
        assert!(
            rejections[0].reason.contains("L4Event"),
            "{}",
            rejections[0].reason
        );
    }

    #[test]
    fn the_bucket_allows_one_seconds_worth_then_refuses() {
        let mut bucket = TokenBucket::new(3);
        assert_eq!((0..5).filter(|_| bucket.take()).count(), 3);
    }
}
