//! Enforce means enforced, on a node in a box ([`tapwire_tests::node`]):
//! pods as network namespaces and kubelet-named cgroups, the agent's cgroup
//! programs and exec kill applying the enforce-mode policies the policy
//! stage publishes. A connection the kernel refused fails in the pod and
//! its verdict says Blocked; what went through never says so.
//! Runs as root (CI does); skips with the reason otherwise.

use std::path::Path;
use std::time::Duration;

use tapwire_schemas::{AnyEvent, Outcome, Verdict, topics};
use tapwire_tests::node::{Node, Pod};
use tapwire_tests::{Lines, wait_until};

/// `curl` from `pod`: whether it succeeded and its exit code.
fn curl(node: &Node, pod: &Pod, url: &str) -> (bool, Option<i32>) {
    let out = node
        .command(
            pod,
            &["curl", "-s", "-o", "/dev/null", "--max-time", "3", url],
        )
        .output()
        .expect("curl");
    (out.status.success(), out.status.code())
}

fn egress_policy(mode: &str, client: &str, denied_port: u16) -> String {
    format!(
        "apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {{name: client-egress-{mode}, namespace: enf}}
spec:
  mode: {mode}
  selector: {{matchLabels: {{app: {client}}}}}
  egress:
    - name: no-admin-port
      action: deny
      to: [{{pod: {{namespace: enf}}}}]
      ports: [{denied_port}]
"
    )
}

