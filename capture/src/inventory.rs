//! The /proc/net inventory: TCP connections, TCP listeners and UDP listeners
//! of every network namespace on the node, each socket resolved to the
//! process that holds it (through the `socket:[INODE]` links in
//! `/proc/PID/fd`) and its binary name (`/proc/PID/comm`, as `ss -p` shows it
//! and as L4 events carry it).
//!
//! Address encoding in `/proc/net/{tcp,udp}{,6}`: IPv4 is one 32-bit word
//! and IPv6 four, each printed as `%08X` of the network-order bytes read in
//! host order; ports are `%04X` in host order. IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`, dual-stack sockets) are reported as IPv4.
//!
//! A socket seen in the first scan predates the sensor and carries a null
//! duration; a socket first seen later carries its age since that scan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tapwire_schemas::{Endpoint, InventorySnapshot, Ip, Socket};

use crate::Identity;

/// Why a table could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A /proc file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A line of a /proc/net table is not in the kernel's format.
    #[error("{path} line {line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Transport of a /proc/net table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `/proc/net/tcp` and `tcp6`.
    Tcp,
    /// `/proc/net/udp` and `udp6`.
    Udp,
}

/// One row of a /proc/net table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSocket {
    /// TCP or UDP.
    pub transport: Transport,
    /// Local address and port.
    pub local: Endpoint,
    /// Remote address and port (all zero when unconnected).
    pub remote: Endpoint,
    /// Kernel state number (`st` column).
    pub state: u8,
    /// Socket inode; 0 for sockets no file refers to (TIME_WAIT, ...).
    pub inode: u64,
}

/// The kernel's name of TCP state `st` (`include/net/tcp_states.h`).
pub fn tcp_state_name(st: u8) -> &'static str {
    match st {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        0x0C => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

const TCP_TIME_WAIT: u8 = 0x06;
const TCP_CLOSE: u8 = 0x07;
const TCP_LISTEN: u8 = 0x0A;
const TCP_NEW_SYN_RECV: u8 = 0x0C;

/// Parses a hex address column: 8 digits (IPv4) or 32 (IPv6), each 32-bit
/// word in host byte order.
pub fn parse_hex_ip(hex: &str) -> Option<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[4 * i..4 * i + 4].copy_from_slice(&word(hex.get(8 * i..8 * i + 8)?)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

fn parse_endpoint(col: &str) -> Option<Endpoint> {
    let (ip, port) = col.split_once(':')?;
    Some(Endpoint {
        ip: Ip(parse_hex_ip(ip)?),
        port: u16::from_str_radix(port, 16).ok()?,
    })
}

/// Parses the text of one /proc/net table (`path` is only for errors).
pub fn parse_table(
    text: &str,
    transport: Transport,
    path: &Path,
) -> Result<Vec<ProcSocket>, InventoryError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| InventoryError::Parse {
            path: path.to_owned(),
            line: i + 1,
            reason: reason.to_owned(),
        };
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 10 {
            return Err(bad("fewer than 10 columns"));
        }
        let local = parse_endpoint(cols[1]).ok_or_else(|| bad("bad local address"))?;
        let remote = parse_endpoint(cols[2]).ok_or_else(|| bad("bad remote address"))?;
        let state = u8::from_str_radix(cols[3], 16).map_err(|_| bad("bad state"))?;
        let inode = cols[9].parse().map_err(|_| bad("bad inode"))?;
        out.push(ProcSocket {
            transport,
            local,
            remote,
            state,
            inode,
        });
    }
    Ok(out)
}

/// A process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Process id (thread group id).
    pub pid: u32,
    /// `/proc/PID/comm`.
    pub binary: String,
    /// `/proc/PID/exe`, when readable.
    pub binary_path: Option<String>,
}

/// What one pass over /proc found: processes by socket inode and one
/// process per network namespace.
#[derive(Debug, Default)]
struct ProcScan {
    owners: HashMap<u64, Owner>,
    /// Network namespace inode -> a pid inside it.
    namespaces: BTreeMap<u64, u32>,
}

