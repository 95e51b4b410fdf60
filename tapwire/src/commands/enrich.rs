//! `tapwire enrich`: raw events plus pod metadata to enriched events; and
//! `tapwire k8s-watch`, which publishes that pod metadata.

use std::time::Duration;

use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::topics;

use crate::cli::K8sWatchArgs;
use crate::config::Config;

/// Loads the pod metadata, then enriches until shutdown (`[enrich]`, its
/// flags applied at load).
pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    super::stage_alone(config, config.enrich.clone(), shutdown).await
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
        tapwire_cluster::k8s::watch_pods(args.namespace.as_deref(), &sink, &id, shutdown).await?;
    sink.flush(Duration::from_secs(10))?;
    eprintln!(
        "k8s-watch stopped: {published} pod records published to {}",
        topics::PODS
    );
    Ok(())
}
