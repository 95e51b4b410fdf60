//! `tapwire capture` against a real broker: a replayed capture of real
//! loopback traffic gives exactly tshark's frames (bytes and timestamps),
//! its DNS queries and its TCP connects; bad captures are rejected with the
//! file offset; the /proc inventory agrees with `ss` on a test listener's
//! pid and binary.

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tapwire_schemas::{AnyEvent, DnsKind, L4Kind, Protocol, topics};
use tapwire_tests::{Broker, Storage, require, run_ok, tapwire};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../capture/tests/fixtures")
        .join(name)
}

fn tshark_lines(file: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// tshark's frames: (capture time in ns, bytes), in file order.
fn tshark_frames(file: &Path) -> Vec<(i64, Vec<u8>)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-T", "json", "-x"])
        .output()
        .expect("tshark");
    assert!(out.status.success());
    let frames: Value = serde_json::from_slice(&out.stdout).expect("tshark json");
    let times = tshark_lines(file, &["-T", "fields", "-e", "frame.time_epoch"]);
    let frames = frames.as_array().expect("array");
    assert_eq!(frames.len(), times.len());
    frames
        .iter()
        .zip(times)
        .map(|(f, t)| {
            let hex = f["_source"]["layers"]["frame_raw"][0]
                .as_str()
                .expect("frame_raw");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            let (s, frac) = t.split_once('.').expect("epoch");
            let ns = s.parse::<i64>().expect("s") * 1_000_000_000
                + format!("{frac:0<9}")[..9].parse::<i64>().expect("frac");
            (ns, bytes)
        })
        .collect()
}

fn broker_with_topics() -> Option<Broker> {
    let broker = Broker::start(Storage::Memory)?;
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "3"]));
    Some(broker)
}

fn replay_matches_tshark(name: &str) {
    let Some(_) = tapwire_tests::tshark() else {
        return;
    };
    let Some(broker) = broker_with_topics() else {
        return;
    };
    let file = fixture(name);
    let out = tapwire(&broker.address())
        .args([
            "capture",
            "--node-name",
            "node-t",
            "--sensor-id",
            "replay-1",
        ])
        .arg("--source")
        .arg(format!("pcap:{}", file.display()))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let mut expected = tshark_frames(&file);
    let packets: Vec<AnyEvent> = tapwire_tests::read_topic(
        &broker.address(),
        topics::PACKETS_RAW,
        Duration::MAX,
        |got| got.len() >= expected.len(),
    );
    let mut got: Vec<(i64, Vec<u8>)> = packets
        .into_iter()
        .map(|e| match e {
            AnyEvent::PacketRecord(p) => {
                assert_eq!(p.header.node, "node-t");
                assert_eq!(p.header.sensor_id, "replay-1");
                assert_eq!(p.captured_len as usize, p.data.len());
                (p.header.timestamp_ns, p.data)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "as many packet records as tshark frames"
    );
    expected.sort();
    got.sort();
    assert!(
        got == expected,
        "packet bytes or times differ from tshark's"
    );

    let queries = tshark_lines(&file, &["-Y", "dns.flags.response == 0"]).len();
    let syns = tshark_lines(&file, &["-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0"]).len();
    let events =
        tapwire_tests::read_topic(&broker.address(), topics::L4_RAW, Duration::MAX, |got| {
            got.iter()
                .filter(|e| matches!(e, AnyEvent::DnsEvent(_)))
                .count()
                >= queries
        });
    let dns: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::DnsEvent(d) => Some(d),
            _ => None,
        })
        .collect();
    assert!(queries > 0);
    assert_eq!(dns.len(), queries, "one dns_query per query tshark sees");
    assert!(
        dns.iter()
            .all(|d| d.kind == DnsKind::DnsQuery && !d.name.is_empty())
    );
    let connects = events
        .iter()
        .filter(|e| matches!(e, AnyEvent::L4Event(l) if l.kind == L4Kind::NetworkConnect && l.protocol == Protocol::Tcp))
        .count();
    assert_eq!(connects, syns, "one TCP connect per SYN");
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        if let AnyEvent::L4Event(l) = e
            && l.kind == L4Kind::NetworkFlow
            && l.protocol == Protocol::Tcp
        {
            *states.entry(format!("{:?}", l.final_state)).or_default() += 1;
        }
    }
    assert_eq!(
        states.values().sum::<usize>(),
        syns,
        "every connection closed: {states:?}"
    );
    assert!(states.contains_key("Some(Refused)"), "{states:?}");
    assert!(states.contains_key("Some(Established)"), "{states:?}");
}

#[test]
fn replaying_a_pcap_gives_tsharks_frames_dns_queries_and_connections() {
    replay_matches_tshark("loopback.pcap");
}

