//! The table every benchmark prints.

use std::time::Duration;

/// One measured figure and its baseline.
pub struct Row {
    pub stage: String,
    pub events_per_s: f64,
    pub baseline_name: String,
    pub baseline_per_s: f64,
    pub peak_rss_mib: f64,
}

/// Events per second for `n` events in `elapsed`.
pub fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Peak resident set size of this process (VmHWM) since the last
/// [`reset_peak_rss`], in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` 5), so that
/// each benchmark reports its own peak rather than the largest so far.
/// Memory the allocator kept from earlier benchmarks still counts.
pub fn reset_peak_rss() {
    if let Err(err) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("peak RSS not reset ({err}): it is the process's peak so far");
    }
}

/// Average bytes per message of the topics the benchmarks wrote or read.
static SIZES: std::sync::Mutex<Vec<(String, f64)>> = std::sync::Mutex::new(Vec::new());

/// Notes the average message size of `topic`, for [`print()`].
pub fn size(topic: &str, bytes_per_message: f64) {
    eprintln!("{topic}: {bytes_per_message:.0} bytes per message");
    SIZES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((topic.to_owned(), bytes_per_message));
}

pub fn print(rows: &[Row]) {
    println!(
        "\n{:<44} {:>14} {:<40} {:>14} {:>7} {:>9}",
        "stage", "events/s", "baseline", "baseline ev/s", "ratio", "peak MiB"
    );
    for r in rows {
        println!(
            "{:<44} {:>14.0} {:<40} {:>14.0} {:>7.2} {:>9.1}",
            r.stage,
            r.events_per_s,
            r.baseline_name,
            r.baseline_per_s,
            r.events_per_s / r.baseline_per_s,
            r.peak_rss_mib
        );
    }
    let sizes = SIZES.lock().unwrap_or_else(|p| p.into_inner());
    if !sizes.is_empty() {
        println!("\n{:<60} {:>14}", "topic", "bytes/message");
        for (topic, bytes) in sizes.iter() {
            println!("{topic:<60} {bytes:>14.0}");
        }
    }
}
