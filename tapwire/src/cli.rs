//! The command line: global options and one subcommand per stage.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tapwire_aggregator::config::{AggregateFlags, ClickHouseFlags, ServeFlags};
use tapwire_capture::config::CaptureFlags;
use tapwire_cef_forwarder::config::CefFlags;
use tapwire_enricher::config::EnrichFlags;
use tapwire_pcap_recorder::config::{RecordFlags, S3Flags};
use tapwire_policy_engine::config::PolicyFlags;

/// tapwire: Kubernetes network and runtime security telemetry, as a
/// stream-processing pipeline.
///
/// Node agents capture connections, packets and process/file events; Kafka
/// carries them; independent stages enrich them with pod context, judge them
/// against audit/enforce policies, count connections into ClickHouse, forward
/// CEF to your SIEM over syslog, and record KFL-matched traffic as PCAP in S3.
///
/// Each stage is a subcommand and its own consumer group; `tapwire run` puts
/// them all in one process over an in-memory bus.
#[derive(Debug, Parser)]
#[command(
    name = "tapwire",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML); see deploy/tapwire.example.toml. Later
    /// layers win: the file, then NODE_NAME, S3_BUCKET, AWS_REGION and
    /// RECORDING_KFL, then TAPWIRE_SECTION__KEY variables (e.g.
    /// TAPWIRE_KAFKA__BROKERS), then flags.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "TAPWIRE_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Kafka bootstrap servers (overrides kafka.brokers).
    #[arg(long, global = true, value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,

    /// librdkafka property passed through as is, e.g. -X session.timeout.ms=6000
    /// (repeatable; overrides kafka.options).
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_option: Vec<(String, String)>,

    /// Log format (overrides telemetry.log_format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,

    /// Serve /metrics and /healthz on this address (overrides telemetry.admin_listen).
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub admin_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Node agent: /proc/net inventory, live packet capture or pcap replay
    /// (with DNS and L4 events derived from the packets), to the raw topics.
    /// Sources that cannot run here are named with the capability they lack;
    /// the others run.
    #[command(after_help = CAPTURE_EXAMPLES)]
    Capture(CaptureArgs),
    /// Watch pods in the Kubernetes API and publish their metadata to the
    /// compacted tapwire.pods topic (deleted pods keep a record with an end time).
    K8sWatch(K8sWatchArgs),
    /// Attach pod context (pod, namespace, container, node, labels, workload,
    /// or host/external with DNS name) to raw events, by the time they happened.
    Enrich(EnrichArgs),
    /// Judge every enriched event against audit/enforce policies; `policy check`
    /// validates policy files.
    Policy(PolicyArgs),
    /// Count connections per minute and store network events, flows,
    /// verdicts, runtime events and inventory heartbeats in ClickHouse
    /// (schema migrated at start; offsets stored after each insert).
    #[command(after_help = AGGREGATE_EXAMPLES)]
    Aggregate(AggregateArgs),
    /// The web console and its HTTP JSON API over ClickHouse, behind sign-in
    /// (open http://LISTEN/ in a browser): the network graph with its
    /// Audit-mode, Enforce-mode and Other tabs, paged connections, listeners,
    /// flows, per-sensor summaries and Investigate.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Print a view from ClickHouse as a table (e.g. the connections of the
    /// last 15 minutes), or run your own SQL.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Forward verdicts as CEF over syslog (UDP, TCP, TLS) to a SIEM: one
    /// message per verdict, offsets stored only after TCP/TLS flushed it.
    Cef(CefArgs),
    /// Record KFL-matched L4 streams from tapwire.packets.raw as PCAP slices
    /// with a JSON index, to S3 (or a directory); spools while S3 is down.
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// Search recorded PCAP offline (S3, a directory or a pcap/pcapng file),
    /// without a cluster or Kafka: one row per matching exchange (HTTP
    /// request and response, DNS query and answer; --streams: per stream),
    /// and the matching streams written as one PCAP.
    #[command(after_help = INVESTIGATE_EXAMPLES)]
    Investigate(InvestigateArgs),
    /// Run a scanner: take scan jobs one at a time from tapwire.scan.jobs
    /// (the scanners share them as one consumer group), scan recorded
    /// slices and pod specs (and with --node, the node's containers), and
    /// publish statuses, findings and Free/Busy heartbeats.
    #[command(after_help = SCANNER_EXAMPLES)]
    Scanner(ScannerArgs),
    /// Scan recorded traffic offline (S3, a directory of slices, or a
    /// pcap/pcapng file), or a directory tree with --tree, for secrets
    /// (credentials, keys, tokens, card numbers; excerpts redacted) and
    /// malware (YARA rules: built-in, plus --rules); no Kafka needed.
    #[command(after_help = SCAN_EXAMPLES)]
    Scan(ScanArgs),
    /// Check KFL queries (the filter language of record, investigate, policy
    /// conditions and cef.filter).
    #[command(subcommand)]
    Kfl(KflCommand),
    /// Create, list, fill and read the pipeline's Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Every stage in one process over an in-memory bus: capture (a pcap
    /// replay, or live sources) -> enrich -> policy -> connection counts in
    /// memory, CEF to a file or stdout, PCAP slices to a directory; then the
    /// connections view. No Kafka, ClickHouse or S3 needed.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Show tapwire working with nothing installed: bundled traffic of one
    /// node (HTTP between pods, database sessions, DNS, HTTPS out, calls to
    /// the cloud metadata address, a refused connect, three malformed
    /// messages) through every stage of `tapwire run`, with example audit
    /// and enforce policies: what each stage did, the Audit-mode,
    /// Enforce-mode and Other tabs, CEF samples, recorded PCAP slices and
    /// the dead letters.
    Demo(DemoArgs),
}