fn parse_link_inode(target: &Path, prefix: &str) -> Option<u64> {
    let s = target.to_str()?;
    s.strip_prefix(prefix)?.strip_suffix(']')?.parse().ok()
}

/// Walks `/proc/*/fd`: the lowest pid holding each socket inode wins (the
/// order `ss -p` lists them in). Processes that vanish or deny access
/// meanwhile are skipped.
fn scan_processes(proc_root: &Path) -> Result<ProcScan, InventoryError> {
    let entries = fs::read_dir(proc_root).map_err(|source| InventoryError::Read {
        path: proc_root.to_owned(),
        source,
    })?;
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut scan = ProcScan::default();
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        if let Some(ns) = fs::read_link(dir.join("ns/net"))
            .ok()
            .and_then(|t| parse_link_inode(&t, "net:["))
        {
            scan.namespaces.entry(ns).or_insert(pid);
        }
        let Ok(fds) = fs::read_dir(dir.join("fd")) else {
            continue;
        };
        let mut comm: Option<(String, Option<String>)> = None;
        for fd in fds.flatten() {
            let Some(inode) = fs::read_link(fd.path())
                .ok()
                .and_then(|t| parse_link_inode(&t, "socket:["))
            else {
                continue;
            };
            if scan.owners.contains_key(&inode) {
                continue;
            }
            let (binary, binary_path) = comm
                .get_or_insert_with(|| {
                    let name = fs::read_to_string(dir.join("comm"))
                        .map(|c| c.trim_end_matches('\n').to_owned())
                        .unwrap_or_default();
                    let path = fs::read_link(dir.join("exe"))
                        .ok()
                        .map(|p| p.to_string_lossy().into_owned());
                    (name, path)
                })
                .clone();
            scan.owners.insert(
                inode,
                Owner {
                    pid,
                    binary,
                    binary_path,
                },
            );
        }
    }
    Ok(scan)
}

/// Reads the four tables under `net_dir` (`/proc/net` or `/proc/PID/net`).
/// A missing `tcp6`/`udp6` (IPv6 disabled) is not an error.
pub fn read_tables(net_dir: &Path) -> Result<Vec<ProcSocket>, InventoryError> {
    let mut out = Vec::new();
    for (name, transport) in [
        ("tcp", Transport::Tcp),
        ("tcp6", Transport::Tcp),
        ("udp", Transport::Udp),
        ("udp6", Transport::Udp),
    ] {
        let path = net_dir.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => out.extend(parse_table(&text, transport, &path)?),
            Err(err) if err.kind() == io::ErrorKind::NotFound && name.ends_with('6') => {}
            Err(source) => return Err(InventoryError::Read { path, source }),
        }
    }
    Ok(out)
}

/// A TCP listener of some network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Inode of its network namespace (as `/proc/PID/ns/net` names it).
    pub netns: u32,
    /// Local port.
    pub port: u16,
    /// The process holding the socket, when one does.
    pub pid: Option<u32>,
}

/// The TCP listeners of every network namespace a process of `proc_root`
/// is in (the agent's own included).
pub fn tcp_listeners(proc_root: &Path) -> Result<Vec<Listener>, InventoryError> {
    let scan = scan_processes(proc_root)?;
    let mut out = Vec::new();
    for (&netns, pid) in &scan.namespaces {
        let dir = proc_root.join(pid.to_string()).join("net");
        // A namespace's last process may exit between the walk and the read.
        let Ok(rows) = read_tables(&dir) else {
            continue;
        };
        out.extend(
            rows.into_iter()
                .filter(|r| r.transport == Transport::Tcp && r.state == TCP_LISTEN)
                .map(|r| Listener {
                    netns: netns as u32,
                    port: r.local.port,
                    pid: scan.owners.get(&r.inode).map(|o| o.pid),
                }),
        );
    }
    Ok(out)
}

/// Which rows a snapshot lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Connection,
    TcpListener,
    UdpListener,
}

