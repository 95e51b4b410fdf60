//! `tapwire capture`: the node agent, producing to the raw topics.

use std::sync::Arc;

use anyhow::Context;
use tapwire_capture::{Agent, SourceSpec, Summary};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::stage::produce_alone;

use crate::cli::CaptureArgs;
use crate::config::Config;

/// Runs the chosen sources until shutdown, or until the replays are done
/// when only pcap files were given.
pub async fn run(
    config: &Config,
    args: &CaptureArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cc = config.capture.clone();
    let sources = (!args.sources.is_empty()).then(|| {
        args.sources
            .iter()
            .cloned()
            .map(|s| match s {
                SourceSpec::Pcap { path, .. } => SourceSpec::Pcap {
                    path,
                    realtime: args.realtime,
                },
                other => other,
            })
            .collect::<Vec<_>>()
    });
    let alone = super::alone(config);
    let agent =
        Agent::new(cc, sources).with_bus(tapwire_plumbing::stage::Bus::Kafka(alone.kafka.clone()));
    let identity = agent.identity().clone();
    eprintln!(
        "capture: node {} sensor {}",
        identity.node, identity.sensor_id
    );
    let summary = Arc::new(Summary::default());
    let result = produce_alone("capture", &alone, shutdown, |sink, stop| {
        agent.run(sink, stop, summary.clone())
    })
    .await
    .context("flushing the producer")?;
    eprintln!(
        "capture stopped: {} packets, {} L4 events, {} DNS events, {} runtime events, {} inventory snapshots, {} lost",
        Summary::get(&summary.packets),
        Summary::get(&summary.l4_events),
        Summary::get(&summary.dns_events),
        Summary::get(&summary.runtime_events),
        Summary::get(&summary.inventory_snapshots),
        Summary::get(&summary.lost),
    );
    result.map_err(Into::into)
}
