//! Where the time of the enrich, policy and aggregate stages goes: each
//! stage's in-process loop run again in a child process under `perf`
//! (software clock sampling; this machine's VM has no hardware counters),
//! written to the output directory (`--profile-dir`, default
//! `target/bench-profiles`):
//!
//! - `STAGE.stat.txt`: `perf stat` (task clock, page faults, context
//!   switches) of the loop;
//! - `STAGE.perf.data` and `STAGE.report.txt`: `perf record` and the flat
//!   profile (self time per symbol, symbols over 1%), whose top lines the
//!   benchmark also prints.
//!
//! Skipped, with the reason, when `perf` is not on PATH or cannot sample.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// Stages with a profiled loop.
pub const STAGES: [&str; 3] = ["enrich", "policy", "aggregate"];

/// Runs `stage`'s loop for `n` events in this process (the child `perf`
/// starts).
pub fn inner(stage: &str, n: u64) -> anyhow::Result<()> {
    match stage {
        "enrich" => crate::enrich::profile(n),
        "policy" => crate::policy::profile(n),
        "aggregate" => crate::aggregate::profile(n),
        other => anyhow::bail!("no profiled loop for {other:?}; one of {STAGES:?}"),
    }
}

/// Profiles each of `stages` with `n` events into `dir`.
pub fn run(stages: &[&str], n: u64, dir: &Path) -> anyhow::Result<()> {
    if let Err(why) = perf_works() {
        eprintln!("SKIPPED profiles: {why}");
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe()?;
    for stage in stages {
        let child = |perf: &mut Command| {
            perf.arg("--")
                .arg(&exe)
                .args(["--profile-inner", stage, "--codec-events"])
                .arg(n.to_string());
        };
        let stat = dir.join(format!("{stage}.stat.txt"));
        let mut perf = Command::new("perf");
        perf.args([
            "stat",
            "-e",
            "task-clock,page-faults,context-switches",
            "-o",
        ])
        .arg(&stat);
        child(&mut perf);
        check(perf.output()?, "perf stat")?;
        let data = dir.join(format!("{stage}.perf.data"));
        let mut perf = Command::new("perf");
        perf.args(["record", "-q", "-F", "999", "-e", "cpu-clock", "-o"])
            .arg(&data);
        child(&mut perf);
        check(perf.output()?, "perf record")?;
        let report = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "--sort", "symbol"])
            .args(["--percent-limit", "1", "-i"])
            .arg(&data)
            .output()?;
        let text = String::from_utf8_lossy(&report.stdout).into_owned();
        let path = dir.join(format!("{stage}.report.txt"));
        std::fs::write(&path, &text)?;
        eprintln!(
            "profile of {stage} ({n} events; {} and {}):",
            path.display(),
            stat.display()
        );
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(8)
        {
            eprintln!("  {}", line.trim_end());
        }
    }
    Ok(())
}

fn check(out: std::process::Output, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Whether `perf` runs and may sample this user's processes.
fn perf_works() -> Result<(), String> {
    let out = Command::new("perf")
        .args(["stat", "-e", "task-clock", "--", "true"])
        .output()
        .map_err(|e| format!("perf does not run ({e}); Debian: apt-get install linux-perf"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "perf cannot sample here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