fn section(s: &ProcSocket) -> Option<Section> {
    match s.transport {
        Transport::Tcp => match s.state {
            TCP_LISTEN => Some(Section::TcpListener),
            // Gone from the process side (no inode) or not yet accepted.
            TCP_TIME_WAIT | TCP_CLOSE | TCP_NEW_SYN_RECV => None,
            _ if s.inode == 0 => None,
            _ => Some(Section::Connection),
        },
        // An unconnected UDP socket bound to a port is what `ss -uln` lists.
        Transport::Udp => (s.state == TCP_CLOSE && s.remote.port == 0 && s.local.port != 0)
            .then_some(Section::UdpListener),
    }
}

/// Builds inventory snapshots, remembering when each socket was first seen.
#[derive(Debug)]
pub struct Inventory {
    proc_root: PathBuf,
    all_namespaces: bool,
    identity: Identity,
    /// Socket inode -> first-seen time (ns since the epoch); `None` for
    /// sockets present in the first scan.
    first_seen: HashMap<(Transport, u64), Option<i64>>,
    scans: u64,
}

impl Inventory {
    /// An inventory over `proc_root` (normally `/proc`). With
    /// `all_namespaces`, every network namespace a process is in is read
    /// (pods have their own); otherwise only the agent's own.
    pub fn new(proc_root: impl Into<PathBuf>, all_namespaces: bool, identity: Identity) -> Self {
        Inventory {
            proc_root: proc_root.into(),
            all_namespaces,
            identity,
            first_seen: HashMap::new(),
            scans: 0,
        }
    }

