//! A node in a box: a Kubernetes-like node built on this machine, for
//! tests that must see what a real node shows the agent.
//!
//! - Each pod is a network namespace with its own address, wired by a veth
//!   pair into one bridge (the bridge's address plays the node's).
//! - Each pod's container is a cgroup v2 directory named as the kubelet and
//!   containerd name them
//!   (`kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/cri-containerd-<64 hex>.scope`).
//! - [`Node::command`] runs a real process inside both; [`Node::spawn`]
//!   keeps one running until the node is dropped.
//! - [`Node::listing`] is the `kubectl get pods,nodes -A -o json` of it, for
//!   `tapwire run --cluster`.
//!
//! Everything is removed on drop (processes first, then cgroups, namespaces
//! and links), also when the test panics. Needs root, `ip` and a cgroup v2
//! hierarchy; [`Node::create`] says which is missing and returns `None`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

/// One pod of the node.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid (dashes, as the API shows it).
    pub uid: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its one container's name.
    pub container: String,
    /// That container's id (64 hex digits).
    pub container_id: String,
    /// The container's cgroup directory (absolute).
    pub cgroup: PathBuf,
    /// The node's end of the pod's veth pair (capture on it sees all the
    /// pod's traffic once).
    pub host_veth: String,
    netns: String,
}

/// The node: a bridge, its pods, and the processes started in them.
pub struct Node {
    /// The node name the agent reports.
    pub name: String,
    /// The node's address (the bridge's).
    pub ip: Ipv4Addr,
    bridge: String,
    tag: String,
    subnet: [u8; 2],
    cgroup_root: PathBuf,
    pods: Vec<Pod>,
    /// Pods ever added (names their namespaces, links and addresses).
    added: u8,
    children: Mutex<Vec<Child>>,
}

