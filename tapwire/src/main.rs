//! The `tapwire` binary: parses the command line, loads the configuration,
//! starts logging and hands over to `commands/`. Nothing else lives here.
//!
//! - `cli.rs`: clap definitions, one subcommand per stage;
//! - `commands/`: what each subcommand does;
//! - `config.rs`: the configuration file, assembled from every crate's section;
//! - `json.rs`: JSON views of events.

mod cli;
mod commands;
mod config;
mod json;

use std::process::ExitCode;

use clap::Parser;
use tapwire_plumbing::config::Layers;
use tapwire_plumbing::{shutdown, telemetry};

use cli::{Cli, Command, KflCommand, TopicsCommand};
use config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();

    if let Command::Policy(cli::PolicyArgs {
        command: Some(cli::PolicyCommand::Check { files }),
        ..
    }) = &cli.command
    {
        return commands::policy::check(files);
    }
    if let Command::Kfl(KflCommand::Check { query }) = &cli.command {
        return match tapwire_kfl::compile_dissected(query) {
            Ok(filter) => {
                println!("{filter}");
                if let Some(n) = filter.limit() {
                    println!("limit: {n}");
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{}", err.render(query));
                ExitCode::FAILURE
            }
        };
    }
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = match telemetry::init(&config.telemetry) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, &config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast_ref::<commands::scan::Outcome>() {
            Some(outcome) => ExitCode::from(outcome.code()),
            None => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// One load: defaults, the file, the seed's variables, `TAPWIRE_*`, flags.
fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let layers = Layers {
        seed_variables: Config::seed_variables(),
        flags: cli.overrides(),
    };
    Ok(tapwire_plumbing::config::load_layered(
        cli.global.config.as_deref(),
        &layers,
    )?)
}

async fn dispatch(command: Command, config: &Config) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signals();
    match command {
        Command::Topics(TopicsCommand::Create(args)) => {
            commands::topics::create(config, &args).await
        }
        Command::Topics(TopicsCommand::List) => commands::topics::list(config).await,
        Command::Topics(TopicsCommand::Generate(args)) => {
            commands::topics::generate(config, &args, shutdown).await
        }
        Command::Topics(TopicsCommand::Tail(args)) => {
            commands::topics::tail(config, &args, shutdown).await
        }
        Command::Demo(args) => commands::demo::run(config, &args, shutdown).await,
        Command::Cef(_) => commands::cef::run(config, shutdown).await,
        Command::Enrich(_) => commands::enrich::run(config, shutdown).await,
        Command::K8sWatch(args) => commands::enrich::k8s_watch(config, &args, shutdown).await,
        Command::Policy(_) => commands::policy::run(config, shutdown).await,
        Command::Record(_) => commands::record::run(config, shutdown).await,
        Command::Capture(args) => commands::capture::run(config, &args, shutdown).await,
        Command::Investigate(args) => commands::investigate::run(config, &args, shutdown).await,
        Command::Scan(args) => commands::scan::run(config, &args).await,
        Command::Scanner(_) => commands::scan::scanner(config, shutdown).await,
        Command::Aggregate(args) => commands::aggregate::run(config, &args, shutdown).await,
        Command::Serve(_) => commands::aggregate::serve(config, shutdown).await,
        Command::Query(command) => commands::aggregate::query(config, &command).await,
        Command::Run(args) => commands::run::run(config, &args, shutdown).await,
        other => anyhow::bail!("{other:?} is handled before dispatch"),
    }
}
