//! The records of the `events` ring buffer, as `#[repr(C)]` twins of the C
//! structs in `capture-bpf/tapwire.h`, decoded without `unsafe`: each field
//! is read at its `offset_of!` position. A test checks every size and
//! offset against the BTF of the compiled object, so the two sides cannot
//! drift apart silently.

use std::mem::{offset_of, size_of};

/// `enum tw_kind`.
pub const TW_TCP_STATE: u32 = 1;
/// A process executed a binary.
pub const TW_PROC_EXEC: u32 = 2;
/// A process exited.
pub const TW_PROC_EXIT: u32 = 3;
/// A file event.
pub const TW_FILE: u32 = 4;
/// A UDP socket's connect.
pub const TW_UDP_CONNECT: u32 = 5;
/// A `getaddrinfo` call and its result.
pub const TW_DNS_LOOKUP: u32 = 6;
/// A datagram sent to a DNS port.
pub const TW_DNS_SEND: u32 = 7;
/// `TW_NET_BLOCKED`: [`BlockEvent`].
pub const TW_NET_BLOCKED: u32 = 8;
/// `tw_enforce_flags`: a cgroup's connects and sends are checked.
pub const ENFORCE_EGRESS: u32 = 1;
/// `tw_enforce_flags`: new inbound connections to a cgroup's sockets are checked.
pub const ENFORCE_INGRESS: u32 = 2;
/// `tw_enforce_flags`: a cgroup's execs are checked.
pub const ENFORCE_EXEC: u32 = 4;
/// `tw_direction`: egress.
pub const DIR_EGRESS: u8 = 1;
/// `tw_direction`: ingress.
pub const DIR_INGRESS: u8 = 2;
/// Payload bytes a DNS send record carries at most.
pub const DNS_PAYLOAD: usize = 512;
/// Addresses a lookup record carries at most.
pub const LOOKUP_ADDRS: usize = 8;

/// `enum tw_file_op`.
pub mod file_op {
    /// openat with write, create or truncate flags.
    pub const OPEN: u32 = 1;
    /// unlinkat.
    pub const UNLINK: u32 = 2;
    /// renameat2.
    pub const RENAME: u32 = 3;
    /// fchmodat.
    pub const CHMOD: u32 = 4;
    /// fchownat.
    pub const CHOWN: u32 = 5;
}

/// `struct tw_file_event`.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEvent {
    /// [`TW_FILE`].
    pub kind: u32,
    /// Tgid.
    pub pid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// One of [`file_op`].
    pub op: u32,
    /// openat / unlinkat / renameat2 flags.
    pub flags: u32,
    /// openat / fchmodat mode.
    pub mode: u32,
    /// fchownat uid.
    pub owner_uid: u32,
    /// fchownat gid.
    pub owner_gid: u32,
    /// Directory fd the (new) path is relative to.
    pub dfd: i32,
    /// `comm`.
    pub comm: [u8; 16],
    /// Path as given (the new path of a rename).
    pub path: [u8; 256],
    /// Old path of a rename.
    pub old_path: [u8; 256],
}

