//! Runs the chosen sources and sends what they produce to a bus sink.
//!
//! Every source is a task. Replays end on their own; live sources run until
//! shutdown. A source that cannot run (a missing capability, a missing
//! toolchain) is reported with the exact reason and the others run; the
//! agent fails only when none can.
//!
//! Topics and keys: packets to `tapwire.packets.raw` keyed by the flow hash
//! (8 bytes big-endian; 0 for frames that are not TCP/UDP); L4 and DNS
//! events to `tapwire.l4.raw` and inventory snapshots to
//! `tapwire.inventory`, keyed by node; loss records to the topic whose
//! stream lost the events; heartbeats to `tapwire.agents`, keyed by sensor
//! id, while a live source runs (see `heartbeat.rs`).
//!
//! The packet sources (replay, live) send batches of 1,000 records with up
//! to `capture.batches_in_flight` of them awaiting their delivery reports at
//! once; records count as sent when their batch is acknowledged, and order
//! per key holds (see `in_flight.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tapwire_plumbing::bus::{BusError, OutRecord, Sink};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::{LossRecord, PacketRecord, encode, topics};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::CaptureConfig;
use crate::derive::{Derived, Deriver};
use crate::in_flight::{Counts, InFlight};
use crate::inventory::{Inventory, InventoryError};
use crate::privileges::{self, Capabilities};
use crate::replay::{CaptureFile, Frame, ReplayError};
use crate::{Identity, live};

/// A source the agent can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The /proc/net inventory heartbeat.
    Inventory,
    /// eBPF tracepoints.
    Ebpf,
    /// Live AF_PACKET capture on the configured interfaces.
    Packets,
    /// Replay of a pcap or pcapng file, optionally at capture speed.
    Pcap {
        /// The file.
        path: PathBuf,
        /// Sleep between frames as long as the capture did.
        realtime: bool,
    },
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Inventory => f.write_str("inventory"),
            SourceSpec::Ebpf => f.write_str("ebpf"),
            SourceSpec::Packets => f.write_str("packets"),
            SourceSpec::Pcap { path, .. } => write!(f, "pcap:{}", path.display()),
        }
    }
}

impl std::str::FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "inventory" => Ok(SourceSpec::Inventory),
            "ebpf" => Ok(SourceSpec::Ebpf),
            "packets" | "af_packet" => Ok(SourceSpec::Packets),
            _ => match s.strip_prefix("pcap:") {
                Some(path) if !path.is_empty() => Ok(SourceSpec::Pcap {
                    path: PathBuf::from(path),
                    realtime: false,
                }),
                _ => Err(format!(
                    "unknown source {s:?}: expected inventory, ebpf, packets or pcap:FILE"
                )),
            },
        }
    }
}

