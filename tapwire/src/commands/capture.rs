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
    let mut cc = config.capture.clone();
    if let Some(name) = &args.node_name {
        cc.node_name = Some(name.clone());
    }
    if let Some(id) = &args.sensor_id {
        cc.sensor_id = Some(id.clone());
    }
    if !args.interfaces.is_empty() {
        cc.packets.interfaces = args.interfaces.clone();
    }
    if let Some(filter) = &args.capture_filter {
        cc.packets.filter = Some(filter.clone());
    }
    if let Some(snaplen) = args.snaplen {
        cc.packets.snaplen_bytes = snaplen;
    }
    if let Some(ms) = args.inventory_interval_ms {
        cc.inventory.interval_ms = ms;
    }
    if args.no_derive {
        cc.derive.enabled = false;
    }
    cc.validate()?;
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
    let agent = Agent::new(cc, sources);
    let identity = agent.identity().clone();
    eprintln!(
        "capture: node {} sensor {}",
        identity.node, identity.sensor_id
    );
    let summary = Arc::new(Summary::default());
    let result = produce_alone("capture", &super::alone(config), shutdown, |sink, stop| {
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
