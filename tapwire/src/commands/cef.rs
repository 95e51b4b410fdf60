//! `tapwire cef`: verdicts from Kafka to a syslog receiver as CEF.

use tapwire_plumbing::shutdown::CancellationToken;

use crate::config::Config;

/// Runs the forwarder until shutdown (`[cef]`, its flags applied at load).
pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    super::stage_alone(config, config.cef.clone(), shutdown).await
}
