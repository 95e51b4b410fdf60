//! `tapwire run`: every stage in one process over the in-memory bus.
//!
//! capture (pcap replay or live sources) -> enrich -> policy -> aggregate
//! (connection counts in memory) + cef (lines to a file or stdout) + record
//! (PCAP slices into a local directory). Each stage is the same handler and
//! consumer loop as its standalone command; only the bus and the sinks
//! differ. A stage stops once the stage before it has stopped and it has
//! read everything that stage wrote, so a replay ends by itself; live
//! sources run until Ctrl-C.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tapwire_aggregator::memory::{MemoryAggregate, MemoryConnections};
use tapwire_aggregator::query::ConnectionsView;
use tapwire_capture::agent::{Agent, SourceSpec, Summary};
use tapwire_cef_forwarder::format::Formatter;
use tapwire_enricher::enrich::ClusterRecord;
use tapwire_enricher::stage::EnrichStage;
use tapwire_pcap_recorder::config::RecordConfig;
use tapwire_pcap_recorder::pods::PodHistory;
use tapwire_pcap_recorder::recorder::Recorder;
use tapwire_pcap_recorder::spool::{Spool, Uploader};
use tapwire_pcap_recorder::stage::{CheckpointSource, Core, RecordHandler, Ticker};
use tapwire_plumbing::bus::memory::MemoryBus;
use tapwire_plumbing::bus::{Message, OutRecord, Sink};
use tapwire_plumbing::consumer::{self, BatchHandler, HandlerError, LoopSummary, StageContext};
use tapwire_plumbing::dlq::{DeadLetter, Rejection};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_policy_engine::stage::{PolicyFiles, PolicyStage};
use tapwire_schemas::signature::EventKind;
use tapwire_schemas::{AnyEvent, decode_any, topics};

use crate::config::Config;

/// Where CEF lines go.
#[derive(Debug, Clone)]
pub enum CefOut {
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
    /// Nowhere; the report keeps one sample line per event kind.
    Samples,
}

/// What the pipeline runs on.
pub struct RunInputs {
    /// Capture sources (`pcap:FILE`, `inventory`, `packets`, `ebpf`).
    pub sources: Vec<SourceSpec>,
    /// Pods, nodes and Services, as `tapwire.pods` would carry them.
    pub cluster: Vec<ClusterRecord>,
    /// Policy files (none: every verdict is mode `other`).
    pub policy_files: Vec<PathBuf>,
    /// CEF output.
    pub cef: CefOut,
    /// Record matching streams into this directory with these queries.
    pub record: Option<(PathBuf, BTreeMap<String, String>)>,
    /// Extra messages put on the bus before the stages start (the demo's
    /// malformed ones).
    pub inject: Vec<OutRecord>,
}

/// What the pipeline did.
pub struct RunReport {
    /// Packet records, L4 events, DNS events the capture sent.
    pub captured: (u64, u64, u64),
    /// Per stage: name and loop summary.
    pub stages: Vec<(&'static str, LoopSummary)>,
    /// The connections view over everything seen.
    pub view: ConnectionsView,
    /// CEF lines written.
    pub cef_lines: u64,
    /// One CEF line per event kind and outcome.
    pub cef_samples: Vec<String>,
    /// PCAP slices written (with their `.index.json` next to them).
    pub slices: Vec<PathBuf>,
    /// Everything dead-lettered, by any stage.
    pub dead_letters: Vec<DeadLetter>,
}

/// Writes one CEF line per verdict (loss records pass).
struct CefWriter {
    formatter: Formatter,
    filter: Option<tapwire_kfl::Filter>,
    out: Option<Box<dyn Write + Send>>,
    lines: Arc<Mutex<(u64, BTreeMap<String, String>)>>,
}

impl BatchHandler for CefWriter {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let mut rejections = Vec::new();
        let mut buf = Vec::new();
        let mut state = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        for (index, m) in batch.iter().enumerate() {
            let verdict = match decode_any(&m.payload) {
                Ok(AnyEvent::Verdict(v)) => v,
                Ok(AnyEvent::LossRecord(_)) => continue,
                Ok(other) => {
                    rejections.push(Rejection::wrong_schema(
                        index,
                        "the CEF writer reads verdicts",
                        other.kind(),
                    ));
                    continue;
                }
                Err(err) => {
                    rejections.push(Rejection::undecodable(index, &err));
                    continue;
                }
            };
            if let Some(f) = &self.filter
                && !f.matches(&tapwire_schemas::kfl::EventEntry::verdict(&verdict), 0)
            {
                continue;
            }
            let start = buf.len();
            if self.formatter.format(&verdict, &mut buf).is_err() {
                buf.truncate(start);
                continue;
            }
            let kind = format!("{:?} {:?}", EventKind::of(&verdict.event), verdict.outcome);
            state
                .1
                .entry(kind)
                .or_insert_with(|| String::from_utf8_lossy(&buf[start..]).into_owned());
            buf.push(b'\n');
            state.0 += 1;
        }
        if let Some(out) = &mut self.out {
            out.write_all(&buf)
                .and_then(|()| out.flush())
                .map_err(|e| HandlerError::Fatal(format!("writing CEF lines: {e}")))?;
        }
        Ok(rejections)
    }
}

