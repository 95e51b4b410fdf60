//! tapwire's benchmarks. Each prints events/s next to a baseline measured in
//! the same run, and the ratio; none is a pass/fail test.
//!
//! - `codec.rs`: L4 event encode/decode, tapwire's codec (serde_avro_fast)
//!   against apache-avro's `Value` path;
//! - `kafka.rs`: a bare rdkafka consume-and-produce loop through Tansu (the
//!   baseline every stage is compared with) against the same copy done by
//!   tapwire's consumer loop (decode, re-encode, produce, store offsets).
//!
//! - `enrich.rs`: decode+enrich+encode on one core against decode+encode
//!   alone (the enrich stage through Tansu is in `kafka.rs`);
//! - `policy.rs`: verdicts with 1,000 rules against decode+encode alone;
//! - `cef.rs`: CEF formatting against JSON serialization of the same verdicts,
//!   and forwarding over TCP to syslog-ng against a bare socket.
//! - `aggregate.rs`: decode + connection-count pre-aggregation of verdicts
//!   (1,000 pod pairs, batches of 50,000) against decoding alone, with the
//!   rows out (ratio column = events per count row); and the aggregate
//!   stage's `handle` into a real ClickHouse (`TAPWIRE_CLICKHOUSE_URL`,
//!   skipped with the reason when unreachable), events/s in and rows/s out,
//!   against a bare clickhouse-crate insert of as many rows;
//! - `record.rs`: the recorder (reassembly, KFL `tcp and port 80`, slices
//!   written to disk) over a generated ~200 MB HTTP pcap, packets/s and
//!   Gbit/s, against `tcpdump -r IN -w OUT 'tcp port 80'` on the same file
//!   (tshark `-Y` when tcpdump is missing, labelled so);
//! - `capture.rs`: `tapwire capture`'s pcap replay into a private Tansu
//!   against the bare rdkafka producer sending the same packet records
//!   (`synth.rs` writes the pcaps of both);
//! - `ebpf.rs`: the connection events/s `tapwire capture --source ebpf`
//!   delivers with no ring-buffer loss, and the rate where loss starts
//!   (loopback connections at increasing rates, as root; skipped with the
//!   reason otherwise), against the connection events the same generator
//!   makes with no eBPF attached.
//! - `enforce.rs`: UDP connects/s from a pod's cgroup with the agent's
//!   enforcement programs attached and 0, 100 and 10,000 denials, against
//!   no program attached; and the time from a policy change on
//!   `tapwire.enforcement` to the kernel refusing (or letting through) the
//!   connect (as root; skipped with the reason otherwise).
//! - `scan.rs`: scanning recorded traffic on one core with 100 generated
//!   YARA rules (plus the built-in ones) and the secret detectors:
//!   `scan_capture` over a generated ~64 MiB HTTP pcap (planted secrets and
//!   EICAR strings), payload and capture-file MB/s, against one
//!   `Session::scan` over the same payload concatenated (no reassembly),
//!   `grep -c -F -f` with the rules' literals and `yr scan` (yara-x's
//!   command line, skipped with the reason when missing) on the same file.
//!
//! - `scale.rs`: the policy stage through Tansu with 1, 2 and 4 member
//!   processes in one group on 8 partitions, total verdicts/s;
//! - `profile.rs`: `perf stat` and `perf record` of the enrich, policy and
//!   aggregate loops into `--profile-dir`, with the top symbols printed.
//!
//! Below the table: the average bytes per message of the topics the
//! benchmarks read and write.
//!
//! The peak RSS column is each benchmark's own (the peak is reset before
//! each one; what the allocator kept from earlier ones still counts).
//!
//! Run: `cargo run --release -p tapwire-bench -- all` (see `--help`).

mod aggregate;
mod capture;
mod cef;
mod codec;
mod ebpf;
mod enforce;
mod enrich;
mod kafka;
mod policy;
mod profile;
mod record;
mod report;
mod scale;
mod scan;
mod synth;

use clap::{Parser, ValueEnum};

/// Benchmarks with in-run baselines.
#[derive(Debug, Parser)]
#[command(name = "tapwire-bench")]
struct Args {
    /// Which benchmark (the enrich stage through Tansu runs with `kafka`).
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Events per codec measurement.
    #[arg(long, default_value_t = 1_000_000)]
    codec_events: u64,
    /// Events through Kafka.
    #[arg(long, default_value_t = 200_000)]
    kafka_events: u64,
    /// Messages forwarded to syslog-ng.
    #[arg(long, default_value_t = 200_000)]
    cef_forward_events: u64,
    /// Events through the aggregate stage into ClickHouse (batches of 50,000).
    #[arg(long, default_value_t = 200_000)]
    clickhouse_events: u64,
    /// Size of the pcap the recorder reads, in MiB.
    #[arg(long, default_value_t = 200)]
    record_mib: u64,
    /// Size of the pcap replayed into Kafka, in MiB.
    #[arg(long, default_value_t = 50)]
    capture_mib: u64,
    /// Seconds per offered rate in the eBPF benchmark.
    #[arg(long, default_value_t = 4)]
    ebpf_step_secs: u64,
    /// Where `profile` (and `all`) writes perf data and reports.
    #[arg(long, default_value = "target/bench-profiles")]
    profile_dir: std::path::PathBuf,
    /// Internal: run one stage's loop for `--codec-events` events (what
    /// `profile` runs under perf).
    #[arg(long, hide = true)]
    profile_inner: Option<String>,
    /// Internal: run as a member of the scaling benchmark's group.
    #[arg(long, hide = true)]
    scale_member: Option<String>,
    /// Internal: the scaling member's brokers.
    #[arg(long, hide = true, default_value = "")]
    scale_brokers: String,
    /// Internal: the scaling member's INPUT,OUTPUT topics.
    #[arg(long, hide = true, default_value = "")]
    scale_topics: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Codec,
    Kafka,
    Cef,
    Enrich,
    Policy,
    Aggregate,
    Record,
    Capture,
    Ebpf,
    Enforce,
    Scan,
    /// The policy stage through Tansu with 1, 2 and 4 processes.
    Scale,
    /// perf profiles of the enrich, policy and aggregate loops.
    Profile,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(stage) = &args.profile_inner {
        return profile::inner(stage, args.codec_events);
    }
    if let Some(group) = &args.scale_member {
        return scale::member(group, &args.scale_brokers, &args.scale_topics);
    }
    let mut rows = Vec::new();
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Codec) {
        rows.extend(codec::run(args.codec_events)?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Kafka) {
        rows.extend(kafka::run(args.kafka_events)?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Enrich) {
        rows.extend(enrich::run(args.codec_events)?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Policy) {
        rows.extend(policy::run(args.codec_events / 4)?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Cef) {
        rows.extend(cef::run(args.codec_events, args.cef_forward_events)?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Aggregate) {
        rows.extend(aggregate::run(args.codec_events, args.clickhouse_events)?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Record) {
        rows.extend(record::run(args.record_mib)?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Capture) {
        rows.extend(capture::run(args.capture_mib)?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Ebpf) {
        rows.extend(ebpf::run(args.ebpf_step_secs)?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Enforce) {
        rows.extend(enforce::run()?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Scan) {
        rows.extend(scan::run()?);
    }
    report::reset_peak_rss();
    if matches!(args.which, Which::All | Which::Scale) {
        rows.extend(scale::run(args.kafka_events)?);
    }
    if matches!(args.which, Which::All | Which::Profile) {
        profile::run(&profile::STAGES, args.codec_events * 2, &args.profile_dir)?;
    }
    report::print(&rows);
    Ok(())
}
