//! `tapwire topics tail`: a consumer stage whose downstream is a writer
//! (stdout). A batch's lines are written and flushed before its offsets are
//! stored, so a killed tail never skips a message.

use std::io::Write;

use serde_json::json;
use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::{BatchHandler, HandlerError};
use tapwire_plumbing::dlq::{DeadLetter, Rejection};
use tapwire_plumbing::stage::{BoxError, BuildContext, Stage};
use tapwire_plumbing::telemetry::StageMetrics;
use tapwire_schemas::{AnyEvent, decode_any, topics};

use crate::cli::TailFormat;
use crate::json;

/// The tail stage: `topics` read as `group`, every message printed to
/// stdout.
pub struct Tail {
    /// Consumer group.
    pub group: String,
    /// Topics read.
    pub topics: Vec<String>,
    /// Line format.
    pub format: TailFormat,
}

impl Stage for Tail {
    type Handler = TailHandler<std::io::Stdout>;

    fn name(&self) -> &'static str {
        "tail"
    }

    fn group(&self) -> String {
        self.group.clone()
    }

    fn inputs(&self) -> Vec<String> {
        self.topics.clone()
    }

    async fn build(self, cx: &BuildContext) -> Result<Self::Handler, BoxError> {
        Ok(TailHandler::new(
            std::io::stdout(),
            self.format,
            cx.stage.metrics.clone(),
        ))
    }
}

/// Writes every message of a batch to `out`.
pub struct TailHandler<W> {
    out: W,
    format: TailFormat,
    buffer: Vec<u8>,
    metrics: StageMetrics,
}

impl<W: Write + Send> TailHandler<W> {
    /// A handler writing `format` lines to `out`.
    pub fn new(out: W, format: TailFormat, metrics: StageMetrics) -> Self {
        TailHandler {
            out,
            format,
            buffer: Vec::with_capacity(1 << 16),
            metrics,
        }
    }

    fn line(&mut self, message: &Message, event: &AnyEvent) {
        let header = event.header();
        let id = header.map(|h| h.id.to_hex()).unwrap_or_default();
        let key = message.key.as_deref().map(String::from_utf8_lossy);
        match self.format {
            TailFormat::Json => {
                let line = json!({
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "key": key,
                    "schema": event.kind().full_name(),
                    "event": json::event(event),
                });
                let _ = writeln!(self.buffer, "{line}");
            }
            TailFormat::Text => {
                let (node, ts) = header
                    .map(|h| (h.node.as_str(), h.timestamp_ns))
                    .unwrap_or_default();
                let _ = writeln!(
                    self.buffer,
                    "{}/{}@{} {} id={id} node={node} ts={ts}",
                    message.topic,
                    message.partition,
                    message.offset,
                    event.kind().full_name()
                );
            }
        }
    }

    fn dead_letter_line(&mut self, message: &Message) {
        let dl = DeadLetter::from_message(message);
        match self.format {
            TailFormat::Json => {
                let line = json!({
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "payload_len": message.payload.len(),
                    "dead_letter": dl.map(|d| json!({
                        "reason": d.reason, "error": d.error, "stage": d.stage,
                        "source_topic": d.source_topic, "source_partition": d.source_partition,
                        "source_offset": d.source_offset,
                    })),
                });
                let _ = writeln!(self.buffer, "{line}");
            }
            TailFormat::Text => {
                let what = dl
                    .map(|d| {
                        format!(
                            "from {}/{}@{} by {}: {}",
                            d.source_topic, d.source_partition, d.source_offset, d.stage, d.reason
                        )
                    })
                    .unwrap_or_else(|| "without dead-letter headers".to_owned());
                let _ = writeln!(
                    self.buffer,
                    "{}/{}@{} dead letter {what}",
                    message.topic, message.partition, message.offset
                );
            }
        }
    }
}

impl<W: Write + Send> BatchHandler for TailHandler<W> {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        self.buffer.clear();
        let mut rejections = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            if message.topic == topics::DLQ {
                self.dead_letter_line(message);
                continue;
            }
            match decode_any(&message.payload) {
                Ok(event) => self.line(message, &event),
                Err(err) => rejections.push(Rejection::undecodable(index, &err)),
            }
        }
        self.out
            .write_all(&self.buffer)
            .and_then(|()| self.out.flush())
            .map_err(|e| match e.kind() {
                // The reader went away (e.g. `| head`): nothing more can be delivered.
                std::io::ErrorKind::BrokenPipe => HandlerError::Fatal("output closed".into()),
                _ => HandlerError::Transient(format!("writing output: {e}")),
            })?;
        self.metrics
            .messages_out
            .inc_by((batch.len() - rejections.len()) as u64);
        Ok(rejections)
    }
}
