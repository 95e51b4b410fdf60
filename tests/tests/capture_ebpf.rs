//! The eBPF source on the real kernel: runs as root (CI does) inside a
//! network namespace the test creates, where a real client and server
//! exchange known byte counts; skips with the reason otherwise.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tapwire_schemas::{AnyEvent, Direction, FinalState, L4Kind, RuntimeKind, topics};
use tapwire_tests::{Broker, Lines, Storage, ebpf_agent, is_root, require, run_ok, tapwire};

/// A network namespace deleted on drop.
struct NetNs(String);

impl NetNs {
    fn create() -> Option<NetNs> {
        let name = format!("tw-ebpf-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        let ns = NetNs(name);
        let up = ns
            .cmd(&["ip", "link", "set", "lo", "up"])
            .status()
            .ok()?
            .success();
        up.then_some(ns)
    }

    fn cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(argv);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

const SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
got = 0
while got < 5000:
    b = c.recv(65536)
    if not b: break
    got += len(b)
c.sendall(b"x" * 123456)
c.close(); s.close()
"#;

const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"y" * 5000)
n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
c.close()
print(n)
"#;

const REFUSED: &str = r#"
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])))
except ConnectionRefusedError:
    print("refused")
"#;

const FILES_AND_UDP: &str = r#"
import os, socket, sys
d = sys.argv[1]
fd = os.open(d + "/a", os.O_WRONLY | os.O_CREAT, 0o640); os.close(fd)
os.chmod(d + "/a", 0o600)
os.chown(d + "/a", 1234, 2345)
os.rename(d + "/a", d + "/b")
os.unlink(d + "/b")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(("127.0.0.1", 5353))
u.close()
"#;

