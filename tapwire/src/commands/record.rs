//! `tapwire record`: packets from Kafka to KFL-matched PCAP slices in S3 (or
//! a directory), with pod names from `tapwire.pods`.

use tapwire_plumbing::shutdown::CancellationToken;

use crate::config::Config;

/// Records until shutdown (`[record]`, with the seed's variables and the
/// flags applied at load). Without any query the stage still runs: it
/// reads the packets, records nothing and says so, until a query appears in
/// `record.queries_dir`.
pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let rc = config.record.clone();
    if !rc.recording_on() && rc.queries_dir.is_none() {
        eprintln!(
            "recording is off: no recording query. Set RECORDING_KFL (e.g. RECORDING_KFL='http or dns'), \
             pass --kfl, name queries under [record.queries] or put NAME.kfl files in \
             record.queries_dir. Packets are read and not recorded."
        );
    }
    super::stage_alone(config, rc, shutdown).await
}
