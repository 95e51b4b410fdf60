//! `tapwire policy`: enriched events to verdicts; and `tapwire policy check
//! FILE...`, which parses and compiles policy files and reports every error
//! with file, line and field.

use std::path::PathBuf;
use std::process::ExitCode;

use tapwire_policy_engine::{PolicySet, parse};

/// Checks every file; the exit status says whether all are valid.
pub fn check(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    let mut documents = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("{name}: {err}");
                failed = true;
                continue;
            }
        };
        match parse(&name, &text) {
            Ok(docs) => {
                println!("{name}: {} document(s)", docs.len());
                documents.extend(docs);
            }
            Err(err) => {
                eprintln!("{err}");
                failed = true;
            }
        }
    }
    if !failed {
        match PolicySet::compile(&documents) {
            Ok(set) => println!("ok: {} policies compile", set.len()),
            Err(err) => {
                eprintln!("{err}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs the policy stage until shutdown.
pub async fn run(
    config: &crate::config::Config,
    args: &crate::cli::PolicyArgs,
    shutdown: tapwire_plumbing::shutdown::CancellationToken,
) -> anyhow::Result<()> {
    use std::time::Duration;

    use tapwire_plumbing::bus::kafka::{KafkaSink, KafkaSource};
    use tapwire_plumbing::consumer::{self, StageContext};
    use tapwire_policy_engine::stage::{PolicyFiles, PolicyStage};
    use tapwire_schemas::topics;

    if args.policies.is_empty() {
        anyhow::bail!(
            "name the policy files with --policies FILE (see `tapwire policy check --help`)"
        );
    }
    let policies = PolicyFiles::load(args.policies.clone())?;
    tracing::info!(policies = policies.set().len(), "policies loaded");
    let ctx = StageContext::new("policy", config.consumer.loop_settings(), shutdown.clone());
    if let Some(addr) = config.telemetry.admin_listen {
        let bound =
            tapwire_plumbing::telemetry::serve_admin(addr, ctx.health.clone(), shutdown).await?;
        tracing::info!(%bound, "admin server listening");
    }
    let source = KafkaSource::new(
        &config.kafka,
        &args.group,
        &[topics::L4_ENRICHED, topics::RUNTIME_ENRICHED],
    )?;
    let sink = KafkaSink::new(&config.kafka)?;
    let mut stage = PolicyStage::new(
        policies,
        sink.clone(),
        Duration::from_millis(args.reload_check_ms),
        ctx.metrics.clone(),
    );
    let summary = consumer::run(&ctx, source, &sink, &mut stage).await?;
    sink.flush(Duration::from_secs(10))?;
    eprintln!(
        "policy stopped: {} events judged or passed on, {} dead-lettered",
        summary.messages, summary.dead_lettered
    );
    Ok(())
}
