//! `tapwire cef`: verdicts from Kafka to a syslog receiver as CEF.

use tapwire_cef_forwarder::config::{Framing, SyslogFormat};
use tapwire_plumbing::shutdown::CancellationToken;

use crate::cli::{CefArgs, FramingArg, SyslogFormatArg};
use crate::config::Config;

/// Runs the forwarder until shutdown.
pub async fn run(
    config: &Config,
    args: &CefArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut cef = config.cef.clone();
    if let Some(target) = &args.target {
        cef.target = target.clone();
    }
    if let Some(framing) = args.framing {
        cef.framing = match framing {
            FramingArg::OctetCounting => Framing::OctetCounting,
            FramingArg::Lf => Framing::Lf,
        };
    }
    if let Some(format) = args.syslog_format {
        cef.syslog_format = match format {
            SyslogFormatArg::Rfc3164 => SyslogFormat::Rfc3164,
            SyslogFormatArg::Rfc5424 => SyslogFormat::Rfc5424,
        };
    }
    if let Some(ca) = &args.ca_file {
        cef.ca_file = Some(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        cef.client_cert_file = Some(cert.clone());
        cef.client_key_file = Some(key.clone());
    }
    if let Some(filter) = &args.filter {
        cef.filter = Some(filter.clone());
    }
    if let Some(name) = &args.cluster_name {
        cef.cluster_name = Some(name.clone());
    }
    if let Some(group) = &args.group {
        cef.group = group.clone();
    }
    super::stage_alone(config, cef, shutdown).await
}