/// `struct tw_task_ids`: the current task, taken in the kernel.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskIds {
    /// cgroup v2 id (the inode of the task's cgroup directory).
    pub cgroup_id: u64,
    /// Parent's tgid.
    pub ppid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct tw_udp_event`: a successful UDP connect(), read at its return.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpEvent {
    /// [`TW_UDP_CONNECT`].
    pub kind: u32,
    /// Tgid.
    pub pid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// The connecting task.
    pub task: TaskIds,
    /// Inode of the socket's network namespace.
    pub netns: u32,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Local port (bound by the connect).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Padding.
    pub pad: u16,
    /// Local address.
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// `comm`.
    pub comm: [u8; 16],
}

/// `struct tw_tcp_event`: one `sock:inet_sock_set_state` call (TCP).
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpEvent {
    /// [`TW_TCP_STATE`].
    pub kind: u32,
    /// Tgid of the current task (only meaningful in process context).
    pub pid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// The socket's kernel address: identifies it while it lives.
    pub skaddr: u64,
    /// `tcp_sock.bytes_acked` at TCP_CLOSE.
    pub bytes_acked: u64,
    /// `tcp_sock.bytes_received` at TCP_CLOSE.
    pub bytes_received: u64,
    /// The current task at CLOSE -> SYN_SENT and CLOSE -> LISTEN (the
    /// owner); zero otherwise.
    pub task: TaskIds,
    /// Inode of the socket's network namespace.
    pub netns: u32,
    /// State before.
    pub oldstate: i32,
    /// State after.
    pub newstate: i32,
    /// Local port.
    pub sport: u16,
    /// Remote port.
    pub dport: u16,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// At TCP_CLOSE: 1 when the peer's FIN was processed (SOCK_DONE).
    pub fin_received: u16,
    /// Local address (4 bytes used for IPv4).
    pub saddr: [u8; 16],
    /// Remote address.
    pub daddr: [u8; 16],
    /// `comm` of the current task.
    pub comm: [u8; 16],
}

/// `struct tw_proc_event`: exec or exit.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEvent {
    /// [`TW_PROC_EXEC`] or [`TW_PROC_EXIT`].
    pub kind: u32,
    /// Tgid.
    pub pid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Parent's tgid.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// `task->exit_code` at exit (status << 8 | signal).
    pub exit_code: i32,
    /// Bytes of `args` used.
    pub args_len: u32,
    /// Exec: the enforcement rule's index + 1 when the kernel killed it.
    pub blocked_rule: u32,
    /// Zero.
    pub pad: u32,
    /// `comm`.
    pub comm: [u8; 16],
    /// Path given to exec.
    pub filename: [u8; 256],
    /// argv, NUL-separated.
    pub args: [u8; 256],
}

/// `struct tw_lookup_event`: a `getaddrinfo` call, read at its return.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupEvent {
    /// [`TW_DNS_LOOKUP`].
    pub kind: u32,
    /// Tgid.
    pub pid: u32,
    /// CLOCK_MONOTONIC nanoseconds at the return.
    pub ts_ns: u64,
    /// The calling task.
    pub task: TaskIds,
    /// `getaddrinfo`'s return: 0 or an `EAI_*` code.
    pub ret: i32,
    /// Entries of `families`/`addrs` used.
    pub naddrs: u32,
    /// AF_INET (2) or AF_INET6 (10) per entry; 0 for other families.
    pub families: [u16; LOOKUP_ADDRS],
    /// Addresses (4 bytes used for IPv4).
    pub addrs: [[u8; 16]; LOOKUP_ADDRS],
    /// `comm` of the process.
    pub comm: [u8; 16],
    /// The name looked up.
    pub name: [u8; 256],
}

/// `struct tw_dns_send_event`: a datagram sent to port 53 or 5353, read at
/// the send's return.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSendEvent {
    /// [`TW_DNS_SEND`].
    pub kind: u32,
    /// Tgid.
    pub pid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// The sending task.
    pub task: TaskIds,
    /// Inode of the socket's network namespace.
    pub netns: u32,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Payload bytes copied.
    pub len: u16,
    /// Source address.
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// `comm` of the process.
    pub comm: [u8; 16],
    /// The datagram's first bytes.
    pub payload: [u8; DNS_PAYLOAD],
}

/// `struct tw_block_event`: a connection the kernel refused.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvent {
    /// [`TW_NET_BLOCKED`].
    pub kind: u32,
    /// Tgid (0 for ingress).
    pub pid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// The task (egress); only the cgroup id for ingress.
    pub task: TaskIds,
    /// Index into the agent's rule names.
    pub rule: u32,
    /// Zero (not read by the programs).
    pub netns: u32,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Source port (ingress; 0 for egress: not bound yet).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// [`DIR_EGRESS`] or [`DIR_INGRESS`].
    pub direction: u8,
    /// Source address (ingress; zero for egress).
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// `comm` of the process (egress).
    pub comm: [u8; 16],
}

/// `struct tw_net_match`: the data of a `net_rules` key (`struct tw_net_key`
/// is the prefix length, 128 + the address prefix, then this).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NetMatch {
    /// Low half of the cgroup id.
    pub cgroup_lo: u32,
    /// High half of the cgroup id.
    pub cgroup_hi: u32,
    /// [`DIR_EGRESS`] or [`DIR_INGRESS`].
    pub direction: u8,
    /// 6 or 17.
    pub protocol: u8,
    /// Port (host order); 0: ports with no entries of their own.
    pub port: u16,
    /// 4 or 6.
    pub family: u8,
    /// Zero.
    pub pad: [u8; 3],
    /// The address, IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

/// `struct tw_net_verdict`: a value of the `net_rules` trie.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetVerdict {
    /// 1: refuse.
    pub deny: u32,
    /// Index into the agent's rule names.
    pub rule: u32,
}

/// `struct tw_exec_key`: a key of the `exec_rules` hash.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExecKey {
    /// The cgroup.
    pub cgroup_id: u64,
    /// The path, zero-padded.
    pub path: [u8; 256],
}

impl NetMatch {
    /// The bytes the kernel compares (the map's key data).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&self.cgroup_lo.to_ne_bytes());
        b[4..8].copy_from_slice(&self.cgroup_hi.to_ne_bytes());
        b[8] = self.direction;
        b[9] = self.protocol;
        b[10..12].copy_from_slice(&self.port.to_ne_bytes());
        b[12] = self.family;
        b[16..32].copy_from_slice(&self.addr);
        b
    }
}

impl NetVerdict {
    /// The map's value.
    pub fn to_words(&self) -> [u32; 2] {
        [self.deny, self.rule]
    }
}

impl ExecKey {
    /// The bytes of the map's key.
    pub fn to_bytes(&self) -> [u8; 264] {
        let mut b = [0u8; 264];
        b[0..8].copy_from_slice(&self.cgroup_id.to_ne_bytes());
        b[8..].copy_from_slice(&self.path);
        b
    }
}

/// A record of the ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// TCP state change.
    Tcp(TcpEvent),
    /// Exec or exit.
    Proc(Box<ProcEvent>),
    /// A file event.
    File(Box<FileEvent>),
    /// A UDP connect.
    Udp(UdpEvent),
    /// A name lookup.
    Lookup(Box<LookupEvent>),
    /// A datagram to a DNS port.
    DnsSend(Box<DnsSendEvent>),
    /// A connection the kernel refused.
    Blocked(BlockEvent),
}

/// A record that does not decode (wrong kind or length).
#[derive(Debug, thiserror::Error)]
#[error("ring buffer record of {len} bytes with kind {kind} does not decode")]
pub struct WireError {
    /// Its length.
    pub len: usize,
    /// Its kind field.
    pub kind: u32,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
fn task_at(b: &[u8], off: usize) -> TaskIds {
    TaskIds {
        cgroup_id: u64_at(b, off + offset_of!(TaskIds, cgroup_id)),
        ppid: u32_at(b, off + offset_of!(TaskIds, ppid)),
        euid: u32_at(b, off + offset_of!(TaskIds, euid)),
        egid: u32_at(b, off + offset_of!(TaskIds, egid)),
        pad: 0,
    }
}
fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b[off..off + N].try_into().expect("N bytes")
}

/// Decodes one record.
pub fn decode(b: &[u8]) -> Result<Event, WireError> {
    let kind = if b.len() >= 4 { u32_at(b, 0) } else { 0 };
    let err = WireError { len: b.len(), kind };
    match kind {
        TW_TCP_STATE if b.len() >= size_of::<TcpEvent>() => Ok(Event::Tcp(TcpEvent {
            kind,
            pid: u32_at(b, offset_of!(TcpEvent, pid)),
            ts_ns: u64_at(b, offset_of!(TcpEvent, ts_ns)),
            skaddr: u64_at(b, offset_of!(TcpEvent, skaddr)),
            bytes_acked: u64_at(b, offset_of!(TcpEvent, bytes_acked)),
            bytes_received: u64_at(b, offset_of!(TcpEvent, bytes_received)),
            task: task_at(b, offset_of!(TcpEvent, task)),
            netns: u32_at(b, offset_of!(TcpEvent, netns)),
            oldstate: u32_at(b, offset_of!(TcpEvent, oldstate)) as i32,
            newstate: u32_at(b, offset_of!(TcpEvent, newstate)) as i32,
            sport: u16_at(b, offset_of!(TcpEvent, sport)),
            dport: u16_at(b, offset_of!(TcpEvent, dport)),
            family: u16_at(b, offset_of!(TcpEvent, family)),
            fin_received: u16_at(b, offset_of!(TcpEvent, fin_received)),
            saddr: arr(b, offset_of!(TcpEvent, saddr)),
            daddr: arr(b, offset_of!(TcpEvent, daddr)),
            comm: arr(b, offset_of!(TcpEvent, comm)),
        })),
        TW_PROC_EXEC | TW_PROC_EXIT if b.len() >= size_of::<ProcEvent>() => {
            Ok(Event::Proc(Box::new(ProcEvent {
                kind,
                pid: u32_at(b, offset_of!(ProcEvent, pid)),
                ts_ns: u64_at(b, offset_of!(ProcEvent, ts_ns)),
                cgroup_id: u64_at(b, offset_of!(ProcEvent, cgroup_id)),
                ppid: u32_at(b, offset_of!(ProcEvent, ppid)),
                uid: u32_at(b, offset_of!(ProcEvent, uid)),
                euid: u32_at(b, offset_of!(ProcEvent, euid)),
                egid: u32_at(b, offset_of!(ProcEvent, egid)),
                exit_code: u32_at(b, offset_of!(ProcEvent, exit_code)) as i32,
                args_len: u32_at(b, offset_of!(ProcEvent, args_len)),
                blocked_rule: u32_at(b, offset_of!(ProcEvent, blocked_rule)),
                pad: 0,
                comm: arr(b, offset_of!(ProcEvent, comm)),
                filename: arr(b, offset_of!(ProcEvent, filename)),
                args: arr(b, offset_of!(ProcEvent, args)),
            })))
        }
        TW_FILE if b.len() >= size_of::<FileEvent>() => Ok(Event::File(Box::new(FileEvent {
            kind,
            pid: u32_at(b, offset_of!(FileEvent, pid)),
            ts_ns: u64_at(b, offset_of!(FileEvent, ts_ns)),
            op: u32_at(b, offset_of!(FileEvent, op)),
            flags: u32_at(b, offset_of!(FileEvent, flags)),
            mode: u32_at(b, offset_of!(FileEvent, mode)),
            owner_uid: u32_at(b, offset_of!(FileEvent, owner_uid)),
            owner_gid: u32_at(b, offset_of!(FileEvent, owner_gid)),
            dfd: u32_at(b, offset_of!(FileEvent, dfd)) as i32,
            comm: arr(b, offset_of!(FileEvent, comm)),
            path: arr(b, offset_of!(FileEvent, path)),
            old_path: arr(b, offset_of!(FileEvent, old_path)),
        }))),
        TW_UDP_CONNECT if b.len() >= size_of::<UdpEvent>() => Ok(Event::Udp(UdpEvent {
            kind,
            pid: u32_at(b, offset_of!(UdpEvent, pid)),
            ts_ns: u64_at(b, offset_of!(UdpEvent, ts_ns)),
            task: task_at(b, offset_of!(UdpEvent, task)),
            netns: u32_at(b, offset_of!(UdpEvent, netns)),
            family: u16_at(b, offset_of!(UdpEvent, family)),
            sport: u16_at(b, offset_of!(UdpEvent, sport)),
            dport: u16_at(b, offset_of!(UdpEvent, dport)),
            pad: 0,
            saddr: arr(b, offset_of!(UdpEvent, saddr)),
            daddr: arr(b, offset_of!(UdpEvent, daddr)),
            comm: arr(b, offset_of!(UdpEvent, comm)),
        })),
        TW_DNS_LOOKUP if b.len() >= size_of::<LookupEvent>() => {
            let families_at = offset_of!(LookupEvent, families);
            let addrs_at = offset_of!(LookupEvent, addrs);
            Ok(Event::Lookup(Box::new(LookupEvent {
                kind,
                pid: u32_at(b, offset_of!(LookupEvent, pid)),
                ts_ns: u64_at(b, offset_of!(LookupEvent, ts_ns)),
                task: task_at(b, offset_of!(LookupEvent, task)),
                ret: u32_at(b, offset_of!(LookupEvent, ret)) as i32,
                naddrs: u32_at(b, offset_of!(LookupEvent, naddrs)),
                families: std::array::from_fn(|i| u16_at(b, families_at + 2 * i)),
                addrs: std::array::from_fn(|i| arr(b, addrs_at + 16 * i)),
                comm: arr(b, offset_of!(LookupEvent, comm)),
                name: arr(b, offset_of!(LookupEvent, name)),
            })))
        }
        TW_DNS_SEND if b.len() >= size_of::<DnsSendEvent>() => {
            Ok(Event::DnsSend(Box::new(DnsSendEvent {
                kind,
                pid: u32_at(b, offset_of!(DnsSendEvent, pid)),
                ts_ns: u64_at(b, offset_of!(DnsSendEvent, ts_ns)),
                task: task_at(b, offset_of!(DnsSendEvent, task)),
                netns: u32_at(b, offset_of!(DnsSendEvent, netns)),
                family: u16_at(b, offset_of!(DnsSendEvent, family)),
                sport: u16_at(b, offset_of!(DnsSendEvent, sport)),
                dport: u16_at(b, offset_of!(DnsSendEvent, dport)),
                len: u16_at(b, offset_of!(DnsSendEvent, len)),
                saddr: arr(b, offset_of!(DnsSendEvent, saddr)),
                daddr: arr(b, offset_of!(DnsSendEvent, daddr)),
                comm: arr(b, offset_of!(DnsSendEvent, comm)),
                payload: arr(b, offset_of!(DnsSendEvent, payload)),
            })))
        }
        TW_NET_BLOCKED if b.len() >= size_of::<BlockEvent>() => Ok(Event::Blocked(BlockEvent {
            kind,
            pid: u32_at(b, offset_of!(BlockEvent, pid)),
            ts_ns: u64_at(b, offset_of!(BlockEvent, ts_ns)),
            task: task_at(b, offset_of!(BlockEvent, task)),
            rule: u32_at(b, offset_of!(BlockEvent, rule)),
            netns: u32_at(b, offset_of!(BlockEvent, netns)),
            family: u16_at(b, offset_of!(BlockEvent, family)),
            sport: u16_at(b, offset_of!(BlockEvent, sport)),
            dport: u16_at(b, offset_of!(BlockEvent, dport)),
            protocol: b[offset_of!(BlockEvent, protocol)],
            direction: b[offset_of!(BlockEvent, direction)],
            saddr: arr(b, offset_of!(BlockEvent, saddr)),
            daddr: arr(b, offset_of!(BlockEvent, daddr)),
            comm: arr(b, offset_of!(BlockEvent, comm)),
        })),
        _ => Err(err),
    }
}

/// Text up to the first NUL.
pub fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Every field of the structs: (struct, field, offset, size).
pub fn layout() -> Vec<(&'static str, &'static str, usize)> {
    macro_rules! fields {
        ($s:ident, $name:literal, $($f:ident),*) => {
            vec![$(($name, stringify!($f), offset_of!($s, $f))),*]
        };
    }
    let mut v = fields!(
        TcpEvent,
        "tw_tcp_event",
        kind,
        pid,
        ts_ns,
        skaddr,
        bytes_acked,
        bytes_received,
        task,
        netns,
        oldstate,
        newstate,
        sport,
        dport,
        family,
        fin_received,
        saddr,
        daddr,
        comm
    );
    v.extend(fields!(
        ProcEvent,
        "tw_proc_event",
        kind,
        pid,
        ts_ns,
        cgroup_id,
        ppid,
        uid,
        euid,
        egid,
        exit_code,
        args_len,
        blocked_rule,
        pad,
        comm,
        filename,
        args
    ));
    v.extend(fields!(
        BlockEvent,
        "tw_block_event",
        kind,
        pid,
        ts_ns,
        task,
        rule,
        netns,
        family,
        sport,
        dport,
        protocol,
        direction,
        saddr,
        daddr,
        comm
    ));
    v.extend(fields!(
        NetMatch,
        "tw_net_match",
        cgroup_lo,
        cgroup_hi,
        direction,
        protocol,
        port,
        family,
        pad,
        addr
    ));
    v.extend(fields!(NetVerdict, "tw_net_verdict", deny, rule));
    v.extend(fields!(ExecKey, "tw_exec_key", cgroup_id, path));
    v.extend(fields!(
        FileEvent,
        "tw_file_event",
        kind,
        pid,
        ts_ns,
        op,
        flags,
        mode,
        owner_uid,
        owner_gid,
        dfd,
        comm,
        path,
        old_path
    ));
    v.extend(fields!(
        UdpEvent,
        "tw_udp_event",
        kind,
        pid,
        ts_ns,
        task,
        netns,
        family,
        sport,
        dport,
        pad,
        saddr,
        daddr,
        comm
    ));
    v.extend(fields!(
        LookupEvent,
        "tw_lookup_event",
        kind,
        pid,
        ts_ns,
        task,
        ret,
        naddrs,
        families,
        addrs,
        comm,
        name
    ));
    v.extend(fields!(
        DnsSendEvent,
        "tw_dns_send_event",
        kind,
        pid,
        ts_ns,
        task,
        netns,
        family,
        sport,
        dport,
        len,
        saddr,
        daddr,
        comm,
        payload
    ));
    v.extend(fields!(
        TaskIds,
        "tw_task_ids",
        cgroup_id,
        ppid,
        euid,
        egid,
        pad
    ));
    v
}

#[cfg(all(test, not(tapwire_no_bpf)))]
mod tests {
    use super::*;

    /// The compiled object's BTF, as bpftool prints it.
    fn btf_text() -> Option<String> {
        let object = concat!(env!("OUT_DIR"), "/tapwire.bpf.o");
        let out = std::process::Command::new("bpftool")
            .args(["btf", "dump", "file", object])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn repr_c_structs_match_the_objects_btf() {
        let Some(btf) = btf_text() else {
            panic!("bpftool could not read the object the build made");
        };
        let mut checked = 0;
        for (name, size) in [
            ("tw_tcp_event", size_of::<TcpEvent>()),
            ("tw_proc_event", size_of::<ProcEvent>()),
            ("tw_file_event", size_of::<FileEvent>()),
            ("tw_udp_event", size_of::<UdpEvent>()),
            ("tw_task_ids", size_of::<TaskIds>()),
            ("tw_lookup_event", size_of::<LookupEvent>()),
            ("tw_dns_send_event", size_of::<DnsSendEvent>()),
            ("tw_block_event", size_of::<BlockEvent>()),
            ("tw_net_match", size_of::<NetMatch>()),
            ("tw_net_verdict", size_of::<NetVerdict>()),
            ("tw_exec_key", size_of::<ExecKey>()),
        ] {
            let header = format!("STRUCT '{name}' size=");
            let start = btf
                .find(&header)
                .unwrap_or_else(|| panic!("{name} not in BTF"));
            let rest = &btf[start + header.len()..];
            let btf_size: usize = rest.split_whitespace().next().unwrap().parse().unwrap();
            assert_eq!(btf_size, size, "size of {name}");
            // Member lines follow, indented: 'field' type_id=N bits_offset=M
            let members: Vec<(String, usize)> = rest
                .lines()
                .skip(1)
                .take_while(|l| l.starts_with('\t'))
                .map(|l| {
                    let field = l.trim().split('\'').nth(1).unwrap().to_owned();
                    let bits: usize = l
                        .split("bits_offset=")
                        .nth(1)
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    (field, bits / 8)
                })
                .collect();
            let ours: Vec<(String, usize)> = layout()
                .into_iter()
                .filter(|(s, _, _)| *s == name)
                .map(|(_, f, o)| (f.to_owned(), o))
                .collect();
            assert_eq!(members, ours, "fields of {name}");
            checked += ours.len();
        }
        assert!(checked > 40);
    }

    #[test]
    fn records_decode_field_by_field() {
        let mut b = vec![0u8; size_of::<TcpEvent>()];
        b[..4].copy_from_slice(&TW_TCP_STATE.to_ne_bytes());
        let off = offset_of!(TcpEvent, dport);
        b[off..off + 2].copy_from_slice(&8080u16.to_ne_bytes());
        let off = offset_of!(TcpEvent, comm);
        b[off..off + 4].copy_from_slice(b"curl");
        let Event::Tcp(e) = decode(&b).expect("decodes") else {
            panic!("tcp")
        };
        assert_eq!(e.dport, 8080);
        assert_eq!(c_str(&e.comm), "curl");
        assert!(decode(&b[..10]).is_err());
    }
}