/// Why the agent or one of its sources stopped.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A capture file is bad; the message names the file offset.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// /proc could not be read.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// Live capture failed.
    #[error(transparent)]
    Live(#[from] live::LiveError),
    /// The eBPF programs did not load, attach or read.
    #[error(transparent)]
    Ebpf(#[from] crate::ebpf::EbpfError),
    /// The bus refused records.
    #[error("sending to the bus: {0}")]
    Bus(#[from] BusError),
    /// A record could not be encoded.
    #[error(transparent)]
    Encode(#[from] tapwire_schemas::EncodeError),
    /// A source cannot run here; the reason says exactly why.
    #[error("source {source_name} cannot run: {reason}")]
    Unavailable {
        /// The source.
        source_name: String,
        /// Why (missing capability, missing toolchain, not built).
        reason: String,
    },
    /// No source was chosen or none can run.
    #[error("no source can run: {0}")]
    NothingToRun(String),
}

/// What the agent sent: records count once the bus acknowledged the batch
/// that carried them. The counts also go to the Prometheus metrics
/// (`tapwire_messages_out_total{stage="capture"}`,
/// `tapwire_messages_dropped_total{stage="capture",reason="ringbuf"|"packet_queue"}`).
#[derive(Debug, Default)]
pub struct Summary {
    /// Packet records.
    pub packets: AtomicU64,
    /// L4 events (connect, accept, flow).
    pub l4_events: AtomicU64,
    /// DNS events.
    pub dns_events: AtomicU64,
    /// Inventory snapshots.
    pub inventory_snapshots: AtomicU64,
    /// Runtime events (exec, exit).
    pub runtime_events: AtomicU64,
    /// Events lost before they could be sent (also sent as loss records).
    pub lost: AtomicU64,
    /// Of those, lost in the eBPF ring buffer.
    pub lost_ringbuf: AtomicU64,
    /// Of those, lost in the live capture's send queue.
    pub lost_packet_queue: AtomicU64,
    /// Heartbeats sent to `tapwire.agents`.
    pub heartbeats: AtomicU64,
    /// Whether enforce-mode policies are applied at this node (the eBPF
    /// source attached its cgroup programs and follows
    /// `tapwire.enforcement`).
    pub enforcing: std::sync::atomic::AtomicBool,
}

pub(crate) fn metrics() -> &'static tapwire_plumbing::telemetry::StageMetrics {
    static METRICS: std::sync::OnceLock<tapwire_plumbing::telemetry::StageMetrics> =
        std::sync::OnceLock::new();
    METRICS.get_or_init(|| tapwire_plumbing::telemetry::StageMetrics::new("capture"))
}

impl Summary {
    /// Counts `n` records of one kind delivered to the bus.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        metrics().messages_out.inc_by(n);
    }

    /// Counts `n` events lost at `reason` (`ringbuf`, `packet_queue`).
    pub(crate) fn lost(&self, reason: &str, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
        match reason {
            "ringbuf" => self.lost_ringbuf.fetch_add(n, Ordering::Relaxed),
            _ => self.lost_packet_queue.fetch_add(n, Ordering::Relaxed),
        };
        metrics().dropped(reason, n);
    }

    /// Records whether enforcement is on.
    pub(crate) fn set_enforcing(&self, on: bool) {
        self.enforcing.store(on, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The node agent.
pub struct Agent {
    config: CaptureConfig,
    identity: Identity,
    sources: Vec<SourceSpec>,
    caps: Capabilities,
    bus: Option<tapwire_plumbing::stage::Bus>,
}

impl Agent {
    /// An agent running `sources`, or the sources the configuration enables
    /// when `None`.
    pub fn new(config: CaptureConfig, sources: Option<Vec<SourceSpec>>) -> Self {
        let sources = sources.unwrap_or_else(|| {
            let mut s = Vec::new();
            if config.inventory.enabled {
                s.push(SourceSpec::Inventory);
            }
            if config.ebpf.enabled {
                s.push(SourceSpec::Ebpf);
            }
            if config.packets.enabled {
                s.push(SourceSpec::Packets);
            }
            s
        });
        Agent {
            identity: config.identity(),
            config,
            sources,
            caps: Capabilities::current(),
            bus: None,
        }
    }

    /// Overrides the capability set (tests of the privilege checks).
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// Follows `tapwire.enforcement` and `tapwire.pods` on `bus` to enforce
    /// the enforce-mode policies at this node (eBPF source only).
    pub fn with_bus(mut self, bus: tapwire_plumbing::stage::Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Who the records say wrote them.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Each chosen source and whether it can run here (the reason when not).
    pub fn plan(&self) -> Vec<(SourceSpec, Result<(), String>)> {
        self.sources
            .iter()
            .map(|s| {
                let ok = match s {
                    SourceSpec::Inventory | SourceSpec::Pcap { .. } => Ok(()),
                    SourceSpec::Packets => {
                        let missing = self.caps.missing_for_packets();
                        if let Some(reason) = crate::live::missing_reason() {
                            Err(reason.to_owned())
                        } else if missing.is_empty() {
                            Ok(())
                        } else {
                            Err(format!(
                                "missing capability {} (run as root or grant it)",
                                privileges::list(&missing)
                            ))
                        }
                    }
                    SourceSpec::Ebpf => {
                        let missing = self.caps.missing_for_ebpf();
                        if !missing.is_empty() {
                            Err(format!(
                                "missing capability {} (run as root or grant them)",
                                privileges::list(&missing)
                            ))
                        } else if let Some(reason) = crate::ebpf::missing_reason() {
                            Err(format!(
                                "the eBPF programs were not built into this agent: {reason}"
                            ))
                        } else {
                            Ok(())
                        }
                    }
                };
                (s.clone(), ok)
            })
            .collect()
    }

    /// Runs every source that can run until `shutdown` (or, when only
    /// replays were chosen, until they are done). Sources that cannot run
    /// are logged with the reason. Returns the first source error after all
    /// sources stopped.
    pub async fn run<S>(
        self,
        sink: S,
        shutdown: CancellationToken,
        summary: Arc<Summary>,
    ) -> Result<(), CaptureError>
    where
        S: Sink + Clone + 'static,
    {
        let plan = self.plan();
        // One connection, one set of events: with the eBPF source tracking
        // connections, live packets add DNS queries and packet records only.
        let ebpf_tracks = self.config.ebpf.connections
            && plan
                .iter()
                .any(|(s, ok)| matches!(s, SourceSpec::Ebpf) && ok.is_ok());
        // A query seen by both: packets give its answers, eBPF its process.
        let packets_dns = self.config.derive.enabled
            && plan
                .iter()
                .any(|(s, ok)| matches!(s, SourceSpec::Packets) && ok.is_ok());
        let senders = crate::ebpf::owners::DnsSenders::default();
        let running = crate::heartbeat::Running::default();
        let mut refused = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut live_sources = 0;
        for (source, ok) in plan {
            if let Err(reason) = ok {
                tracing::warn!(source = %source, %reason, "source not started");
                eprintln!("capture: source {source} not started: {reason}");
                refused.push(CaptureError::Unavailable {
                    source_name: source.to_string(),
                    reason,
                });
                continue;
            }
            tracing::info!(source = %source, "source started");
            let guard = running.enter(source.to_string());
            let sink = sink.clone();
            let stop = shutdown.clone();
            let summary = summary.clone();
            let identity = self.identity.clone();
            let config = self.config.clone();
            let senders = senders.clone();
            match source {
                SourceSpec::Inventory => {
                    live_sources += 1;
                    let caps = self.caps;
                    tasks.spawn(async move {
                        let _running = guard;
                        run_inventory(&config, identity, caps, &sink, stop, &summary).await
                    });
                }
                SourceSpec::Pcap { path, realtime } => {
                    tasks.spawn(async move {
                        let _running = guard;
                        run_replay(&config, identity, path, realtime, &sink, stop, &summary).await
                    });
                }
                SourceSpec::Packets => {
                    live_sources += 1;
                    let mut config = config;
                    let derive = config.derive.connections.unwrap_or(!ebpf_tracks);
                    config.derive.connections = Some(derive);
                    if !derive {
                        eprintln!(
                            "capture: connections are tracked by eBPF; packets add DNS queries and \
                             packet records (capture.derive.connections = true derives both)"
                        );
                    }
                    tasks.spawn(async move {
                        let _running = guard;
                        run_live(&config, identity, &sink, stop, &summary, senders).await
                    });
                }
                SourceSpec::Ebpf => {
                    live_sources += 1;
                    let bus = self.bus.clone();
                    tasks.spawn(async move {
                        let _running = guard;
                        crate::ebpf::run(
                            &config,
                            identity,
                            &sink,
                            stop,
                            &summary,
                            crate::ebpf::With {
                                senders,
                                packets_dns,
                                bus,
                            },
                        )
                        .await
                    });
                }
            }
        }
        if tasks.is_empty() {
            let reasons: Vec<String> = refused.iter().map(ToString::to_string).collect();
            return Err(CaptureError::NothingToRun(if reasons.is_empty() {
                "no source chosen (enable one in [capture] or pass --source)".to_owned()
            } else {
                reasons.join("; ")
            }));
        }
        // A live source makes this a sensor of the fleet: it says it is
        // alive until it stops. File replays alone are an import, not a sensor.
        let beats_stop = CancellationToken::new();
        let heartbeat = (live_sources > 0).then(|| {
            let beats = crate::heartbeat::Beats::new(
                self.identity.clone(),
                self.config.heartbeat_interval_ms,
                crate::inventory::now_ns(),
            );
            tokio::spawn(crate::heartbeat::run(
                beats,
                sink.clone(),
                running.clone(),
                summary.clone(),
                beats_stop.clone(),
            ))
        });
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                Err(CaptureError::Unavailable {
                    source_name: "task".to_owned(),
                    reason: format!("panicked: {e}"),
                })
            });
            if let Err(err) = result {
                tracing::error!(error = %err, "source stopped");
                first_error.get_or_insert(err);
            }
        }
        beats_stop.cancel();
        if let Some(heartbeat) = heartbeat
            && let Err(err) = heartbeat.await
        {
            tracing::error!(error = %err, "heartbeat task panicked");
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

async fn run_inventory<S: Sink>(
    config: &CaptureConfig,
    identity: Identity,
    caps: Capabilities,
    sink: &S,
    shutdown: CancellationToken,
    summary: &Summary,
) -> Result<(), CaptureError> {
    let missing = caps.missing_for_inventory_owners();
    if !missing.is_empty() {
        tracing::warn!(
            "inventory: without {} sockets of other users' processes have no pid",
            privileges::list(&missing)
        );
    }
    let ic = &config.inventory;
    let node_key = identity.node.clone().into_bytes();
    let mut inventory = Inventory::new(&ic.proc_root, ic.all_network_namespaces, identity);
    let mut tick = tokio::time::interval(Duration::from_millis(ic.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let (back, snapshot) = tokio::task::spawn_blocking(move || {
            let s = inventory.snapshot();
            (inventory, s)
        })
        .await
        .map_err(|e| CaptureError::Unavailable {
            source_name: "inventory".to_owned(),
            reason: format!("scan panicked: {e}"),
        })?;
        inventory = back;
        let snapshot = snapshot?;
        let record = OutRecord::new(
            topics::INVENTORY,
            Some(node_key.clone()),
            encode(&snapshot)?,
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            sent = sink.send_batch(vec![record]) => sent?,
        }
        Summary::add(&summary.inventory_snapshots, 1);
    }
}

/// Frames to records: packet records, and derived events when enabled.
struct PacketPipeline {
    identity: Identity,
    node_key: Vec<u8>,
    deriver: Option<Deriver>,
    label: String,
    batch: Vec<OutRecord>,
    derived: Vec<Derived>,
    /// Whether derived connect/accept/flow events are sent.
    connections: bool,
    /// Live capture: DNS queries wait [`SENDER_WAIT`] for the eBPF source
    /// to say which process sent them.
    senders: Option<crate::ebpf::owners::DnsSenders>,
    waiting_dns: std::collections::VecDeque<(std::time::Instant, tapwire_schemas::DnsEvent)>,
    /// What the batch being built carries.
    counts: Counts,
    last_expire_ns: i64,
}

const BATCH: usize = 1000;

/// How long a live DNS query waits for the eBPF source's record of its
/// sender (read from another ring, possibly a little later).
const SENDER_WAIT: Duration = Duration::from_millis(300);

impl PacketPipeline {
    fn new(config: &CaptureConfig, identity: Identity, label: String) -> Self {
        let deriver = config.derive.enabled.then(|| {
            Deriver::new(
                identity.clone(),
                config.derive.flow_idle_timeout_ms as i64 * 1_000_000,
                config.derive.max_flows,
            )
        });
        PacketPipeline {
            node_key: identity.node.clone().into_bytes(),
            identity,
            deriver,
            label,
            batch: Vec::with_capacity(BATCH),
            derived: Vec::new(),
            connections: config.derive.connections.unwrap_or(true),
            senders: None,
            waiting_dns: std::collections::VecDeque::new(),
            counts: Counts::default(),
            last_expire_ns: 0,
        }
    }

    fn frame(&mut self, frame: Frame) -> Result<(), CaptureError> {
        let parsed = tapwire_packet::parse(frame.link_type, &frame.data).ok();
        let flow_hash = parsed.as_ref().map_or(0, |p| p.flow.flow_hash());
        if let (Some(deriver), Some(packet)) = (self.deriver.as_mut(), parsed.as_ref()) {
            deriver.packet(frame.timestamp_ns, packet, &mut self.derived);
            if frame.timestamp_ns - self.last_expire_ns > 1_000_000_000 {
                deriver.expire(frame.timestamp_ns, &mut self.derived);
                self.last_expire_ns = frame.timestamp_ns;
            }
        }
        let record = PacketRecord {
            header: self.identity.header(
                frame.timestamp_ns,
                &[
                    b"packet",
                    self.label.as_bytes(),
                    &frame.index.to_le_bytes(),
                    &frame.timestamp_ns.to_le_bytes(),
                ],
            ),
            link_type: frame.link_type,
            captured_len: frame.data.len() as u32,
            original_len: frame.original_len,
            data: frame.data,
            flow_hash,
            interface: frame.interface,
        };
        self.batch.push(OutRecord::new(
            topics::PACKETS_RAW,
            Some(flow_hash.to_be_bytes().to_vec()),
            encode(&record)?,
        ));
        self.counts.packets += 1;
        self.take_derived()
    }

    fn take_derived(&mut self) -> Result<(), CaptureError> {
        for event in self.derived.drain(..) {
            let payload = match event {
                Derived::L4(_) if !self.connections => continue,
                Derived::Dns(e) if self.senders.is_some() && e.client.is_some() => {
                    self.waiting_dns.push_back((std::time::Instant::now(), e));
                    continue;
                }
                Derived::L4(e) => {
                    self.counts.l4_events += 1;
                    encode(&e)?
                }
                Derived::Dns(e) => {
                    self.counts.dns_events += 1;
                    encode(&e)?
                }
            };
            self.batch.push(OutRecord::new(
                topics::L4_RAW,
                Some(self.node_key.clone()),
                payload,
            ));
        }
        Ok(())
    }

    /// Sends the DNS queries that waited long enough (all with `all`), each
    /// with the process that sent it when the eBPF source saw one.
    fn release_dns(&mut self, all: bool) -> Result<(), CaptureError> {
        while let Some((since, _)) = self.waiting_dns.front() {
            if !all && since.elapsed() < SENDER_WAIT {
                break;
            }
            let Some((_, mut e)) = self.waiting_dns.pop_front() else {
                break;
            };
            if let (Some(senders), Some(client)) = (&self.senders, e.client)
                && let Some(owner) = senders.owner((client.ip.0, client.port))
            {
                e.pid = owner.pid;
                e.binary = owner.comm;
                e.container_id = owner.container_id;
            }
            self.counts.dns_events += 1;
            self.batch.push(OutRecord::new(
                topics::L4_RAW,
                Some(self.node_key.clone()),
                encode(&e)?,
            ));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), CaptureError> {
        if let Some(deriver) = self.deriver.as_mut() {
            deriver.finish(&mut self.derived);
        }
        self.take_derived()
    }

    /// Starts sending the batch built so far (waiting while the most
    /// batches are in flight), and counts the batches acknowledged by now.
    async fn flush<'s, S: Sink>(
        &mut self,
        sink: &'s S,
        sends: &mut InFlight<'s>,
        summary: &Summary,
    ) -> Result<(), CaptureError> {
        if self.batch.is_empty() {
            sends.count_acknowledged(summary).await?;
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let counts = std::mem::take(&mut self.counts);
        sends.push(sink.send_batch(batch), counts, summary).await?;
        Ok(())
    }
}

async fn run_replay<S: Sink>(
    config: &CaptureConfig,
    identity: Identity,
    path: PathBuf,
    realtime: bool,
    sink: &S,
    shutdown: CancellationToken,
    summary: &Summary,
) -> Result<(), CaptureError> {
    // Reading is blocking file I/O: a thread reads, the task sends.
    let (tx, mut rx) = mpsc::channel::<Result<Frame, ReplayError>>(BATCH * 4);
    let reader_path = path.clone();
    let stop = shutdown.clone();
    let reader = std::thread::spawn(move || {
        let file = match CaptureFile::open(&reader_path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for item in file {
            if stop.is_cancelled() || tx.blocking_send(item).is_err() {
                return;
            }
        }
    });
    let mut pipeline = PacketPipeline::new(config, identity, format!("pcap:{}", path.display()));
    let mut sends = InFlight::new(config.batches_in_flight);
    let mut pace: Option<(Instant, i64)> = None;
    let mut result = Ok(());
    'frames: loop {
        let item = tokio::select! {
            _ = shutdown.cancelled() => break,
            item = rx.recv() => item,
        };
        let Some(item) = item else { break };
        let frame = match item {
            Ok(frame) => frame,
            Err(err) => {
                result = Err(CaptureError::Replay(err));
                break;
            }
        };
        if realtime {
            let (start, first_ts) = *pace.get_or_insert((Instant::now(), frame.timestamp_ns));
            let due = start + Duration::from_nanos((frame.timestamp_ns - first_ts).max(0) as u64);
            if due > Instant::now() {
                pipeline.flush(sink, &mut sends, summary).await?;
                // Count acknowledgements while waiting for the frame's time.
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break 'frames,
                        _ = tokio::time::sleep_until(due) => break,
                        acked = sends.acknowledged(summary), if !sends.is_empty() => acked?,
                    }
                }
            }
        }
        pipeline.frame(frame)?;
        if pipeline.batch.len() >= BATCH {
            pipeline.flush(sink, &mut sends, summary).await?;
        }
    }
    // What was read before a bad record is still delivered, and its flows closed.
    pipeline.finish()?;
    pipeline.flush(sink, &mut sends, summary).await?;
    sends.drain(summary).await?;
    drop(rx);
    let _ = reader.join();
    result
}

async fn run_live<S: Sink>(
    config: &CaptureConfig,
    identity: Identity,
    sink: &S,
    shutdown: CancellationToken,
    summary: &Summary,
    senders: crate::ebpf::owners::DnsSenders,
) -> Result<(), CaptureError> {
    let (tx, mut rx) = mpsc::channel::<Frame>(BATCH * 16);
    let lost = Arc::new(AtomicU64::new(0));
    let handles = live::start(&config.packets, tx, lost.clone(), shutdown.clone())?;
    eprintln!(
        "capture: packets capturing on {}",
        if config.packets.interfaces.is_empty() {
            "any".to_owned()
        } else {
            config.packets.interfaces.join(",")
        }
    );
    let mut pipeline = PacketPipeline::new(config, identity.clone(), "live".to_owned());
    pipeline.senders = Some(senders);
    let mut sends = InFlight::new(config.batches_in_flight);
    let mut flush_tick = tokio::time::interval(Duration::from_millis(100));
    let mut reported_lost = 0u64;
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => {
                    pipeline.frame(frame)?;
                    if pipeline.batch.len() >= BATCH {
                        pipeline.flush(sink, &mut sends, summary).await?;
                    }
                }
                None => break,
            },
            _ = flush_tick.tick() => {
                let now = crate::inventory::now_ns();
                if let Some(d) = pipeline.deriver.as_mut() {
                    d.expire(now, &mut pipeline.derived);
                }
                pipeline.take_derived()?;
                pipeline.release_dns(false)?;
                let lost_now = lost.load(Ordering::Relaxed);
                if lost_now > reported_lost {
                    let n = lost_now - reported_lost;
                    reported_lost = lost_now;
                    summary.lost("packet_queue", n);
                    tracing::warn!(lost = n, "packets dropped: the send queue was full");
                    let loss = LossRecord {
                        header: identity.header(now, &[b"loss", b"packet_queue", &lost_now.to_le_bytes()]),
                        source: "packet_queue".to_owned(),
                        lost: n,
                    };
                    pipeline.batch.push(OutRecord::new(
                        topics::PACKETS_RAW,
                        Some(pipeline.node_key.clone()),
                        encode(&loss)?,
                    ));
                }
                pipeline.flush(sink, &mut sends, summary).await?;
            }
        }
    }
    pipeline.finish()?;
    pipeline.release_dns(true)?;
    pipeline.flush(sink, &mut sends, summary).await?;
    sends.drain(summary).await?;
    for h in handles {
        match h.join() {
            Ok(Err(err)) => return Err(err.into()),
            Ok(Ok(())) => {}
            Err(_) => {
                return Err(CaptureError::Unavailable {
                    source_name: "packets".to_owned(),
                    reason: "capture thread panicked".to_owned(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_plumbing::bus::memory::MemoryBus;
    use tapwire_schemas::{AnyEvent, decode_any};

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/loopback.pcap");

    fn bus() -> MemoryBus {
        let bus = MemoryBus::new();
        for t in [topics::PACKETS_RAW, topics::L4_RAW, topics::INVENTORY] {
            bus.create_topic(t, 2);
        }
        bus
    }

    fn replay(realtime: bool) -> (MemoryBus, Duration) {
        let bus = bus();
        let config = CaptureConfig {
            node_name: Some("node-m".to_owned()),
            ..CaptureConfig::default()
        };
        let agent = Agent::new(
            config,
            Some(vec![SourceSpec::Pcap {
                path: FIXTURE.into(),
                realtime,
            }]),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let started = std::time::Instant::now();
        let summary = Arc::new(Summary::default());
        rt.block_on(agent.run(bus.sink(), CancellationToken::new(), summary.clone()))
            .expect("replay");
        (bus, started.elapsed())
    }

    #[test]
    fn a_replay_on_the_memory_bus_keys_packets_by_flow_and_paces_when_asked() {
        let frames: Vec<Frame> = CaptureFile::open(FIXTURE)
            .expect("open")
            .map(|f| f.expect("frame"))
            .collect();
        let span = Duration::from_nanos(
            (frames.last().unwrap().timestamp_ns - frames[0].timestamp_ns) as u64,
        );
        let (bus, _) = replay(false);
        let packets = bus.messages(topics::PACKETS_RAW);
        assert_eq!(packets.len(), frames.len());
        for m in &packets {
            let AnyEvent::PacketRecord(p) = decode_any(&m.payload).expect("decodes") else {
                panic!("not a packet");
            };
            assert_eq!(m.key.as_deref(), Some(&p.flow_hash.to_be_bytes()[..]));
            assert_eq!(p.header.node, "node-m");
        }
        // Both directions of a flow share a key, so a partition.
        let keys: std::collections::BTreeSet<_> = packets.iter().map(|m| &m.key).collect();
        assert!(keys.len() < packets.len() / 2, "{} keys", keys.len());
        let (_, paced) = replay(true);
        assert!(paced >= span, "paced {paced:?} < capture span {span:?}");
    }
}
