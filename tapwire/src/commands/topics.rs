//! `tapwire topics create|list|generate|tail` against Kafka.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tapwire_plumbing::bus::kafka::{self, KafkaSink};
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::{EventHeader, EventId, encode_into, samples, topics};

use super::tail::Tail;
use crate::cli::{CreateArgs, GenerateArgs, TailArgs};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates the pipeline's topics and prints what exists afterwards.
pub async fn create(config: &Config, args: &CreateArgs) -> anyhow::Result<()> {
    let partitions = args.partitions.unwrap_or(config.topics.partitions);
    let rf = args
        .replication_factor
        .unwrap_or(config.topics.replication_factor);
    let statuses = kafka::create_topics(&config.kafka, topics::ALL, partitions, rf, ADMIN_TIMEOUT)
        .await
        .with_context(|| format!("creating topics on {}", config.kafka.brokers))?;
    println!(
        "{:<28} {:>10}  {:<9} status",
        "topic", "partitions", "cleanup"
    );
    for s in &statuses {
        let status = if s.created { "created" } else { "exists" };
        let cleanup = if s.compacted { "compact" } else { "delete" };
        println!("{:<28} {:>10}  {cleanup:<9} {status}", s.name, s.partitions);
        if !s.created && s.partitions as i32 != partitions {
            eprintln!(
                "note: {} has {} partitions, not the {partitions} asked for; existing topics are left as they are",
                s.name, s.partitions
            );
        }
    }
    Ok(())
}

/// Prints every topic with its partition count.
pub async fn list(config: &Config) -> anyhow::Result<()> {
    let counts = kafka::partition_counts(&config.kafka, ADMIN_TIMEOUT)
        .await
        .with_context(|| format!("reading metadata from {}", config.kafka.brokers))?;
    println!("{:<28} {:>10}", "topic", "partitions");
    for (name, partitions) in counts {
        println!("{name:<28} {partitions:>10}");
    }
    Ok(())
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Produces synthetic L4 flows, keyed by node, each batch waiting for its
/// delivery reports.
pub async fn generate(
    config: &Config,
    args: &GenerateArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if args.nodes == 0 || args.batch == 0 {
        bail!("--nodes and --batch must be at least 1");
    }
    let sink = KafkaSink::new(&config.kafka)?;
    let run_id = args.run_id.clone().unwrap_or_else(|| now_ns().to_string());
    let base_ts = now_ns();
    let nodes: Vec<String> = (0..args.nodes).map(|n| format!("node-{n}")).collect();
    let progress = ProgressBar::new(args.count).with_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} events [{elapsed_precise}] {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < args.count {
        if shutdown.is_cancelled() {
            break;
        }
        let n = (args.count - sent).min(args.batch as u64);
        let mut records = Vec::with_capacity(n as usize);
        for i in sent..sent + n {
            let node = &nodes[(i % args.nodes) as usize];
            let header = EventHeader {
                id: EventId::derive(&[run_id.as_bytes(), &i.to_le_bytes()]),
                timestamp_ns: base_ts + i as i64,
                node: node.clone(),
                sensor_id: args.sensor_id.clone(),
                node_ip: None,
            };
            let mut payload = Vec::with_capacity(160);
            encode_into(&samples::l4_flow(header, i), &mut payload)?;
            records.push(OutRecord::new(
                args.topic.clone(),
                Some(node.clone().into_bytes()),
                payload,
            ));
        }
        sink.send_batch(records)
            .await
            .with_context(|| format!("producing to {} on {}", args.topic, config.kafka.brokers))?;
        sent += n;
        progress.set_position(sent);
        if args.rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {sent} events to {} in {secs:.2}s ({:.0} events/s), run id {run_id}",
        args.topic,
        sent as f64 / secs.max(1e-9)
    );
    if sent < args.count {
        bail!(
            "interrupted after {sent} of {} events (all {sent} delivered)",
            args.count
        );
    }
    Ok(())
}

/// Runs a tail consumer until shutdown.
pub async fn tail(
    config: &Config,
    args: &TailArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tail = Tail {
        group: args.group.clone(),
        topics: args.topics.clone(),
        format: args.format,
    };
    super::stage_alone(config, tail, shutdown).await
}
