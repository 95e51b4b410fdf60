//! eBPF connection events (issue 3; target: at least 200k events/s with
//! no ring-buffer loss): the rate of connection events `tapwire capture
//! --source ebpf` delivers without loss, and the rate where loss starts.
//!
//! The agent runs as it ships (the capture crate's [`Agent`] with the
//! `ebpf` source, the default 4 MiB ring buffer, read through tokio, each
//! state change turned into L4 events and Avro-encoded) with only the
//! connection programs attached (`connections`; no process or file
//! programs, so another session's builds do not fill the ring) and a sink
//! that drops every batch (Kafka's rate is `capture.rs`'s and `kafka.rs`'s).
//!
//! The generator: one thread per core, each with its own listener on
//! 127.0.0.1 inside a private network namespace (`ip netns add`; the
//! current namespace's loopback when that fails), in a loop of blocking
//! connect, accept, server close, client close. On loopback the kernel
//! finishes the handshake inside `connect`, so one thread makes both ends;
//! the server closing first leaves TIME_WAIT on the server's side, so the
//! client's ephemeral ports are free again at once. Every connection is
//! four L4 events in the agent (connect, accept, the client's flow, the
//! server's flow) and about ten ring-buffer records (state changes).
//!
//! Baseline, in the same run: the generator flat out with no eBPF program
//! attached, its connections/s times four (the connection events the
//! kernel's connect/accept/close rate on this machine makes). Then the
//! agent is attached and the generator is paced at increasing fractions of
//! that rate, for a fixed time per step; after each step the agent drains
//! and its once-a-second read of the `lost` map is awaited. The row is the
//! highest step with no loss (events the agent delivered per second of the
//! step); the first step with loss is a note on stderr. Loss counts every
//! ring record the programs could not reserve, so traffic of other
//! processes on this machine counts too (its idle rate is printed).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tapwire_capture::{Agent, CaptureConfig, SourceSpec, Summary};
use tapwire_plumbing::bus::{BusError, OutRecord, Sink};
use tapwire_plumbing::shutdown::CancellationToken;

use crate::report::{Row, peak_rss_mib, rate};

/// L4 events the agent makes of one connection: connect, accept and the
/// two flows.
const EVENTS_PER_CONNECTION: u64 = 4;

/// Halvings of the interval between the last rate without loss and the
/// first with loss.
const BISECTIONS: usize = 2;

/// Offered rates, as fractions of the baseline's connections/s.
const STEPS: [f64; 13] = [
    0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
];

