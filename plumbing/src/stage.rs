//! The stage contract: a consumer stage is declared once, as a [`Stage`],
//! and run either alone over Kafka ([`run_alone`], the `tapwire enrich`,
//! `policy`, `aggregate`, `cef`, `record` commands) or with the others in one
//! process over the in-memory bus ([`Graph`], `tapwire run` and `demo`).
//!
//! A stage names its consumer group, the topics it reads and the topics it
//! writes, and builds its [`BatchHandler`] from a [`BuildContext`] (its loop
//! context, the bus, and a sink for its output). Everything else, the
//! admin server, the consumer loop with its dead letters and durability, the
//! final flush, is the runner's.
//!
//! # Drain order in the graph
//!
//! The graph knows who writes what: a stage stops once every producer or
//! stage writing one of its input topics has stopped and its group has read
//! everything of those topics. Stopping makes the handler's output durable
//! ([`BatchHandler::finish`]) and stores the last offsets, so a finished
//! graph has no lag anywhere ([`StageReport::lag`]).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::bus::kafka::{KafkaSink, KafkaSource};
use crate::bus::memory::{MemoryBus, MemorySink, MemorySource};
use crate::bus::{BusError, Follower, Message, OutRecord, Sink, Source};
use crate::config::KafkaConfig;
use crate::consumer::{self, BatchHandler, LoopError, LoopSettings, LoopSummary, StageContext};

/// Any error a stage's set-up reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a stage could not run.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Building the handler failed (configuration, files, clients).
    #[error("{stage}: {source}")]
    Build {
        /// Stage name.
        stage: &'static str,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The bus refused (unknown topic, broker configuration).
    #[error("{stage}: {source}")]
    Bus {
        /// Stage name.
        stage: &'static str,
        /// The cause.
        #[source]
        source: BusError,
    },
    /// The consumer loop stopped on a fatal error.
    #[error(transparent)]
    Loop(#[from] LoopError),
    /// The admin server could not listen.
    #[error("admin server on {addr}: {source}")]
    Admin {
        /// Address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stage task panicked or was cancelled.
    #[error("{stage}: task failed: {reason}")]
    Task {
        /// Stage name.
        stage: String,
        /// What the runtime said.
        reason: String,
    },
}

/// The bus a stage runs on.
#[derive(Clone)]
pub enum Bus {
    /// Kafka (one process per stage, many nodes).
    Kafka(KafkaConfig),
    /// The in-memory bus (every stage in one process).
    Memory(MemoryBus),
}

impl Bus {
    /// A producer.
    pub fn sink(&self) -> Result<BusSink, BusError> {
        Ok(match self {
            Bus::Kafka(config) => BusSink::Kafka(KafkaSink::new(config)?),
            Bus::Memory(bus) => BusSink::Memory(bus.sink()),
        })
    }

    /// A member of `group` reading `topics`.
    pub fn source(&self, group: &str, topics: &[&str]) -> Result<BusSource, BusError> {
        Ok(match self {
            Bus::Kafka(config) => BusSource::Kafka(KafkaSource::new(config, group, topics)?),
            Bus::Memory(bus) => BusSource::Memory(bus.source(group, topics)?),
        })
    }

    /// Follows the compacted `topic` from its start (see [`Follower`]).
    pub fn follow(&self, topic: &str, shutdown: CancellationToken) -> Result<Follower, BusError> {
        match self {
            Bus::Kafka(config) => crate::bus::kafka::follow(config, topic, shutdown),
            Bus::Memory(bus) => bus.follow(topic, shutdown),
        }
    }
}

/// A producer on either bus.
#[derive(Clone)]
pub enum BusSink {
    /// Kafka.
    Kafka(KafkaSink),
    /// In memory.
    Memory(MemorySink),
}

impl BusSink {
    /// Waits until everything queued is delivered (Kafka) or `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        match self {
            BusSink::Kafka(sink) => sink.flush(timeout),
            BusSink::Memory(_) => Ok(()),
        }
    }
}

impl Sink for BusSink {
    async fn send_batch(&self, records: Vec<OutRecord>) -> Result<(), BusError> {
        match self {
            BusSink::Kafka(sink) => sink.send_batch(records).await,
            BusSink::Memory(sink) => sink.send_batch(records).await,
        }
    }
}

/// A consumer-group member on either bus.
pub enum BusSource {
    /// Kafka.
    Kafka(KafkaSource),
    /// In memory.
    Memory(MemorySource),
}

