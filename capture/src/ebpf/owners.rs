//! Who a kernel record belongs to: the process identity the programs took
//! at the event (pid, parent, effective ids, cgroup id, comm) completed by
//! what the agent knows about that process (its executable and command line
//! from the exec it saw, else `/proc`) and its container (the cgroup id
//! looked up in the cgroup v2 filesystem).
//!
//! cgroup ids are the inode numbers of the cgroup v2 directories and are
//! never reused, so a cgroup id maps to the same container for good: a
//! process that exited before its record was read is still attributed, as
//! long as its container's cgroup directory exists (the kubelet removes it
//! when the container is gone, well after its processes).

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The owner of a socket or the author of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// Tgid; 0 when unknown.
    pub pid: u32,
    /// The kernel's process name (`comm`, at most 15 bytes).
    pub comm: String,
    /// Parent's tgid.
    pub ppid: Option<u32>,
    /// Effective uid.
    pub euid: Option<u32>,
    /// Effective gid.
    pub egid: Option<u32>,
    /// The container the process runs in; `None` on the host.
    pub container_id: Option<String>,
    /// Full path of the executable.
    pub binary_path: Option<String>,
    /// Arguments joined by spaces.
    pub command_line: Option<String>,
}

/// The container id named by a cgroup path: the last 64-hex-digit run in
/// it (docker, containerd and cri-o name their scopes so).
pub fn container_in_path(path: &str) -> Option<String> {
    path.split(['/', '-', '.', ':'])
        .rfind(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

/// The cgroup v2 path in a `/proc/PID/cgroup` text (its `0::` line).
pub fn cgroup_path(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on a
/// unified host, `/sys/fs/cgroup/unified` on a hybrid one), from
/// `/proc/self/mountinfo`.
pub fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        // id parent major:minor root mount-point options... - fstype source ...
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// cgroup id -> container id, learned from the cgroup v2 filesystem.
#[derive(Debug)]
pub struct Cgroups {
    root: Option<PathBuf>,
    by_id: HashMap<u64, Option<String>>,
    last_walk: Option<Instant>,
}

/// Entries kept before the map starts over (ids of cgroups long gone).
const MAX_CGROUPS: usize = 200_000;
/// A miss walks the hierarchy at most this often.
const WALK_EVERY: Duration = Duration::from_millis(50);

impl Cgroups {
    /// Over the hierarchy mounted at `root` (`None`: no cgroup v2 mounted,
    /// ids are then resolved through `/proc/PID/cgroup` only).
    pub fn new(root: Option<PathBuf>) -> Self {
        Cgroups {
            root,
            by_id: HashMap::new(),
            last_walk: None,
        }
    }

    /// The container of cgroup `id`, the cgroup of process `pid` at the
    /// event. The live process names its directory at once; a process gone
    /// already is found by walking the hierarchy.
    pub fn container(&mut self, id: u64, pid: u32) -> Option<String> {
        if id == 0 {
            return proc_container(pid);
        }
        if let Some(known) = self.by_id.get(&id) {
            return known.clone();
        }
        if let Some(root) = &self.root
            && let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            && let Some(path) = cgroup_path(&text)
            && let Ok(meta) = std::fs::metadata(root.join(path.trim_start_matches('/')))
            && meta.ino() == id
        {
            let container = container_in_path(path);
            self.remember(id, container.clone());
            return container;
        }
        self.walk();
        match self.by_id.get(&id) {
            Some(known) => known.clone(),
            // No such directory (yet): the process's own file is the last word.
            None => proc_container(pid),
        }
    }

    fn remember(&mut self, id: u64, container: Option<String>) {
        if self.by_id.len() >= MAX_CGROUPS {
            self.by_id.clear();
        }
        self.by_id.insert(id, container);
    }

    /// Reads every directory of the hierarchy (at most every [`WALK_EVERY`]).
    fn walk(&mut self) {
        let Some(root) = self.root.clone() else {
            return;
        };
        if self.last_walk.is_some_and(|t| t.elapsed() < WALK_EVERY) {
            return;
        }
        self.last_walk = Some(Instant::now());
        if let Ok(meta) = std::fs::metadata(&root) {
            self.remember(meta.ino(), None);
        }
        each_cgroup(&root, |id, path| {
            let relative = path.strip_prefix(&root).unwrap_or(Path::new(""));
            self.remember(id, container_in_path(&relative.to_string_lossy()));
        });
    }
}

/// Calls `f` with the id (inode) and path of every cgroup directory under
/// `root` (not `root` itself).
pub fn each_cgroup(root: &Path, mut f: impl FnMut(u64, &Path)) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            let path = entry.path();
            f(meta.ino(), &path);
            stack.push(path);
        }
    }
}

/// The container of a live process, from `/proc/PID/cgroup`.
pub fn proc_container(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    container_in_path(cgroup_path(&text)?)
}

/// Executables and command lines of the processes the agent saw exec (or
/// read once from `/proc`, so a process that connects often costs no I/O
/// per connection).
#[derive(Debug, Default)]
pub struct Processes {
    by_pid: HashMap<u32, (Option<String>, Option<String>)>,
}

