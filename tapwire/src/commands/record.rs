//! `tapwire record`: packets from Kafka to KFL-matched PCAP slices in S3 (or
//! a directory), with pod names from `tapwire.pods`.

use tapwire_plumbing::shutdown::CancellationToken;

use crate::config::Config;

/// Records until shutdown (`[record]`, with the seed's variables and the
/// flags applied at load).
pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let rc = config.record.clone();
    if !rc.recording_on() {
        eprintln!(
            "recording is off: no recording query. Set RECORDING_KFL (e.g. RECORDING_KFL='http or dns'), \
             pass --kfl, or name queries under [record.queries]. Nothing was recorded."
        );
        return Ok(());
    }
    super::stage_alone(config, rc, shutdown).await
}