const CAPTURE_EXAMPLES: &str = "\
Examples:
  # Replay a capture as fast as the broker takes it, then exit
  tapwire capture --source pcap:traffic.pcap
  # Replay at the speed it was captured
  tapwire capture --source pcap:traffic.pcapng --realtime
  # The node agent as configured ([capture] section), named after the node
  NODE_NAME=node-1 tapwire capture -c tapwire.toml
  # Inventory heartbeat every 5 s and live capture of DNS on eth0
  tapwire capture --source inventory --source packets --interface eth0 \\
      --capture-filter 'udp port 53' --inventory-interval-ms 5000

Sources: inventory (/proc/net sockets with pid and binary, to tapwire.inventory),
packets (AF_PACKET via libpcap, to tapwire.packets.raw keyed by flow hash; DNS
and L4 events derived to tapwire.l4.raw), pcap:FILE (the same from a pcap or
pcapng file), ebpf (tracepoints: TCP connect/accept/listen/close with bytes and
final state, UDP connects, exec/exit, file events; needs CAP_BPF and CAP_PERFMON
or root, and an agent built with clang: without it the agent says so).";

/// `tapwire capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Source to run (repeatable): inventory, packets, ebpf or pcap:FILE.
    /// Default: the sources enabled in the `[capture]` section.
    #[arg(long = "source", value_name = "SOURCE")]
    pub sources: Vec<tapwire_capture::SourceSpec>,
    /// Replay pcap files at the speed they were captured.
    #[arg(long)]
    pub realtime: bool,
    #[command(flatten)]
    pub flags: CaptureFlags,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create every pipeline topic that is missing (tapwire.pods compacted).
    /// Safe to run again: existing topics are left as they are.
    Create(CreateArgs),
    /// List the topics the brokers have, with partition counts.
    List,
    /// Produce synthetic L4 flow events (load tests, smoke tests, benchmarks).
    Generate(GenerateArgs),
    /// Read topics as a consumer group and print every message, decoded, one
    /// per line. Undecodable messages go to tapwire.dlq; tailing tapwire.dlq
    /// prints each dead letter's reason and origin.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Partitions per topic (overrides topics.partitions).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor (overrides topics.replication_factor).
    #[arg(long)]
    pub replication_factor: Option<i32>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// How many events.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Topic to produce to.
    #[arg(long, default_value = tapwire_schemas::topics::L4_RAW)]
    pub topic: String,
    /// Spread the events over this many nodes (the record key), round robin.
    #[arg(long, default_value_t = 16)]
    pub nodes: u64,
    /// Events per second; 0 for as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Records per produce batch (each batch waits for its delivery reports).
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// Part of every event id; the same run id and count give the same ids.
    /// Default: the current time.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Sensor id written into every event.
    #[arg(long, default_value = "generator")]
    pub sensor_id: String,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TailFormat {
    /// One JSON object per line.
    Json,
    /// One short line per message.
    Text,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topics to read.
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Consumer group; members of one group share the partitions and resume
    /// where the group stopped.
    #[arg(long, default_value = "tapwire-tail")]
    pub group: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: TailFormat,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// HTTP calls from web-1 to api-0 in the bundled traffic (the rest of
    /// the traffic scales with it).
    #[arg(long, default_value_t = 500)]
    pub events: u64,
    /// Where the traffic, the policies and the recorded slices are written
    /// (default: a new directory under the system's temp dir).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Then serve the web console over the results on ADDR (e.g.
    /// 127.0.0.1:8080) until Ctrl-C, printing a one-time sign-in link.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

const RUN_EXAMPLES: &str = "\
Examples:
  # A capture file through every stage, with your cluster and policies
  kubectl get pods,nodes,services -A -o json > cluster.json
  tapwire run --pcap traffic.pcap --cluster cluster.json --policies policies.yaml \\
      --cef-out cef.log --record-dir recordings --kfl 'http or dns'
  # CEF lines on stdout (the report then goes to stderr)
  tapwire run --pcap traffic.pcap --policies policies.yaml --cef-out -
  # Live, on this machine (needs root or the capabilities `capture` names)
  sudo tapwire run --source packets --source inventory

Without --cluster every address is host or external; without --policies every
verdict is mode other. `tapwire demo` shows it all on bundled traffic.";

/// `tapwire run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A pcap or pcapng file to replay (repeatable).
    #[arg(long, value_name = "FILE")]
    pub pcap: Vec<PathBuf>,
    /// Replay at capture speed instead of as fast as possible.
    #[arg(long)]
    pub realtime: bool,
    /// A live capture source: inventory, packets, ebpf (repeatable).
    #[arg(long = "source", value_name = "SOURCE")]
    pub sources: Vec<tapwire_capture::agent::SourceSpec>,
    /// Pods, nodes and Services: the output of
    /// `kubectl get pods,nodes,services -A -o json`.
    #[arg(long, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Policy files (YAML, see `tapwire policy check --help`).
    #[arg(long = "policies", value_name = "FILE", num_args = 1..)]
    pub policies: Vec<PathBuf>,
    /// Write CEF lines to FILE (`-`: stdout). Default: only samples in the report.
    #[arg(long, value_name = "FILE")]
    pub cef_out: Option<PathBuf>,
    /// Record matching streams as PCAP slices into DIR.
    #[arg(long, value_name = "DIR")]
    pub record_dir: Option<PathBuf>,
    /// Recording query (default: $RECORDING_KFL, else "http or dns").
    #[arg(long, value_name = "QUERY")]
    pub kfl: Option<String>,
    /// Serve the web console over the run's counts on ADDR while it runs,
    /// printing a one-time sign-in link (no ClickHouse needed).
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

#[derive(Debug, Args)]
pub struct CefArgs {
    #[command(flatten)]
    pub flags: CefFlags,
}

#[derive(Debug, Args)]
pub struct EnrichArgs {
    #[command(flatten)]
    pub flags: EnrichFlags,
}

#[derive(Debug, Args)]
pub struct K8sWatchArgs {
    /// Watch one namespace only (default: all; needs the ClusterRole in
    /// deploy/k8s-watch-rbac.yaml).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Written as the sensor id of every record. Default: the host name.
    #[arg(long)]
    pub watcher_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KflCommand {
    /// Parse a query: print its canonical, fully parenthesized form, or the
    /// error with a caret under the fault (exit status 1).
    Check {
        /// The query, e.g. 'http and response.status == r"4.*"'.
        query: String,
    },
}

const RECORD_EXAMPLES: &str = "\
Examples:
  # The seed's variables: record HTTP and DNS streams to a bucket
  AWS_REGION=us-east-2 S3_BUCKET=evidence RECORDING_KFL='http or dns' tapwire record

  # An S3-compatible store (SeaweedFS, MinIO): endpoint and path-style addressing
  tapwire record --bucket evidence --endpoint http://127.0.0.1:8333 --path-style \\
      --kfl 'http and request.method == \"POST\"'

  # No S3: slices to a local directory
  tapwire record --directory /var/lib/tapwire/recordings --kfl dns

Without any query (RECORDING_KFL, --kfl or [record.queries]) recording is off and the
command says so. Offsets are stored only after the slices holding their packets were
uploaded or written to the spool; see [record] in deploy/tapwire.example.toml.";

const INVESTIGATE_EXAMPLES: &str = "\
Examples:
  # Every DNS question recorded in the last two hours, from a bucket
  tapwire investigate s3://evidence/tapwire --kfl dns --since 2h

  # GET requests to one service, as JSON lines, and their packets as one PCAP
  tapwire investigate s3://evidence/tapwire/node-a \\
      --kfl 'http and request.method == \"GET\" and dst.port == 8080' \\
      --format json --write get.pcap

  # A directory of slices, or a single capture file (indexed on the fly)
  tapwire investigate ./recordings --kfl 'response.status >= 500'
  tapwire investigate capture.pcap --kfl 'http' --write http-only.pcap

S3 endpoint, region and path style come from [record] or the flags; credentials from
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the other standard AWS sources.
Times (--since/--until): RFC 3339, a date, epoch seconds, or a duration ago (15m, 2h, 7d).";

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub flags: RecordFlags,
}

const SCANNER_EXAMPLES: &str = "\
Examples:
  # Two scanners share the queue (run each on its own machine or pod)
  tapwire --brokers kafka:9092 scanner --id scanner-1 --rules /etc/tapwire/rules
  tapwire --brokers kafka:9092 scanner --id scanner-2 --rules /etc/tapwire/rules

  # Queue every slice of a bucket for the scanners
  tapwire --brokers kafka:9092 scan s3://evidence/tapwire --enqueue

A job's statuses (tapwire.scan.status): Pending -> In progress -> Parsing results ->
Finished, or Error. An attempt without a result (time-out, store unreachable) goes back
to Pending with its reason; the third is Error. Jobs of one partition start in the order
they were queued; a retried job goes to the back of its partition.";

#[derive(Debug, Args)]
pub struct ScannerArgs {
    #[command(flatten)]
    pub flags: tapwire_scanner::config::ScanFlags,
    #[command(flatten)]
    pub s3: S3Flags,
}

const SCAN_EXAMPLES: &str = "\
Examples:
  # Every slice of a bucket (pod names from the slices' indexes)
  tapwire scan s3://evidence/tapwire --endpoint http://127.0.0.1:8333 --path-style

  # A capture file, with your own YARA rules, as JSON lines
  tapwire scan capture.pcapng --rules ./rules/ --format json

  # A container's filesystem as the node sees it
  tapwire scan --tree /proc/4242/root

Findings: kind (sensitive_data, malware), rule or detector, severity, object, where
(stream endpoints and direction, or path), byte offset, frame number (tshark's
frame.number) and a redacted excerpt: secrets themselves are never printed.
Exit status: 0 without findings, 1 with findings, 2 when something could not be scanned.
The built-in rules (the EICAR test string, reverse shells, miners, PHP web shells) are
always loaded; --rules adds .yar/.yara files or directories of them.";

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// s3://BUCKET/PREFIX, a directory of slices or captures, or a capture
    /// file; with --tree, a directory whose files are scanned.
    #[arg(value_name = "s3://BUCKET/PREFIX | DIR | FILE")]
    pub location: String,
    /// Scan LOCATION as a filesystem tree (every regular file; links,
    /// FIFOs, devices, /proc, /sys and /dev not followed).
    #[arg(long)]
    pub tree: bool,
    /// YARA rules files or directories (.yar, .yara), added to the built-in rules.
    #[arg(long, value_name = "PATH")]
    pub rules: Vec<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: InvestigateFormat,
    /// Queue one job per capture on tapwire.scan.jobs for the scanners
    /// (`tapwire scanner`) instead of scanning here; the objects must be
    /// reachable by the scanners (s3://, or paths they share).
    #[arg(long, conflicts_with = "tree")]
    pub enqueue: bool,
    /// Captures larger than this many MiB are not scanned (reported).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub max_object_mib: u64,
    #[command(flatten)]
    pub s3: S3Flags,
    /// No progress bar (it is shown on stderr only when that is a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum InvestigateFormat {
    /// Aligned columns: time, source, destination, protocol, summary.
    Table,
    /// One JSON object per row (exchange, or stream with --streams).
    Json,
}

