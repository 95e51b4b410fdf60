//! Enforcement at the node (issue 16): the cost the cgroup programs add
//! to every connect, and how long a policy change on the topic takes to
//! be enforced.
//!
//! The agent runs as it ships (the capture crate's [`Agent`], `ebpf`
//! source, following `tapwire.enforcement` and `tapwire.pods` on the
//! in-memory bus) with no tracepoint programs attached, so only the
//! enforcement programs cost anything. The benchmark process puts itself
//! into a cgroup named as the kubelet names a container's
//! (`cri-containerd-<id>.scope`), published as a pod on this node, so the
//! agent enforces on it.
//!
//! - Connect latency: `connect()` of one UDP socket to 127.0.0.1:9999 in a
//!   loop (a UDP connect is the syscall and the hook, no handshake), with
//!   no program attached (the baseline, measured first in the same run),
//!   then with the agent's programs attached and 0, 100 and 10,000 denied
//!   addresses for the pod (other addresses on the same port: every
//!   connect does the whole lookup and is let through).
//! - Policy change to enforcement: the time from a record written to
//!   `tapwire.enforcement` until a connect to the denied address fails
//!   with EPERM, and from its tombstone until it succeeds again (the agent
//!   recompiles the policies, plans and writes the maps).
//!
//! Root only (eBPF, cgroups); skipped with the reason otherwise.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tapwire_capture::{Agent, CaptureConfig, SourceSpec, Summary};
use tapwire_cluster::ClusterRecord;
use tapwire_plumbing::bus::memory::MemoryBus;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_plumbing::stage::Bus;
use tapwire_schemas::{Container, EventHeader, EventId, Ip, PodMetadata, topics};

use crate::report::{Row, peak_rss_mib};

/// The baseline's name in the table.
const BASELINE: &str = "UDP connects/s, no program attached";

const NODE: &str = "bench-node";
const POLICY: &str = "bench/deny-many";

/// Connects per latency measurement (the figures are connects/s, the
/// inverse of the latency; the ratio is the slowdown).
const CONNECTS: u32 = 200_000;

pub fn run() -> anyhow::Result<Vec<Row>> {
    if let Some(reason) = tapwire_capture::ebpf::missing_reason() {
        eprintln!("enforce: skipped: {reason}");
        return Ok(Vec::new());
    }
    if !tapwire_tests::is_root() {
        eprintln!("enforce: skipped: needs root (eBPF programs, cgroups)");
        return Ok(Vec::new());
    }
    let Some(root) = tapwire_capture::ebpf::owners::cgroup2_root() else {
        eprintln!("enforce: skipped: no cgroup v2 hierarchy mounted");
        return Ok(Vec::new());
    };
    let container = format!("{:064x}", std::process::id());
    let cgroup = Cgroup::enter(&root, &container)?;
    let result = measure(&container);
    drop(cgroup);
    result
}

/// This process inside a container-named cgroup, back where it was when
/// dropped.
struct Cgroup {
    dir: PathBuf,
    parent: PathBuf,
    home: PathBuf,
}