impl Source for BusSource {
    async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
        idle: Option<Duration>,
    ) -> Result<Vec<Message>, BusError> {
        match self {
            BusSource::Kafka(s) => s.next_batch(max, linger, idle).await,
            BusSource::Memory(s) => s.next_batch(max, linger, idle).await,
        }
    }

    fn store(&mut self, batch: &[Message]) -> Result<(), BusError> {
        match self {
            BusSource::Kafka(s) => s.store(batch),
            BusSource::Memory(s) => s.store(batch),
        }
    }

    async fn close(self) -> Result<(), BusError> {
        match self {
            BusSource::Kafka(s) => s.close().await,
            BusSource::Memory(s) => s.close().await,
        }
    }
}

/// What a stage gets to build its handler.
pub struct BuildContext {
    /// Name, loop settings, counters, health, shutdown.
    pub stage: StageContext,
    /// The bus (to follow a compacted topic, for instance).
    pub bus: Bus,
    /// Where the stage's output goes (also its dead letters).
    pub output: BusSink,
}

/// A consumer stage, declared once.
pub trait Stage: Send + 'static {
    /// The batch handler it builds.
    type Handler: BatchHandler + 'static;

    /// Name in logs, metrics and dead-letter headers.
    fn name(&self) -> &'static str;

    /// Consumer group.
    fn group(&self) -> String;

    /// Topics read.
    fn inputs(&self) -> Vec<String>;

    /// Topics written (besides the dead-letter topic, which every stage may
    /// write). Default: none (a stage whose output leaves the bus: ClickHouse,
    /// syslog, S3).
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }

    /// The loop settings, from the shared `[consumer]` ones.
    fn loop_settings(&self, base: LoopSettings) -> LoopSettings {
        base
    }

    /// Builds the handler (may wait, e.g. for pod metadata to load; returns
    /// early with an error if `cx.stage.shutdown` fires first).
    fn build(
        self,
        cx: &BuildContext,
    ) -> impl Future<Output = Result<Self::Handler, BoxError>> + Send;
}

/// How a stage ended.
#[derive(Debug, Clone)]
pub struct StageReport {
    /// Stage name.
    pub name: &'static str,
    /// Messages read, dead-lettered, batches.
    pub summary: LoopSummary,
    /// The handler's own figures ([`BatchHandler::report`]).
    pub detail: String,
    /// Records it delivered downstream while it ran (its
    /// `tapwire_messages_out_total`).
    pub delivered: u64,
    /// Messages of its inputs its group had not stored when it stopped (in
    /// memory; `None` on Kafka, where the broker knows).
    pub lag: Option<u64>,
}

impl StageReport {
    /// `NAME: N read, M dead-lettered; DETAIL`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} read, {} dead-lettered",
            self.summary.messages, self.summary.dead_lettered
        );
        if !self.detail.is_empty() {
            line.push_str("; ");
            line.push_str(&self.detail);
        }
        line
    }
}

/// Where a stage runs alone.
#[derive(Debug, Clone)]
pub struct Alone {
    /// The brokers.
    pub kafka: KafkaConfig,
    /// The shared `[consumer]` loop settings.
    pub settings: LoopSettings,
    /// `/metrics` and `/healthz` here, when set.
    pub admin_listen: Option<SocketAddr>,
}

/// Runs `stage` over Kafka until `shutdown`: admin server, handler, loop,
/// final flush of its output.
pub async fn run_alone<S: Stage>(
    stage: S,
    alone: &Alone,
    shutdown: CancellationToken,
) -> Result<StageReport, StageError> {
    let name = stage.name();
    let ctx = StageContext::new(name, stage.loop_settings(alone.settings.clone()), shutdown);
    if let Some(addr) = alone.admin_listen {
        let bound = crate::telemetry::serve_admin(addr, ctx.health.clone(), ctx.shutdown.clone())
            .await
            .map_err(|source| StageError::Admin { addr, source })?;
        tracing::info!(stage = name, %bound, "admin server listening");
    }
    let bus = Bus::Kafka(alone.kafka.clone());
    let report = drive(stage, ctx, bus).await?;
    Ok(report)
}

