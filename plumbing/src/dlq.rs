//! Dead letters: a message a stage cannot decode or validate is copied to
//! `tapwire.dlq` with its original key, value and headers, plus headers that
//! say why and where it came from. Nothing is dropped and the partition it
//! came from keeps moving.

use crate::bus::{Message, OutRecord};

/// Human-readable reason.
pub const HEADER_REASON: &str = "tapwire.dlq.reason";
/// Short stable error kind (`bad_magic`, `unknown_fingerprint`, ...).
pub const HEADER_ERROR: &str = "tapwire.dlq.error";
/// Stage that rejected the message.
pub const HEADER_STAGE: &str = "tapwire.dlq.stage";
/// Topic the message was read from.
pub const HEADER_SOURCE_TOPIC: &str = "tapwire.dlq.source.topic";
/// Partition it was read from (decimal).
pub const HEADER_SOURCE_PARTITION: &str = "tapwire.dlq.source.partition";
/// Offset it was read from (decimal).
pub const HEADER_SOURCE_OFFSET: &str = "tapwire.dlq.source.offset";

/// A handler's verdict that one message of a batch is bad data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the message in the batch.
    pub index: usize,
    /// Short stable error kind, used as a metric label.
    pub error: &'static str,
    /// What is wrong, for people.
    pub reason: String,
}

impl Rejection {
    /// A message that does not decode (not Avro single-object encoding, an
    /// unknown writer schema, a body that does not match it).
    pub fn undecodable(index: usize, err: &tapwire_schemas::DecodeError) -> Self {
        Rejection {
            index,
            error: err.label(),
            reason: err.to_string(),
        }
    }

    /// A well-formed message of a kind the stage does not read; `reads`
    /// says what it reads, e.g. `"policy reads enriched events"`.
    pub fn wrong_schema(index: usize, reads: &str, got: tapwire_schemas::SchemaKind) -> Self {
        Rejection {
            index,
            error: "wrong_schema",
            reason: format!("{reads}, not {got}"),
        }
    }
}

/// The dead-letter record for `message`.
pub fn dead_letter(stage: &str, message: &Message, rejection: &Rejection) -> OutRecord {
    let mut headers = message.headers.clone();
    headers.extend([
        (
            HEADER_REASON.to_owned(),
            rejection.reason.clone().into_bytes(),
        ),
        (HEADER_ERROR.to_owned(), rejection.error.as_bytes().to_vec()),
        (HEADER_STAGE.to_owned(), stage.as_bytes().to_vec()),
        (
            HEADER_SOURCE_TOPIC.to_owned(),
            message.topic.clone().into_bytes(),
        ),
        (
            HEADER_SOURCE_PARTITION.to_owned(),
            message.partition.to_string().into_bytes(),
        ),
        (
            HEADER_SOURCE_OFFSET.to_owned(),
            message.offset.to_string().into_bytes(),
        ),
    ]);
    OutRecord {
        topic: tapwire_schemas::topics::DLQ.to_owned(),
        key: message.key.clone(),
        payload: message.payload.clone(),
        headers,
    }
}

/// A dead letter read back from `tapwire.dlq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why it was rejected.
    pub reason: String,
    /// Error kind.
    pub error: String,
    /// Rejecting stage.
    pub stage: String,
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Source offset.
    pub source_offset: i64,
}

impl DeadLetter {
    /// Reads the dead-letter headers of `message`; `None` if any is missing.
    pub fn from_message(message: &Message) -> Option<Self> {
        let header = |name: &str| {
            message
                .headers
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        Some(DeadLetter {
            reason: header(HEADER_REASON)?,
            error: header(HEADER_ERROR)?,
            stage: header(HEADER_STAGE)?,
            source_topic: header(HEADER_SOURCE_TOPIC)?,
            source_partition: header(HEADER_SOURCE_PARTITION)?.parse().ok()?,
            source_offset: header(HEADER_SOURCE_OFFSET)?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_message_and_says_why() {
        let message = Message {
            topic: "tapwire.l4.raw".into(),
            partition: 3,
            offset: 42,
            key: Some(b"node-a".to_vec()),
            payload: b"garbage".to_vec(),
            headers: vec![("trace".into(), b"1".to_vec())],
        };
        let rejection = Rejection {
            index: 0,
            error: "bad_magic",
            reason: "not Avro".into(),
        };
        let record = dead_letter("enrich", &message, &rejection);
        assert_eq!(record.topic, "tapwire.dlq");
        assert_eq!(record.payload, message.payload);
        assert_eq!(record.key, message.key);
        let back = Message {
            headers: record.headers,
            ..message
        };
        let dl = DeadLetter::from_message(&back).expect("headers present");
        assert_eq!(
            (
                dl.stage.as_str(),
                dl.error.as_str(),
                dl.source_partition,
                dl.source_offset
            ),
            ("enrich", "bad_magic", 3, 42)
        );
        assert_eq!(back.headers[0], ("trace".to_owned(), b"1".to_vec()));
    }
}
