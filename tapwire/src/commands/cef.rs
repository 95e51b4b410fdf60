//! `tapwire cef`: verdicts from Kafka to a syslog receiver as CEF.

use std::time::Duration;

use anyhow::Context;
use tapwire_cef_forwarder::config::{Framing, SyslogFormat};
use tapwire_cef_forwarder::stage::CefStage;
use tapwire_plumbing::bus::kafka::{KafkaSink, KafkaSource};
use tapwire_plumbing::consumer::{self, StageContext};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::telemetry;

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
    cef.validate()?;

    let ctx = StageContext::new("cef", config.consumer.loop_settings(), shutdown.clone());
    let mut stage =
        CefStage::new(&cef, ctx.metrics.clone()).context("setting up the syslog sender")?;
    let topics: Vec<&str> = cef.topics.iter().map(String::as_str).collect();
    let source = KafkaSource::new(&config.kafka, &cef.group, &topics)?;
    let dlq = KafkaSink::new(&config.kafka)?;
    if let Some(addr) = config.telemetry.admin_listen {
        let bound = telemetry::serve_admin(addr, ctx.health.clone(), shutdown).await?;
        tracing::info!(%bound, "admin server listening");
    }
    tracing::info!(target = %cef.target, group = %cef.group, "forwarding verdicts as CEF");
    let summary = consumer::run(&ctx, source, &dlq, &mut stage).await?;
    dlq.flush(Duration::from_secs(10))?;
    eprintln!(
        "cef stopped: {} verdicts read, {} dead-lettered",
        summary.messages, summary.dead_lettered
    );
    Ok(())
}