    /// Scans /proc now and returns the snapshot.
    pub fn snapshot(&mut self) -> Result<InventorySnapshot, InventoryError> {
        let now_ns = now_ns();
        let scan = scan_processes(&self.proc_root)?;
        let mut dirs = vec![self.proc_root.join("net")];
        if self.all_namespaces {
            let own = fs::read_link(self.proc_root.join("self/ns/net"))
                .ok()
                .and_then(|t| parse_link_inode(&t, "net:["));
            dirs.extend(
                scan.namespaces
                    .iter()
                    .filter(|(ns, _)| Some(**ns) != own)
                    .map(|(_, pid)| self.proc_root.join(pid.to_string()).join("net")),
            );
        }
        let mut rows = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            match read_tables(dir) {
                Ok(r) => rows.extend(r),
                // Another namespace's process may exit between the walk and the read.
                Err(err) if i > 0 => tracing::debug!(error = %err, "namespace gone"),
                Err(err) => return Err(err),
            }
        }
        let first_scan = self.scans == 0;
        self.scans += 1;
        let mut seen = HashSet::new();
        let mut snapshot = InventorySnapshot {
            header: self
                .identity
                .header(now_ns, &[b"inventory", &now_ns.to_le_bytes()]),
            tcp_connections: Vec::new(),
            tcp_listeners: Vec::new(),
            udp_listeners: Vec::new(),
        };
        for row in rows {
            let Some(section) = section(&row) else {
                continue;
            };
            // Sockets with inode 0 cannot be told apart; keep each row.
            let key = (row.transport, row.inode);
            if row.inode != 0 && !seen.insert(key) {
                continue;
            }
            let first =
                *self
                    .first_seen
                    .entry(key)
                    .or_insert(if first_scan { None } else { Some(now_ns) });
            let owner = scan.owners.get(&row.inode);
            let socket = Socket {
                local: row.local,
                remote: (section == Section::Connection).then_some(row.remote),
                state: match row.transport {
                    Transport::Tcp => tcp_state_name(row.state).to_owned(),
                    Transport::Udp => String::new(),
                },
                inode: row.inode,
                pid: owner.map(|o| o.pid),
                binary: owner.map(|o| o.binary.clone()),
                binary_path: owner.and_then(|o| o.binary_path.clone()),
                duration_ns: first.map(|t| (now_ns - t).max(0) as u64),
            };
            match section {
                Section::Connection => snapshot.tcp_connections.push(socket),
                Section::TcpListener => snapshot.tcp_listeners.push(socket),
                Section::UdpListener => snapshot.udp_listeners.push(socket),
            }
        }
        // Forget sockets that are gone, so the map stays bounded.
        self.first_seen.retain(|k, _| seen.contains(k));
        Ok(snapshot)
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:D432 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000A00000A:C350 01 00000000:00000000 00:00000000 00000000  1000        0 778 1 0000000000000000 20 4 30 10 -1
   2: 000080FE00000000FF2C0102FEA3C5DE:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 779 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn parses_ipv4_rows_and_states() {
        let rows = parse_table(TCP, Transport::Tcp, Path::new("tcp")).expect("parses");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].local.ip, "127.0.0.1".parse().unwrap());
        assert_eq!(rows[0].local.port, 8080);
        assert_eq!(tcp_state_name(rows[0].state), "LISTEN");
        assert_eq!(rows[1].remote.port, 0xD431);
        assert_eq!(tcp_state_name(rows[1].state), "ESTABLISHED");
        assert_eq!(rows[1].inode, 4343);
        assert_eq!(section(&rows[0]), Some(Section::TcpListener));
        assert_eq!(section(&rows[1]), Some(Section::Connection));
        assert_eq!(section(&rows[2]), None, "TIME_WAIT has no owner");
    }

    #[test]
    fn parses_ipv6_word_order_and_mapped_addresses() {
        let rows = parse_table(TCP6, Transport::Tcp, Path::new("tcp6")).expect("parses");
        assert_eq!(rows[0].local.ip, "::1".parse().unwrap());
        assert_eq!(rows[1].local.ip, "127.0.0.1".parse().unwrap(), "v4-mapped");
        assert_eq!(rows[1].remote.ip, "10.0.0.10".parse().unwrap());
        assert_eq!(rows[1].remote.port, 50000);
        assert_eq!(
            rows[2].local.ip,
            "fe80::201:2cff:dec5:a3fe".parse().unwrap()
        );
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let text = "header\n   0: 0100007F:1F90 zz 0A 0 0 0 0 0 1\n";
        let err = parse_table(text, Transport::Tcp, Path::new("/proc/net/tcp")).unwrap_err();
        assert_eq!(err.to_string(), "/proc/net/tcp line 2: bad remote address");
        let short = "header\n   0: 0100007F:1F90\n";
        assert!(parse_table(short, Transport::Udp, Path::new("udp")).is_err());
    }

    #[test]
    fn udp_listeners_are_bound_unconnected_sockets() {
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 900 2 0000000000000000 0
  2: 0100007F:A000 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 901 2 0000000000000000 0
";
        let rows = parse_table(udp, Transport::Udp, Path::new("udp")).expect("parses");
        assert_eq!(section(&rows[0]), Some(Section::UdpListener));
        assert_eq!(section(&rows[1]), None, "connected UDP is not a listener");
    }

    #[test]
    fn sockets_of_the_first_scan_predate_the_sensor() {
        let identity = Identity {
            node: "node-a".to_owned(),
            sensor_id: "s1".to_owned(),
            node_ip: None,
        };
        let mut inv = Inventory::new("/proc", false, identity);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let first = inv.snapshot().expect("scan");
        let mine = first
            .tcp_listeners
            .iter()
            .find(|s| s.local.port == port)
            .expect("listener listed");
        assert_eq!(mine.duration_ns, None);
        assert_eq!(mine.pid, Some(std::process::id()));

        let later = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let later_port = later.local_addr().expect("addr").port();
        inv.snapshot().expect("scan");
        std::thread::sleep(Duration::from_millis(20));
        let third = inv.snapshot().expect("scan");
        let old = third.tcp_listeners.iter().find(|s| s.local.port == port);
        assert_eq!(old.expect("still there").duration_ns, None);
        let new = third
            .tcp_listeners
            .iter()
            .find(|s| s.local.port == later_port)
            .expect("new listener listed");
        assert!(new.duration_ns.expect("seen by the sensor") >= 20_000_000);
        assert_eq!(third.header.node, "node-a");
        assert_eq!(third.header.sensor_id, "s1");
    }
}