/// A handler that counts the messages it was given.
struct Counted<H>(H, Arc<std::sync::atomic::AtomicU64>);

impl<H: BatchHandler> BatchHandler for Counted<H> {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let r = self.0.handle(batch).await;
        if r.is_ok() {
            self.1
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }
}

/// Cancels `stop` once `upstream` is done and `group` has stored every
/// message of `topics`.
fn stop_when_drained(
    bus: &MemoryBus,
    group: &'static str,
    topics: &'static [&'static str],
    upstream: CancellationToken,
    stop: CancellationToken,
) {
    let bus = bus.clone();
    tokio::spawn(async move {
        loop {
            if stop.is_cancelled() {
                return;
            }
            if upstream.is_cancelled() && topics.iter().all(|t| bus.lag(group, t) == 0) {
                stop.cancel();
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

/// One stage: its token (stop), its done token, its context.
fn stage(
    config: &Config,
    name: &str,
    shutdown: &CancellationToken,
) -> (StageContext, CancellationToken, CancellationToken) {
    let stop = shutdown.child_token();
    let ctx = StageContext::new(name, config.consumer.loop_settings(), stop.clone());
    (ctx, stop, CancellationToken::new())
}

/// Runs the whole pipeline until the sources are done (or `shutdown`).
pub async fn pipeline(
    config: &Config,
    inputs: RunInputs,
    shutdown: CancellationToken,
) -> anyhow::Result<RunReport> {
    let bus = MemoryBus::new();
    for spec in topics::ALL {
        bus.create_topic(spec.name, config.topics.partitions.max(1) as usize);
    }
    if !inputs.inject.is_empty() {
        bus.sink().send_batch(inputs.inject).await?;
    }

    // capture
    let capture_done = CancellationToken::new();
    let summary = Arc::new(Summary::default());
    let agent = Agent::new(config.capture.clone(), Some(inputs.sources.clone()));
    let capture = {
        let (sink, stop, done, summary) = (
            bus.sink(),
            shutdown.clone(),
            capture_done.clone(),
            summary.clone(),
        );
        tokio::spawn(async move {
            let result = agent.run(sink, stop, summary).await;
            done.cancel();
            result
        })
    };

    // enrich
    let (enrich_ctx, enrich_stop, enrich_done) = stage(config, "enrich", &shutdown);
    let mut enricher = config.enrich.build()?;
    let mut pod_history = PodHistory::default();
    for record in &inputs.cluster {
        if let ClusterRecord::Pod(pod) = record {
            pod_history.apply(pod);
        }
        enricher.apply(record.clone());
    }
    let (_no_more_pods, pods) = tokio::sync::mpsc::channel(1);
    let mut enrich = EnrichStage::new(
        enricher,
        pods,
        bus.sink(),
        Duration::from_millis(config.enrich.metadata_wait_ms),
        enrich_ctx.metrics.clone(),
    );
    const RAW: &[&str] = &[topics::L4_RAW, topics::RUNTIME_RAW];
    stop_when_drained(&bus, "enrich", RAW, capture_done.clone(), enrich_stop);
    let enrich_task = {
        let (source, dlq, done) = (bus.source("enrich", RAW)?, bus.sink(), enrich_done.clone());
        tokio::spawn(async move {
            let r = consumer::run(&enrich_ctx, source, &dlq, &mut enrich).await;
            done.cancel();
            r
        })
    };

    // policy
    let (policy_ctx, policy_stop, policy_done) = stage(config, "policy", &shutdown);
    let policies = PolicyFiles::load(inputs.policy_files.clone()).context("loading policies")?;
    let mut policy = PolicyStage::new(
        policies,
        bus.sink(),
        Duration::from_secs(2),
        policy_ctx.metrics.clone(),
    );
    const ENRICHED: &[&str] = &[topics::L4_ENRICHED, topics::RUNTIME_ENRICHED];
    stop_when_drained(&bus, "policy", ENRICHED, enrich_done.clone(), policy_stop);
    let policy_task = {
        let (source, dlq, done) = (
            bus.source("policy", ENRICHED)?,
            bus.sink(),
            policy_done.clone(),
        );
        tokio::spawn(async move {
            let r = consumer::run(&policy_ctx, source, &dlq, &mut policy).await;
            done.cancel();
            r
        })
    };

    // aggregate (in memory)
    const VERDICTS: &[&str] = &[topics::VERDICTS];
    let (agg_ctx, agg_stop, _) = stage(config, "aggregate", &shutdown);
    let counts = Arc::new(Mutex::new(MemoryConnections::default()));
    let mut aggregate = MemoryAggregate(counts.clone());
    stop_when_drained(&bus, "aggregate", VERDICTS, policy_done.clone(), agg_stop);
    let agg_task = {
        let (source, dlq) = (bus.source("aggregate", VERDICTS)?, bus.sink());
        tokio::spawn(async move { consumer::run(&agg_ctx, source, &dlq, &mut aggregate).await })
    };

    // cef
    let (cef_ctx, cef_stop, _) = stage(config, "cef", &shutdown);
    let cef_state = Arc::new(Mutex::new((0u64, BTreeMap::new())));
    let out: Option<Box<dyn Write + Send>> = match &inputs.cef {
        CefOut::Stdout => Some(Box::new(std::io::stdout())),
        CefOut::File(path) => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        )),
        CefOut::Samples => None,
    };
    config.cef.validate()?;
    let mut cef = CefWriter {
        formatter: Formatter::new(&config.cef),
        filter: config
            .cef
            .filter
            .as_deref()
            .map(tapwire_kfl::compile)
            .transpose()?,
        out,
        lines: cef_state.clone(),
    };
    stop_when_drained(&bus, "cef", VERDICTS, policy_done.clone(), cef_stop);
    let cef_task = {
        let (source, dlq) = (bus.source("cef", VERDICTS)?, bus.sink());
        tokio::spawn(async move { consumer::run(&cef_ctx, source, &dlq, &mut cef).await })
    };

    // record (into a directory)
    let record_task = match &inputs.record {
        None => None,
        Some((dir, queries)) => {
            let rc = RecordConfig {
                directory: Some(dir.clone()),
                bucket: None,
                queries: queries.clone(),
                spool_dir: dir.join(".spool"),
                // A short checkpoint: a replay finishes within it.
                slice_max_age_ms: config.record.slice_max_age_ms.min(2000),
                ..config.record.clone()
            };
            rc.validate()?;
            let (ctx, stop, _) = stage(config, "record", &shutdown);
            let store = rc.store().await?;
            let spool = Spool::open(&rc.spool_dir, rc.spool_max_bytes)?;
            let uploader = Uploader::new(store, spool, ctx.metrics.clone());
            let recorder = Recorder::new(rc.recorder_config(), rc.named_queries())?;
            let (_no_pods, pod_rx) = tokio::sync::mpsc::channel(1);
            let core = Arc::new(tokio::sync::Mutex::new(
                Core::new(
                    recorder,
                    uploader,
                    &rc.prefix,
                    Duration::from_millis(rc.slice_max_age_ms),
                    ctx.metrics.clone(),
                )
                .with_pods(pod_history, pod_rx),
            ));
            const PACKETS: &[&str] = &[topics::PACKETS_RAW];
            let source = CheckpointSource::new(bus.source("record", PACKETS)?, core.clone()).await;
            // Offsets are held back until a checkpoint (see the recorder's
            // stage), so the group's lag says nothing about what was read:
            // stop once the capture is done and every packet was handed to
            // the recorder; closing the source is the final checkpoint.
            let ticker = Ticker::spawn(core.clone(), Duration::from_millis(200), stop.clone());
            let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
            {
                let (bus, handled, upstream, stop) = (
                    bus.clone(),
                    handled.clone(),
                    capture_done.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    while !stop.is_cancelled() {
                        let written = bus.written(topics::PACKETS_RAW);
                        if upstream.is_cancelled()
                            && handled.load(std::sync::atomic::Ordering::SeqCst) >= written
                        {
                            stop.cancel();
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
            }
            let dlq = bus.sink();
            let mut handler = Counted(RecordHandler::new(core.clone()), handled);
            Some(tokio::spawn(async move {
                let r = consumer::run(&ctx, source, &dlq, &mut handler).await;
                ticker.abort();
                (r, core)
            }))
        }
    };

    let captured = capture.await?;
    if let Err(err) = captured {
        tracing::warn!(error = %err, "capture ended with an error");
        eprintln!("capture: {err}");
    }
    let mut stages = vec![
        ("enrich", enrich_task.await??),
        ("policy", policy_task.await??),
        ("aggregate", agg_task.await??),
        ("cef", cef_task.await??),
    ];
    let mut slices = Vec::new();
    if let Some(task) = record_task {
        let (summary, _core) = task.await?;
        stages.push(("record", summary?));
        if let Some((dir, _)) = &inputs.record {
            slices = pcap_files(dir);
        }
    }
    let dead_letters = bus
        .messages(topics::DLQ)
        .iter()
        .filter_map(DeadLetter::from_message)
        .collect();
    let (cef_lines, samples) = {
        let s = cef_state.lock().unwrap_or_else(|p| p.into_inner());
        (s.0, s.1.values().cloned().collect())
    };
    let view = counts.lock().unwrap_or_else(|p| p.into_inner()).view(100);
    Ok(RunReport {
        captured: (
            Summary::get(&summary.packets),
            Summary::get(&summary.l4_events),
            Summary::get(&summary.dns_events),
        ),
        stages,
        view,
        cef_lines,
        cef_samples: samples,
        slices,
        dead_letters,
    })
}

/// The `.pcap` files under `dir`, sorted.
fn pcap_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with(".spool") {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// Prints the report: per-stage figures, the connections view, CEF
/// samples, recorded slices and dead letters.
pub fn print_report(r: &RunReport, out: &mut impl Write) -> std::io::Result<()> {
    let (packets, l4, dns) = r.captured;
    writeln!(
        out,
        "capture    {packets} packets, {l4} L4 events and {dns} DNS events derived from them"
    )?;
    for (name, s) in &r.stages {
        writeln!(
            out,
            "{name:<10} {} read, {} dead-lettered",
            s.messages, s.dead_lettered
        )?;
    }
    writeln!(out)?;
    write!(out, "{}", super::aggregate::table(&r.view, None))?;
    writeln!(
        out,
        "\nCEF ({} lines; one per event kind and outcome):",
        r.cef_lines
    )?;
    for line in &r.cef_samples {
        writeln!(out, "  {line}")?;
    }
    if !r.slices.is_empty() {
        writeln!(out, "\nPCAP slices recorded (each with a .index.json):")?;
        for s in &r.slices {
            writeln!(out, "  {}", s.display())?;
        }
    }
    writeln!(
        out,
        "\ndead letters in {}: {}",
        topics::DLQ,
        r.dead_letters.len()
    )?;
    for d in &r.dead_letters {
        writeln!(
            out,
            "  {}/{}@{} [{}] {}",
            d.source_topic, d.source_partition, d.source_offset, d.error, d.reason
        )?;
    }
    Ok(())
}

/// `tapwire run`.
pub async fn run(
    config: &Config,
    args: &crate::cli::RunArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut sources: Vec<SourceSpec> = args.sources.clone();
    sources.extend(args.pcap.iter().map(|path| SourceSpec::Pcap {
        path: path.clone(),
        realtime: args.realtime,
    }));
    if sources.is_empty() {
        anyhow::bail!(
            "nothing to capture: give --pcap FILE (a replay) or --source inventory|packets|ebpf \
             (live; needs privileges). `tapwire demo` runs on bundled traffic."
        );
    }
    let cluster = match &args.cluster {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            // Seen at time 0, before any replayed packet: a listing says who
            // holds which address, not since when.
            tapwire_enricher::k8s::records_from_listing(&text, 0).with_context(|| {
                format!(
                    "{}: expected `kubectl get pods,nodes,services -A -o json` output",
                    path.display()
                )
            })?
        }
    };
    let cef = match args.cef_out.as_deref() {
        None => CefOut::Samples,
        Some(p) if p == std::path::Path::new("-") => CefOut::Stdout,
        Some(p) => CefOut::File(p.to_path_buf()),
    };
    let record = args.record_dir.as_ref().map(|dir| {
        let query = args
            .kfl
            .clone()
            .or_else(|| std::env::var("RECORDING_KFL").ok())
            .unwrap_or_else(|| "http or dns".to_owned());
        (dir.clone(), BTreeMap::from([("run".to_owned(), query)]))
    });
    let report = pipeline(
        config,
        RunInputs {
            sources,
            cluster,
            policy_files: args.policies.clone(),
            cef,
            record,
            inject: Vec::new(),
        },
        shutdown,
    )
    .await?;
    // CEF may be on stdout: the report goes to stderr then.
    if matches!(args.cef_out.as_deref(), Some(p) if p == std::path::Path::new("-")) {
        print_report(&report, &mut std::io::stderr())?;
    } else {
        print_report(&report, &mut std::io::stdout())?;
    }
    Ok(())
}