fn exec_policy(mode: &str, forbidden: &Path) -> String {
    format!(
        "apiVersion: tapwire.io/v1
kind: RuntimePolicy
metadata: {{name: no-forbidden-{mode}, namespace: enf}}
spec:
  mode: {mode}
  rules:
    - name: forbidden-tool
      action: deny
      executables: [\"{}\"]
",
        forbidden.display()
    )
}

/// `tapwire run --source ebpf` on `node` with its listing and `policies`,
/// CEF into `dir/cef.log`; waits until the run's stderr says `ready`, runs
/// `traffic`, stops, and returns the run's stderr and report.
fn run_on_node(
    node: &Node,
    dir: &Path,
    policies: &Path,
    ready: &str,
    traffic: impl FnOnce(),
) -> (String, Vec<String>) {
    let listing = node.write_listing(dir);
    let config = dir.join("tapwire.toml");
    std::fs::write(
        &config,
        format!("[capture]\nnode_name = \"{}\"\n", node.name),
    )
    .expect("config");
    let cef = dir.join("cef.log");
    let run = Lines::spawn(
        std::process::Command::new(tapwire_tests::tapwire_binary())
            .arg("-c")
            .arg(&config)
            .args(["run", "--source", "ebpf", "--cluster"])
            .arg(&listing)
            .arg("--policies")
            .arg(policies)
            .arg("--cef-out")
            .arg(&cef),
    );
    assert!(
        wait_until(Duration::from_secs(30), || run.stderr().contains(ready)),
        "waiting for {ready:?}:\n{}",
        run.stderr()
    );
    traffic();
    std::thread::sleep(Duration::from_secs(2));
    let stderr = run.stderr();
    let (_, report) = run.terminate(Duration::from_secs(30));
    (stderr, report)
}

/// Under an enforce-mode egress policy a pod cannot reach the denied port
/// of another pod (the kernel refuses the connect: curl fails at once)
/// while another port works; the CEF line of the refused connection says
/// it was blocked by the node. A denied executable is killed before it
/// runs: its side effect never happens, and its CEF line says blocked.
#[test]
fn run_enforces_egress_and_exec_denials_on_its_own_machine() {
    let Some(mut node) = Node::create("node-enforce") else {
        return;
    };
    let web = node.add_pod("enf", "enf-web");
    let client = node.add_pod("enf", "enf-client");
    node.serve_http(&web, 8080);
    node.serve_http(&web, 9000);
    let dir = tempfile::tempdir().expect("tempdir");
    let forbidden = dir.path().join("forbidden-touch");
    std::fs::copy("/usr/bin/touch", &forbidden).expect("copy touch");
    let marker = dir.path().join("marker");
    let policies = dir.path().join("policies.yaml");
    std::fs::write(
        &policies,
        format!(
            "{}---\n{}",
            egress_policy("enforce", "enf-client", 9000),
            exec_policy("enforce", &forbidden)
        ),
    )
    .expect("policies");
    let allowed = format!("http://{}:8080/", web.ip);
    let denied = format!("http://{}:9000/", web.ip);
    let mut results = Vec::new();
    let (stderr, report) =
        run_on_node(&node, dir.path(), &policies, "enforcing 2 policies", || {
            results.push(curl(&node, &client, &allowed));
            results.push(curl(&node, &client, &denied));
            let status = node
                .command(
                    &client,
                    &[forbidden.to_str().unwrap(), marker.to_str().unwrap()],
                )
                .status()
                .expect("forbidden tool");
            results.push((status.success(), status.code()));
        });
    assert_eq!(results[0], (true, Some(0)), "the allowed port works");
    // curl's 7: could not connect (EPERM from connect).
    assert_eq!(results[1], (false, Some(7)), "the denied port is refused");
    assert!(!results[2].0, "the forbidden tool was killed");
    assert!(!marker.exists(), "the forbidden tool never ran");

    let lines = tapwire_tests::cef::read_file(&dir.path().join("cef.log"));
    let blocked: Vec<_> = lines
        .iter()
        .filter(|m| m.get("reason") == Some("blocked by the node"))
        .collect();
    let connect = blocked
        .iter()
        .find(|m| m.get("dpt") == Some("9000"))
        .unwrap_or_else(|| panic!("no blocked connect in {lines:#?}\n{stderr}\n{report:#?}"));
    assert_eq!(connect.get("dst"), Some(web.ip.to_string().as_str()));
    assert_eq!(
        connect.get("cs5"),
        Some(client.name.as_str()),
        "{connect:?}"
    );
    assert_eq!(connect.get("dproc"), Some("curl"), "{connect:?}");
    assert_eq!(connect.severity, "7", "{connect:?}");
    assert!(connect.signature_id.starts_with("FNT"), "{connect:?}");
    let exec = blocked
        .iter()
        .find(|m| m.get("dproc") == Some("forbidden-touch"))
        .unwrap_or_else(|| panic!("no blocked exec in {blocked:#?}"));
    assert_eq!(exec.severity, "7", "{exec:?}");
    assert!(exec.signature_id.starts_with("FPM"), "{exec:?}");
    assert_eq!(
        exec.get("cat"),
        Some("enf/no-forbidden-enforce/forbidden-tool"),
        "{exec:?}"
    );
    // Nothing that went through says blocked: the allowed port's lines.
    assert!(
        lines
            .iter()
            .filter(|m| m.get("dpt") == Some("8080"))
            .all(|m| m.get("reason") != Some("blocked by the node")),
        "{lines:#?}"
    );
}

/// The same policies in audit mode stop nothing: the connection and the
/// tool go through, and their lines say audited, never blocked.
#[test]
fn audit_mode_lets_everything_through_and_says_audited() {
    let Some(mut node) = Node::create("node-audit") else {
        return;
    };
    let web = node.add_pod("enf", "aud-web");
    let client = node.add_pod("enf", "aud-client");
    node.serve_http(&web, 9000);
    let dir = tempfile::tempdir().expect("tempdir");
    let forbidden = dir.path().join("forbidden-touch");
    std::fs::copy("/usr/bin/touch", &forbidden).expect("copy touch");
    let marker = dir.path().join("marker");
    let policies = dir.path().join("policies.yaml");
    std::fs::write(
        &policies,
        format!(
            "{}---\n{}",
            egress_policy("audit", "aud-client", 9000),
            exec_policy("audit", &forbidden)
        ),
    )
    .expect("policies");
    let denied = format!("http://{}:9000/", web.ip);
    let mut results = Vec::new();
    let (stderr, _) = run_on_node(&node, dir.path(), &policies, "enforcement ready", || {
        std::thread::sleep(Duration::from_secs(1));
        results.push(curl(&node, &client, &denied));
        let status = node
            .command(
                &client,
                &[forbidden.to_str().unwrap(), marker.to_str().unwrap()],
            )
            .status()
            .expect("tool");
        results.push((status.success(), status.code()));
    });
    assert_eq!(results, vec![(true, Some(0)), (true, Some(0))], "{stderr}");
    assert!(marker.exists(), "the audited tool ran");
    assert!(
        !stderr.contains("enforcing 1 policies") && !stderr.contains("enforcing 2 policies"),
        "audit policies are not enforced:\n{stderr}"
    );
    let lines = tapwire_tests::cef::read_file(&dir.path().join("cef.log"));
    let connect = lines
        .iter()
        .find(|m| m.get("dpt") == Some("9000") && m.get("act") == Some("egress"))
        .unwrap_or_else(|| panic!("no connect line in {lines:#?}"));
    // Audited: an audit-mode violation (severity 7, mode Audit) that the
    // node neither blocked nor was asked to prevent (no reason).
    assert_eq!(connect.severity, "7", "audited: {connect:?}");
    assert_eq!(connect.get("outcome"), Some("Audit"), "{connect:?}");
    assert_eq!(connect.get("reason"), None, "{connect:?}");
    assert!(
        lines
            .iter()
            .all(|m| m.get("reason") != Some("blocked by the node")),
        "{lines:#?}"
    );
}

/// The node's listing on `tapwire.pods`, as `tapwire k8s-watch` would
/// publish it.
fn publish_listing(broker: &tapwire_tests::Broker, listing: &Path) {
    use tapwire_plumbing::bus::Sink;
    let text = std::fs::read_to_string(listing).expect("listing");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let records = tapwire_cluster::k8s::records_from_listing(&text, now)
        .expect("listing")
        .iter()
        .map(|r| r.to_out_record().expect("record"))
        .collect();
    let sink =
        tapwire_plumbing::bus::kafka::KafkaSink::new(&tapwire_plumbing::config::KafkaConfig {
            brokers: broker.address(),
            ..Default::default()
        })
        .expect("producer");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(sink.send_batch(records))
        .expect("pods published");
}

/// Verdicts of `tapwire.verdicts` with outcome `outcome`.
fn verdicts(broker: &tapwire_tests::Broker, outcome: Outcome) -> Vec<Verdict> {
    tapwire_tests::read_topic(
        &broker.address(),
        topics::VERDICTS,
        Duration::from_secs(2),
        |_| false,
    )
    .into_iter()
    .filter_map(|e| match e {
        AnyEvent::Verdict(v) if v.outcome == outcome => Some(v),
        _ => None,
    })
    .collect()
}

/// Over Kafka, as deployed: the policy stage publishes the enforce-mode
/// policy to `tapwire.enforcement`, the node agent follows it. The refused
/// connect's verdict on `tapwire.verdicts` says Blocked; a restarted agent
/// restores the block from the topic before it says it is ready; deleting
/// the policy restores connectivity.
#[test]
fn the_agent_follows_the_topic_across_restarts_and_deletions() {
    let Some(mut node) = Node::create("node-follow") else {
        return;
    };
    let Some(broker) = tapwire_tests::Broker::start(tapwire_tests::Storage::Memory) else {
        return;
    };
    tapwire_tests::run_ok(tapwire_tests::tapwire(&broker.address()).args([
        "topics",
        "create",
        "--partitions",
        "1",
    ]));
    let web = node.add_pod("enf", "fol-web");
    let client = node.add_pod("enf", "fol-client");
    node.serve_http(&web, 9000);
    let dir = tempfile::tempdir().expect("tempdir");
    let listing = node.write_listing(dir.path());
    let policies = dir.path().join("policies.yaml");
    std::fs::write(&policies, egress_policy("enforce", "fol-client", 9000)).expect("policies");
    let config = dir.path().join("tapwire.toml");
    std::fs::write(
        &config,
        format!(
            "[capture]\nnode_name = \"{}\"\n[policy]\nreload_check_ms = 200\n",
            node.name
        ),
    )
    .expect("config");
    let stage = |args: &[&str]| {
        let mut cmd = tapwire_tests::tapwire(&broker.address());
        cmd.arg("-c").arg(&config).args(args);
        Lines::spawn(&mut cmd)
    };
    publish_listing(&broker, &listing);
    let enrich = stage(&["enrich"]);
    let policy = stage(&["policy", "--policies", policies.to_str().unwrap()]);
    // The CEF forwarder to a real syslog receiver, as a SIEM gets it.
    let receiver = tapwire_tests::SyslogNg::start();
    let cef = receiver.as_ref().map(|r| {
        stage(&[
            "cef",
            "--target",
            &format!("tcp://127.0.0.1:{}", r.tcp_port),
        ])
    });
    let agent = || stage(&["capture", "--source", "ebpf"]);
    let denied = format!("http://{}:9000/", web.ip);

    let first = agent();
    assert!(
        wait_until(Duration::from_secs(30), || first
            .stderr()
            .contains("enforcing 1 policies")),
        "agent:\n{}\npolicy:\n{}",
        first.stderr(),
        policy.stderr()
    );
    assert_eq!(curl(&node, &client, &denied), (false, Some(7)), "refused");
    assert!(
        wait_until(Duration::from_secs(20), || !verdicts(
            &broker,
            Outcome::Blocked
        )
        .is_empty()),
        "a Blocked verdict:\n{}\n{}",
        enrich.stderr(),
        policy.stderr()
    );
    let blocked = verdicts(&broker, Outcome::Blocked);
    assert_eq!(
        blocked[0].rule.as_deref(),
        Some("no-admin-port"),
        "{blocked:#?}"
    );
    assert_eq!(
        blocked[0].policy.as_deref(),
        Some("enf/client-egress-enforce")
    );
    if let Some(receiver) = &receiver {
        let ip = web.ip.to_string();
        let blocked_line = |l: &String| {
            l.contains("reason=blocked by the node") && l.contains(&format!("dst={ip} dpt=9000"))
        };
        assert!(
            wait_until(Duration::from_secs(20), || receiver
                .received("tcp")
                .iter()
                .any(blocked_line)),
            "the SIEM receives the blocked connection:\n{:#?}",
            receiver.received("tcp")
        );
        let line = receiver
            .received("tcp")
            .into_iter()
            .find(blocked_line)
            .expect("line");
        assert!(line.contains("|FNT-001|") && line.contains("|7|"), "{line}");
    }

    // Restart: the block holds before the agent says it is ready.
    first.terminate(Duration::from_secs(15));
    let second = agent();
    assert!(
        wait_until(Duration::from_secs(30), || second
            .stderr()
            .contains("enforcement ready")),
        "{}",
        second.stderr()
    );
    assert!(
        second.stderr().contains("enforcing 1 policies"),
        "tables written before ready:\n{}",
        second.stderr()
    );
    assert_eq!(
        curl(&node, &client, &denied),
        (false, Some(7)),
        "still refused"
    );

    // Deletion: the policy file emptied, the stage tombstones the record.
    std::fs::write(&policies, "").expect("empty policies");
    let started = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || curl(&node, &client, &denied).0),
        "connectivity restored after the policy was deleted:\n{}\npolicy:\n{}",
        second.stderr(),
        policy.stderr()
    );
    eprintln!(
        "policy deleted -> connectivity back in {:?}",
        started.elapsed()
    );
    assert!(
        second.stderr().contains("enforcing 0 policies"),
        "{}",
        second.stderr()
    );
    second.terminate(Duration::from_secs(15));
    if let Some(cef) = cef {
        cef.terminate(Duration::from_secs(15));
    }
    policy.terminate(Duration::from_secs(15));
    enrich.terminate(Duration::from_secs(15));
}

