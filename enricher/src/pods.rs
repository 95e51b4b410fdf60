//! Follows the compacted `tapwire.pods` topic (pods, nodes and Services)
//! from its beginning on every
//! start (no consumer-group offsets), so the state is rebuilt after a
//! restart, and says when everything that was in the topic at start has been
//! read.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::{AnyEvent, decode_any, topics};

use crate::enrich::ClusterRecord;
use tokio::sync::{mpsc, oneshot};

/// Follower failures.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Kafka refused.
    #[error("reading {topic}: {source}")]
    Kafka {
        /// The topic.
        topic: &'static str,
        /// The cause.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The metadata task failed.
    #[error("pod metadata reader task failed: {0}")]
    Task(String),
    /// The topic is missing.
    #[error("topic {0} does not exist; create it with `tapwire topics create`")]
    NoTopic(&'static str),
}

fn kafka(source: rdkafka::error::KafkaError) -> FollowError {
    FollowError::Kafka {
        topic: topics::PODS,
        source,
    }
}

/// Reads `tapwire.pods` from the beginning into `tx`. `loaded` receives the
/// number of records read once every partition reached the end it had at
/// start. Runs until `shutdown` or until the receiver is gone.
pub async fn follow(
    config: &KafkaConfig,
    tx: mpsc::Sender<ClusterRecord>,
    loaded: oneshot::Sender<u64>,
    shutdown: CancellationToken,
) -> Result<(), FollowError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.brokers)
        .set("client.id", format!("{}-pods", config.client_id))
        .set("group.id", "tapwire-pods-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in &config.options {
        cc.set(k, v);
    }
    let consumer: StreamConsumer = cc.create().map_err(kafka)?;

    // Where each partition ends now: the bootstrap target.
    let probe_cc = cc.clone();
    let ends: Vec<(i32, i64, i64)> = tokio::task::spawn_blocking(move || {
        let probe: rdkafka::consumer::BaseConsumer = probe_cc.create().map_err(kafka)?;
        let timeout = Duration::from_secs(30);
        let metadata = probe
            .fetch_metadata(Some(topics::PODS), timeout)
            .map_err(kafka)?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topics::PODS && t.error().is_none())
            .ok_or(FollowError::NoTopic(topics::PODS))?;
        topic
            .partitions()
            .iter()
            .map(|p| {
                let (low, high) = probe
                    .fetch_watermarks(topics::PODS, p.id(), timeout)
                    .map_err(kafka)?;
                Ok((p.id(), low, high))
            })
            .collect::<Result<Vec<_>, FollowError>>()
    })
    .await
    .map_err(|e| FollowError::Task(e.to_string()))??;

    let mut tpl = TopicPartitionList::new();
    for (p, ..) in &ends {
        tpl.add_partition_offset(topics::PODS, *p, Offset::Beginning)
            .map_err(kafka)?;
    }
    consumer.assign(&tpl).map_err(kafka)?;

    // Partitions still short of their start-time end.
    let mut pending: Vec<(i32, i64)> = ends
        .iter()
        .filter(|(_, low, high)| high > low)
        .map(|(p, _, high)| (*p, *high))
        .collect();
    let mut loaded = Some(loaded);
    let mut read = 0u64;
    if pending.is_empty()
        && let Some(done) = loaded.take()
    {
        let _ = done.send(0);
    }
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(error = %err, "pod metadata: waiting for the brokers");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        read += 1;
        let (partition, offset) = (message.partition(), message.offset());
        let record = match message.payload().map(decode_any) {
            Some(Ok(AnyEvent::PodMetadata(pod))) => Some(ClusterRecord::Pod(pod)),
            Some(Ok(AnyEvent::NodeMetadata(node))) => Some(ClusterRecord::Node(node)),
            Some(Ok(AnyEvent::ServiceMetadata(service))) => Some(ClusterRecord::Service(service)),
            Some(Ok(other)) => {
                tracing::warn!(partition, offset, kind = %other.kind(), "not cluster metadata; skipped");
                None
            }
            Some(Err(err)) => {
                tracing::warn!(partition, offset, error = %err, "undecodable cluster metadata skipped");
                None
            }
            None => None, // a compaction tombstone
        };
        if let Some(record) = record
            && tx.send(record).await.is_err()
        {
            return Ok(()); // the stage is gone
        }
        pending.retain(|(p, high)| !(*p == partition && offset + 1 >= *high));
        if pending.is_empty()
            && let Some(done) = loaded.take()
        {
            let _ = done.send(read);
        }
    }
}