fn ip_cmd(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn hex_of(parts: &[&str], words: usize) -> String {
    (0..words)
        .map(|i| {
            let mut h = DefaultHasher::new();
            (i, parts).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}

impl Node {
    /// A node named `name` with no pods yet; `None` (the reason printed)
    /// without root or cgroup v2.
    pub fn create(name: &str) -> Option<Node> {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let found = crate::require(
            "root (network namespaces and cgroups need it)",
            crate::is_root().then_some(()),
            "run the tests as root, as CI does",
        )
        .and_then(|()| {
            crate::require(
                "a cgroup v2 hierarchy",
                tapwire_capture::ebpf::owners::cgroup2_root(),
                "mount cgroup2 (unified or hybrid)",
            )
        });
        let cgroup_root = found?;
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", pid % 100_000);
        let subnet = [150 + (pid % 50) as u8, n];
        let ip = Ipv4Addr::new(10, subnet[0], subnet[1], 1);
        let bridge = format!("twb{tag}");
        let node = Node {
            name: name.to_owned(),
            ip,
            bridge,
            tag,
            subnet,
            cgroup_root,
            pods: Vec::new(),
            added: 0,
            children: Mutex::new(Vec::new()),
        };
        let made = ip_cmd(&["link", "add", &node.bridge, "type", "bridge"])
            .and_then(|()| ip_cmd(&["addr", "add", &format!("{ip}/24"), "dev", &node.bridge]))
            .and_then(|()| ip_cmd(&["link", "set", &node.bridge, "up"]));
        if let Err(e) = made {
            panic!("building the node's bridge: {e}");
        }
        Some(node)
    }

    /// Adds a pod `namespace/name` (best-effort QoS) with one container
    /// `app`, and returns it.
    pub fn add_pod(&mut self, namespace: &str, name: &str) -> Pod {
        let ip = Ipv4Addr::new(10, self.subnet[0], self.subnet[1], 10 + self.added);
        self.add_pod_at(namespace, name, ip)
    }

    /// Adds a pod with address `ip` (one a removed pod had: addresses are
    /// reused).
    pub fn add_pod_at(&mut self, namespace: &str, name: &str, ip: Ipv4Addr) -> Pod {
        let i = self.added;
        self.added += 1;
        let netns = format!("twp{}-{i}", self.tag);
        let (host_veth, pod_veth) = (
            format!("twv{}h{i}", self.tag),
            format!("twv{}p{i}", self.tag),
        );
        let uid_hex = hex_of(&[&self.tag, namespace, name, "uid"], 2);
        let uid = format!(
            "{}-{}-{}-{}-{}",
            &uid_hex[0..8],
            &uid_hex[8..12],
            &uid_hex[12..16],
            &uid_hex[16..20],
            &uid_hex[20..32]
        );
        let container_id = hex_of(&[&self.tag, namespace, name, "container"], 4);
        let cgroup = self
            .cgroup_root
            .join("kubepods.slice")
            .join("kubepods-besteffort.slice")
            .join(format!(
                "kubepods-besteffort-pod{}.slice",
                uid.replace('-', "_")
            ))
            .join(format!("cri-containerd-{container_id}.scope"));
        let gateway = self.ip.to_string();
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns];
            all.extend_from_slice(args);
            ip_cmd(&all)
        };
        let made = ip_cmd(&["netns", "add", &netns])
            .and_then(|()| {
                ip_cmd(&[
                    "link", "add", &host_veth, "type", "veth", "peer", "name", &pod_veth,
                ])
            })
            .and_then(|()| ip_cmd(&["link", "set", &pod_veth, "netns", &netns]))
            .and_then(|()| ip_cmd(&["link", "set", &host_veth, "master", &self.bridge, "up"]))
            .and_then(|()| in_ns(&["ip", "link", "set", &pod_veth, "name", "eth0"]))
            .and_then(|()| in_ns(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]))
            .and_then(|()| in_ns(&["ip", "link", "set", "eth0", "up"]))
            .and_then(|()| in_ns(&["ip", "link", "set", "lo", "up"]))
            .and_then(|()| in_ns(&["ip", "route", "add", "default", "via", &gateway]))
            .and_then(|()| {
                std::fs::create_dir_all(&cgroup).map_err(|e| format!("{}: {e}", cgroup.display()))
            });
        let pod = Pod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid,
            ip,
            container: "app".to_owned(),
            container_id,
            cgroup,
            host_veth: host_veth.clone(),
            netns,
        };
        // A reused address: the others forget the old pod's link address,
        // as a CNI's gratuitous ARP makes them.
        for other in &self.pods {
            let _ = ip_cmd(&[
                "netns",
                "exec",
                &other.netns,
                "ip",
                "neigh",
                "flush",
                "to",
                &ip.to_string(),
            ]);
        }
        let _ = ip_cmd(&["neigh", "flush", "to", &ip.to_string()]);
        // Kept before checking, so that drop removes what was made.
        self.pods.push(pod.clone());
        if let Err(e) = made {
            panic!("building pod {namespace}/{name}: {e}");
        }
        pod
    }

    /// Deletes `pod` as the kubelet would: its processes killed, its cgroup,
    /// network namespace and links removed. Its address is free again.
    pub fn remove_pod(&mut self, pod: &Pod) {
        if let Some(at) = self.pods.iter().position(|p| p.netns == pod.netns) {
            let pod = self.pods.remove(at);
            remove(&pod);
        }
    }

    /// Makes `server` the DNS server of `pod` (its `/etc/resolv.conf`, as
    /// `ip netns exec` mounts `/etc/netns/NAME/resolv.conf`).
    pub fn set_resolver(&self, pod: &Pod, server: Ipv4Addr) {
        let dir = Path::new("/etc/netns").join(&pod.netns);
        std::fs::create_dir_all(&dir).expect("/etc/netns/NAME");
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {server}\noptions timeout:2 attempts:1\n"),
        )
        .expect("resolv.conf");
    }

    /// The pods, in the order they were added.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// `argv` run inside `pod`: its network namespace and its container's
    /// cgroup, entered before the program starts (so its very first
    /// instruction already runs in the pod).
    pub fn command(&self, pod: &Pod, argv: &[&str]) -> Command {
        // The cgroup first: `ip netns exec` mounts a fresh /sys, which
        // hides the cgroup filesystem from what runs inside.
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(
                r#"echo $$ > "$0/cgroup.procs" && ns=$1 && shift && exec ip netns exec "$ns" "$@""#,
            )
            .arg(&pod.cgroup)
            .arg(&pod.netns)
            .args(argv);
        c
    }

    /// Starts `argv` in `pod` and keeps it running until the node is
    /// dropped; returns its pid (the same process all along: `sh` and `ip
    /// netns exec` exec into it).
    pub fn spawn(&self, pod: &Pod, argv: &[&str]) -> u32 {
        let child = self
            .command(pod, argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {argv:?} in {}: {e}", pod.name));
        let pid = child.id();
        self.children.lock().expect("children").push(child);
        pid
    }

    /// A Python HTTP server on `port` in `pod`, answering before this
    /// returns; its pid.
    pub fn serve_http(&self, pod: &Pod, port: u16) -> u32 {
        let pid = self.spawn(
            pod,
            &[
                "python3",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "0.0.0.0",
            ],
        );
        let url = format!("http://{}:{port}/", pod.ip);
        assert!(
            crate::wait_until(std::time::Duration::from_secs(15), || self
                .run(pod, &["curl", "-s", "-o", "/dev/null", &url])
                .0),
            "server in {} answers on {port}",
            pod.name
        );
        pid
    }

    /// Runs `argv` in `pod` to completion; its output (stdout, stderr) and
    /// whether it succeeded.
    pub fn run(&self, pod: &Pod, argv: &[&str]) -> (bool, String, String) {
        let out = self
            .command(pod, argv)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {argv:?} in {}: {e}", pod.name));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The node and its pods as `kubectl get pods,nodes -A -o json` prints
    /// them.
    pub fn listing(&self) -> String {
        let start = "2026-01-01T00:00:00Z";
        let mut items: Vec<serde_json::Value> = self
            .pods
            .iter()
            .map(|p| {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": p.name,
                        "namespace": p.namespace,
                        "uid": p.uid,
                        "resourceVersion": "1",
                        "labels": {"app": p.name},
                        "creationTimestamp": start,
                    },
                    "spec": {
                        "nodeName": self.name,
                        "containers": [{"name": p.container, "image": "registry.local/app:1"}],
                    },
                    "status": {
                        "phase": "Running",
                        "podIP": p.ip.to_string(),
                        "podIPs": [{"ip": p.ip.to_string()}],
                        "startTime": start,
                        "containerStatuses": [{
                            "name": p.container,
                            "containerID": format!("containerd://{}", p.container_id),
                            "image": "registry.local/app:1",
                            "imageID": format!("registry.local/app@sha256:{}", hex_of(&[&p.name, "image"], 4)),
                            "ready": true,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": start}},
                        }],
                    },
                })
            })
            .collect();
        items.push(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "uid": hex_of(&[&self.name, "node"], 2), "resourceVersion": "1"},
            "status": {"addresses": [
                {"type": "InternalIP", "address": self.ip.to_string()},
                {"type": "Hostname", "address": self.name},
            ]},
        }));
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
    }

    /// Writes [`Node::listing`] into `dir` and returns the file.
    pub fn write_listing(&self, dir: &Path) -> PathBuf {
        let path = dir.join("cluster.json");
        std::fs::write(&path, self.listing()).expect("writing the listing");
        path
    }
}

/// Kills every process in a cgroup directory (daemons that left their
/// parent included).
fn kill_cgroup(dir: &Path) {
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<&str> = procs.split_whitespace().collect();
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill").arg("-9").args(&pids).status();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Removes a pod's processes, cgroup, namespace and resolver file.
fn remove(pod: &Pod) {
    kill_cgroup(&pod.cgroup);
    let _ = std::fs::remove_dir(&pod.cgroup);
    if let Some(slice) = pod.cgroup.parent() {
        let _ = std::fs::remove_dir(slice);
    }
    let _ = ip_cmd(&["netns", "delete", &pod.netns]);
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&pod.netns));
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(mut children) = self.children.lock() {
            for child in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for pod in &self.pods {
            remove(pod);
        }
        // Shared by every node: removed only when empty (another test's node
        // may still use them).
        let qos = self
            .cgroup_root
            .join("kubepods.slice")
            .join("kubepods-besteffort.slice");
        let _ = std::fs::remove_dir(&qos);
        let _ = std::fs::remove_dir(self.cgroup_root.join("kubepods.slice"));
        let _ = ip_cmd(&["link", "delete", &self.bridge]);
    }
}
