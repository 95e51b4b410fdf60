//! The Kafka bus: rdkafka with its bundled librdkafka (Debian's 2.0.2 cannot
//! talk to Tansu).
//!
//! Offsets: auto-commit stays on, auto offset *store* is off. [`KafkaSource::store`]
//! stores the next offset of each partition only when the caller says the
//! batch is done (its output acknowledged downstream); librdkafka commits
//! stored offsets on its timer, on rebalance and on close. A batch is handled
//! to the end before the source is polled again, and rebalance callbacks run
//! inside that poll, so no acknowledgement is pending when partitions move;
//! storing for a partition that was taken away meanwhile is refused by
//! librdkafka and counted, and the new owner re-reads that batch (a bounded
//! duplicate, never a gap).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use tapwire_schemas::topics::TopicSpec;

use super::{BusError, Follower, Message, OutRecord, Sink, Source, last_offsets};
use crate::config::KafkaConfig;
use crate::telemetry::RateLimit;

fn client_config(config: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.brokers);
    cc.set("client.id", &config.client_id);
    for (k, v) in defaults {
        cc.set(*k, *v);
    }
    // The pass-through map wins over tapwire's defaults.
    for (k, v) in &config.options {
        cc.set(k, v);
    }
    cc
}

/// A producer whose sends resolve on the broker's delivery reports.
///
/// Several [`Sink::send_batch`] futures may be in flight at once (the capture
/// agent keeps a few, so that one batch is queued while the previous ones
/// wait for their acknowledgements). Order per key still holds:
///
/// - a batch's records are handed to librdkafka's queue one batch at a
///   time, in the order the sends were first polled (a fair lock, held
///   while a batch waits for room in a full local queue, so a later batch
///   never overtakes it);
/// - librdkafka sends each partition's messages in queue order, and
///   idempotence (on by default) keeps that order through retries: at most
///   5 requests in flight per connection, each message numbered per
///   partition, so the broker refuses a request behind a failed one and
///   librdkafka sends both again in order. Ordering is the producer's, not
///   the number of batches in flight: one awaited batch of 1,000 records
///   already spans several requests.
///
/// Turning idempotence off through the pass-through map
/// (`enable.idempotence = "false"`) without
/// `max.in.flight.requests.per.connection = "1"` lets a retried request land
/// behind later ones; [`KafkaSink::new`] warns about it.
#[derive(Clone)]
pub struct KafkaSink {
    producer: FutureProducer,
    /// Held while one batch is handed to librdkafka (tokio's lock is fair:
    /// first come, first served).
    queueing: Arc<tokio::sync::Mutex<()>>,
}

impl KafkaSink {
    /// Builds the producer. Defaults: `linger.ms=5`, `acks=all`, idempotence
    /// on (no duplicates or reordering from internal retries), and a
    /// `message.timeout.ms` of 5 minutes so a broker restart is ridden out.
    /// The idempotent producer sends nothing before the brokers gave it a
    /// producer id, which librdkafka asks for every 500 ms until a broker is
    /// up: the first delivery takes 0.5 to 1 s (Tansu on loopback).
    pub fn new(config: &KafkaConfig) -> Result<Self, BusError> {
        let cc = client_config(
            config,
            &[
                ("linger.ms", "5"),
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("message.timeout.ms", "300000"),
                ("queue.buffering.max.messages", "1000000"),
            ],
        );
        if !keeps_order_on_retry(&cc) {
            tracing::warn!(
                "enable.idempotence is off and max.in.flight.requests.per.connection is not 1: \
                 a retried produce request can land behind later ones (order per key is lost)"
            );
        }
        let producer = cc.create()?;
        Ok(KafkaSink {
            producer,
            queueing: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Waits until everything queued is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.producer.flush(timeout).map_err(BusError::from)
    }

    /// Hands `records` to librdkafka in order, waiting for room when its
    /// local queue is full; one delivery report per record.
    async fn enqueue(&self, records: &[OutRecord]) -> Result<Vec<DeliveryFuture>, BusError> {
        let _turn = self.queueing.lock().await;
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            let mut fr = FutureRecord::to(&record.topic);
            if !record.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
                for (key, value) in &record.headers {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value),
                    });
                }
                fr = fr.headers(headers);
            }
            // An empty value is sent as null: a compaction tombstone.
            if !record.payload.is_empty() {
                fr = fr.payload(&record.payload);
            }
            if let Some(key) = &record.key {
                fr = fr.key(key);
            }
            loop {
                match self.producer.send_result(fr) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: let librdkafka drain some.
                        fr = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((err, _)) => return Err(err.into()),
                }
            }
        }
        Ok(pending)
    }
}

