//! `tapwire enrich`: raw events plus pod metadata to enriched events; and
//! `tapwire k8s-watch`, which publishes that pod metadata.

use std::time::Duration;

use anyhow::{Context, bail};
use tapwire_enricher::pods;
use tapwire_enricher::stage::EnrichStage;
use tapwire_plumbing::bus::kafka::{KafkaSink, KafkaSource};
use tapwire_plumbing::consumer::{self, StageContext};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::telemetry;
use tapwire_schemas::topics;
use tokio::sync::{mpsc, oneshot};

use crate::cli::{EnrichArgs, K8sWatchArgs};
use crate::config::Config;

/// Loads the pod metadata, then enriches until shutdown.
pub async fn run(
    config: &Config,
    args: &EnrichArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut ec = config.enrich.clone();
    if let Some(group) = &args.group {
        ec.group = group.clone();
    }
    if let Some(ms) = args.metadata_wait_ms {
        ec.metadata_wait_ms = ms;
    }
    let mut enricher = ec.build()?;

    let (tx, mut rx) = mpsc::channel(10_000);
    let (loaded_tx, mut loaded_rx) = oneshot::channel();
    let kafka = config.kafka.clone();
    let follower_stop = shutdown.child_token();
    let stop = follower_stop.clone();
    let mut follower = tokio::spawn(async move { pods::follow(&kafka, tx, loaded_tx, stop).await });

    // Rebuild the state from the compacted topic before the first event.
    let loaded = loop {
        tokio::select! {
            Some(record) = rx.recv() => enricher.apply(record),
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
    while let Ok(record) = rx.try_recv() {
        enricher.apply(record);
    }
    tracing::info!(
        records = loaded,
        pods = enricher.index().len(),
        "pod metadata loaded from {}",
        topics::PODS
    );

    let ctx = StageContext::new("enrich", config.consumer.loop_settings(), shutdown.clone());
    if let Some(addr) = config.telemetry.admin_listen {
        let bound = telemetry::serve_admin(addr, ctx.health.clone(), shutdown.clone()).await?;
        tracing::info!(%bound, "admin server listening");
    }
    let source = KafkaSource::new(
        &config.kafka,
        &ec.group,
        &[topics::L4_RAW, topics::RUNTIME_RAW],
    )?;
    let sink = KafkaSink::new(&config.kafka)?;
    let mut stage = EnrichStage::new(
        enricher,
        rx,
        sink.clone(),
        Duration::from_millis(ec.metadata_wait_ms),
        ctx.metrics.clone(),
    );
    let summary = consumer::run(&ctx, source, &sink, &mut stage)
        .await
        .context("enrich stage")?;
    follower_stop.cancel();
    sink.flush(Duration::from_secs(10))?;
    eprintln!(
        "enrich stopped: {} events read, {} dead-lettered, {} sides unresolved",
        summary.messages,
        summary.dead_lettered,
        stage.enricher().tally.unresolved
    );
    Ok(())
}

/// Publishes pod metadata from the Kubernetes API until shutdown.
pub async fn k8s_watch(
    config: &Config,
    args: &K8sWatchArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let id = args.watcher_id.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "k8s-watch".to_owned())
    });
    let sink = KafkaSink::new(&config.kafka)?;
    let published =
        tapwire_enricher::k8s::watch_pods(args.namespace.as_deref(), &sink, &id, shutdown).await?;
    sink.flush(Duration::from_secs(10))?;
    eprintln!(
        "k8s-watch stopped: {published} pod records published to {}",
        topics::PODS
    );
    Ok(())
}