/// Runs a producer (a stage with no input topics, such as the capture
/// agent) over Kafka until it returns: admin server, its run, the final
/// flush of its output.
pub async fn produce_alone<F, Fut, T>(
    name: &'static str,
    alone: &Alone,
    shutdown: CancellationToken,
    run: F,
) -> Result<T, StageError>
where
    F: FnOnce(BusSink, CancellationToken) -> Fut,
    Fut: Future<Output = T>,
{
    if let Some(addr) = alone.admin_listen {
        let health = crate::telemetry::Health::default();
        let bound = crate::telemetry::serve_admin(addr, health, shutdown.clone())
            .await
            .map_err(|source| StageError::Admin { addr, source })?;
        tracing::info!(stage = name, %bound, "admin server listening");
    }
    let bus = Bus::Kafka(alone.kafka.clone());
    let output = bus.sink().map_err(|source| StageError::Bus {
        stage: name,
        source,
    })?;
    let result = run(output.clone(), shutdown).await;
    output
        .flush(Duration::from_secs(10))
        .map_err(|source| StageError::Bus {
            stage: name,
            source,
        })?;
    Ok(result)
}

/// Builds the handler, runs the loop, flushes the output.
async fn drive<S: Stage>(stage: S, ctx: StageContext, bus: Bus) -> Result<StageReport, StageError> {
    let name = stage.name();
    let bus_error = |source| StageError::Bus {
        stage: name,
        source,
    };
    let (group, inputs) = (stage.group(), stage.inputs());
    let output = bus.sink().map_err(bus_error)?;
    let cx = BuildContext {
        stage: ctx,
        bus: bus.clone(),
        output: output.clone(),
    };
    let delivered_before = cx.stage.metrics.messages_out.get();
    let mut handler = stage.build(&cx).await.map_err(|source| StageError::Build {
        stage: name,
        source,
    })?;
    let topics: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let source = bus.source(&group, &topics).map_err(bus_error)?;
    tracing::info!(stage = name, %group, inputs = ?inputs, "consuming");
    let summary = consumer::run(&cx.stage, source, &output, &mut handler).await?;
    if let Err(err) = output.flush(Duration::from_secs(10)) {
        tracing::warn!(stage = name, error = %err, "output not flushed before stopping");
    }
    let lag = match &bus {
        Bus::Memory(memory) => Some(inputs.iter().map(|t| memory.lag(&group, t)).sum()),
        Bus::Kafka(_) => None,
    };
    Ok(StageReport {
        name,
        summary,
        detail: handler.report(),
        delivered: cx.stage.metrics.messages_out.get() - delivered_before,
        lag,
    })
}

/// A stage with its type erased, so that a graph can hold different ones.
trait DynStage: Send {
    fn group(&self) -> String;
    fn settings(&self, base: LoopSettings) -> LoopSettings;
    fn launch(
        self: Box<Self>,
        ctx: StageContext,
        bus: Bus,
    ) -> BoxFuture<'static, Result<StageReport, StageError>>;
}

impl<S: Stage> DynStage for S {
    fn group(&self) -> String {
        Stage::group(self)
    }
    fn settings(&self, base: LoopSettings) -> LoopSettings {
        self.loop_settings(base)
    }
    fn launch(
        self: Box<Self>,
        ctx: StageContext,
        bus: Bus,
    ) -> BoxFuture<'static, Result<StageReport, StageError>> {
        Box::pin(drive(*self, ctx, bus))
    }
}

/// A source of records that is not a consumer (the capture agent): it runs
/// until done or until its token is cancelled.
type ProducerFn =
    Box<dyn FnOnce(BusSink, CancellationToken) -> BoxFuture<'static, Result<(), BoxError>> + Send>;

enum Work {
    Producer(ProducerFn),
    Stage(Box<dyn DynStage>),
}

struct Node {
    name: &'static str,
    inputs: Vec<String>,
    outputs: Vec<String>,
    work: Work,
}

/// How a producer ended.
#[derive(Debug, Clone)]
pub struct ProducerReport {
    /// Its name.
    pub name: &'static str,
    /// Why it stopped early, if it failed.
    pub error: Option<String>,
}

/// What a graph did.
#[derive(Debug, Clone)]
pub struct GraphReport {
    /// Producers, in the order added.
    pub producers: Vec<ProducerReport>,
    /// Stages, in the order added.
    pub stages: Vec<StageReport>,
}

/// Producers and stages over one in-memory bus.
pub struct Graph {
    bus: MemoryBus,
    settings: LoopSettings,
    nodes: Vec<Node>,
}

impl Graph {
    /// An empty graph on `bus`; stages start from `settings`.
    pub fn new(bus: MemoryBus, settings: LoopSettings) -> Self {
        Graph {
            bus,
            settings,
            nodes: Vec::new(),
        }
    }