/// Whether the producer settings keep the order per partition when a
/// request is retried.
fn keeps_order_on_retry(cc: &ClientConfig) -> bool {
    cc.get("enable.idempotence") == Some("true")
        || cc.get("max.in.flight.requests.per.connection") == Some("1")
        || cc.get("max.in.flight") == Some("1")
}

impl Sink for KafkaSink {
    async fn send_batch(&self, records: Vec<OutRecord>) -> Result<(), BusError> {
        let pending = self.enqueue(&records).await?;
        // librdkafka copied the records.
        drop(records);
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((err, _))) => return Err(err.into()),
                Err(_canceled) => return Err(KafkaError::Canceled.into()),
            }
        }
        Ok(())
    }
}

/// A consumer-group member.
pub struct KafkaSource {
    consumer: StreamConsumer,
    refused_stores: u64,
    error_log: RateLimit,
}

impl KafkaSource {
    /// Joins `group` and subscribes to `topics`. Defaults: offsets from the
    /// earliest message for a new group, auto-commit every second of what was
    /// stored, `session.timeout.ms=10000`.
    pub fn new(config: &KafkaConfig, group: &str, topics: &[&str]) -> Result<Self, BusError> {
        let mut cc = client_config(
            config,
            &[
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("session.timeout.ms", "10000"),
            ],
        );
        cc.set("group.id", group);
        let consumer: StreamConsumer = cc.create()?;
        consumer.subscribe(topics)?;
        Ok(KafkaSource {
            consumer,
            refused_stores: 0,
            error_log: RateLimit::new(Duration::from_secs(10)),
        })
    }

    /// How many offset stores librdkafka refused because the partition had
    /// moved to another member (its messages are re-read there).
    pub fn refused_stores(&self) -> u64 {
        self.refused_stores
    }
}

fn to_message(m: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Message {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

impl Source for KafkaSource {
    async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
        idle: Option<Duration>,
    ) -> Result<Vec<Message>, BusError> {
        let idle_until = idle.map(|d| tokio::time::Instant::now() + d);
        let first = loop {
            // `recv` is cancel safe: a timed-out wait loses no message.
            let received = match idle_until {
                Some(at) => match tokio::time::timeout_at(at, self.consumer.recv()).await {
                    Ok(received) => received,
                    Err(_idle) => return Ok(Vec::new()),
                },
                None => self.consumer.recv().await,
            };
            match received {
                Ok(m) => break m,
                Err(err @ KafkaError::MessageConsumptionFatal(_)) => return Err(err.into()),
                Err(err) => {
                    // Broker down, transport failures, ...: librdkafka keeps
                    // reconnecting on its own; report and keep waiting.
                    if let Some(suppressed) = self.error_log.allow() {
                        tracing::warn!(error = %err, suppressed, "consumer waiting for the brokers");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let mut batch = Vec::with_capacity(max.min(4096));
        batch.push(to_message(&first));
        drop(first);
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(to_message(&m)),
                Ok(Err(err)) => {
                    // Return what we have; the error comes back on the next call
                    // if it persists.
                    tracing::warn!(error = %err, "consumer error while filling a batch");
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        Ok(batch)
    }

    fn store(&mut self, batch: &[Message]) -> Result<(), BusError> {
        for (topic, partition, offset) in last_offsets(batch) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1))?;
            if let Err(err) = self.consumer.store_offsets(&tpl) {
                self.refused_stores += 1;
                tracing::warn!(topic, partition, offset, error = %err,
                    "offset not stored (partition reassigned?); the new owner re-reads it");
            }
        }
        Ok(())
    }

    async fn close(self) -> Result<(), BusError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                tracing::warn!(error = %err, "final commit failed; auto-committed offsets stand")
            }
        }
        self.consumer.unsubscribe();
        // Dropping the consumer closes it, which leaves the group at once.
        Ok(())
    }
}

