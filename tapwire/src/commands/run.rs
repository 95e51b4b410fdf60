//! `tapwire run`: every stage in one process over the in-memory bus.
//!
//! capture (pcap replay or live sources) -> enrich -> policy -> aggregate
//! (connection counts in memory) + cef (to a file or stdout) + record (PCAP
//! slices into a local directory). The pipeline is a list of stages, each
//! declared by its configuration section exactly as its standalone command
//! runs it; only the bus and the targets differ. The graph stops a stage
//! once the stages writing its inputs stopped and it read everything they
//! wrote, so a replay ends by itself; live sources run until Ctrl-C.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tapwire_aggregator::memory::{MemoryConnections, MemoryCounts};
use tapwire_aggregator::query::ConnectionsView;
use tapwire_capture::agent::{Agent, SourceSpec, Summary};
use tapwire_cef_forwarder::CefConfig;
use tapwire_cluster::ClusterRecord;
use tapwire_pcap_recorder::config::RecordConfig;
use tapwire_plumbing::bus::memory::MemoryBus;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::dlq::DeadLetter;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::stage::{Graph, StageReport};
use tapwire_policy_engine::PolicyConfig;
use tapwire_schemas::topics;

use crate::config::Config;

/// Where CEF lines go.
#[derive(Debug, Clone)]
pub enum CefOut {
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
    /// Into a file in this directory; the report keeps one sample line per
    /// signature.
    Samples(PathBuf),
}

/// What the pipeline runs on.
pub struct RunInputs {
    /// Capture sources (`pcap:FILE`, `inventory`, `packets`, `ebpf`).
    pub sources: Vec<SourceSpec>,
    /// Pods, nodes and Services, put on `tapwire.pods` before anything runs.
    pub cluster: Vec<ClusterRecord>,
    /// Policy files (none: every verdict is mode `other`).
    pub policy_files: Vec<PathBuf>,
    /// CEF output.
    pub cef: CefOut,
    /// Record matching streams into this directory with these queries.
    pub record: Option<(PathBuf, BTreeMap<String, String>)>,
    /// Where the connection counts go (shared with a console serving them
    /// while the run goes on); a fresh one when `None`.
    pub counts: Option<Arc<Mutex<MemoryConnections>>>,
    /// Extra messages put on the bus before the stages start (the demo's
    /// malformed ones).
    pub inject: Vec<OutRecord>,
}

/// What the pipeline did.
pub struct RunReport {
    /// Packet records, L4 events, DNS events the capture sent.
    pub captured: (u64, u64, u64),
    /// Why the capture stopped early, if it did.
    pub capture_error: Option<String>,
    /// Per stage, in pipeline order.
    pub stages: Vec<StageReport>,
    /// The connections view over everything seen.
    pub view: ConnectionsView,
    /// Enforce-mode violations: (blocked by a node's kernel, not prevented).
    pub enforce_outcomes: (u64, u64),
    /// CEF messages sent.
    pub cef_lines: u64,
    /// One CEF line per signature (from a file target).
    pub cef_samples: Vec<String>,
    /// PCAP slices written (with their `.index.json` next to them).
    pub slices: Vec<PathBuf>,
    /// Everything dead-lettered, by any stage.
    pub dead_letters: Vec<DeadLetter>,
}

/// The topics the capture agent writes.
const CAPTURE_OUTPUTS: &[&str] = &[
    topics::L4_RAW,
    topics::RUNTIME_RAW,
    topics::PACKETS_RAW,
    topics::INVENTORY,
    topics::AGENTS,
];

/// The CEF section of `config`, sending to `out`.
fn cef_stage(config: &Config, out: &CefOut) -> CefConfig {
    let target = match out {
        CefOut::Stdout => "stdout".to_owned(),
        CefOut::File(path) => format!("file:{}", path.display()),
        CefOut::Samples(dir) => format!("file:{}", dir.join("cef.log").display()),
    };
    CefConfig {
        target,
        ..config.cef.clone()
    }
}