#[test]
fn replaying_a_pcapng_gives_tsharks_frames_dns_queries_and_connections() {
    replay_matches_tshark("loopback.pcapng");
}

#[test]
fn truncated_garbage_and_unknown_link_type_captures_are_rejected_with_the_offset() {
    let Some(broker) = broker_with_topics() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read(fixture("loopback.pcap")).expect("fixture");
    // Cut in the middle of the third record.
    let mut offset = 24usize;
    for _ in 0..2 {
        let incl = u32::from_le_bytes(good[offset + 8..offset + 12].try_into().unwrap()) as usize;
        offset += 16 + incl;
    }
    let truncated = dir.path().join("truncated.pcap");
    std::fs::write(&truncated, &good[..offset + 20]).expect("write");
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"\x7fELF this is not a capture at all").expect("write");
    let mut odd = good.clone();
    odd[20..24].copy_from_slice(&147u32.to_le_bytes());
    let odd_link = dir.path().join("user0.pcap");
    std::fs::write(&odd_link, &odd).expect("write");

    for (file, want) in [
        (
            &truncated,
            format!("offset {offset}: truncated pcap record"),
        ),
        (&garbage, "offset 0: not a pcap or pcapng file".to_owned()),
        (&odd_link, "offset 20: unknown link type 147".to_owned()),
    ] {
        let out = tapwire(&broker.address())
            .arg("capture")
            .arg("--source")
            .arg(format!("pcap:{}", file.display()))
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&want), "wanted {want:?} in:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `ss -Hlnp` lines for a port: (pid, comm).
fn ss_owner(proto_flag: &str, port: u16) -> Option<(u32, String)> {
    let out = Command::new("ss")
        .args(["-H", "-n", "-l", "-p", proto_flag])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| {
        l.split_whitespace()
            .nth(3)
            .is_some_and(|a| a.ends_with(&format!(":{port}")))
    })?;
    // users:(("name",pid=123,fd=4))
    let users = line.split("users:((\"").nth(1)?;
    let (comm, rest) = users.split_once('"')?;
    let pid = rest
        .split("pid=")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?;
    Some((pid.parse().ok()?, comm.to_owned()))
}

#[test]
fn the_inventory_agrees_with_ss_on_a_test_listener_and_udp_socket() {
    let ss_present = Command::new("ss")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if require(
        "ss (iproute2)",
        ss_present.then_some(()),
        "apt-get install iproute2",
    )
    .is_none()
    {
        return;
    }
    let Some(broker) = broker_with_topics() else {
        return;
    };
    let tcp = TcpListener::bind("127.0.0.1:0").expect("tcp");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let tcp_port = tcp.local_addr().expect("addr").port();
    let udp_port = udp.local_addr().expect("addr").port();
    let ss_tcp = ss_owner("-t", tcp_port).expect("ss lists the TCP listener");
    let ss_udp = ss_owner("-u", udp_port).expect("ss lists the UDP socket");
    assert_eq!(ss_tcp.0, std::process::id());

    let agent = tapwire_tests::Lines::spawn(tapwire(&broker.address()).args([
        "capture",
        "--source",
        "inventory",
        "--inventory-interval-ms",
        "300",
        "--node-name",
        "node-inv",
    ]));
    let snapshots =
        tapwire_tests::read_topic(&broker.address(), topics::INVENTORY, Duration::MAX, |got| {
            got.len() >= 2
        });
    let (ok, _) = agent.terminate(Duration::from_secs(10));
    assert!(ok, "agent stopped cleanly on SIGTERM");
    let AnyEvent::InventorySnapshot(snap) = snapshots.last().expect("a snapshot") else {
        panic!("not a snapshot");
    };
    assert_eq!(snap.header.node, "node-inv");
    let listener = snap
        .tcp_listeners
        .iter()
        .find(|s| s.local.port == tcp_port)
        .expect("TCP listener in the inventory");
    assert_eq!(listener.local.ip.to_string(), "127.0.0.1");
    assert_eq!(listener.state, "LISTEN");
    assert_eq!(
        (listener.pid, listener.binary.clone()),
        (Some(ss_tcp.0), Some(ss_tcp.1))
    );
    // The executable's path beside the process name: this test binary.
    let exe = std::env::current_exe().expect("exe");
    assert_eq!(
        listener.binary_path.as_deref(),
        Some(exe.to_string_lossy().as_ref()),
        "{listener:?}"
    );
    let udp_sock = snap
        .udp_listeners
        .iter()
        .find(|s| s.local.port == udp_port)
        .expect("UDP socket in the inventory");
    assert_eq!(
        (udp_sock.pid, udp_sock.binary.clone()),
        (Some(ss_udp.0), Some(ss_udp.1))
    );
    // Both existed before the agent started.
    assert_eq!(listener.duration_ns, None);
    drop((tcp, udp));
}