fn spawn(ns: &NetNs, script: &str, port: u16) -> Child {
    ns.cmd(&["python3", "-c", script, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3")
}

#[test]
fn connections_exec_and_refusals_are_seen_with_pids_binaries_and_bytes() {
    if require(
        "root (eBPF needs it)",
        is_root().then_some(()),
        "run the tests as root, as CI does",
    )
    .is_none()
    {
        return;
    }
    let Some(ns) = require(
        "a network namespace",
        NetNs::create(),
        "`ip netns add` must work (iproute2, root)",
    ) else {
        return;
    };
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "2"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let config = dir.path().join("tapwire.toml");
    std::fs::write(
        &config,
        format!(
            "[capture.ebpf]\nfile_path_prefixes = [\"{}/\"]\n",
            watched.display()
        ),
    )
    .expect("config");
    let agent = Lines::spawn(tapwire(&broker.address()).arg("-c").arg(&config).args([
        "capture",
        "--source",
        "ebpf",
        "--node-name",
        "node-e",
        "--sensor-id",
        "bpf-1",
    ]));
    let attached = tapwire_tests::wait_until(Duration::from_secs(30), || {
        agent.stderr().contains("ebpf attached") || agent.stderr().contains("error")
    });
    assert!(
        attached && agent.stderr().contains("ebpf attached"),
        "agent:\n{}",
        agent.stderr()
    );

    let port = 18_000 + (std::process::id() % 1000) as u16;
    let mut server = spawn(&ns, SERVER, port);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("server ready");
    let client = spawn(&ns, CLIENT, port);
    let client_pid = client.id();
    let client_out = client.wait_with_output().expect("client");
    assert_eq!(String::from_utf8_lossy(&client_out.stdout).trim(), "123456");
    let server_pid = server.id();
    assert!(server.wait().expect("server").success());
    let refused = spawn(&ns, REFUSED, port + 1)
        .wait_with_output()
        .expect("refused");
    assert_eq!(String::from_utf8_lossy(&refused.stdout).trim(), "refused");
    let truth = Command::new("/bin/true").spawn().expect("/bin/true");
    let true_pid = truth.id();
    let _ = truth.wait_with_output();
    let files = ns
        .cmd(&[
            "python3",
            "-c",
            FILES_AND_UDP,
            &watched.display().to_string(),
        ])
        .spawn()
        .expect("python3");
    let files_pid = files.id();
    assert!(files.wait_with_output().expect("files").status.success());
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _) = agent.terminate(Duration::from_secs(15));
    assert!(ok, "agent stopped on SIGTERM");

    let all_l4 = tapwire_tests::read_topic(
        &broker.address(),
        topics::L4_RAW,
        Duration::from_secs(3),
        |_| false,
    );
    let udp = all_l4.iter().any(|e| {
        matches!(e, AnyEvent::L4Event(l) if l.protocol == tapwire_schemas::Protocol::Udp
            && l.kind == L4Kind::NetworkConnect && l.pid == files_pid && l.dst.port == 5353
            && l.binary == "python3" && l.src.ip.0.is_loopback() && l.src.port != 0)
    });
    assert!(udp, "UDP connect of the file script");
    let l4: Vec<_> = all_l4
        .into_iter()
        .filter_map(|e| match e {
            AnyEvent::L4Event(l)
                if l.dst.port == port || l.src.port == port || l.dst.port == port + 1 =>
            {
                Some(l)
            }
            _ => None,
        })
        .collect();
    let find = |kind: L4Kind, dir: Direction, dport: u16| {
        l4.iter()
            .find(|e| e.kind == kind && e.direction == dir && e.dst.port == dport)
            .unwrap_or_else(|| panic!("no {kind:?} {dir:?} to {dport} in {l4:#?}"))
    };
    let connect = find(L4Kind::NetworkConnect, Direction::Egress, port);
    assert_eq!(
        (connect.pid, connect.binary.as_str()),
        (client_pid, "python3")
    );
    assert_eq!(connect.header.node, "node-e");
    let accept = find(L4Kind::NetworkAccept, Direction::Ingress, port);
    assert_eq!(
        (accept.pid, accept.binary.as_str()),
        (server_pid, "python3")
    );
    assert_eq!(
        accept.src.port, connect.src.port,
        "the accept names the client's port"
    );
    let out = l4
        .iter()
        .find(|e| {
            e.kind == L4Kind::NetworkFlow && e.direction == Direction::Egress && e.dst.port == port
        })
        .expect("client flow");
    assert_eq!(out.final_state, Some(FinalState::Established));
    assert_eq!(
        (out.bytes_sent, out.bytes_received),
        (Some(5000), Some(123_456))
    );
    assert!(out.duration_ns.is_some_and(|d| d > 0));
    let inbound = l4
        .iter()
        .find(|e| {
            e.kind == L4Kind::NetworkFlow && e.direction == Direction::Ingress && e.dst.port == port
        })
        .expect("server flow");
    assert_eq!(
        (inbound.bytes_sent, inbound.bytes_received),
        (Some(123_456), Some(5000))
    );
    let refused = l4
        .iter()
        .find(|e| e.kind == L4Kind::NetworkFlow && e.dst.port == port + 1)
        .expect("refused flow");
    assert_eq!(refused.final_state, Some(FinalState::Refused));

    let runtime = tapwire_tests::read_topic(
        &broker.address(),
        topics::RUNTIME_RAW,
        Duration::from_secs(3),
        |_| false,
    );
    let exec = runtime
        .iter()
        .find_map(|e| match e {
            AnyEvent::RuntimeEvent(r)
                if r.kind == RuntimeKind::ProcessExec && r.pid == true_pid =>
            {
                Some(r)
            }
            _ => None,
        })
        .expect("exec of /bin/true");
    assert_eq!(exec.binary, "/bin/true");
    assert_eq!(exec.ppid, std::process::id());
    assert_eq!(exec.command_line.as_deref(), Some("/bin/true"));
    let exit = runtime.iter().any(|e| {
        matches!(e, AnyEvent::RuntimeEvent(r) if r.kind == RuntimeKind::ProcessExit && r.pid == true_pid && r.exit_code == Some(0) && r.binary == "/bin/true")
    });
    assert!(exit, "exit of /bin/true");

    let file_events: Vec<_> = runtime
        .iter()
        .filter_map(|e| match e {
            AnyEvent::RuntimeEvent(r) if r.pid == files_pid && r.path.is_some() => Some(r),
            _ => None,
        })
        .collect();
    let a = format!("{}/a", watched.display());
    let b = format!("{}/b", watched.display());
    let summary: Vec<(RuntimeKind, Option<&str>, Option<&str>)> = file_events
        .iter()
        .map(|r| (r.kind, r.path.as_deref(), r.old_path.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (RuntimeKind::FileCreate, Some(a.as_str()), None),
            (RuntimeKind::FileChmod, Some(a.as_str()), None),
            (RuntimeKind::FileChown, Some(a.as_str()), None),
            (RuntimeKind::FileRename, Some(b.as_str()), Some(a.as_str())),
            (RuntimeKind::FileDelete, Some(b.as_str()), None),
        ]
    );
    assert_eq!(file_events[0].mode, Some(0o640));
    assert_eq!(file_events[1].mode, Some(0o600));
    assert_eq!(
        (file_events[2].owner_uid, file_events[2].owner_gid),
        (Some(1234), Some(2345))
    );
    assert!(
        file_events
            .iter()
            .all(|r| r.binary.ends_with("python3") || r.binary.contains("python"))
    );
    // Files outside the prefix are not reported.
    assert!(
        !runtime.iter().any(|e| matches!(e, AnyEvent::RuntimeEvent(r)
        if r.path.as_deref().is_some_and(|p| !p.starts_with(&watched.display().to_string()))))
    );
}

/// Sends `sig` (e.g. `-STOP`) to the process `pid`.
fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
}