/// The Python interpreter itself: `python3` on the PATH may be a shell
/// script (pyenv's shims), which the no-shells policy rightly kills.
fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A TCP connect from `pod` to `addr:port` with a 2 s timeout: `ok`, or the
/// errno name it failed with (`EPERM`: refused by the kernel's program at
/// connect; `timeout`: the SYN went unanswered, dropped on the way).
fn connect(node: &Node, pod: &Pod, addr: &str, port: u16) -> String {
    let script = format!(
        "import socket, errno\n\
         s = socket.socket()\n\
         s.settimeout(2)\n\
         try:\n    s.connect(('{addr}', {port}))\n    print('ok')\n\
         except socket.timeout:\n    print('timeout')\n\
         except OSError as e:\n    print(errno.errorcode.get(e.errno, e.errno))\n"
    );
    let out = node
        .command(pod, &[&python(), "-c", &script])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if text.is_empty() {
        return format!(
            "no answer: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    text
}

/// The example policies of `deploy/policies/` (enforce flavour), loaded
/// together, do at the node what their comments say: the metadata address
/// is refused, the egress allow-list lets only the database port through,
/// namespace isolation drops connections from another namespace, shells
/// are killed at exec, and a write under /etc goes through, reported as not
/// prevented (a tracepoint cannot refuse it).
#[test]
fn the_example_policies_enforce_what_they_say() {
    let Some(mut node) = Node::create("node-examples") else {
        return;
    };
    let web = node.add_pod("shop", "web");
    let db = node.add_pod("shop", "db");
    let outsider = node.add_pod("other", "outsider");
    let meta = node.add_pod("default", "meta-client");
    node.serve_http(&db, 5432);
    node.serve_http(&db, 8080);
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policies");
    let mut all = String::new();
    for entry in std::fs::read_dir(&examples).expect("deploy/policies") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".enforce.yaml") {
            all.push_str(&std::fs::read_to_string(&path).expect("policy"));
            all.push_str("\n---\n");
        }
    }
    let policies = dir.path().join("policies.yaml");
    std::fs::write(&policies, all).expect("policies");
    let marker = dir.path().join("shell-ran");
    let etc_file = format!("/etc/tapwire-example-{}", std::process::id());
    let mut seen = Vec::new();
    let (stderr, _) = run_on_node(&node, dir.path(), &policies, "enforcing 5 policies", || {
        let db_ip = db.ip.to_string();
        seen.push(("metadata", connect(&node, &meta, "169.254.169.254", 80)));
        seen.push(("web->db:5432", connect(&node, &web, &db_ip, 5432)));
        seen.push(("web->db:8080", connect(&node, &web, &db_ip, 8080)));
        seen.push(("outsider->db:8080", connect(&node, &outsider, &db_ip, 8080)));
        let shell = node
            .command(
                &web,
                &["/bin/sh", "-c", &format!("touch {}", marker.display())],
            )
            .status()
            .expect("shell");
        seen.push((
            "shell",
            if shell.success() { "ran" } else { "killed" }.into(),
        ));
        let write = node.run(
            &web,
            &[
                &python(),
                "-c",
                &format!("open('{etc_file}', 'w').write('x')"),
            ],
        );
        seen.push((
            "write /etc",
            if write.0 { "written" } else { "failed" }.into(),
        ));
    });
    let _ = std::fs::remove_file(&etc_file);
    let seen: Vec<(&str, &str)> = seen.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        seen,
        vec![
            ("metadata", "EPERM"),
            ("web->db:5432", "ok"),
            ("web->db:8080", "EPERM"),
            ("outsider->db:8080", "timeout"),
            ("shell", "killed"),
            ("write /etc", "written"),
        ],
        "{stderr}\n{}",
        std::fs::read_to_string(dir.path().join("cef.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("blocked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!marker.exists(), "the shell never ran");
    let lines = tapwire_tests::cef::read_file(&dir.path().join("cef.log"));
    let reason = |pred: &dyn Fn(&tapwire_tests::cef::CefMessage) -> bool| {
        lines
            .iter()
            .filter(|m| pred(m))
            .filter_map(|m| m.get("reason"))
            .collect::<Vec<_>>()
    };
    assert!(
        reason(&|m| m.get("dst") == Some("169.254.169.254")).contains(&"blocked by the node"),
        "{lines:#?}"
    );
    // The refused inbound connection, on the accepting side.
    assert!(
        reason(&|m| m.get("dpt") == Some("8080")
            && m.get("src") == Some(outsider.ip.to_string().as_str()))
        .contains(&"blocked by the node"),
        "{lines:#?}"
    );
    let write = reason(&|m| m.get("filePath") == Some(etc_file.as_str()));
    assert!(
        !write.is_empty() && write.iter().all(|r| *r == "not prevented"),
        "the write under /etc is a violation that went through: {write:?}\n{lines:#?}"
    );
}

/// Heartbeats on `tapwire.agents`.
fn heartbeats(broker: &tapwire_tests::Broker) -> Vec<tapwire_schemas::AgentHeartbeat> {
    tapwire_tests::read_topic(
        &broker.address(),
        topics::AGENTS,
        Duration::from_secs(2),
        |_| false,
    )
    .into_iter()
    .filter_map(|e| match e {
        AnyEvent::AgentHeartbeat(h) => Some(h),
        _ => None,
    })
    .collect()
}

/// An agent that may load tracepoint programs (CAP_BPF, CAP_PERFMON) but
/// not attach cgroup programs (no CAP_NET_ADMIN, no CAP_SYS_ADMIN) says
/// enforcement is off and why, captures on, and its heartbeats say it does
/// not enforce; with every capability, they say it does.
#[test]
fn without_the_capabilities_enforcement_is_off_and_the_heartbeat_says_so() {
    if tapwire_tests::require(
        "root (eBPF needs it)",
        tapwire_tests::is_root().then_some(()),
        "run the tests as root, as CI does",
    )
    .and_then(|()| {
        tapwire_tests::require(
            "setpriv (util-linux)",
            tapwire_tests::on_path("setpriv"),
            "apt-get install util-linux",
        )
    })
    .is_none()
    {
        return;
    }
    let Some(broker) = tapwire_tests::Broker::start(tapwire_tests::Storage::Memory) else {
        return;
    };
    tapwire_tests::run_ok(tapwire_tests::tapwire(&broker.address()).args([
        "topics",
        "create",
        "--partitions",
        "1",
    ]));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tapwire.toml");
    std::fs::write(
        &config,
        "[capture]\nheartbeat_interval_ms = 500\n[capture.ebpf]\nfiles = false\nlookups = false\n",
    )
    .expect("config");
    let agent = |sensor: &str, drop_caps: bool| {
        let mut cmd = std::process::Command::new("setpriv");
        if drop_caps {
            cmd.args(["--bounding-set", "-net_admin,-sys_admin"]);
        }
        cmd.arg("--")
            .arg(tapwire_tests::tapwire_binary())
            .args(["--brokers", &broker.address(), "-c"])
            .arg(&config)
            .args(["capture", "--source", "ebpf", "--sensor-id", sensor])
            .env_remove("TAPWIRE_CONFIG");
        Lines::spawn(&mut cmd)
    };
    let limited = agent("limited", true);
    assert!(
        wait_until(Duration::from_secs(30), || limited
            .stderr()
            .contains("ebpf attached")),
        "the agent captures without enforcement:\n{}",
        limited.stderr()
    );
    assert!(
        limited.stderr().contains("capture: enforcement off: "),
        "{}",
        limited.stderr()
    );
    let full = agent("full", false);
    assert!(
        wait_until(Duration::from_secs(30), || full
            .stderr()
            .contains("enforcement ready")),
        "{}",
        full.stderr()
    );
    std::thread::sleep(Duration::from_secs(2));
    limited.terminate(Duration::from_secs(15));
    full.terminate(Duration::from_secs(15));
    let beats = heartbeats(&broker);
    let of = |sensor: &str| -> Vec<bool> {
        beats
            .iter()
            .filter(|h| h.header.sensor_id == sensor && !h.sources.is_empty())
            .map(|h| h.enforcing)
            .collect()
    };
    let (limited, full) = (of("limited"), of("full"));
    assert!(
        limited.len() >= 2 && limited.iter().all(|e| !e),
        "{limited:?}"
    );
    assert!(full.last() == Some(&true), "{full:?}");
}
