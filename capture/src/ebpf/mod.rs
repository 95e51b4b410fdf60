//! The eBPF source: the C programs of `capture-bpf/` (built by `build.rs`)
//! loaded with aya and attached to tracepoints; their ring buffer read
//! through tokio's `AsyncFd`.
//!
//! - [`wire`]: the ring buffer records and their layout check.
//! - [`tcp`]: TCP lifecycle to connect/accept/listen/flow events.
//! - [`owners`]: the process and container behind a record, from the
//!   identity the programs took in the kernel (cgroup id -> container id
//!   through the cgroup v2 filesystem), so short-lived processes are still
//!   attributed.
//! - [`lookups`]: `getaddrinfo` calls (uprobes on the C libraries of the
//!   node and of each container) as `dns_lookup`, and the connects that
//!   follow them as `dns_resolution`.
//! - [`enforce`]: enforce-mode policies applied at the node (cgroup
//!   programs, the exec kill) and the kernel's refusals as events.
//! - exec/exit become runtime events here; UDP connects become
//!   `network_connect` events with the local address the kernel bound.
//!
//! Loss: records the programs could not reserve are counted per CPU in the
//! `lost` map; the agent reads it every second and sends the difference as
//! a loss record (source `ringbuf`) to `tapwire.l4.raw` and
//! `tapwire.runtime.raw`.

pub mod enforce;
pub mod lookups;
pub mod owners;
pub mod tcp;
pub mod wire;

use std::time::Duration;

use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::{LossRecord, RuntimeEvent, RuntimeKind, encode, topics};

use crate::Identity;
use crate::agent::{CaptureError, Summary};
use crate::config::CaptureConfig;
use owners::{Cgroups, Owner, Processes};
use wire::{Event, FileEvent, ProcEvent, TW_PROC_EXEC, UdpEvent, c_str, file_op};

/// Why the eBPF programs were not built into this agent, when they were not.
pub fn missing_reason() -> Option<&'static str> {
    #[cfg(tapwire_no_bpf)]
    {
        Some(env!("TAPWIRE_BPF_MISSING"))
    }
    #[cfg(not(tapwire_no_bpf))]
    {
        None
    }
}

