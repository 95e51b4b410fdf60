//! The records of the compacted `tapwire.pods` topic: pods, nodes and
//! Services, each keyed by its uid so compaction keeps its latest state
//! (a deleted object's last record carries its end time).

use tapwire_plumbing::bus::OutRecord;
use tapwire_schemas::events::{NodeMetadata, PodMetadata, ServiceMetadata};
use tapwire_schemas::{AnyEvent, DecodeError, EncodeError, SchemaKind, decode_any, encode, topics};

/// A record of the compacted cluster topic.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterRecord {
    /// A pod.
    Pod(PodMetadata),
    /// A node.
    Node(NodeMetadata),
    /// A Service.
    Service(ServiceMetadata),
}

/// Why a payload is no cluster record, or a record no payload.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The payload is not a message this build can read.
    #[error("cluster record does not decode: {0}")]
    Undecodable(#[from] DecodeError),
    /// A readable message, but of a kind the cluster topic does not carry.
    #[error("a {kind} is not cluster metadata (pod, node or Service)")]
    NotCluster {
        /// What the message is.
        kind: SchemaKind,
    },
    /// The record does not encode (it does not fit its schema).
    #[error("cluster record does not encode: {0}")]
    Encode(#[from] EncodeError),
}

impl RecordError {
    /// A short, stable label for metrics: `undecodable`, `not_cluster` or
    /// `encode`.
    pub fn label(&self) -> &'static str {
        match self {
            RecordError::Undecodable(_) => "undecodable",
            RecordError::NotCluster { .. } => "not_cluster",
            RecordError::Encode(_) => "encode",
        }
    }
}

impl ClusterRecord {
    /// Reads a `tapwire.pods` payload. An empty payload is a compaction
    /// tombstone: `Ok(None)`. Any known version of the pod, node and Service
    /// schemas is read.
    pub fn decode(payload: &[u8]) -> Result<Option<ClusterRecord>, RecordError> {
        if payload.is_empty() {
            return Ok(None);
        }
        match decode_any(payload)? {
            AnyEvent::PodMetadata(pod) => Ok(Some(ClusterRecord::Pod(pod))),
            AnyEvent::NodeMetadata(node) => Ok(Some(ClusterRecord::Node(node))),
            AnyEvent::ServiceMetadata(service) => Ok(Some(ClusterRecord::Service(service))),
            other => Err(RecordError::NotCluster { kind: other.kind() }),
        }
    }

    /// The topic key: the object's uid (pod, node or Service). Names are
    /// reused, uids are not, so a deleted object's last record survives a
    /// new object of the same name.
    pub fn key(&self) -> &str {
        match self {
            ClusterRecord::Pod(pod) => &pod.uid,
            ClusterRecord::Node(node) => &node.uid,
            ClusterRecord::Service(service) => &service.uid,
        }
    }

    /// The record as `tapwire.pods` carries it: keyed by [`Self::key`], the
    /// value Avro single-object encoded.
    pub fn to_out_record(&self) -> Result<OutRecord, RecordError> {
        let payload = match self {
            ClusterRecord::Pod(pod) => encode(pod)?,
            ClusterRecord::Node(node) => encode(node)?,
            ClusterRecord::Service(service) => encode(service)?,
        };
        Ok(OutRecord::new(
            topics::PODS,
            Some(self.key().as_bytes().to_vec()),
            payload,
        ))
    }
}

impl From<PodMetadata> for ClusterRecord {
    fn from(pod: PodMetadata) -> Self {
        ClusterRecord::Pod(pod)
    }
}

impl From<NodeMetadata> for ClusterRecord {
    fn from(node: NodeMetadata) -> Self {
        ClusterRecord::Node(node)
    }
}

impl From<ServiceMetadata> for ClusterRecord {
    fn from(service: ServiceMetadata) -> Self {
        ClusterRecord::Service(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_schemas::samples;

    fn records() -> Vec<ClusterRecord> {
        let pod = samples::pod(
            samples::header("node-a", "w", 0, 0),
            "web-0",
            "shop",
            "10.1.0.7".parse().expect("ip"),
        );
        let node = samples::node("node-a", "192.168.10.11".parse().expect("ip"));
        let service = samples::kube_dns();
        vec![pod.into(), node.into(), service.into()]
    }

    #[test]
    fn records_round_trip_through_their_bus_records() {
        for record in records() {
            let out = record.to_out_record().expect("encodes");
            assert_eq!(out.topic, topics::PODS);
            assert_eq!(out.key.as_deref(), Some(record.key().as_bytes()));
            let back = ClusterRecord::decode(&out.payload).expect("decodes");
            assert_eq!(back.as_ref(), Some(&record));
        }
        let ClusterRecord::Node(node) = &records()[1] else {
            unreachable!()
        };
        assert_eq!(records()[1].key(), node.uid);
    }

    #[test]
    fn tombstones_other_kinds_and_garbage_are_told_apart() {
        assert!(matches!(ClusterRecord::decode(&[]), Ok(None)));
        let l4 = samples::l4_flow(samples::header("node-a", "s", 1, 5), 1);
        let err = ClusterRecord::decode(&encode(&l4).expect("encode")).expect_err("an L4 event");
        assert!(
            matches!(
                err,
                RecordError::NotCluster {
                    kind: SchemaKind::L4Event
                }
            ),
            "{err}"
        );
        assert_eq!(err.label(), "not_cluster");
        assert!(err.to_string().contains("L4Event"), "{err}");
        let err = ClusterRecord::decode(b"not avro at all").expect_err("garbage");
        assert!(matches!(err, RecordError::Undecodable(_)), "{err}");
        assert_eq!(err.label(), "undecodable");
    }
}