/// The record section of `config`, into `dir` with `queries`. No scan jobs:
/// no scanner runs in the process (scan the slices with `tapwire scan DIR`).
fn record_stage(config: &Config, dir: &Path, queries: &BTreeMap<String, String>) -> RecordConfig {
    RecordConfig {
        directory: Some(dir.to_path_buf()),
        bucket: None,
        queries: queries.clone(),
        spool_dir: dir.join(".spool"),
        scan_slices: false,
        ..config.record.clone()
    }
}

/// Serves the console over `counts` and the pods of `cluster` on `addr`
/// until `shutdown`, with a one-time admin token whose sign-in link is
/// printed (on stderr, so that stdout stays the report's or CEF's).
pub async fn console(
    addr: &str,
    counts: &Arc<Mutex<MemoryConnections>>,
    cluster: &[ClusterRecord],
    shutdown: CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    use tapwire_aggregator::console::{Auth, one_time_admin};
    use tapwire_aggregator::memory_serve::{self, MemoryData};
    let addr: std::net::SocketAddr = addr.parse().with_context(|| format!("--serve {addr}"))?;
    let (admin, secret) = one_time_admin().context("/dev/urandom")?;
    let auth = Auth::new(vec![admin])?;
    let data = MemoryData {
        counts: counts.clone(),
        pods: Arc::new(
            cluster
                .iter()
                .filter_map(|r| match r {
                    ClusterRecord::Pod(p) => Some(p.clone()),
                    _ => None,
                })
                .collect(),
        ),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--serve {addr}"))?;
    let bound = listener.local_addr()?;
    drop(listener);
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let served = memory_serve::serve(
            bound,
            data,
            auth,
            async move { shutdown.cancelled().await },
            move |a| {
                let _ = tx.send(a);
            },
        )
        .await;
        if let Err(err) = served {
            eprintln!("console on {bound} stopped: {err}");
        }
    });
    let bound = rx.await.context("the console did not start")?;
    eprintln!("console: sign in at http://{bound}/?token={secret}#/graph");
    Ok(bound)
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
    let mut preload = inputs
        .cluster
        .iter()
        .map(ClusterRecord::to_out_record)
        .collect::<Result<Vec<_>, _>>()?;
    preload.extend(inputs.inject);
    bus.sink().send_batch(preload).await?;

    let mut graph = Graph::new(bus.clone(), config.consumer.loop_settings());
    // The agent enforces on this machine what the policy stage publishes.
    let agent = Agent::new(config.capture.clone(), Some(inputs.sources.clone()))
        .with_bus(tapwire_plumbing::stage::Bus::Memory(bus.clone()));
    let summary = Arc::new(Summary::default());
    let capture_summary = summary.clone();
    graph.producer("capture", CAPTURE_OUTPUTS, move |sink, stop| async move {
        Ok(agent.run(sink, stop, capture_summary).await?)
    });
    // Every pod record is on the bus before the first event: nothing comes
    // late, so nothing waits for it.
    graph.stage(tapwire_enricher::EnrichConfig {
        metadata_wait_ms: 0,
        ..config.enrich.clone()
    });
    let mut policy = config.policy.clone();
    if !inputs.policy_files.is_empty() {
        policy.files = inputs.policy_files.clone();
    }
    graph.stage::<PolicyConfig>(policy);
    let counts = inputs
        .counts
        .clone()
        .unwrap_or_else(|| Arc::new(Mutex::new(MemoryConnections::default())));
    graph.stage(MemoryCounts {
        group: config.aggregate.group.clone(),
        counts: counts.clone(),
    });
    graph.stage(cef_stage(config, &inputs.cef));
    if let Some((dir, queries)) = &inputs.record {
        graph.stage(record_stage(config, dir, queries));
    }
    let cef_file = match &inputs.cef {
        CefOut::Stdout => None,
        CefOut::File(path) => Some(path.clone()),
        CefOut::Samples(dir) => Some(dir.join("cef.log")),
    };
    let cef_before = cef_file.as_deref().map_or(0, count_lines);

    let report = graph.run(shutdown).await?;
    let capture_error = report.producers.iter().find_map(|p| p.error.clone());
    let cef_lines = report
        .stages
        .iter()
        .find(|s| s.name == "cef")
        .map_or(0, |s| s.delivered);
    let cef_samples = match &cef_file {
        Some(path) => samples(path, cef_before)?,
        None => Vec::new(),
    };
    let slices = inputs
        .record
        .as_ref()
        .map_or_else(Vec::new, |(dir, _)| pcap_files(dir));
    let dead_letters = bus
        .messages(topics::DLQ)
        .iter()
        .filter_map(DeadLetter::from_message)
        .collect();
    let (view, enforce_outcomes) = {
        let counts = counts.lock().unwrap_or_else(|p| p.into_inner());
        (counts.view(100), counts.enforce_outcomes())
    };
    Ok(RunReport {
        captured: (
            Summary::get(&summary.packets),
            Summary::get(&summary.l4_events),
            Summary::get(&summary.dns_events),
        ),
        capture_error,
        stages: report.stages,
        view,
        enforce_outcomes,
        cef_lines,
        cef_samples,
        slices,
        dead_letters,
    })
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// The first line of each CEF signature written after line `skip` of `path`.
fn samples(path: &Path, skip: usize) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut by_signature = BTreeMap::new();
    for line in text.lines().skip(skip) {
        // CEF:Version|Vendor|Product|Version|Signature ID|Name|Severity|Extension
        let signature = line
            .find("CEF:")
            .and_then(|at| line[at..].split('|').nth(4))
            .unwrap_or_default();
        by_signature
            .entry(signature.to_owned())
            .or_insert_with(|| line.to_owned());
    }
    Ok(by_signature.into_values().collect())
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
    if let Some(err) = &r.capture_error {
        writeln!(out, "capture    stopped early: {err}")?;
    }
    for s in &r.stages {
        writeln!(out, "{:<10} {}", s.name, s.line())?;
    }
    writeln!(out)?;
    write!(out, "{}", super::aggregate::table(&r.view, None))?;
    let (blocked, not_prevented) = r.enforce_outcomes;
    writeln!(
        out,
        "\nEnforce-mode violations: {blocked} blocked by the node's kernel, {not_prevented} not prevented (went through)"
    )?;
    writeln!(out, "\nCEF ({} lines; one per signature):", r.cef_lines)?;
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
            tapwire_cluster::k8s::records_from_listing(&text, 0).with_context(|| {
                format!(
                    "{}: expected `kubectl get pods,nodes,services -A -o json` output",
                    path.display()
                )
            })?
        }
    };
    let counts = Arc::new(Mutex::new(MemoryConnections::default()));
    if let Some(addr) = &args.serve {
        console(addr, &counts, &cluster, shutdown.clone()).await?;
    }
    let scratch = tempfile::tempdir().context("a directory for the CEF samples")?;
    let cef = match args.cef_out.as_deref() {
        None => CefOut::Samples(scratch.path().to_path_buf()),
        Some(p) if p == std::path::Path::new("-") => CefOut::Stdout,
        Some(p) => CefOut::File(p.to_path_buf()),
    };
    // --kfl, else the configured queries (RECORDING_KFL among them), else
    // HTTP and DNS.
    let record = args.record_dir.as_ref().map(|dir| {
        let queries = match &args.kfl {
            Some(query) => BTreeMap::from([("run".to_owned(), query.clone())]),
            None if config.record.recording_on() => config.record.queries.clone(),
            None => BTreeMap::from([("run".to_owned(), "http or dns".to_owned())]),
        };
        (dir.clone(), queries)
    });
    let report = pipeline(
        config,
        RunInputs {
            sources,
            cluster,
            policy_files: args.policies.clone(),
            cef,
            record,
            counts: Some(counts),
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
