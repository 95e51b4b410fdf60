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
    shutdown: tapwire_plumbing::shutdown::CancellationToken,
) -> anyhow::Result<()> {
    let policy = config.policy.clone();
    if policy.files.is_empty() {
        anyhow::bail!(
            "name the policy files with --policies FILE or policy.files \
             (see `tapwire policy check --help`)"
        );
    }
    super::stage_alone(config, policy, shutdown).await
}
