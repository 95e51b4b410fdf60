//! `tapwire record`: packets from Kafka to KFL-matched PCAP slices in S3 (or
//! a directory), with pod names from `tapwire.pods`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tapwire_enricher::pods;
use tapwire_pcap_recorder::config::RecordConfig;
use tapwire_pcap_recorder::pods::PodHistory;
use tapwire_pcap_recorder::recorder::Recorder;
use tapwire_pcap_recorder::spool::{Spool, Uploader};
use tapwire_pcap_recorder::stage::{CheckpointSource, Core, RecordHandler, Ticker};
use tapwire_plumbing::bus::kafka::{KafkaSink, KafkaSource};
use tapwire_plumbing::consumer::{self, StageContext};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::telemetry;
use tapwire_schemas::topics;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::cli::RecordArgs;
use crate::config::Config;

/// The `[record]` section with the seed's environment variables and the
/// flags applied, checked.
fn settings(config: &Config, args: &RecordArgs) -> anyhow::Result<RecordConfig> {
    let mut rc = config.record.clone();
    rc.apply_env(|k| std::env::var(k).ok());
    if let Some(bucket) = &args.bucket {
        rc.bucket = Some(bucket.clone());
    }
    if let Some(prefix) = &args.prefix {
        rc.prefix = prefix.clone();
    }
    if let Some(endpoint) = &args.endpoint {
        rc.endpoint = Some(endpoint.clone());
    }
    if let Some(region) = &args.region {
        rc.region = Some(region.clone());
    }
    if args.path_style {
        rc.path_style = true;
    }
    if let Some(dir) = &args.directory {
        rc.directory = Some(dir.clone());
        rc.bucket = None;
    }
    if let Some(kfl) = &args.kfl {
        rc.queries.insert(
            tapwire_pcap_recorder::config::ENV_QUERY_NAME.to_owned(),
            kfl.clone(),
        );
    }
    if let Some(dir) = &args.spool_dir {
        rc.spool_dir = dir.clone();
    }
    if let Some(group) = &args.group {
        rc.group = group.clone();
    }
    rc.validate()?;
    Ok(rc)
}

/// Records until shutdown.
pub async fn run(
    config: &Config,
    args: &RecordArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let rc = settings(config, args)?;
    if !rc.recording_on() {
        eprintln!(
            "recording is off: no recording query. Set RECORDING_KFL (e.g. RECORDING_KFL='http or dns'), \
             pass --kfl, or name queries under [record.queries]. Nothing was recorded."
        );
        return Ok(());
    }
    let store = rc.store().await?;
    let ctx = StageContext::new("record", config.consumer.loop_settings(), shutdown.clone());
    let spool = Spool::open(&rc.spool_dir, rc.spool_max_bytes)
        .with_context(|| format!("opening the spool {}", rc.spool_dir.display()))?;
    let uploader = Uploader::new(store.clone(), spool, ctx.metrics.clone());
    let recorder = Recorder::new(rc.recorder_config(), rc.named_queries())?;

    // Pod names: the compacted topic from its start, before the first packet.
    let (tx, mut rx) = mpsc::channel(10_000);
    let (loaded_tx, mut loaded_rx) = oneshot::channel();
    let kafka = config.kafka.clone();
    let follower_stop = shutdown.child_token();
    let stop = follower_stop.clone();
    let mut follower = tokio::spawn(async move { pods::follow(&kafka, tx, loaded_tx, stop).await });
    let mut history = PodHistory::new(rc.pods_max_per_ip, rc.pods_max_ips);
    let loaded = loop {
        tokio::select! {
            Some(record) = rx.recv() => {
                if let tapwire_enricher::enrich::ClusterRecord::Pod(pod) = record {
                    history.apply(&pod);
                }
            }
            n = &mut loaded_rx => match n {
                Ok(n) => break n,
                Err(_) => {
                    let outcome = (&mut follower).await;
                    bail!("pod metadata reader stopped before loading: {outcome:?}");
                }
            },
            _ = shutdown.cancelled() => return Ok(()),
        }
    };
    tracing::info!(
        records = loaded,
        "pod metadata loaded from {}",
        topics::PODS
    );

    let checkpoint = Duration::from_millis(rc.slice_max_age_ms);
    let core = Arc::new(Mutex::new(
        Core::new(
            recorder,
            uploader,
            &rc.prefix,
            checkpoint,
            ctx.metrics.clone(),
        )
        .with_pods(history, rx),
    ));
    if let Some(addr) = config.telemetry.admin_listen {
        let bound = telemetry::serve_admin(addr, ctx.health.clone(), shutdown.clone()).await?;
        tracing::info!(%bound, "admin server listening");
    }
    let source = CheckpointSource::new(
        KafkaSource::new(&config.kafka, &rc.group, &[topics::PACKETS_RAW])?,
        core.clone(),
    )
    .await;
    let dlq = KafkaSink::new(&config.kafka)?;
    let tick = Duration::from_millis(rc.spool_retry_interval_ms.min(1000));
    let ticker = Ticker::spawn(core.clone(), tick, shutdown.clone());
    let queries: Vec<String> = rc
        .queries
        .iter()
        .map(|(n, q)| format!("{n}: {q}"))
        .collect();
    tracing::info!(store = %store.describe(), prefix = %rc.prefix, queries = ?queries, group = %rc.group,
        "recording matching streams");
    let mut handler = RecordHandler::new(core.clone());
    let summary = consumer::run(&ctx, source, &dlq, &mut handler)
        .await
        .context("record stage")?;
    follower_stop.cancel();
    ticker.abort();
    dlq.flush(Duration::from_secs(10))?;
    let core = core.lock().await;
    let tally = core.tally();
    let stats = core.recorder().stats();
    eprintln!(
        "record stopped: {} packets read, {} dead-lettered; {} streams recorded, {} not matching; \
         slices: {} uploaded, {} spooled, {} dropped (spool full); {} slices still spooled",
        summary.messages,
        summary.dead_lettered,
        stats.streams_recorded,
        stats.streams_dropped,
        tally.uploaded,
        tally.spooled,
        tally.dropped,
        core.uploader().spool().len()
    );
    Ok(())
}
