//! `tapwire scan`: secrets and YARA rules over recorded traffic (a bucket,
//! a directory of slices, a capture file) or a filesystem tree, offline,
//! printed as a table or JSON lines.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tapwire_pcap_recorder::investigate::{Location, progress};
use tapwire_pcap_recorder::store::{LocalStore, S3Store, Store};
use tapwire_scanner::detect::Detectors;
use tapwire_scanner::files::{TreeLimits, scan_tree};
use tapwire_scanner::job::{ScanJob, ScanObject};
use tapwire_scanner::objects::{StoreReport, scan_store};
use tapwire_scanner::rules::{RuleSet, describe};
use tapwire_scanner::{ContentScanner, Finding};

use crate::cli::{InvestigateFormat, ScanArgs};
use crate::config::Config;

/// How a scan ended, as its exit status: findings (1) or objects that
/// could not be scanned (2). Returned as an error so `main` exits with it;
/// everything was printed already.
#[derive(Debug)]
pub struct Outcome {
    findings: usize,
    failed: usize,
}

impl Outcome {
    /// 2 if something could not be scanned, else 1 with findings.
    pub fn code(&self) -> u8 {
        if self.failed > 0 { 2 } else { 1 }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} findings, {} objects not scanned",
            self.findings, self.failed
        )
    }
}

impl std::error::Error for Outcome {}

/// Runs a scanner until shutdown.
pub async fn scanner(
    config: &Config,
    shutdown: tapwire_plumbing::shutdown::CancellationToken,
) -> anyhow::Result<()> {
    let mut scan = config.scan.clone();
    scan.s3 = s3_template(config);
    super::stage_alone(config, scan, shutdown).await
}

/// `[record]`'s S3 settings, the bucket left to each job.
fn s3_template(config: &Config) -> Option<tapwire_pcap_recorder::store::S3Settings> {
    let mut record = config.record.clone();
    record.bucket = Some(String::new());
    record.s3_settings()
}

/// Queues one job per capture under `location`.
async fn enqueue(config: &Config, args: &ScanArgs) -> anyhow::Result<()> {
    let (store, prefix, name) = open(config, &args.location).await?;
    let keys: Vec<String> = store
        .list(&prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| tapwire_scanner::objects::is_capture(k))
        .collect();
    if keys.is_empty() {
        anyhow::bail!(
            "no capture (.pcap, .pcapng, .cap) under {}{prefix}",
            store.describe()
        );
    }
    let now = tapwire_scanner::job::now_ns();
    let jobs: Vec<ScanJob> = keys
        .iter()
        .map(|key| {
            ScanJob::new(
                ScanObject::capture(format!("{name}{key}")),
                "tapwire scan --enqueue",
                now,
            )
        })
        .collect();
    let bus = tapwire_plumbing::stage::Bus::Kafka(config.kafka.clone());
    let sink = bus.sink()?;
    tapwire_scanner::queue::enqueue(&sink, &jobs).await?;
    sink.flush(Duration::from_secs(10))?;
    for job in &jobs {
        println!("{}\t{}", job.id, job.object.name());
    }
    eprintln!(
        "{} jobs queued on {}",
        jobs.len(),
        tapwire_scanner::job::JOBS_TOPIC
    );
    Ok(())
}

/// The store, prefix and object-name prefix of a location argument.
async fn open(config: &Config, location: &str) -> anyhow::Result<(Store, String, String)> {
    Ok(match Location::parse(location)? {
        Location::S3 { bucket, prefix } => {
            let mut rc = config.record.clone();
            rc.bucket = Some(bucket.clone());
            rc.directory = None;
            let settings = rc.s3_settings().context("no bucket")?;
            (
                Store::S3(S3Store::connect(&settings).await),
                prefix,
                format!("s3://{bucket}/"),
            )
        }
        Location::Dir(dir) => {
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            let name = format!("{}/", dir.display().to_string().trim_end_matches('/'));
            (Store::Local(LocalStore::new(dir)), String::new(), name)
        }
        Location::File(path) => {
            let path = std::path::absolute(&path).unwrap_or(path);
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            let key = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = format!("{}/", dir.display().to_string().trim_end_matches('/'));
            (Store::Local(LocalStore::new(dir)), key, name)
        }
    })
}

/// Runs one scan.
pub async fn run(config: &Config, args: &ScanArgs) -> anyhow::Result<()> {
    if args.enqueue {
        return enqueue(config, args).await;
    }
    let rules = RuleSet::load(&args.rules)?;
    eprintln!("{} YARA rules from {}", rules.len(), describe(&args.rules));
    let scanner = ContentScanner::new(
        Arc::new(Detectors::new()),
        Arc::new(rules),
        Duration::from_secs(60),
    );
    let bar = progress(0, !args.no_progress);
    let report = if args.tree {
        let root = PathBuf::from(&args.location);
        let scanner = scanner.clone();
        let object = args.location.clone();
        tokio::task::spawn_blocking(move || {
            let mut findings = Vec::new();
            let limits = TreeLimits {
                max_time: Duration::from_secs(24 * 3600),
                ..TreeLimits::default()
            };
            let stats = scan_tree(&object, &root, &limits, &scanner, &mut findings)?;
            eprintln!(
                "{} files, {} bytes scanned ({} unreadable, {} cut at the per-file limit){}",
                stats.files,
                stats.bytes,
                stats.unreadable,
                stats.cut_files,
                stats
                    .truncated
                    .map(|t| format!("; {t}"))
                    .unwrap_or_default()
            );
            anyhow::Ok(StoreReport {
                findings,
                objects: 1,
                ..StoreReport::default()
            })
        })
        .await??
    } else {
        let max = args.max_object_mib << 20;
        let (store, prefix, name) = open(config, &args.location).await?;
        let report = scan_store(&store, &prefix, &name, max, &scanner, &bar).await?;
        if report.objects == 0 && report.failed.is_empty() {
            anyhow::bail!(
                "no capture (.pcap, .pcapng, .cap) under {}{prefix}",
                store.describe()
            );
        }
        eprintln!(
            "{} captures, {} streams, {} payload bytes scanned",
            report.objects, report.stats.streams, report.stats.bytes
        );
        report
    };
    bar.finish_and_clear();
    match args.format {
        InvestigateFormat::Table => print!("{}", table(&report.findings)),
        InvestigateFormat::Json => {
            for finding in &report.findings {
                println!("{}", serde_json::to_string(finding)?);
            }
        }
    }
    for (object, reason) in &report.failed {
        eprintln!("error: not scanned: {object}: {reason}");
    }
    eprintln!("{} findings", report.findings.len());
    if report.findings.is_empty() && report.failed.is_empty() {
        Ok(())
    } else {
        Err(Outcome {
            findings: report.findings.len(),
            failed: report.failed.len(),
        }
        .into())
    }
}

/// Aligned columns; an empty result says so.
fn table(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings\n".to_owned();
    }
    let rows: Vec<[String; 8]> = findings
        .iter()
        .map(|f| {
            [
                f.kind.as_str().to_owned(),
                f.rule.clone(),
                f.severity.as_str().to_owned(),
                f.object.clone(),
                f.location.clone(),
                f.offset.map(|o| o.to_string()).unwrap_or_default(),
                f.frame.map(|o| o.to_string()).unwrap_or_default(),
                f.excerpt.clone(),
            ]
        })
        .collect();
    let header = [
        "KIND", "RULE", "SEVERITY", "OBJECT", "WHERE", "OFFSET", "FRAME", "EXCERPT",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}