#[derive(Debug, Args)]
pub struct InvestigateArgs {
    /// s3://BUCKET/PREFIX, a directory of slices, or a .pcap file.
    #[arg(value_name = "s3://BUCKET/PREFIX | DIR | FILE.pcap")]
    pub location: String,
    /// Only streams this KFL query matches, e.g. 'http and response.status >= 500'.
    #[arg(long, value_name = "QUERY")]
    pub kfl: Option<String>,
    /// Only streams active at or after this time.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only streams active before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Write the matching streams' packets, time-ordered, to this PCAP file.
    #[arg(long, value_name = "FILE")]
    pub write: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: InvestigateFormat,
    /// One row per stream instead of one per exchange (an HTTP request and
    /// its response, a DNS query and its answer).
    #[arg(long)]
    pub streams: bool,
    #[command(flatten)]
    pub s3: S3Flags,
    /// No progress bar (it is shown on stderr only when that is a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Serve the console's Recordings page over LOCATION on ADDR instead
    /// (search by KFL and time, download the merged PCAP), printing a
    /// one-time sign-in link; until Ctrl-C.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: Option<PolicyCommand>,
    #[command(flatten)]
    pub flags: PolicyFlags,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files (YAML, tapwire.io/v1 NetworkPolicy and
    /// RuntimePolicy): every error with file, line and field; exit status 1
    /// if any file is invalid.
    Check {
        /// Policy files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

const AGGREGATE_EXAMPLES: &str = "\
Examples:
  # Ingest into the ClickHouse of the test bed (schema created on first start)
  tapwire aggregate --clickhouse-url http://127.0.0.1:8123
  # Bigger inserts for a busy cluster: fewer, larger batches
  TAPWIRE_AGGREGATE__BATCH_MAX_MESSAGES=200000 tapwire aggregate

Replays after a crash are skipped per table by the Kafka partition and offset
every row carries, so counts are never inflated. Analysts' SQL examples:
aggregator/queries/*.sql.";

const SERVE_EXAMPLES: &str = "\
The console is at http://LISTEN/ (default http://127.0.0.1:8080/). Every /api/* route
needs a bearer token: aggregate.tokens = [{name, role = \"viewer\"|\"admin\", token}] or
aggregate.tokens_file (lines NAME ROLE SECRET, e.g. a mounted Kubernetes Secret); with
none configured, serve prints a one-time admin sign-in link. 401 without a known token,
403 for a viewer on /api/v1/admin/*; /healthz stays open. HTTPS: aggregate.tls_cert_file
and aggregate.tls_key_file (PEM).

Examples:
  tapwire serve --listen 0.0.0.0:8080            # then open http://HOST:8080/
  T=...; curl -H \"Authorization: Bearer $T\" 'http://127.0.0.1:8080/api/v1/network/connections-view?window=15m&mode=enforce'
  curl -H \"Authorization: Bearer $T\" 'http://127.0.0.1:8080/api/v1/network/edge?src_namespace=dev&src=tool-0&dst_namespace=shop&dst=db-0'
  curl -H \"Authorization: Bearer $T\" 'http://127.0.0.1:8080/api/v1/network/connections?sensor_id=node-a&page=2&page_size=100'
  curl -H \"Authorization: Bearer $T\" 'http://127.0.0.1:8080/api/v2/network/connections?limit=500&cursor=...'

Routes and their parameters (every one optional unless marked; an unknown or bad
parameter is a 400 with {\"error\": \"...\"} naming it; ClickHouse down is a 503):
  /api/v1/network/connections-view  window (15m), mode (audit|enforce|other),
                                    limit (500 rows per tab), until (epoch s)
      the Audit-mode, Enforce-mode and Other tabs with the window's totals, and the
      connections per mode of each edge
  /api/v1/network/edge              src (required), dst (required), src_namespace,
                                    dst_namespace, window, limit, until
      one edge's tabs and totals (names as connections-view's edges give them)
  /api/v1/pod                       namespace (required), name (required), window, until
      a pod's page: record, addresses over time, connections and verdicts
  /api/v1/events                    sensor_id, kind (network_connect, dns_query,
                                    process_exec, ...), window, until, limit (100),
                                    cursor, kfl (over the event's columns)
      Investigate: network and runtime events, newest first
  /api/v1/network/connections       sensor_id, page (1), page_size (100, at most 500)
  /api/v2/network/connections       sensor_id, cursor, limit (100)
  /api/v2/network/listeners         sensor_id, cursor, limit (100)
  /api/v2/network/udp-listeners     sensor_id, cursor, limit (100)
  /api/v2/network/flows             sensor_id, cursor, limit (100)
  /api/v1/network/listeners         sensor_id          TCP listening services
  /api/v1/network/udp-listeners     sensor_id          UDP listeners
  /api/v1/network/flows             sensor_id, limit, state (completed|active)
      completed flows, newest first (every one without limit); active: open
      connections, connected and not closed yet
  /api/v1/network/summary                              per-sensor counts
  /healthz
Every duration_ns has a duration_secs beside it (null: older than the sensor).";

/// `tapwire aggregate`.
#[derive(Debug, Args)]
pub struct AggregateArgs {
    #[command(flatten)]
    pub flags: AggregateFlags,
    /// Apply the schema migrations and exit.
    #[arg(long)]
    pub migrate_only: bool,
}

/// `tapwire serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub flags: ServeFlags,
}

/// `tapwire query ...`.
#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// The network connections of a window, in Audit-mode, Enforce-mode and
    /// Other tabs (source pod and IP:port, protocol, destination pod or domain
    /// and IP:port, number of connections, last connection), then the edges.
    #[command(
        after_help = "Examples:\n  tapwire query connections\n  tapwire query connections --window 1h --mode enforce\n  tapwire query connections --format json | jq '.enforce[0]'"
    )]
    Connections(QueryConnectionsArgs),
    /// Run a SELECT and print its rows as JSON lines (e.g. an analyst query
    /// from aggregator/queries/).
    #[command(
        after_help = "Example:\n  tapwire query sql \"$(cat aggregator/queries/01_top_talkers.sql)\""
    )]
    Sql(QuerySqlArgs),
}

/// `tapwire query connections`.
#[derive(Debug, Args)]
pub struct QueryConnectionsArgs {
    /// How far back: 90s, 15m, 2h, 1d. Rounded out to whole minutes.
    #[arg(long, default_value = "15m")]
    pub window: String,
    /// Only this tab.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Window end as epoch seconds (default: now).
    #[arg(long)]
    pub until: Option<u32>,
    /// Rows per tab at most.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// table (for people) or json.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub clickhouse: ClickHouseFlags,
}

/// `tapwire query sql`.
#[derive(Debug, Args)]
pub struct QuerySqlArgs {
    /// The SELECT; `tapwire.` names the configured database.
    pub sql: String,
    #[command(flatten)]
    pub clickhouse: ClickHouseFlags,
}

/// A policy mode (a tab of the connections view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Audit-mode connections.
    Audit,
    /// Enforce-mode connections.
    Enforce,
    /// Connections no policy covers.
    Other,
}

/// How `query` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

impl Cli {
    /// The configuration keys the flags set (the top layer of the load),
    /// shaped like the file.
    pub fn overrides(&self) -> Value {
        let mut layer = serde_json::Map::new();
        let g = &self.global;
        let mut kafka = serde_json::Map::new();
        if let Some(brokers) = &g.brokers {
            kafka.insert("brokers".into(), json!(brokers));
        }
        if !g.kafka_option.is_empty() {
            let options: serde_json::Map<String, Value> = g
                .kafka_option
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            kafka.insert("options".into(), Value::Object(options));
        }
        if !kafka.is_empty() {
            layer.insert("kafka".into(), Value::Object(kafka));
        }
        let mut telemetry = serde_json::Map::new();
        if let Some(format) = g.log_format {
            let name = match format {
                LogFormatArg::Text => "text",
                LogFormatArg::Json => "json",
            };
            telemetry.insert("log_format".into(), json!(name));
        }
        if let Some(addr) = g.admin_listen {
            telemetry.insert("admin_listen".into(), json!(addr.to_string()));
        }
        if !telemetry.is_empty() {
            layer.insert("telemetry".into(), Value::Object(telemetry));
        }
        let (section, flags) = match &self.command {
            Command::Capture(a) => ("capture", to_value(&a.flags)),
            Command::Enrich(a) => ("enrich", to_value(&a.flags)),
            Command::Policy(a) => ("policy", to_value(&a.flags)),
            Command::Cef(a) => ("cef", to_value(&a.flags)),
            Command::Aggregate(a) => ("aggregate", to_value(&a.flags)),
            Command::Serve(a) => ("aggregate", to_value(&a.flags)),
            Command::Query(QueryCommand::Connections(a)) => ("aggregate", to_value(&a.clickhouse)),
            Command::Query(QueryCommand::Sql(a)) => ("aggregate", to_value(&a.clickhouse)),
            Command::Record(a) => ("record", to_value(&a.flags)),
            Command::Investigate(a) => ("record", to_value(&a.s3)),
            Command::Scan(a) => ("record", to_value(&a.s3)),
            Command::Scanner(a) => ("scan", to_value(&a.flags)),
            _ => ("", Value::Null),
        };
        if !flags.is_null() {
            layer.insert(section.into(), flags);
        }
        if let Command::Scanner(a) = &self.command {
            // The scanner reads slices with [record]'s S3 settings.
            let s3 = to_value(&a.s3);
            if !s3.is_null() {
                layer.insert("record".into(), s3);
            }
        }
        Value::Object(layer)
    }
}

/// The flag types serialize to maps of strings, numbers, booleans and lists.
fn to_value(flags: &impl serde::Serialize) -> Value {
    serde_json::to_value(flags).unwrap_or(Value::Null)
}
