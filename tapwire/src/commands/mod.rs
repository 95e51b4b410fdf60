//! One module per subcommand family; each function takes parsed arguments
//! and the loaded configuration, and returns when the work is done. A
//! consumer stage's command only applies its flags to its section and hands
//! the section (the stage's declaration) to [`stage_alone`].

pub mod aggregate;
pub mod capture;
pub mod cef;
pub mod demo;
pub mod enrich;
pub mod investigate;
pub mod policy;
pub mod record;
pub mod recordings;
pub mod run;
pub mod scan;
pub mod tail;
pub mod topics;

use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::stage::{Alone, Stage, run_alone};

/// How a stage runs alone: the shared `[kafka]`, `[consumer]` and
/// `[telemetry]` sections.
pub fn alone(config: &Config) -> Alone {
    Alone {
        kafka: config.kafka.clone(),
        settings: config.consumer.loop_settings(),
        admin_listen: config.telemetry.admin_listen,
    }
}

use crate::config::Config;

/// Runs `stage` alone over Kafka until `shutdown`, with the shared
/// sections of `config`, and prints its summary line.
pub async fn stage_alone<S: Stage>(
    config: &Config,
    stage: S,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let report = run_alone(stage, &alone(config), shutdown).await?;
    eprintln!("{} stopped: {}", report.name, report.line());
    Ok(())
}