pub fn run(step_secs: u64) -> anyhow::Result<Vec<Row>> {
    if let Some(reason) = tapwire_capture::ebpf::missing_reason() {
        eprintln!("SKIPPED ebpf: the eBPF programs are not built ({reason}); no row");
        return Ok(Vec::new());
    }
    let mut config = CaptureConfig {
        node_name: Some("node-bench".into()),
        sensor_id: Some("ebpf-bench".into()),
        ..CaptureConfig::default()
    };
    config.ebpf.processes = false;
    config.ebpf.files = false;
    let agent = Agent::new(config.clone(), Some(vec![SourceSpec::Ebpf]));
    if let Some((_, Err(reason))) = agent.plan().into_iter().next() {
        eprintln!("SKIPPED ebpf: the eBPF source cannot run here ({reason}); no row");
        return Ok(Vec::new());
    }
    let step = Duration::from_secs(step_secs.max(1));
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let ns = NetNs::create();
    match &ns {
        Some(ns) => eprintln!("ebpf: generator in network namespace {}", ns.name),
        None => {
            eprintln!("ebpf: `ip netns add` failed: the generator uses this namespace's loopback")
        }
    }
    let ns_path = ns.as_ref().map(NetNs::path);

    let made = generate(ns_path.as_ref(), threads, None, step)?;
    let base_conns = rate(made, step);
    let baseline = base_conns * EVENTS_PER_CONNECTION as f64;
    eprintln!(
        "ebpf: baseline, no eBPF attached: {threads} threads made {base_conns:.0} connections/s \
         ({baseline:.0} connection events/s)"
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let first = match Attached::start(&runtime, &config)? {
        Ok(a) => a,
        Err(why) => {
            eprintln!("SKIPPED ebpf: the agent's eBPF source did not start ({why}); no row");
            return Ok(Vec::new());
        }
    };
    let idle = Duration::from_secs(2);
    let before = Summary::get(&first.summary.l4_events);
    let lost_before = Summary::get(&first.summary.lost);
    std::thread::sleep(idle);
    let background = rate(Summary::get(&first.summary.l4_events) - before, idle);
    eprintln!(
        "ebpf: agent attached; idle, it sees {background:.0} events/s of other traffic and \
         {} lost records",
        Summary::get(&first.summary.lost) - lost_before
    );
    first.stop(&runtime);

    // Each step with an agent of its own, so that one step's trouble does
    // not carry over into the next.
    let step_with_agent = |fraction: Option<f64>| -> anyhow::Result<Step> {
        let agent = Attached::start(&runtime, &config)?
            .map_err(|why| anyhow::anyhow!("the eBPF source did not start again: {why}"))?;
        let offered = fraction.map(|f| f * base_conns);
        let s = measure(&agent.summary, ns_path.as_ref(), threads, offered, step)?;
        eprintln!(
            "ebpf: offered {}: made {:.0} connections/s ({:.0} events/s), the agent delivered \
             {:.0} events/s ({:.2} per connection), {} ring records lost, caught up {:.1} s \
             after the generator stopped",
            offered.map_or("flat out".to_owned(), |o| format!("{o:.0} connections/s")),
            s.conns_per_s,
            s.conns_per_s * EVENTS_PER_CONNECTION as f64,
            s.events_per_s,
            s.events_per_s / s.conns_per_s.max(1e-9),
            s.lost,
            s.catch_up.as_secs_f64()
        );
        if s.lost > 0 {
            // Does the reader recover once the rate is low again?
            let trickle = STEPS[0] * base_conns;
            let t = measure(
                &agent.summary,
                ns_path.as_ref(),
                threads,
                Some(trickle),
                Duration::from_secs(2),
            )?;
            eprintln!(
                "ebpf: then, on the same agent, {:.0} connections/s for 2 s: it delivered {:.2} \
                 events per connection and lost {} ring records{}",
                t.conns_per_s,
                t.events_per_s / t.conns_per_s.max(1e-9),
                t.lost,
                if t.lost > 0 || t.events_per_s < t.conns_per_s {
                    " (the ring buffer reader did not recover)"
                } else {
                    " (recovered)"
                }
            );
        }
        agent.stop(&runtime);
        Ok(s)
    };

    let mut best: Option<(f64, Step)> = None;
    let mut onset: Option<(f64, Step)> = None;
    let mut fractions: Vec<Option<f64>> = STEPS.iter().copied().map(Some).collect();
    fractions.push(None);
    let mut i = 0;
    while i < fractions.len() {
        let s = step_with_agent(fractions[i])?;
        let fraction = fractions[i].unwrap_or(s.conns_per_s / base_conns);
        if s.lost > 0 {
            onset = Some((fraction, s));
            break;
        }
        let saturated = fractions[i].is_some_and(|f| s.conns_per_s < 0.9 * f * base_conns);
        if best
            .as_ref()
            .is_none_or(|(_, b)| s.events_per_s > b.events_per_s)
        {
            best = Some((fraction, s));
        }
        // A generator that no longer reaches the offered rate: one flat-out
        // step and done.
        i = if saturated && fractions[i].is_some() {
            fractions.len() - 1
        } else {
            i + 1
        };
    }
    // Two halvings between the last step without loss and the first with.
    for _ in 0..BISECTIONS {
        let (Some((lo, _)), Some((hi, _))) = (&best, &onset) else {
            break;
        };
        let mid = (lo + hi) / 2.0;
        let s = step_with_agent(Some(mid))?;
        if s.lost > 0 {
            onset = Some((mid, s));
        } else {
            best = Some((mid, s));
        }
    }
    let best_rate = best.as_ref().map_or(0.0, |(_, b)| b.events_per_s);
    match &onset {
        Some((_, o)) => eprintln!(
            "ebpf: loss starts at {:.0} connection events/s offered ({:.0} connections/s made): \
             the agent delivered {:.0} events/s and {} ring records were lost in {step_secs} s; \
             highest rate without loss {best_rate:.0} events/s",
            o.conns_per_s * EVENTS_PER_CONNECTION as f64,
            o.conns_per_s,
            o.events_per_s,
            o.lost
        ),
        None => eprintln!(
            "ebpf: no loss at any step: loss did not start up to the generator's highest rate \
             with eBPF attached ({best_rate:.0} events/s); the agent kept up with everything \
             this machine's {threads} cores made"
        ),
    }
    Ok(vec![Row {
        stage: "capture: eBPF connection events, no loss".into(),
        events_per_s: best_rate,
        baseline_name: "generator conn events, no eBPF (x4/conn)".into(),
        baseline_per_s: baseline,
        peak_rss_mib: peak_rss_mib(),
    }])
}

/// An agent with the eBPF source attached, reading into [`Discard`].
struct Attached {
    summary: Arc<Summary>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tapwire_capture::CaptureError>>,
}

impl Attached {
    /// Starts the agent and makes a connection every 50 ms until it reports
    /// one; `Ok(Err(why))` when its source stopped before.
    fn start(
        runtime: &tokio::runtime::Runtime,
        config: &CaptureConfig,
    ) -> anyhow::Result<Result<Attached, String>> {
        let summary = Arc::new(Summary::default());
        let stop = CancellationToken::new();
        let agent = Agent::new(config.clone(), Some(vec![SourceSpec::Ebpf]));
        let task = runtime.spawn(agent.run(Discard, stop.clone(), summary.clone()));
        let probe = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Summary::get(&summary.l4_events) == 0 {
            if task.is_finished() {
                return Ok(Err(match runtime.block_on(task) {
                    Ok(Err(err)) => err.to_string(),
                    Ok(Ok(())) => "it stopped at once".to_owned(),
                    Err(err) => err.to_string(),
                }));
            }
            if Instant::now() >= deadline {
                stop.cancel();
                anyhow::bail!("the eBPF agent reported no event of 30 s of probe connections");
            }
            let client = std::net::TcpStream::connect(probe.local_addr()?)?;
            drop(probe.accept()?);
            drop(client);
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(probe);
        settle(&summary, Instant::now());
        Ok(Ok(Attached {
            summary,
            stop,
            task,
        }))
    }

    /// Cancels the agent and waits for it (its programs are detached).
    fn stop(self, runtime: &tokio::runtime::Runtime) {
        self.stop.cancel();
        match runtime.block_on(self.task) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("ebpf: the agent stopped with an error: {err}"),
            Err(err) => eprintln!("ebpf: the agent task failed: {err}"),
        }
    }
}

/// One paced step with the agent attached.
struct Step {
    conns_per_s: f64,
    /// L4 events the agent delivered, per second of the step.
    events_per_s: f64,
    /// Ring records lost.
    lost: u64,
    /// From the generator's stop until the agent delivered its last event.
    catch_up: Duration,
}

fn measure(
    summary: &Summary,
    ns: Option<&PathBuf>,
    threads: usize,
    offered: Option<f64>,
    step: Duration,
) -> anyhow::Result<Step> {
    let events_before = Summary::get(&summary.l4_events);
    let lost_before = Summary::get(&summary.lost);
    let made = generate(ns, threads, offered, step)?;
    let stopped = Instant::now();
    let catch_up = settle(summary, stopped);
    Ok(Step {
        conns_per_s: rate(made, step),
        events_per_s: rate(Summary::get(&summary.l4_events) - events_before, step),
        lost: Summary::get(&summary.lost) - lost_before,
        catch_up,
    })
}

/// Waits until the agent has delivered everything (no new event for 300
/// ms) and has read the `lost` map at least once since `stopped` (it reads
/// it every second). Returns when its last event came.
fn settle(summary: &Summary, stopped: Instant) -> Duration {
    let mut last = Summary::get(&summary.l4_events);
    let mut last_change = stopped;
    let deadline = stopped + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = Summary::get(&summary.l4_events);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        let quiet = last_change.elapsed() >= Duration::from_millis(300);
        if (quiet && stopped.elapsed() >= Duration::from_millis(1300)) || Instant::now() >= deadline
        {
            return last_change - stopped;
        }
    }
}