#[test]
fn a_full_ring_buffer_is_counted_and_reported_as_loss_records() {
    let admin = format!("127.0.0.1:{}", tapwire_tests::free_port());
    // One page: room for a handful of process records.
    let Some((broker, agent, _dir)) = ebpf_agent(
        "[capture.ebpf]\nring_buffer_bytes = 4096\nconnections = false\nfiles = false\n",
        &["--admin-listen", &admin],
    ) else {
        return;
    };
    // Stop the reader, make 50 execs and exits, let it read again.
    signal(agent.pid(), "-STOP");
    let mut pids = Vec::new();
    for _ in 0..50 {
        let c = Command::new("/bin/true").spawn().expect("/bin/true");
        pids.push(c.id());
        let _ = c.wait_with_output();
    }
    signal(agent.pid(), "-CONT");
    std::thread::sleep(Duration::from_secs(3));
    let metrics = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&admin).expect("admin server");
        c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut text = String::new();
        c.read_to_string(&mut text).expect("response");
        text
    };
    let (ok, _) = agent.terminate(Duration::from_secs(15));
    assert!(ok);
    let dropped: u64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("tapwire_messages_dropped_total")
                && l.contains("stage=\"capture\"")
                && l.contains("reason=\"ringbuf\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no ringbuf drop metric in:\n{metrics}"));
    let events = tapwire_tests::read_topic(
        &broker.address(),
        topics::RUNTIME_RAW,
        Duration::from_secs(3),
        |_| false,
    );
    let seen = events
        .iter()
        .filter(|e| matches!(e, AnyEvent::RuntimeEvent(r) if pids.contains(&r.pid)))
        .count();
    let lost: u64 = events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::LossRecord(l) if l.source == "ringbuf" => Some(l.lost),
            _ => None,
        })
        .sum();
    assert!(lost > 0, "loss reported");
    assert_eq!(
        dropped, lost,
        "the metric counts what the loss records carry"
    );
    assert!(seen < 100, "the ring could not hold all 100 records");
    assert!(
        seen as u64 + lost >= 100,
        "every record is either delivered or counted: {seen} seen, {lost} lost"
    );
}

/// Regression (found by `tapwire-bench ebpf`): a backlog larger than one
/// batch (1,000 records) left records in the ring that the kernel never
/// signalled again, and the reader stalled for good.
#[test]
fn a_backlog_larger_than_a_batch_does_not_stall_the_reader() {
    let Some((broker, agent, _dir)) =
        ebpf_agent("[capture.ebpf]\nconnections = false\nfiles = false\n", &[])
    else {
        return;
    };
    // 700 execs and exits (1,400 records) wait in the ring while the agent
    // is stopped: more than one batch.
    signal(agent.pid(), "-STOP");
    for _ in 0..700 {
        let _ = Command::new("/bin/true").status();
    }
    signal(agent.pid(), "-CONT");
    std::thread::sleep(Duration::from_secs(3));
    // After the backlog, new events still arrive.
    let mut later = Vec::new();
    for _ in 0..5 {
        let c = Command::new("/bin/true").spawn().expect("/bin/true");
        later.push(c.id());
        let _ = c.wait_with_output();
    }
    std::thread::sleep(Duration::from_secs(3));
    let (ok, _) = agent.terminate(Duration::from_secs(15));
    assert!(ok);
    let events = tapwire_tests::read_topic(
        &broker.address(),
        topics::RUNTIME_RAW,
        Duration::from_secs(3),
        |_| false,
    );
    let seen_later = events
        .iter()
        .filter(|e| matches!(e, AnyEvent::RuntimeEvent(r) if later.contains(&r.pid)))
        .count();
    assert_eq!(
        seen_later, 10,
        "exec and exit of the 5 processes after the backlog"
    );
}