    /// Adds a producer writing `outputs`.
    pub fn producer<F, Fut>(&mut self, name: &'static str, outputs: &[&str], run: F) -> &mut Self
    where
        F: FnOnce(BusSink, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.nodes.push(Node {
            name,
            inputs: Vec::new(),
            outputs: outputs.iter().map(|t| (*t).to_owned()).collect(),
            work: Work::Producer(Box::new(move |sink, stop| Box::pin(run(sink, stop)))),
        });
        self
    }

    /// Adds a stage.
    pub fn stage<S: Stage>(&mut self, stage: S) -> &mut Self {
        self.nodes.push(Node {
            name: Stage::name(&stage),
            inputs: Stage::inputs(&stage),
            outputs: Stage::outputs(&stage),
            work: Work::Stage(Box::new(stage)),
        });
        self
    }

    /// Runs until every producer is done and every stage drained (or
    /// `shutdown`).
    pub async fn run(self, shutdown: CancellationToken) -> Result<GraphReport, StageError> {
        let done: Vec<CancellationToken> = self
            .nodes
            .iter()
            .map(|_| CancellationToken::new())
            .collect();
        let writers = |topic: &str, me: usize| -> Vec<CancellationToken> {
            self.nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| *i != me && n.outputs.iter().any(|o| o == topic))
                .map(|(i, _)| done[i].clone())
                .collect()
        };
        let upstream: Vec<Vec<CancellationToken>> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let topics: BTreeSet<&String> = n.inputs.iter().collect();
                topics.iter().flat_map(|t| writers(t, i)).collect()
            })
            .collect();

        let mut producers = Vec::new();
        let mut stages = Vec::new();
        let output = MemorySink::clone(&self.bus.sink());
        for ((node, done), upstream) in self.nodes.into_iter().zip(done).zip(upstream) {
            match node.work {
                Work::Producer(run) => {
                    let (sink, stop) = (BusSink::Memory(output.clone()), shutdown.clone());
                    let name = node.name;
                    producers.push(tokio::spawn(async move {
                        let result = run(sink, stop).await;
                        done.cancel();
                        ProducerReport {
                            name,
                            error: result.err().map(|e| e.to_string()),
                        }
                    }));
                }
                Work::Stage(stage) => {
                    let stop = shutdown.child_token();
                    let group = stage.group();
                    stop_when_drained(&self.bus, group, node.inputs, upstream, stop.clone());
                    let ctx =
                        StageContext::new(node.name, stage.settings(self.settings.clone()), stop);
                    let bus = Bus::Memory(self.bus.clone());
                    let run = stage.launch(ctx, bus);
                    stages.push((
                        node.name,
                        tokio::spawn(async move {
                            let result = run.await;
                            done.cancel();
                            result
                        }),
                    ));
                }
            }
        }
        let mut report = GraphReport {
            producers: Vec::new(),
            stages: Vec::new(),
        };
        for p in producers {
            let p = p.await.map_err(|e| StageError::Task {
                stage: "producer".into(),
                reason: e.to_string(),
            })?;
            if let Some(error) = &p.error {
                tracing::warn!(producer = p.name, %error, "producer ended with an error");
            }
            report.producers.push(p);
        }
        let mut first_error = None;
        for (name, task) in stages {
            match task.await {
                Ok(Ok(r)) => report.stages.push(r),
                Ok(Err(err)) => {
                    shutdown.cancel();
                    first_error.get_or_insert(err);
                }
                Err(join) => {
                    shutdown.cancel();
                    first_error.get_or_insert(StageError::Task {
                        stage: name.to_owned(),
                        reason: join.to_string(),
                    });
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }
}

/// Cancels `stop` once every `upstream` is done and `group` has read
/// everything of `topics`.
fn stop_when_drained(
    bus: &MemoryBus,
    group: String,
    topics: Vec<String>,
    upstream: Vec<CancellationToken>,
    stop: CancellationToken,
) {
    let bus = bus.clone();
    tokio::spawn(async move {
        loop {
            if stop.is_cancelled() {
                return;
            }
            if upstream.iter().all(CancellationToken::is_cancelled)
                && topics.iter().all(|t| bus.unread(&group, t) == 0)
            {
                stop.cancel();
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::consumer::HandlerError;
    use crate::dlq::Rejection;

    /// Copies its input to `to`, or only counts when `to` is `None`. Its
    /// output is durable only when the loop stops, when `late` is set.
    struct Copy {
        from: &'static str,
        to: Option<&'static str>,
        late: bool,
        seen: Arc<AtomicU64>,
    }

    struct CopyHandler {
        to: Option<&'static str>,
        late: bool,
        out: BusSink,
        handled: u64,
        durable: u64,
        seen: Arc<AtomicU64>,
    }

    impl Stage for Copy {
        type Handler = CopyHandler;
        fn name(&self) -> &'static str {
            "copy"
        }
        fn group(&self) -> String {
            format!("copy-{}", self.from)
        }
        fn inputs(&self) -> Vec<String> {
            vec![self.from.into()]
        }
        fn outputs(&self) -> Vec<String> {
            self.to.iter().map(|t| (*t).to_owned()).collect()
        }
        async fn build(self, cx: &BuildContext) -> Result<CopyHandler, BoxError> {
            Ok(CopyHandler {
                to: self.to,
                late: self.late,
                out: cx.output.clone(),
                handled: 0,
                durable: 0,
                seen: self.seen,
            })
        }
    }

    impl BatchHandler for CopyHandler {
        async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
            // Slow enough that the next stage would run dry if it stopped
            // on an empty topic rather than on its upstream being done.
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Some(to) = self.to {
                let records = batch
                    .iter()
                    .map(|m| OutRecord::new(to, m.key.clone(), m.payload.clone()))
                    .collect();
                self.out.send_batch(records).await?;
            }
            self.seen.fetch_add(batch.len() as u64, Ordering::SeqCst);
            self.handled += 1;
            Ok(Vec::new())
        }
        fn durable_batches(&self) -> Option<u64> {
            self.late.then_some(self.durable)
        }
        async fn finish(&mut self) -> Result<(), HandlerError> {
            self.durable = self.handled;
            Ok(())
        }
    }

    fn settings() -> LoopSettings {
        LoopSettings {
            batch_max_messages: 3,
            ..LoopSettings::default()
        }
    }

    #[tokio::test]
    async fn a_graph_drains_in_the_order_its_topics_say_and_leaves_no_lag() {
        let bus = MemoryBus::new();
        for t in ["a", "b"] {
            bus.create_topic(t, 2);
        }
        let (copied, counted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut graph = Graph::new(bus.clone(), settings());
        // Added before the stage that feeds it: the order in the list does
        // not matter, the topics do.
        graph.stage(Copy {
            from: "b",
            to: None,
            late: true,
            seen: counted.clone(),
        });
        graph.stage(Copy {
            from: "a",
            to: Some("b"),
            late: false,
            seen: copied.clone(),
        });
        graph.producer("source", &["a"], |sink, _stop| async move {
            for i in 0..10u8 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let key = Some(vec![i % 3]);
                sink.send_batch(vec![OutRecord::new("a", key, vec![i])])
                    .await?;
            }
            Ok(())
        });
        let report = graph.run(CancellationToken::new()).await.expect("runs");
        assert_eq!(copied.load(Ordering::SeqCst), 10);
        assert_eq!(counted.load(Ordering::SeqCst), 10, "nothing left behind");
        assert_eq!(report.stages.len(), 2);
        for stage in &report.stages {
            assert_eq!(stage.lag, Some(0), "{stage:?}");
            assert_eq!(stage.summary.messages, 10);
        }
        assert_eq!(
            report.stages[1].delivered, 0,
            "copies are not counted as sent"
        );
        assert!(report.producers[0].error.is_none());
    }

    #[tokio::test]
    async fn offsets_wait_until_the_handler_calls_its_output_durable() {
        let bus = MemoryBus::new();
        bus.create_topic("a", 1);
        let records = (0..10u8)
            .map(|i| OutRecord::new("a", None, vec![i]))
            .collect();
        bus.sink().send_batch(records).await.expect("send");
        let stop = CancellationToken::new();
        let seen = Arc::new(AtomicU64::new(0));
        let stage = Copy {
            from: "a",
            to: None,
            late: true,
            seen: seen.clone(),
        };
        let ctx = StageContext::new("copy", settings(), stop.clone());
        let task = tokio::spawn(drive(stage, ctx, Bus::Memory(bus.clone())));
        while seen.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(bus.unread("copy-a", "a"), 0, "everything was read");
        assert_eq!(
            bus.lag("copy-a", "a"),
            10,
            "nothing stored before it is durable"
        );
        stop.cancel();
        let report = task.await.expect("join").expect("runs");
        assert_eq!(
            report.lag,
            Some(0),
            "stopping made it durable and stored it"
        );
    }
}