#[test]
fn without_net_raw_the_agent_names_the_capability_and_runs_the_replay() {
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if require(
        "setpriv (util-linux)",
        setpriv.then_some(()),
        "apt-get install util-linux",
    )
    .is_none()
    {
        return;
    }
    let Some(broker) = broker_with_topics() else {
        return;
    };
    let file = fixture("loopback.pcap");
    // Root without CAP_NET_RAW, CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN:
    // dropped from the bounding set, they are not granted on exec.
    let out = Command::new("setpriv")
        .args(["--bounding-set", "-net_raw,-bpf,-perfmon,-sys_admin", "--"])
        .arg(tapwire_tests::tapwire_binary())
        .args(["--brokers", &broker.address(), "capture"])
        .args(["--source", "packets", "--source", "ebpf", "--source"])
        .arg(format!("pcap:{}", file.display()))
        .env_remove("TAPWIRE_CONFIG")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("source packets not started: missing capability CAP_NET_RAW"),
        "{stderr}"
    );
    assert!(
        stderr.contains("source ebpf not started: missing capability CAP_BPF and CAP_PERFMON"),
        "{stderr}"
    );
    let frames = tshark_lines(&file, &[]).len();
    assert!(
        stderr.contains(&format!("capture stopped: {frames} packets")),
        "the replay ran: {stderr}"
    );
}

#[test]
fn live_capture_on_loopback_sees_what_dumpcap_sees() {
    let Some(_) = tapwire_tests::tshark() else {
        return;
    };
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if require(
        "root (raw sockets)",
        root.then_some(()),
        "run the tests as root, as CI does",
    )
    .is_none()
    {
        return;
    }
    let Some(broker) = broker_with_topics() else {
        return;
    };
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("addr").port();
    let filter = format!("tcp port {port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = dir.path().join("reference.pcapng");
    let dumpcap = tapwire_tests::Lines::spawn(
        Command::new("dumpcap")
            .args(["-i", "lo", "-f", &filter, "-w"])
            .arg(&reference),
    );
    let agent = tapwire_tests::Lines::spawn(tapwire(&broker.address()).args([
        "capture",
        "--source",
        "packets",
        "-i",
        "lo",
        "--capture-filter",
        &filter,
        "--node-name",
        "node-live",
    ]));
    let ready = tapwire_tests::wait_until(Duration::from_secs(20), || {
        agent.stderr().contains("capturing on lo") && dumpcap.stderr().contains("Capturing on")
    });
    assert!(
        ready,
        "agent:\n{}\ndumpcap:\n{}",
        agent.stderr(),
        dumpcap.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    // A real exchange: 3 connections, 10 kB each way.
    let echo = std::thread::spawn(move || {
        for _ in 0..3 {
            let (mut c, _) = server.accept().expect("accept");
            let mut buf = vec![0u8; 10_000];
            std::io::Read::read_exact(&mut c, &mut buf).expect("read");
            std::io::Write::write_all(&mut c, &buf).expect("write");
        }
    });
    for _ in 0..3 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        std::io::Write::write_all(&mut c, &[7u8; 10_000]).expect("write");
        let mut back = vec![0u8; 10_000];
        std::io::Read::read_exact(&mut c, &mut back).expect("read back");
    }
    echo.join().expect("echo");
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _) = agent.terminate(Duration::from_secs(15));
    assert!(ok, "agent stops on SIGTERM");
    let _ = dumpcap.terminate(Duration::from_secs(10));

    let mut expected: Vec<Vec<u8>> = tshark_frames(&reference)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert!(expected.len() >= 3 * 6, "dumpcap saw the traffic");
    let mut got: Vec<Vec<u8>> =
        tapwire_tests::read_topic(&broker.address(), topics::PACKETS_RAW, Duration::MAX, |g| {
            g.len() >= expected.len()
        })
        .into_iter()
        .filter_map(|e| match e {
            AnyEvent::PacketRecord(p) => Some(p.data),
            _ => None,
        })
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got.len(), expected.len(), "as many packets as dumpcap");
    assert!(got == expected, "the same bytes as dumpcap");
    let is_flow = |e: &AnyEvent| {
        matches!(e, AnyEvent::L4Event(l) if l.kind == L4Kind::NetworkFlow && l.dst.port == port
            && l.bytes_sent == Some(10_000) && l.bytes_received == Some(10_000))
    };
    let flows = tapwire_tests::read_topic(&broker.address(), topics::L4_RAW, Duration::MAX, |g| {
        g.iter().filter(|e| is_flow(e)).count() >= 3
    })
    .iter()
    .filter(|e| is_flow(e))
    .count();
    assert_eq!(flows, 3, "three 10 kB flows derived from the live packets");
}