/// Connections made by `threads` threads in `duration`, each at
/// `offered / threads` per second (flat out when `None`).
fn generate(
    ns: Option<&PathBuf>,
    threads: usize,
    offered: Option<f64>,
    duration: Duration,
) -> anyhow::Result<u64> {
    let per_thread = offered.map(|o| o / threads as f64);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(move || connect_loop(ns, per_thread, duration)))
            .collect();
        let mut total = 0;
        for w in workers {
            total += w
                .join()
                .map_err(|_| anyhow::anyhow!("generator panicked"))??;
        }
        Ok(total)
    })
}

/// Connect, accept, server close, client close, until `duration` is over;
/// paced to `per_s` when given (behind schedule, it runs flat out).
fn connect_loop(
    ns: Option<&PathBuf>,
    per_s: Option<f64>,
    duration: Duration,
) -> anyhow::Result<u64> {
    if let Some(path) = ns {
        let fd =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        rustix::thread::move_into_link_name_space(
            fd.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .context("entering the network namespace")?;
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let mut n = 0u64;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= duration {
            return Ok(n);
        }
        if let Some(per_s) = per_s {
            let due = Duration::from_secs_f64(n as f64 / per_s);
            if due > elapsed {
                std::thread::sleep((due - elapsed).min(duration - elapsed));
                continue;
            }
        }
        let client = std::net::TcpStream::connect(addr).context("connect on loopback")?;
        let (server, _) = listener.accept().context("accept on loopback")?;
        drop(server);
        drop(client);
        n += 1;
    }
}

/// Drops every batch: the agent's own cost, without a bus.
#[derive(Clone)]
struct Discard;

impl Sink for Discard {
    async fn send_batch(&self, records: Vec<OutRecord>) -> Result<(), BusError> {
        drop(std::hint::black_box(records));
        Ok(())
    }
}

/// A network namespace with loopback up, deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn create() -> Option<NetNs> {
        let name = format!("tw-bench-{}", std::process::id());
        let ok = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
        if !ok(Command::new("ip").args(["netns", "add", &name])) {
            return None;
        }
        let ns = NetNs { name };
        ok(Command::new("ip").args(["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]))
            .then_some(ns)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}