/// Why loading or attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The object did not load (verifier, map creation).
    #[error("loading the eBPF object: {0}")]
    Load(String),
    /// A tracepoint did not attach.
    #[error("attaching {program} to {category}:{name}: {reason}")]
    Attach {
        /// The program.
        program: &'static str,
        /// Tracepoint category.
        category: &'static str,
        /// Tracepoint name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// tracefs is not mounted and could not be.
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {0}")]
    Tracefs(String),
    /// The ring buffer could not be read.
    #[error("reading the ring buffer: {0}")]
    Ring(String),
    /// Built without the programs.
    #[error("the eBPF programs are not built into this agent: {0}")]
    NotBuilt(&'static str),
}

/// Mounts tracefs at /sys/kernel/tracing when absent (aya finds tracepoint
/// ids there).
pub fn ensure_tracefs() -> Result<(), EbpfError> {
    let dir = std::path::Path::new("/sys/kernel/tracing");
    let mounted = || {
        dir.join("events").is_dir()
            || std::path::Path::new("/sys/kernel/debug/tracing/events").is_dir()
    };
    if mounted() {
        return Ok(());
    }
    let out = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .output()
        .map_err(|e| EbpfError::Tracefs(e.to_string()))?;
    // Another agent starting at the same moment may have mounted it first
    // ("already mounted"): what counts is that it is there now.
    if out.status.success() || mounted() {
        Ok(())
    } else {
        Err(EbpfError::Tracefs(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Wall-clock nanoseconds minus CLOCK_MONOTONIC nanoseconds, now.
fn monotonic_to_wall() -> i64 {
    use rustix::time::{ClockId, clock_gettime};
    let ns = |t: rustix::time::Timespec| t.tv_sec * 1_000_000_000 + t.tv_nsec;
    ns(clock_gettime(ClockId::Realtime)) - ns(clock_gettime(ClockId::Monotonic))
}

/// Containers remembered as seen before the memo starts over.
const MAX_CONTAINERS_SEEN: usize = 50_000;

/// Process events to runtime events; remembers each live process's binary
/// and command line (in [`Processes`]) so that its exit and its connections
/// name them too.
struct ProcTracker {
    identity: Identity,
    procs: Processes,
    cgroups: Cgroups,
    /// Containers whose first exec was seen.
    containers_seen: std::collections::HashSet<String>,
    seq: u64,
}

impl ProcTracker {
    fn handle(&mut self, e: &ProcEvent, ts_ns: i64) -> RuntimeEvent {
        self.seq += 1;
        let exec = e.kind == TW_PROC_EXEC;
        let command_line =
            exec.then(|| owners::join_args(&e.args[..(e.args_len as usize).min(e.args.len())]));
        let binary = if exec {
            let path = c_str(&e.filename);
            self.procs.exec(e.pid, path.clone(), command_line.clone());
            path
        } else {
            self.procs.exit(e.pid).unwrap_or_else(|| c_str(&e.comm))
        };
        let container_id = self.cgroups.container(e.cgroup_id, e.pid);
        RuntimeEvent {
            header: self.identity.header(
                ts_ns,
                &[
                    b"ebpf-proc",
                    &e.pid.to_le_bytes(),
                    &ts_ns.to_le_bytes(),
                    &self.seq.to_le_bytes(),
                ],
            ),
            kind: if exec {
                RuntimeKind::ProcessExec
            } else {
                RuntimeKind::ProcessExit
            },
            pid: e.pid,
            ppid: e.ppid,
            uid: e.uid,
            euid: e.euid,
            egid: e.egid,
            binary,
            command_line,
            container_id,
            path: None,
            old_path: None,
            mode: None,
            owner_uid: None,
            owner_gid: None,
            exit_code: (!exec).then_some(e.exit_code >> 8),
            blocked_by: None,
        }
    }
}

const AT_FDCWD: i32 = -100;
const O_CREAT: u32 = 0o100;

/// The absolute path of a file event's `path` (resolved against the
/// process's cwd or its directory fd while it lives).
fn resolve(pid: u32, dfd: i32, path: &str) -> String {
    if path.starts_with('/') || path.is_empty() {
        return path.to_owned();
    }
    let base = if dfd == AT_FDCWD {
        std::fs::read_link(format!("/proc/{pid}/cwd"))
    } else {
        std::fs::read_link(format!("/proc/{pid}/fd/{dfd}"))
    };
    match base {
        Ok(base) => format!(
            "{}/{}",
            base.display().to_string().trim_end_matches('/'),
            path
        ),
        Err(_) => path.to_owned(),
    }
}

/// A file event under one of `prefixes` as a runtime event; `None` outside.
fn file_event(
    identity: &Identity,
    procs: &mut ProcTracker,
    prefixes: &[String],
    e: &FileEvent,
    ts_ns: i64,
) -> Option<RuntimeEvent> {
    let path = resolve(e.pid, e.dfd, &c_str(&e.path));
    let old_path = (e.op == file_op::RENAME).then(|| resolve(e.pid, AT_FDCWD, &c_str(&e.old_path)));
    let under = |p: &str| prefixes.iter().any(|pre| p.starts_with(pre.as_str()));
    if !under(&path) && !old_path.as_deref().is_some_and(under) {
        return None;
    }
    let kind = match e.op {
        file_op::OPEN if e.flags & O_CREAT != 0 => RuntimeKind::FileCreate,
        file_op::OPEN => RuntimeKind::FileOpen,
        file_op::UNLINK => RuntimeKind::FileDelete,
        file_op::RENAME => RuntimeKind::FileRename,
        file_op::CHMOD => RuntimeKind::FileChmod,
        file_op::CHOWN => RuntimeKind::FileChown,
        _ => return None,
    };
    procs.seq += 1;
    let [ppid, uid, euid, egid] = owners::proc_ids(e.pid);
    Some(RuntimeEvent {
        header: identity.header(
            ts_ns,
            &[
                b"ebpf-file",
                &e.pid.to_le_bytes(),
                &ts_ns.to_le_bytes(),
                &procs.seq.to_le_bytes(),
            ],
        ),
        kind,
        pid: e.pid,
        ppid: ppid.unwrap_or(0),
        uid: uid.unwrap_or(0),
        euid: euid.unwrap_or(0),
        egid: egid.unwrap_or(0),
        binary: procs
            .procs
            .program(e.pid)
            .0
            .unwrap_or_else(|| c_str(&e.comm)),
        command_line: None,
        container_id: owners::proc_container(e.pid),
        path: Some(path),
        old_path,
        mode: matches!(kind, RuntimeKind::FileCreate | RuntimeKind::FileChmod).then_some(e.mode),
        owner_uid: (kind == RuntimeKind::FileChown).then_some(e.owner_uid),
        owner_gid: (kind == RuntimeKind::FileChown).then_some(e.owner_gid),
        exit_code: None,
        blocked_by: None,
    })
}

/// A UDP socket's connect as a `network_connect` from the address and port
/// the kernel bound for it, owned by `owner`.
fn udp_connect(
    identity: &Identity,
    seq: u64,
    e: &UdpEvent,
    owner: Owner,
    ts_ns: i64,
) -> tapwire_schemas::L4Event {
    use tapwire_schemas::{Direction, Endpoint, L4Kind, Protocol};
    tapwire_schemas::L4Event {
        header: identity.header(
            ts_ns,
            &[
                b"ebpf-udp",
                &e.pid.to_le_bytes(),
                &ts_ns.to_le_bytes(),
                &seq.to_le_bytes(),
            ],
        ),
        kind: L4Kind::NetworkConnect,
        pid: owner.pid,
        binary: owner.comm,
        container_id: owner.container_id,
        src: Endpoint {
            ip: tcp::ip(e.family, &e.saddr),
            port: e.sport,
        },
        dst: Endpoint {
            ip: tcp::ip(e.family, &e.daddr),
            port: e.dport,
        },
        protocol: Protocol::Udp,
        direction: Direction::Egress,
        duration_ns: None,
        bytes_sent: None,
        bytes_received: None,
        final_state: None,
        ppid: owner.ppid,
        euid: owner.euid,
        egid: owner.egid,
        binary_path: owner.binary_path,
        command_line: owner.command_line,
        blocked_by: None,
    }
}

/// A client's retransmissions of a refused inbound connection within this
/// long are the same refusal.
const REFUSED_REPEAT_NS: i64 = 60_000_000_000;

/// A connection the kernel refused, as a `network_connect` (egress: the
/// connect or send returned EPERM) or `network_accept` (ingress: the new
/// connection's packet was dropped) saying so in `blocked_by`. An egress
/// refusal has no bound source yet: the source is the pod's address (port
/// 0), when the pod is known.
fn refused(
    identity: &Identity,
    seq: u64,
    b: &wire::BlockEvent,
    owner: Owner,
    source: Option<std::net::IpAddr>,
    rule: String,
    ts_ns: i64,
) -> tapwire_schemas::L4Event {
    use tapwire_schemas::{Direction, Endpoint, Ip, L4Kind, Protocol};
    let ingress = b.direction == wire::DIR_INGRESS;
    let src_ip = match source {
        Some(ip) => Ip(ip),
        None => tcp::ip(b.family, &b.saddr),
    };
    tapwire_schemas::L4Event {
        header: identity.header(
            ts_ns,
            &[
                b"ebpf-refused",
                &b.pid.to_le_bytes(),
                &ts_ns.to_le_bytes(),
                &seq.to_le_bytes(),
            ],
        ),
        kind: if ingress {
            L4Kind::NetworkAccept
        } else {
            L4Kind::NetworkConnect
        },
        pid: owner.pid,
        binary: owner.comm,
        container_id: owner.container_id,
        src: Endpoint {
            ip: src_ip,
            port: b.sport,
        },
        dst: Endpoint {
            ip: tcp::ip(b.family, &b.daddr),
            port: b.dport,
        },
        protocol: if b.protocol == 17 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        direction: if ingress {
            Direction::Ingress
        } else {
            Direction::Egress
        },
        duration_ns: None,
        bytes_sent: None,
        bytes_received: None,
        final_state: None,
        ppid: owner.ppid,
        euid: owner.euid,
        egid: owner.egid,
        binary_path: owner.binary_path,
        command_line: owner.command_line,
        blocked_by: Some(rule),
    }
}

/// The `dns_query` a process sent, from the datagram's first bytes; `None`
/// when they are not a DNS query (another protocol on the port, a reply).
fn dns_sent(
    identity: &Identity,
    seq: u64,
    e: &wire::DnsSendEvent,
    owner: Owner,
    ts_ns: i64,
) -> Option<tapwire_schemas::DnsEvent> {
    use tapwire_schemas::{DnsKind, Endpoint};
    let payload = &e.payload[..usize::from(e.len).min(e.payload.len())];
    let message = tapwire_packet::dns::parse(payload).ok()?;
    if message.is_response {
        return None;
    }
    let (name, query_type) = message
        .questions
        .first()
        .map(|q| (q.name.clone(), q.qtype.clone()))
        .unwrap_or_default();
    Some(tapwire_schemas::DnsEvent {
        header: identity.header(
            ts_ns,
            &[
                b"ebpf-dns",
                &e.pid.to_le_bytes(),
                &ts_ns.to_le_bytes(),
                &seq.to_le_bytes(),
            ],
        ),
        kind: DnsKind::DnsQuery,
        pid: owner.pid,
        binary: owner.comm,
        container_id: owner.container_id,
        name,
        query_type,
        answers: Vec::new(),
        resolver: Some(Endpoint {
            ip: tcp::ip(e.family, &e.daddr),
            port: e.dport,
        }),
        response_code: None,
        client: Some(Endpoint {
            ip: tcp::ip(e.family, &e.saddr),
            port: e.sport,
        }),
        connection: None,
    })
}

/// Seeds `tcp` with the TCP listeners of every network namespace that
/// exist now (they predate the agent, so no LISTEN transition will name
/// them); returns how many.
fn seed_listeners(tcp: &mut tcp::TcpTracker, procs: &mut ProcTracker) -> usize {
    let listeners = match crate::inventory::tcp_listeners(std::path::Path::new("/proc")) {
        Ok(l) => l,
        Err(err) => {
            tracing::warn!(error = %err, "listeners before the agent could not be read");
            return 0;
        }
    };
    let n = listeners.len();
    for l in listeners {
        let owner = match l.pid {
            Some(pid) => procs.procs.owner_from_proc(&mut procs.cgroups, pid),
            None => Owner::default(),
        };
        tcp.seed_listener(l.netns, l.port, owner);
    }
    n
}

/// What the eBPF source shares with the agent's other sources and stages.
pub struct With {
    /// Who sent DNS queries from where, noted for the packet source.
    pub senders: owners::DnsSenders,
    /// Whether a packet source derives DNS queries (then the queries sent
    /// are only noted in `senders`).
    pub packets_dns: bool,
    /// The bus to follow `tapwire.enforcement` and `tapwire.pods` on
    /// (none: enforcement is off).
    pub bus: Option<tapwire_plumbing::stage::Bus>,
}

/// Loads, attaches and reads until `shutdown`; open connections are then
/// reported as stale flows.
#[cfg(not(tapwire_no_bpf))]
///
/// DNS queries sent by processes (UDP to 53 and 5353) are noted in
/// `senders`; they become `dns_query` events here only when no packet
/// source of the agent derives them (`packets_dns` false), since packets
/// also carry the answers. With a bus and `capture.ebpf.enforce`, the
/// enforce-mode policies are applied ([`enforce`]) before the ring buffer
/// is read.
pub async fn run<S: Sink>(
    config: &CaptureConfig,
    identity: Identity,
    sink: &S,
    shutdown: CancellationToken,
    summary: &Summary,
    with: With,
) -> Result<(), CaptureError> {
    use aya::maps::{MapData, PerCpuArray, RingBuf};
    let With {
        senders,
        packets_dns,
        bus,
    } = with;
    use aya::programs::TracePoint;
    use tokio::io::unix::AsyncFd;

    static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tapwire.bpf.o"));
    ensure_tracefs()?;
    let ec = &config.ebpf;
    let mut bpf = aya::EbpfLoader::new()
        .set_max_entries("events", ec.ring_buffer_bytes)
        .load(OBJECT)
        .map_err(|e| EbpfError::Load(e.to_string()))?;
    let programs: [(&'static str, &'static str, &'static str, bool); 25] = [
        (
            "tw_sock_state",
            "sock",
            "inet_sock_set_state",
            ec.connections,
        ),
        (
            "tw_connect",
            "syscalls",
            "sys_enter_connect",
            ec.connections,
        ),
        (
            "tw_connect_exit",
            "syscalls",
            "sys_exit_connect",
            ec.connections,
        ),
        ("tw_sendto", "syscalls", "sys_enter_sendto", ec.connections),
        (
            "tw_sendmsg",
            "syscalls",
            "sys_enter_sendmsg",
            ec.connections,
        ),
        (
            "tw_sendmmsg",
            "syscalls",
            "sys_enter_sendmmsg",
            ec.connections,
        ),
        (
            "tw_sendto_exit",
            "syscalls",
            "sys_exit_sendto",
            ec.connections,
        ),
        (
            "tw_sendmsg_exit",
            "syscalls",
            "sys_exit_sendmsg",
            ec.connections,
        ),
        (
            "tw_sendmmsg_exit",
            "syscalls",
            "sys_exit_sendmmsg",
            ec.connections,
        ),
        ("tw_exec", "sched", "sched_process_exec", ec.processes),
        ("tw_exit", "sched", "sched_process_exit", ec.processes),
        ("tw_openat", "syscalls", "sys_enter_openat", ec.files),
        ("tw_unlinkat", "syscalls", "sys_enter_unlinkat", ec.files),
        ("tw_renameat2", "syscalls", "sys_enter_renameat2", ec.files),
        ("tw_fchmodat", "syscalls", "sys_enter_fchmodat", ec.files),
        ("tw_fchownat", "syscalls", "sys_enter_fchownat", ec.files),
        ("tw_open", "syscalls", "sys_enter_open", ec.files),
        ("tw_creat", "syscalls", "sys_enter_creat", ec.files),
        ("tw_unlink", "syscalls", "sys_enter_unlink", ec.files),
        ("tw_rename", "syscalls", "sys_enter_rename", ec.files),
        ("tw_renameat", "syscalls", "sys_enter_renameat", ec.files),
        ("tw_chmod", "syscalls", "sys_enter_chmod", ec.files),
        ("tw_fchmodat2", "syscalls", "sys_enter_fchmodat2", ec.files),
        ("tw_chown", "syscalls", "sys_enter_chown", ec.files),
        ("tw_lchown", "syscalls", "sys_enter_lchown", ec.files),
    ];
    for (program, category, name, enabled) in programs {
        if !enabled {
            continue;
        }
        let attach_err = |reason: String| EbpfError::Attach {
            program,
            category,
            name,
            reason,
        };
        let prog: &mut TracePoint = bpf
            .program_mut(program)
            .ok_or_else(|| attach_err("not in the object".to_owned()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| attach_err(e.to_string()))?;
        prog.load().map_err(|e| attach_err(e.to_string()))?;
        prog.attach(category, name)
            .map_err(|e| attach_err(e.to_string()))?;
        tracing::info!(program, "attached to {category}:{name}");
    }
    let mut uprobes = Uprobes::default();
    if ec.lookups {
        match uprobes.load(&mut bpf) {
            Ok(()) => {
                let n = uprobes.attach(&mut bpf, std::path::Path::new("/"), &ec.lookup_libraries);
                tracing::info!(libraries = n, "getaddrinfo probed");
            }
            Err(err) => tracing::warn!(error = %err, "name lookups are not traced"),
        }
    }
    // Enforcement before the reader starts: an agent (re)started enforces
    // what the topic holds before it says it is attached.
    let mut enforcer = None;
    match (ec.enforce, &bus) {
        (false, _) => eprintln!("capture: enforcement off: capture.ebpf.enforce is false"),
        (true, None) => {
            eprintln!("capture: enforcement off: no bus to follow tapwire.enforcement on")
        }
        (true, Some(bus)) => {
            match enforce::Enforcer::start(&mut bpf, bus, &identity.node, &shutdown).await {
                Ok(Some(e)) => {
                    let (policies, pods) = e.summary();
                    eprintln!(
                        "capture: enforcement ready: {policies} enforce-mode policies, {pods} pods on node {}",
                        identity.node
                    );
                    enforcer = Some(e);
                }
                Ok(None) => return Ok(()),
                Err(reason) => {
                    tracing::warn!(%reason, "enforcement off");
                    eprintln!("capture: enforcement off: {reason}");
                }
            }
        }
    }
    summary.set_enforcing(enforcer.is_some());
    let ring = RingBuf::try_from(
        bpf.take_map("events")
            .ok_or_else(|| EbpfError::Ring("no events map".into()))?,
    )
    .map_err(|e| EbpfError::Ring(e.to_string()))?;
    let lost_map: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
        bpf.take_map("lost")
            .ok_or_else(|| EbpfError::Ring("no lost map".into()))?,
    )
    .map_err(|e| EbpfError::Ring(e.to_string()))?;
    // `AsyncFd::register` is the unsafe replacement; `new` is sound here:
    // the ring buffer owns its descriptor (aya's MapData holds an OwnedFd)
    // and lives inside the AsyncFd, so it cannot be closed while registered.
    #[allow(deprecated)]
    let mut ring = AsyncFd::new(ring).map_err(|e| EbpfError::Ring(e.to_string()))?;
    eprintln!("capture: ebpf attached");

    let mut reader = Reader {
        identity: identity.clone(),
        prefixes: ec.file_path_prefixes.clone(),
        offset: monotonic_to_wall(),
        node_key: identity.node.clone().into_bytes(),
        tcp: tcp::TcpTracker::new(identity.clone()),
        procs: ProcTracker {
            identity: identity.clone(),
            procs: Processes::default(),
            cgroups: Cgroups::new(owners::cgroup2_root()),
            containers_seen: Default::default(),
            seq: 0,
        },
        lookups: lookups::Lookups::new(
            identity.clone(),
            ec.resolution_window_ms as i64 * 1_000_000,
        ),
        new_containers: Vec::new(),
        names: enforcer.as_ref().map(|e| e.names.clone()),
        refused: std::collections::HashMap::new(),
        senders,
        packets_dns,
        l4: Vec::new(),
        dns: Vec::new(),
        batch: Vec::new(),
        counts: [0; 3],
    };
    if ec.connections {
        let n = seed_listeners(&mut reader.tcp, &mut reader.procs);
        tracing::info!(listeners = n, "listeners that predate the agent");
    }
    let mut reported_lost = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stale_ns = ec.stale_after_ms as i64 * 1_000_000;
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                // What the programs wrote before the stop is still sent.
                let rb = ring.get_mut();
                while let Some(item) = rb.next() {
                    reader.take(&item)?;
                }
            }
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(|e| EbpfError::Ring(e.to_string()))?;
                let rb = guard.get_inner_mut();
                // The kernel wakes the reader only when it has caught up with
                // the writer: readiness is cleared only once the ring was read
                // empty. A full batch leaves the rest for the next turn of the
                // loop (still ready), after the batch was sent.
                let mut drained = true;
                while let Some(item) = rb.next() {
                    reader.take(&item)?;
                    if reader.batch.len() + reader.l4.len() >= 1000 {
                        drained = false;
                        break;
                    }
                }
                if drained {
                    guard.clear_ready();
                }
                // Containers' own C libraries, probed as they start.
                for pid in std::mem::take(&mut reader.new_containers) {
                    if uprobes.loaded {
                        let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
                        uprobes.attach(&mut bpf, &root, &ec.lookup_libraries);
                    }
                }
            }
            changed = async {
                match enforcer.as_mut() {
                    Some(e) => e.next_change().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Err(err) = changed {
                    tracing::error!(error = %err, "enforcement tables not written");
                }
            }
            _ = tick.tick() => {
                if let Some(e) = enforcer.as_mut()
                    && let Err(err) = e.tick()
                {
                    tracing::error!(error = %err, "enforcement tables not written");
                }
                let now = crate::inventory::now_ns();
                reader.tcp.expire(now, stale_ns, &mut reader.l4);
                let lost: u64 = lost_map.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0);
                if lost > reported_lost {
                    let n = lost - reported_lost;
                    reported_lost = lost;
                    summary.lost("ringbuf", n);
                    tracing::warn!(lost = n, "ring buffer full: events lost");
                    for topic in [topics::L4_RAW, topics::RUNTIME_RAW] {
                        let loss = LossRecord {
                            header: identity.header(now, &[b"loss", b"ringbuf", topic.as_bytes(), &lost.to_le_bytes()]),
                            source: "ringbuf".to_owned(),
                            lost: n,
                        };
                        reader.batch.push(OutRecord::new(topic, Some(reader.node_key.clone()), encode(&loss)?));
                    }
                }
            }
        }
        if stopping {
            reader
                .tcp
                .expire(crate::inventory::now_ns(), 0, &mut reader.l4);
        }
        for e in reader.l4.drain(..) {
            reader.batch.push(OutRecord::new(
                topics::L4_RAW,
                Some(reader.node_key.clone()),
                encode(&e)?,
            ));
            reader.counts[0] += 1;
        }
        for e in reader.dns.drain(..) {
            reader.batch.push(OutRecord::new(
                topics::L4_RAW,
                Some(reader.node_key.clone()),
                encode(&e)?,
            ));
            reader.counts[2] += 1;
        }
        if !reader.batch.is_empty() {
            sink.send_batch(std::mem::take(&mut reader.batch)).await?;
            Summary::add(&summary.l4_events, reader.counts[0]);
            Summary::add(&summary.runtime_events, reader.counts[1]);
            Summary::add(&summary.dns_events, reader.counts[2]);
            reader.counts = [0; 3];
        }
        if stopping {
            if reader.tcp.untracked_closes > 0 {
                tracing::info!(
                    closes = reader.tcp.untracked_closes,
                    "closes of connections older than the sensor were not reported"
                );
            }
            return Ok(());
        }
    }
}

/// Turns ring buffer records into events, kept until the loop sends them.
struct Reader {
    identity: Identity,
    prefixes: Vec<String>,
    /// Wall clock minus CLOCK_MONOTONIC.
    offset: i64,
    node_key: Vec<u8>,
    tcp: tcp::TcpTracker,
    procs: ProcTracker,
    lookups: lookups::Lookups,
    /// Processes of containers not seen before: their C libraries are to
    /// be probed.
    new_containers: Vec<u32>,
    /// Rule names and pod addresses behind the kernel's refusals (when
    /// enforcing).
    names: Option<enforce::SharedNames>,
    /// Inbound connections refused, by 4-tuple, with when: a client's
    /// retransmitted SYNs are one refused connection.
    refused: std::collections::HashMap<([u8; 16], u16, [u8; 16], u16), i64>,
    /// Who sent DNS queries from where, for the packet source.
    senders: owners::DnsSenders,
    /// Whether a packet source derives the queries (then they are only
    /// noted in `senders` here).
    packets_dns: bool,
    /// Connection events not yet encoded.
    l4: Vec<tapwire_schemas::L4Event>,
    /// DNS events (lookups, resolutions) not yet encoded.
    dns: Vec<tapwire_schemas::DnsEvent>,
    batch: Vec<OutRecord>,
    /// L4, runtime and DNS events in `batch`.
    counts: [u64; 3],
}

impl Reader {
    fn take(&mut self, item: &[u8]) -> Result<(), CaptureError> {
        let before = self.l4.len();
        self.decode(item)?;
        // A connect to an address its process or container just looked up.
        for c in &self.l4[before..] {
            if c.kind == tapwire_schemas::L4Kind::NetworkConnect
                && let Some(resolution) = self.lookups.connect(c)
            {
                self.dns.push(resolution);
            }
        }
        Ok(())
    }

    fn decode(&mut self, item: &[u8]) -> Result<(), CaptureError> {
        match wire::decode(item) {
            Ok(Event::Tcp(e)) => {
                let procs = &mut self.procs;
                self.tcp.handle(
                    &e,
                    e.ts_ns as i64 + self.offset,
                    &mut procs.procs,
                    &mut procs.cgroups,
                    &mut self.l4,
                );
            }
            Ok(Event::Proc(e)) => {
                let mut ev = self.procs.handle(&e, e.ts_ns as i64 + self.offset);
                if e.blocked_rule > 0 {
                    ev.blocked_by = Some(self.rule_name(e.blocked_rule - 1));
                }
                if self.procs.containers_seen.len() >= MAX_CONTAINERS_SEEN {
                    // Their libraries stay probed (by inode); only the memo goes.
                    self.procs.containers_seen.clear();
                }
                if ev.kind == RuntimeKind::ProcessExec
                    && let Some(id) = &ev.container_id
                    && self.procs.containers_seen.insert(id.clone())
                {
                    self.new_containers.push(ev.pid);
                }
                self.runtime(&ev)?;
            }
            Ok(Event::DnsSend(e)) => {
                let procs = &mut self.procs;
                let owner = procs
                    .procs
                    .owner(&mut procs.cgroups, e.pid, c_str(&e.comm), &e.task);
                if self.packets_dns {
                    let client = tcp::ip(e.family, &e.saddr);
                    self.senders.note((client.0, e.sport), owner);
                } else {
                    procs.seq += 1;
                    if let Some(query) = dns_sent(
                        &self.identity,
                        procs.seq,
                        &e,
                        owner,
                        e.ts_ns as i64 + self.offset,
                    ) {
                        self.dns.push(query);
                    }
                }
            }
            Ok(Event::Lookup(e)) => {
                let procs = &mut self.procs;
                let owner = procs
                    .procs
                    .owner(&mut procs.cgroups, e.pid, c_str(&e.comm), &e.task);
                let ev = self.lookups.lookup(&e, owner, e.ts_ns as i64 + self.offset);
                self.dns.push(ev);
            }
            Ok(Event::File(e)) => {
                let ev = file_event(
                    &self.identity,
                    &mut self.procs,
                    &self.prefixes,
                    &e,
                    e.ts_ns as i64 + self.offset,
                );
                if let Some(ev) = ev {
                    self.runtime(&ev)?;
                }
            }
            Ok(Event::Udp(e)) => {
                let procs = &mut self.procs;
                procs.seq += 1;
                let owner = procs
                    .procs
                    .owner(&mut procs.cgroups, e.pid, c_str(&e.comm), &e.task);
                self.l4.push(udp_connect(
                    &self.identity,
                    procs.seq,
                    &e,
                    owner,
                    e.ts_ns as i64 + self.offset,
                ));
            }
            Ok(Event::Blocked(b)) => {
                let ts_ns = b.ts_ns as i64 + self.offset;
                let ingress = b.direction == wire::DIR_INGRESS;
                if ingress {
                    let tuple = (b.saddr, b.sport, b.daddr, b.dport);
                    if self
                        .refused
                        .get(&tuple)
                        .is_some_and(|t| ts_ns - t < REFUSED_REPEAT_NS)
                    {
                        return Ok(());
                    }
                    if self.refused.len() >= 10_000 {
                        self.refused.retain(|_, t| ts_ns - *t < REFUSED_REPEAT_NS);
                    }
                    self.refused.insert(tuple, ts_ns);
                }
                let rule = self.rule_name(b.rule);
                let procs = &mut self.procs;
                procs.seq += 1;
                let owner = if ingress {
                    Owner {
                        container_id: procs.cgroups.container(b.task.cgroup_id, 0),
                        ..Owner::default()
                    }
                } else {
                    procs
                        .procs
                        .owner(&mut procs.cgroups, b.pid, c_str(&b.comm), &b.task)
                };
                let source = (!ingress)
                    .then(|| {
                        self.names
                            .as_ref()
                            .and_then(|n| n.lock().ok()?.address(b.task.cgroup_id, b.family == 2))
                    })
                    .flatten();
                self.l4.push(refused(
                    &self.identity,
                    procs.seq,
                    &b,
                    owner,
                    source,
                    rule,
                    ts_ns,
                ));
            }
            Err(err) => tracing::warn!(error = %err, "undecodable ring buffer record"),
        }
        Ok(())
    }

    /// The `namespace/policy/rule` behind a refusal's rule index.
    fn rule_name(&self, index: u32) -> String {
        self.names
            .as_ref()
            .and_then(|n| n.lock().ok()?.rule(index).map(str::to_owned))
            .unwrap_or_else(|| format!("-/unknown/rule-{index}"))
    }

    fn runtime(&mut self, ev: &RuntimeEvent) -> Result<(), CaptureError> {
        self.batch.push(OutRecord::new(
            topics::RUNTIME_RAW,
            Some(self.node_key.clone()),
            encode(ev)?,
        ));
        self.counts[1] += 1;
        Ok(())
    }
}

/// The `getaddrinfo` uprobes and the libraries they are attached to.
#[cfg(not(tapwire_no_bpf))]
#[derive(Default)]
struct Uprobes {
    loaded: bool,
    /// (device, inode) of every library probed: one file reached by several
    /// paths (merged /usr, containers sharing a layer) is probed once.
    attached: std::collections::HashSet<(u64, u64)>,
}

#[cfg(not(tapwire_no_bpf))]
impl Uprobes {
    const PROGRAMS: [&'static str; 2] = ["tw_getaddrinfo", "tw_getaddrinfo_ret"];

    fn load(&mut self, bpf: &mut aya::Ebpf) -> Result<(), EbpfError> {
        for name in Self::PROGRAMS {
            let prog: &mut aya::programs::UProbe = bpf
                .program_mut(name)
                .ok_or_else(|| EbpfError::Load(format!("{name} is not in the object")))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| {
                    EbpfError::Load(format!("{name}: {e}"))
                })?;
            prog.load()
                .map_err(|e| EbpfError::Load(format!("{name}: {e}")))?;
        }
        self.loaded = true;
        Ok(())
    }

    /// Probes each of `libraries` found under `root`; returns how many were
    /// new. A library that cannot be probed is named and skipped.
    fn attach(
        &mut self,
        bpf: &mut aya::Ebpf,
        root: &std::path::Path,
        libraries: &[String],
    ) -> usize {
        use std::os::unix::fs::MetadataExt;
        let mut n = 0;
        for lib in libraries {
            let path = root.join(lib.trim_start_matches('/'));
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !self.attached.insert((meta.dev(), meta.ino())) {
                continue;
            }
            let mut ok = true;
            for name in Self::PROGRAMS {
                let Some(Ok(prog)) = bpf
                    .program_mut(name)
                    .map(<&mut aya::programs::UProbe>::try_from)
                else {
                    ok = false;
                    continue;
                };
                if let Err(err) = prog.attach(Some("getaddrinfo"), 0, &path, None) {
                    ok = false;
                    tracing::warn!(
                        library = %path.display(),
                        error = %err,
                        "getaddrinfo not probed: lookups of processes using this library are not seen"
                    );
                }
            }
            if ok {
                tracing::info!(library = %path.display(), "getaddrinfo probed");
                n += 1;
            }
        }
        n
    }
}

/// Without the programs: says why.
#[cfg(tapwire_no_bpf)]
pub async fn run<S: Sink>(
    _config: &CaptureConfig,
    _identity: Identity,
    _sink: &S,
    _shutdown: CancellationToken,
    _summary: &Summary,
    _with: With,
) -> Result<(), CaptureError> {
    Err(EbpfError::NotBuilt(env!("TAPWIRE_BPF_MISSING")).into())
}