impl Cgroup {
    fn enter(root: &Path, container: &str) -> anyhow::Result<Cgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let own = tapwire_capture::ebpf::owners::cgroup_path(&own)
            .context("no cgroup v2 line in /proc/self/cgroup")?;
        let home = root.join(own.trim_start_matches('/'));
        let parent = root.join("tapwire-bench.slice");
        let dir = parent.join(format!("cri-containerd-{container}.scope"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .with_context(|| format!("entering {}", dir.display()))?;
        Ok(Cgroup { dir, parent, home })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(
            self.home.join("cgroup.procs"),
            std::process::id().to_string(),
        );
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_dir(&self.parent);
    }
}

fn pod(container: &str) -> PodMetadata {
    PodMetadata {
        header: EventHeader {
            id: EventId([7; 16]),
            timestamp_ns: 0,
            node: NODE.to_owned(),
            sensor_id: "bench".to_owned(),
            node_ip: None,
        },
        uid: "bench-pod".to_owned(),
        name: "bench".to_owned(),
        namespace: "bench".to_owned(),
        ips: vec![Ip("10.77.0.2".parse().expect("literal"))],
        host_network: false,
        containers: vec![Container {
            id: container.to_owned(),
            name: "bench".to_owned(),
            image: "bench".to_owned(),
            image_digest: None,
        }],
        labels: [("app".to_owned(), "bench".to_owned())].into(),
        workload: None,
        start_ns: None,
        end_ns: None,
        security: None,
    }
}

/// An enforce-mode policy for the bench pod denying UDP and TCP to port
/// 9999 of `addresses` (and of `probe`, the address a step waits on).
fn policy(addresses: usize, probe: &str) -> Vec<u8> {
    let mut to = format!("{{cidr: {probe}/32}}");
    for i in 0..addresses {
        to.push_str(&format!(
            ", {{cidr: 10.{}.{}.{}/32}}",
            200 + i / 65_536,
            (i / 256) % 256,
            i % 256
        ));
    }
    let yaml = format!(
        "apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {{name: deny-many, namespace: bench}}
spec:
  mode: enforce
  selector: {{matchLabels: {{app: bench}}}}
  egress:
    - {{name: denied, action: deny, ports: [9999], to: [{to}]}}
"
    );
    let docs = tapwire_policy_engine::parse("bench.yaml", &yaml).expect("bench policy parses");
    tapwire_policy_engine::enforce::records(&docs)
        .into_values()
        .next()
        .expect("an enforce-mode record")
}

/// Whether a UDP connect to `to` is refused (EPERM) now.
fn refused(to: SocketAddr) -> bool {
    let socket = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    matches!(socket.connect(to), Err(e) if e.raw_os_error() == Some(1))
}

/// Waits until a connect to `to` is refused (`true`) or let through.
fn wait_for(to: SocketAddr, want_refused: bool) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    while refused(to) != want_refused {
        if t0.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("the agent did not apply the change to {to} within 60 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(t0.elapsed())
}

/// Nanoseconds per `connect()` of one UDP socket to 127.0.0.1:9999.
fn connect_ns() -> f64 {
    let socket = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    let to: SocketAddr = "127.0.0.1:9999".parse().expect("literal");
    for _ in 0..10_000 {
        socket.connect(to).expect("connect");
    }
    let t0 = Instant::now();
    for _ in 0..CONNECTS {
        socket.connect(to).expect("connect");
    }
    t0.elapsed().as_nanos() as f64 / f64::from(CONNECTS)
}

fn row(stage: String, ns: f64, baseline_ns: f64) -> Row {
    Row {
        stage,
        events_per_s: 1e9 / ns,
        baseline_name: BASELINE.to_owned(),
        baseline_per_s: 1e9 / baseline_ns,
        peak_rss_mib: peak_rss_mib(),
    }
}

fn measure(container: &str) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let baseline = connect_ns();
    eprintln!("enforce: no program attached: {baseline:.0} ns per UDP connect");

    let bus = MemoryBus::new();
    for spec in topics::ALL {
        bus.create_topic(spec.name, 1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sink = bus.sink();
    runtime.block_on(sink.send_batch(vec![ClusterRecord::Pod(pod(container)).to_out_record()?]))?;
    // Only the enforcement programs: no tracepoint adds its own cost.
    let config = CaptureConfig {
        node_name: Some(NODE.to_owned()),
        ebpf: tapwire_capture::config::EbpfConfig {
            connections: false,
            processes: false,
            files: false,
            lookups: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let agent = Agent::new(config, Some(vec![SourceSpec::Ebpf])).with_bus(Bus::Memory(bus.clone()));
    let stop = CancellationToken::new();
    let summary = Arc::new(Summary::default());
    let running = runtime.spawn(agent.run(bus.sink(), stop.clone(), summary.clone()));
    let started = Instant::now();
    while !summary.enforcing.load(std::sync::atomic::Ordering::Relaxed) {
        if running.is_finished() || started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("the agent did not start enforcing (see its messages above)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let zero = connect_ns();
    rows.push(row(
        "enforce: UDP connects/s, 0 denials".into(),
        zero,
        baseline,
    ));
    let publish = |payload: Vec<u8>| {
        runtime.block_on(sink.send_batch(vec![OutRecord::new(
            topics::ENFORCEMENT,
            Some(POLICY.as_bytes().to_vec()),
            payload,
        )]))
    };
    for (step, n) in [100usize, 10_000].into_iter().enumerate() {
        let probe = format!("127.0.1.{}", step + 1);
        let to: SocketAddr = format!("{probe}:9999").parse()?;
        publish(policy(n, &probe))?;
        let took = wait_for(to, true)?;
        eprintln!("enforce: {n} denials written and enforced in {took:?}");
        let ns = connect_ns();
        rows.push(row(
            format!("enforce: UDP connects/s, {n} denials"),
            ns,
            baseline,
        ));
        // Withdrawn before the next step, so that its flag is set after all
        // of its entries.
        publish(Vec::new())?;
        wait_for(to, false)?;
    }

    // Policy change to enforcement, end to end through the agent.
    let to: SocketAddr = "127.0.2.1:9999".parse()?;
    let mut applied = Vec::new();
    let mut withdrawn = Vec::new();
    for _ in 0..20 {
        publish(policy(0, "127.0.2.1"))?;
        applied.push(wait_for(to, true)?);
        publish(Vec::new())?;
        withdrawn.push(wait_for(to, false)?);
    }
    for (what, mut times) in [
        ("policy written -> connect refused", applied),
        ("policy deleted -> connect let through", withdrawn),
    ] {
        times.sort();
        let median = times[times.len() / 2];
        let max = times[times.len() - 1];
        // Times, not rates: printed as they are (the table is rates).
        println!(
            "enforce: {what}: median {:.1} ms, max {:.1} ms over {} changes",
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            times.len()
        );
    }
    stop.cancel();
    runtime
        .block_on(running)
        .context("agent task")?
        .context("agent")?;
    Ok(rows)
}