/// Parent, real uid, effective uid and effective gid of a live process,
/// from `/proc/PID/status` (`None` where it cannot be read).
pub fn proc_ids(pid: u32) -> [Option<u32>; 4] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str, at: usize| -> Option<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .nth(at)?
            .parse()
            .ok()
    };
    [
        field("PPid:", 0),
        field("Uid:", 0),
        field("Uid:", 1),
        field("Gid:", 1),
    ]
}

/// Processes remembered before the map starts over.
const MAX_PROCESSES: usize = 100_000;

impl Processes {
    /// `pid` executed `path` with `command_line`.
    pub fn exec(&mut self, pid: u32, path: String, command_line: Option<String>) {
        if self.by_pid.len() >= MAX_PROCESSES {
            self.by_pid.clear();
        }
        self.by_pid.insert(pid, (Some(path), command_line));
    }

    /// `pid` exited: its executable, if it was known.
    pub fn exit(&mut self, pid: u32) -> Option<String> {
        self.by_pid.remove(&pid).and_then(|(path, _)| path)
    }

    /// The executable and command line of `pid`: from its exec, else read
    /// from `/proc` once and kept.
    pub fn program(&mut self, pid: u32) -> (Option<String>, Option<String>) {
        if let Some(known) = self.by_pid.get(&pid) {
            return known.clone();
        }
        let path = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.display().to_string());
        let line = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .map(|raw| join_args(&raw))
            .filter(|l| !l.is_empty());
        // A process already gone tells nothing: not kept, nothing to reuse.
        if path.is_some() || line.is_some() {
            if self.by_pid.len() >= MAX_PROCESSES {
                self.by_pid.clear();
            }
            self.by_pid.insert(pid, (path.clone(), line.clone()));
        }
        (path, line)
    }

    /// The owner described by a kernel record's identity.
    pub fn owner(
        &mut self,
        cgroups: &mut Cgroups,
        pid: u32,
        comm: String,
        task: &super::wire::TaskIds,
    ) -> Owner {
        let (binary_path, command_line) = self.program(pid);
        Owner {
            pid,
            comm,
            ppid: Some(task.ppid),
            euid: Some(task.euid),
            egid: Some(task.egid),
            container_id: cgroups.container(task.cgroup_id, pid),
            binary_path,
            command_line,
        }
    }

    /// The owner of a live process, everything read from `/proc` (for
    /// sockets that predate the agent).
    pub fn owner_from_proc(&mut self, cgroups: &mut Cgroups, pid: u32) -> Owner {
        let [ppid, _, euid, egid] = proc_ids(pid);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end_matches('\n').to_owned())
            .unwrap_or_default();
        let (binary_path, command_line) = self.program(pid);
        Owner {
            pid,
            comm,
            ppid,
            euid,
            egid,
            container_id: cgroups.container(0, pid),
            binary_path,
            command_line,
        }
    }
}

/// Who sent DNS queries from which address and port, as the eBPF source saw
/// them: the packet source names the process of a query it derives from
/// the same address and port. Shared by the sources of one agent.
#[derive(Debug, Clone, Default)]
pub struct DnsSenders(Arc<Mutex<HashMap<(IpAddr, u16), Owner>>>);

/// Senders remembered before the map starts over.
const MAX_SENDERS: usize = 50_000;

impl DnsSenders {
    /// `owner` sent a query from `client`.
    pub fn note(&self, client: (IpAddr, u16), owner: Owner) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= MAX_SENDERS {
                map.clear();
            }
            map.insert(client, owner);
        }
    }

    /// Who sent from `client`, if the eBPF source saw it.
    pub fn owner(&self, client: (IpAddr, u16)) -> Option<Owner> {
        self.0.lock().ok()?.get(&client).cloned()
    }
}

/// NUL-separated arguments joined by spaces.
pub fn join_args(raw: &[u8]) -> String {
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_come_from_the_cgroup_path() {
        let id = "3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e";
        let containerd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice/cri-containerd-{id}.scope\n"
        );
        let path = cgroup_path(&containerd).expect("0:: line");
        assert_eq!(container_in_path(path).as_deref(), Some(id));
        let docker = format!("12:pids:/x\n0::/system.slice/docker-{id}.scope\n");
        assert_eq!(
            container_in_path(cgroup_path(&docker).expect("0::")).as_deref(),
            Some(id)
        );
        assert_eq!(
            container_in_path("/user.slice/user-0.slice/session-1.scope"),
            None
        );
    }

    #[test]
    fn this_process_cgroup_is_found_by_its_id() {
        let Some(root) = cgroup2_root() else {
            eprintln!("skipped: no cgroup v2 hierarchy is mounted here");
            return;
        };
        let text = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
        let path = cgroup_path(&text).expect("0:: line");
        let id = std::fs::metadata(root.join(path.trim_start_matches('/')))
            .expect("own cgroup directory")
            .ino();
        let mut cgroups = Cgroups::new(Some(root));
        // By the live process, then by the walk (pid 0 names no process).
        assert_eq!(
            cgroups.container(id, std::process::id()),
            container_in_path(path)
        );
        let mut fresh = Cgroups::new(cgroups.root.clone());
        fresh.container(id, 0);
        assert!(
            fresh.by_id.contains_key(&id),
            "the walk learns every directory"
        );
    }
}
