//! Through Tansu (memory storage): a bare rdkafka consume-and-produce loop,
//! the baseline of every stage benchmark, and the same copy done by tapwire's
//! consumer loop (decode, re-encode, produce with delivery reports, store
//! offsets), by the enrich stage (decode, enrich, encode, produce to the
//! enriched topic) and by the policy stage with 1,000 rules (enriched events
//! in, verdicts out; its input is prefilled with enriched events, which are
//! larger than the raw events the baseline copies), and the policy stage's
//! handler as it was before (owned decode, judge, encode) on the same input.
//! All clocks start at the first message consumed.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message as _};
use tapwire_enricher::stage::EnrichStage;
use tapwire_plumbing::bus::kafka::{self, KafkaSink, KafkaSource};
use tapwire_plumbing::bus::{Message, OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_plumbing::consumer::{
    self, BatchHandler, HandlerError, LoopSettings, StageContext, decode_batch,
};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::topics::TopicSpec;
use tapwire_schemas::{L4Event, encode, samples};
use tapwire_tests::{Broker, Storage};

use crate::report::{Row, peak_rss_mib, rate};

const IN: &str = "bench.in";
const BARE_OUT: &str = "bench.bare.out";
const LOOP_OUT: &str = "bench.loop.out";
const ENRICHED_IN: &str = "bench.enriched.in";

pub fn run(n: u64) -> anyhow::Result<Vec<Row>> {
    let broker = Broker::start(Storage::Memory)
        .ok_or_else(|| anyhow!("the Kafka benchmark needs tansu (scripts/services.sh install)"))?;
    let config = KafkaConfig {
        brokers: broker.address(),
        ..KafkaConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let specs = [
            IN,
            BARE_OUT,
            LOOP_OUT,
            tapwire_schemas::topics::DLQ,
            tapwire_schemas::topics::L4_ENRICHED,
            tapwire_schemas::topics::VERDICTS,
            ENRICHED_IN,
        ]
        .map(|name| TopicSpec {
            name,
            compacted: false,
        });
        kafka::create_topics(&config, &specs, 4, 1, Duration::from_secs(30)).await?;
        prefill(&config, n).await
    })?;
    eprintln!("kafka: {n} L4 events in {IN}; running the bare loop");
    let bare = bare_loop(&config, n)?;
    eprintln!("kafka: bare loop {bare:.0} events/s; running tapwire's consumer loop");
    let ours = runtime.block_on(tapwire_loop(&config, n))?;
    eprintln!("kafka: consumer loop {ours:.0} events/s; running the enrich stage");
    let enrich = runtime.block_on(enrich_stage(&config, n))?;
    eprintln!("kafka: enrich stage {enrich:.0} events/s; running the policy stage");
    let policy = runtime.block_on(policy_stage(&config, n))?;
    eprintln!("kafka: policy stage {policy:.0} events/s; running it as it was (owned path)");
    let owned = runtime.block_on(owned_policy_stage(&config, n))?;
    Ok(vec![
        Row {
            stage: "consumer loop: decode+encode+produce".into(),
            events_per_s: ours,
            baseline_name: "bare rdkafka consume+produce".into(),
            baseline_per_s: bare,
            peak_rss_mib: peak_rss_mib(),
        },
        Row {
            stage: "enrich stage through Tansu".into(),
            events_per_s: enrich,
            baseline_name: "bare rdkafka consume+produce".into(),
            baseline_per_s: bare,
            peak_rss_mib: peak_rss_mib(),
        },
        Row {
            stage: "policy stage through Tansu, 1k rules".into(),
            events_per_s: policy,
            baseline_name: "bare rdkafka consume+produce".into(),
            baseline_per_s: bare,
            peak_rss_mib: peak_rss_mib(),
        },
        Row {
            stage: "policy stage through Tansu, 1k rules".into(),
            events_per_s: policy,
            baseline_name: "before: owned decode+judge+encode".into(),
            baseline_per_s: owned,
            peak_rss_mib: peak_rss_mib(),
        },
    ])
}

/// Counts what the enrich stage produced, to stop it at `target`.
struct Counting<H> {
    inner: H,
    handled: u64,
    target: u64,
    started: Option<Instant>,
    finished: Option<Duration>,
    done: CancellationToken,
}

impl<H: BatchHandler> BatchHandler for Counting<H> {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let rejections = self.inner.handle(batch).await?;
        self.handled += batch.len() as u64;
        if self.handled >= self.target && self.finished.is_none() {
            self.finished = Some(started.elapsed());
            self.done.cancel();
        }
        Ok(rejections)
    }
}

async fn enrich_stage(config: &KafkaConfig, n: u64) -> anyhow::Result<f64> {
    let sink = KafkaSink::new(config)?;
    // The enricher's index is built up front: an empty pod topic in memory.
    let pods_bus = tapwire_plumbing::bus::memory::MemoryBus::new();
    pods_bus.create_topic(tapwire_schemas::topics::PODS, 1);
    let pods = tapwire_cluster::feed::ClusterFeed::open(
        &tapwire_plumbing::stage::Bus::Memory(pods_bus),
        CancellationToken::new(),
    )?;
    let metrics = tapwire_plumbing::telemetry::StageMetrics::new("bench-enrich");
    let stage = EnrichStage::new(
        crate::enrich::enricher(),
        pods,
        sink,
        Duration::from_secs(5),
        metrics,
    );
    timed_stage(config, "bench-enrich", IN, n, stage).await
}

