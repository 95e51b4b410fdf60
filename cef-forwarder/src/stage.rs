//! The consumer-loop handler of `tapwire cef`: decode verdicts, format them,
//! send the batch and return only when TCP/TLS flushed it, so the loop
//! stores offsets only for messages the receiver's socket took.
//!
//! Delivery: TCP and TLS are at least once (a batch retried after a broken
//! connection may repeat messages the receiver already got; `externalId`
//! carries the event id for de-duplication); UDP is best effort.

use std::ops::Range;
use std::time::Instant;

use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::{BatchHandler, HandlerError, decode_batch};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::telemetry::{RateLimit, StageMetrics};
use tapwire_schemas::Verdict;

use crate::config::CefConfig;
use crate::format::Formatter;
use crate::transport::{Sender, TransportError};

/// Sends one CEF message per verdict.
pub struct CefStage {
    formatter: Formatter,
    sender: Sender,
    limiter: Option<TokenBucket>,
    metrics: StageMetrics,
    cut_log: RateLimit,
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl CefStage {
    /// Builds the stage from a validated configuration (reads TLS files).
    pub fn new(config: &CefConfig, metrics: StageMetrics) -> Result<CefStage, TransportError> {
        Ok(CefStage {
            formatter: Formatter::new(config),
            sender: Sender::new(config)?,
            limiter: config.rate_limit_per_s.map(TokenBucket::new),
            metrics,
            cut_log: RateLimit::new(std::time::Duration::from_secs(60)),
            buf: Vec::with_capacity(1 << 20),
            ranges: Vec::new(),
        })
    }
}

impl BatchHandler for CefStage {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let (verdicts, mut rejections) = decode_batch::<Verdict>(batch);
        self.buf.clear();
        self.ranges.clear();
        let mut limited = 0u64;
        let mut cut = 0u64;
        for (index, verdict) in verdicts {
            if let Some(limiter) = &mut self.limiter
                && !limiter.take()
            {
                limited += 1;
                continue;
            }
            let start = self.buf.len();
            match self.formatter.format(&verdict, &mut self.buf) {
                Ok(values_cut) => {
                    cut += u64::from(values_cut);
                    self.ranges.push(start..self.buf.len());
                }
                Err(err) => {
                    self.buf.truncate(start);
                    rejections.push(Rejection {
                        index,
                        error: "bad_record",
                        reason: err.to_string(),
                    });
                }
            }
        }
        let report = self
            .sender
            .send(&self.buf, &self.ranges)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        self.metrics.messages_out.inc_by(report.sent);
        if report.dropped > 0 {
            self.metrics.dropped("udp_send", report.dropped);
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
    fn the_bucket_allows_one_seconds_worth_then_refuses() {
        let mut bucket = TokenBucket::new(3);
        assert_eq!((0..5).filter(|_| bucket.take()).count(), 3);
    }
}
