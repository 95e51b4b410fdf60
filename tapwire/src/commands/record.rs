//! `tapwire record`: packets from Kafka to KFL-matched PCAP slices in S3 (or
//! a directory), with pod names from `tapwire.pods`.

use tapwire_pcap_recorder::config::RecordConfig;
use tapwire_plumbing::shutdown::CancellationToken;

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
    super::stage_alone(config, rc, shutdown).await
}