async fn policy_stage(config: &KafkaConfig, n: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench-policies.yaml");
    std::fs::write(&path, crate::policy::policies_yaml())?;
    let files = tapwire_policy_engine::stage::PolicyFiles::load(vec![path])?;
    let metrics = tapwire_plumbing::telemetry::StageMetrics::new("bench-policy");
    let stage = tapwire_policy_engine::stage::PolicyStage::new(
        files,
        KafkaSink::new(config)?,
        Duration::from_secs(60),
        metrics,
    );
    timed_stage(config, "bench-policy", ENRICHED_IN, n, stage).await
}

/// The policy stage's handler as it was before verdicts were spliced: each
/// enriched event decoded owned, judged, its verdict encoded.
struct OwnedPolicy {
    set: tapwire_policy_engine::PolicySet,
    sink: KafkaSink,
}

impl BatchHandler for OwnedPolicy {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let (events, rejections) = decode_batch::<tapwire_schemas::EnrichedEvent>(batch);
        let mut out = Vec::with_capacity(events.len());
        for (index, event) in events {
            let verdict = self.set.judge(event);
            let payload = encode(&verdict).map_err(|e| HandlerError::Fatal(e.to_string()))?;
            out.push(OutRecord::new(
                tapwire_schemas::topics::VERDICTS,
                batch[index].key.clone(),
                payload,
            ));
        }
        self.sink.send_batch(out).await?;
        Ok(rejections)
    }
}

async fn owned_policy_stage(config: &KafkaConfig, n: u64) -> anyhow::Result<f64> {
    let docs = tapwire_policy_engine::parse("bench.yaml", &crate::policy::policies_yaml())?;
    let handler = OwnedPolicy {
        set: tapwire_policy_engine::PolicySet::compile(&docs)?,
        sink: KafkaSink::new(config)?,
    };
    timed_stage(config, "bench-policy-owned", ENRICHED_IN, n, handler).await
}

/// Runs `inner` as a consumer-loop stage on the prefilled topic until it
/// has handled `n` messages; events/s from its first batch.
async fn timed_stage<H: BatchHandler>(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
    n: u64,
    inner: H,
) -> anyhow::Result<f64> {
    let shutdown = CancellationToken::new();
    let ctx = StageContext::new(group, LoopSettings::default(), shutdown.clone());
    let source = KafkaSource::new(config, group, &[topic])?;
    let dlq = KafkaSink::new(config)?;
    let mut handler = Counting {
        inner,
        handled: 0,
        target: n,
        started: None,
        finished: None,
        done: shutdown.clone(),
    };
    let guard = shutdown.clone();
    let timeout = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(600)).await;
        guard.cancel();
    });
    consumer::run(&ctx, source, &dlq, &mut handler).await?;
    timeout.abort();
    let elapsed = handler
        .finished
        .ok_or_else(|| anyhow!("{group} handled only {} of {n}", handler.handled))?;
    Ok(rate(n, elapsed))
}

/// Enriched events `seqs` (the policy stage's input: a pod of the
/// benchmark's policies to an external peer) for `topic`, keyed by one of
/// `nodes` node names.
pub fn enriched_records(
    topic: &str,
    seqs: std::ops::Range<u64>,
    nodes: u64,
) -> anyhow::Result<Vec<OutRecord>> {
    Ok(seqs
        .map(|s| {
            let node = format!("node-{}", s % nodes);
            let v = samples::flow_verdict(samples::header(&node, "bench", s, s as i64), s);
            encode(&v.event).map(|p| OutRecord::new(topic, Some(node.into_bytes()), p))
        })
        .collect::<Result<_, _>>()?)
}

async fn prefill(config: &KafkaConfig, n: u64) -> anyhow::Result<()> {
    let sink = KafkaSink::new(config)?;
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        let records = (i..end)
            .map(|s| {
                let node = format!("node-{}", s % 16);
                let event = samples::l4_flow(samples::header(&node, "bench", s, s as i64), s);
                encode(&event).map(|p| OutRecord::new(IN, Some(node.into_bytes()), p))
            })
            .collect::<Result<Vec<_>, _>>()?;
        sink.send_batch(records).await?;
        sink.send_batch(enriched_records(ENRICHED_IN, i..end, 16)?)
            .await?;
        i = end;
    }
    Ok(())
}

fn bare_loop(config: &KafkaConfig, n: u64) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", "bench-bare")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[IN])?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut started = None;
    let mut copied = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while copied < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "bare loop copied only {copied} of {n}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.context("consume")?;
        started.get_or_insert_with(Instant::now);
        let mut record = BaseRecord::to(BARE_OUT).payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(1));
                    record = back;
                }
            }
        }
        producer.poll(Duration::ZERO);
        copied += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(rate(n, started.map(|s| s.elapsed()).unwrap_or_default()))
}

/// The plumbing's own cost: decode, re-encode, produce with delivery reports.
struct Copy {
    sink: KafkaSink,
}

impl BatchHandler for Copy {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let (events, rejections) = decode_batch::<L4Event>(batch);
        let mut out = Vec::with_capacity(events.len());
        for (index, event) in events {
            let payload = encode(&event).map_err(|e| HandlerError::Fatal(e.to_string()))?;
            out.push(OutRecord::new(LOOP_OUT, batch[index].key.clone(), payload));
        }
        self.sink.send_batch(out).await?;
        Ok(rejections)
    }
}

async fn tapwire_loop(config: &KafkaConfig, n: u64) -> anyhow::Result<f64> {
    let sink = KafkaSink::new(config)?;
    timed_stage(config, "bench-loop", IN, n, Copy { sink }).await
}