/// Follows `topic` from its beginning on every start, without group offsets
/// (a compacted topic whose whole content is state: `tapwire.pods`). The
/// follower says when every partition reached the end it had at start.
pub fn follow(
    config: &KafkaConfig,
    topic: &str,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<Follower, BusError> {
    let mut cc = client_config(
        config,
        &[
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    cc.set("client.id", format!("{}-follow", config.client_id));
    cc.set("group.id", format!("tapwire-follow-{topic}"));
    let consumer: StreamConsumer = cc.create()?;
    let (tx, records) = tokio::sync::mpsc::channel(10_000);
    let (loaded_tx, loaded) = tokio::sync::oneshot::channel();
    let topic = topic.to_owned();
    let task = tokio::spawn(async move {
        // Where each partition ends now: the target of the first load.
        let (probe_cc, name) = (cc.clone(), topic.clone());
        let ends: Vec<(i32, i64, i64)> = tokio::task::spawn_blocking(move || {
            let probe: rdkafka::consumer::BaseConsumer = probe_cc.create()?;
            let timeout = Duration::from_secs(30);
            let metadata = probe.fetch_metadata(Some(&name), timeout)?;
            let found = metadata
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
                .ok_or_else(|| BusError::UnknownTopic(name.clone()))?;
            found
                .partitions()
                .iter()
                .map(|p| {
                    let (low, high) = probe.fetch_watermarks(&name, p.id(), timeout)?;
                    Ok((p.id(), low, high))
                })
                .collect::<Result<Vec<_>, BusError>>()
        })
        .await
        .map_err(|e| BusError::Config(format!("metadata task failed: {e}")))??;

        let mut tpl = TopicPartitionList::new();
        for (p, ..) in &ends {
            tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut pending: Vec<(i32, i64)> = ends
            .iter()
            .filter(|(_, low, high)| high > low)
            .map(|(p, _, high)| (*p, *high))
            .collect();
        let mut loaded_tx = Some(loaded_tx);
        let mut read = 0u64;
        let error_log = RateLimit::new(Duration::from_secs(10));
        loop {
            if pending.is_empty()
                && let Some(done) = loaded_tx.take()
            {
                let _ = done.send(read);
            }
            let received = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = consumer.recv() => m,
            };
            let message = match received {
                Ok(m) => m,
                Err(err @ KafkaError::MessageConsumptionFatal(_)) => return Err(err.into()),
                Err(err) => {
                    if let Some(suppressed) = error_log.allow() {
                        tracing::warn!(error = %err, suppressed, topic, "follower waiting for the brokers");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            read += 1;
            let (partition, offset) = (message.partition(), message.offset());
            let m = to_message(&message);
            drop(message);
            if tx.send(m).await.is_err() {
                return Ok(()); // the reader is gone
            }
            pending.retain(|(p, high)| !(*p == partition && offset + 1 >= *high));
        }
    });
    Ok(Follower::new(records, loaded, task))
}

/// What `create_topics` did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    /// Topic name.
    pub name: String,
    /// Whether this call created it (false: it existed).
    pub created: bool,
    /// Partitions it has now.
    pub partitions: usize,
    /// Whether it is compacted (as requested; Kafka does not report it here).
    pub compacted: bool,
}

/// Creates every topic in `specs` that does not exist yet; existing ones are
/// left as they are. Running it twice gives the same topics.
pub async fn create_topics(
    config: &KafkaConfig,
    specs: &[TopicSpec],
    partitions: i32,
    replication_factor: i32,
    timeout: Duration,
) -> Result<Vec<TopicStatus>, BusError> {
    if partitions < 1 || replication_factor < 1 {
        return Err(BusError::Config(format!(
            "partitions ({partitions}) and replication factor ({replication_factor}) must be at least 1"
        )));
    }
    let admin: AdminClient<DefaultClientContext> = client_config(config, &[]).create()?;
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            let topic = NewTopic::new(
                spec.name,
                partitions,
                TopicReplication::Fixed(replication_factor),
            );
            if spec.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin.create_topics(&new_topics, &options).await?;
    let mut created = BTreeMap::new();
    for result in results {
        match result {
            Ok(name) => {
                created.insert(name, true);
            }
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                created.insert(name, false);
            }
            Err((name, code)) => {
                return Err(BusError::Config(format!("creating topic {name}: {code}")));
            }
        }
    }
    let counts = partition_counts(config, timeout).await?;
    specs
        .iter()
        .map(|spec| {
            let partitions = *counts
                .get(spec.name)
                .ok_or_else(|| BusError::UnknownTopic(spec.name.to_owned()))?;
            Ok(TopicStatus {
                name: spec.name.to_owned(),
                created: created.get(spec.name).copied().unwrap_or(false),
                partitions,
                compacted: spec.compacted,
            })
        })
        .collect()
}

/// Partition count of every topic the cluster reports.
pub async fn partition_counts(
    config: &KafkaConfig,
    timeout: Duration,
) -> Result<BTreeMap<String, usize>, BusError> {
    let cc = client_config(config, &[]);
    tokio::task::spawn_blocking(move || {
        let client: rdkafka::consumer::BaseConsumer = cc.create()?;
        let metadata = client.fetch_metadata(None, timeout)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect())
    })
    .await
    .map_err(|e| BusError::Config(format!("metadata task failed: {e}")))?
}
