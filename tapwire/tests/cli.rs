//! The `tapwire` binary as a user meets it.

use std::process::Command;

fn tapwire() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tapwire"));
    cmd.env_remove("TAPWIRE_CONFIG");
    cmd
}

#[test]
fn help_lists_a_subcommand_per_stage() {
    let out = tapwire().arg("--help").output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "capture",
        "k8s-watch",
        "enrich",
        "policy",
        "aggregate",
        "serve",
        "query",
        "cef",
        "record",
        "investigate",
        "kfl",
        "topics",
        "run",
        "demo",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} missing from:\n{help}"
        );
    }
}

#[test]
fn record_without_a_query_says_recording_is_off_and_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = tapwire()
        .args(["--brokers", "127.0.0.1:1", "record", "--directory"])
        .arg(dir.path())
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .env_remove("RECORDING_KFL")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("recording is off") {
                break;
            }
        }
        text
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let running = child.try_wait().expect("status").is_none();
    let _ = child.kill();
    let _ = child.wait();
    let err = reader.join().expect("reader");
    assert!(err.contains("recording is off"), "{err}");
    assert!(running, "the stage stays up without a query:\n{err}");
}

#[test]
fn record_and_investigate_help_show_examples() {
    for (sub, example) in [
        ("record", "RECORDING_KFL='http or dns'"),
        ("investigate", "--write"),
    ] {
        let out = tapwire().args([sub, "--help"]).output().expect("run");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub}");
        assert!(
            help.contains("Examples:") && help.contains(example),
            "{sub}:\n{help}"
        );
    }
}

#[test]
fn investigate_reads_a_pcap_file_without_cluster_or_kafka() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pcap-recorder/tests/fixtures/http_dns_lo.pcap"
    );
    let out = tapwire()
        .args(["investigate", fixture, "--kfl", "dns", "--format", "json"])
        .env("TAPWIRE_KAFKA__BROKERS", "127.0.0.1:1")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(!rows.is_empty(), "no DNS stream found");
    for row in &rows {
        assert_eq!(row["protocol"], "DNS", "{row}");
        assert!(
            row["summary"]
                .as_str()
                .is_some_and(|s| s.contains("example.test")),
            "{row}"
        );
    }
    let bad = tapwire()
        .args(["investigate", fixture, "--kfl", "http and ("])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains('^'));
}

#[test]
fn the_demo_runs_every_stage_on_bundled_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tapwire()
        .args(["demo", "--events", "100", "--out"])
        .arg(dir.path())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every stage ran; the three malformed messages were dead-lettered.
    for stage in [
        "capture ",
        "enrich ",
        "policy ",
        "aggregate ",
        "cef ",
        "record ",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(stage)),
            "{stage}:\n{stdout}"
        );
    }
    assert!(stdout.contains("enrich     "), "{stdout}");
    assert!(stdout.contains("3 dead-lettered"), "{stdout}");
    // The capture agent's loss record travels to the end and is counted
    // there, by the same CEF stage `tapwire cef` runs: not dead-lettered.
    let cef = stdout
        .lines()
        .find(|l| l.starts_with("cef "))
        .unwrap_or_else(|| panic!("cef line:\n{stdout}"));
    assert!(cef.contains("7 events lost upstream"), "{cef}");
    assert!(cef.contains(" 0 dead-lettered"), "{cef}");
    assert!(!stdout.contains("[wrong_schema]"), "{stdout}");
    // A replay refuses nothing: its enforce-mode violations went through,
    // and the report says so.
    let enforce = stdout
        .lines()
        .find(|l| l.starts_with("Enforce-mode violations: "))
        .unwrap_or_else(|| panic!("enforce line:\n{stdout}"));
    assert!(
        enforce.contains(": 0 blocked by the node's kernel, "),
        "{enforce}"
    );
    assert!(!enforce.contains(", 0 not prevented"), "{enforce}");
    // Every CEF message is in cef.log beside the traffic.
    let lines = std::fs::read_to_string(dir.path().join("cef.log")).expect("cef.log");
    assert!(lines.lines().count() > 100, "{lines}");
    // A log written to a pipe has no colour codes.
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{1b}'));
    // The three tabs, with the rows the bundled traffic implies.
    let tab = |title: &str| {
        let start = stdout
            .find(title)
            .unwrap_or_else(|| panic!("{title}:\n{stdout}"));
        let rest = &stdout[start..];
        rest[..rest[1..].find("\n\n").map_or(rest.len(), |e| e + 1)].to_owned()
    };
    let enforce = tab("Enforce-mode connections");
    let row = |tab: &str, needle: &str| {
        tab.lines()
            .find(|l| l.contains(needle))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{needle} not in\n{tab}"))
    };
    assert!(row(&enforce, "api-0 10.1.2.3:8080").contains(" 100 "));
    assert!(row(&enforce, "example.com 93.184.215.14:443").contains("web-1"));
    row(&enforce, "169.254.169.254:80");
    assert!(row(&tab("Audit-mode connections"), "db-0 10.1.5.5:5432").contains(" 20 "));
    // tool-0 (dev) is covered by no egress policy; db-0's audit-mode ingress
    // policy (from shop only) puts the connection in the Audit tab.
    assert!(row(&tab("Audit-mode connections"), "tool-0 10.2.0.9").contains("db-0 10.1.5.5:5432"));
    assert!(stdout.contains("Other connections (0)"), "{stdout}");
    assert!(stdout.contains("CEF:0|tapwire|tapwire|"), "{stdout}");
    assert!(
        stdout.contains("|FNT-001|"),
        "an enforce-mode violation in CEF:\n{stdout}"
    );
    // Nothing in a replay is blocked, and the demo says so.
    assert!(stdout.contains("reason=not prevented"), "{stdout}");
    assert!(!stdout.contains("reason=blocked"), "{stdout}");
    assert!(stdout.contains("A replay stops nothing"), "{stdout}");
    for kind in ["[bad_magic]", "[unknown_fingerprint]", "[bad_body]"] {
        assert!(stdout.contains(kind), "{kind} missing:\n{stdout}");
    }
    // The recorded slice is there and is a pcap.
    let slice = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with(".pcap") && l.contains("recordings"))
        .unwrap_or_else(|| panic!("no slice path:\n{stdout}"));
    let bytes = std::fs::read(slice).expect("slice");
    assert_eq!(
        &bytes[..4],
        &[0x4d, 0x3c, 0xb2, 0xa1],
        "nanosecond pcap magic"
    );
    assert!(std::path::Path::new(&slice.replace(".pcap", ".index.json")).exists());
}

#[test]
fn an_unknown_config_key_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[consumer]\nbatch_size = 10\n").expect("write");
    let out = tapwire()
        .arg("--config")
        .arg(&path)
        .args(["demo"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("batch_size") && err.contains("bad.toml"),
        "{err}"
    );
}

#[test]
#[cfg(not(feature = "otlp"))]
fn otlp_export_without_the_feature_is_a_clear_error() {
    let out = tapwire()
        .args(["demo", "--events", "10"])
        .env(
            "TAPWIRE_TELEMETRY__OTLP_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces",
        )
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("otlp") && err.contains("feature"), "{err}");
}

#[test]
fn kfl_check_prints_the_canonical_form_or_a_caret_under_the_fault() {
    let out = tapwire()
        .args(["kfl", "check", r#"http and response.status == r"4.*""#])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"(http and (response.status == r"4.*"))"#
    );

    let out = tapwire()
        .args(["kfl", "check", r#"http and request.method = "GET""#])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let caret = lines
        .iter()
        .find(|l| l.trim_start().starts_with('^'))
        .expect("a caret line");
    assert_eq!(
        caret.find('^'),
        Some(r#"http and request.method "#.len()),
        "{err}"
    );
}

#[test]
fn policy_check_accepts_valid_files_and_names_the_line_of_an_error() {
    let good = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policy-engine/tests/fixtures/shop.yaml"
    );
    let out = tapwire()
        .args(["policy", "check", good])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 3 policies compile"));

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: tapwire.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  mode: enforce\n  egres: []\n").expect("write");
    let out = tapwire()
        .arg("policy")
        .arg("check")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:6:") && err.contains("egres"),
        "{err}"
    );
}

#[test]
fn capture_help_shows_examples_and_an_unknown_source_is_refused() {
    let out = tapwire().args(["capture", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("--source pcap:traffic.pcap"), "{help}");
    let out = tapwire()
        .args(["capture", "--source", "carrier-pigeon"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("expected inventory, ebpf, packets or pcap:FILE"),
        "{err}"
    );
}

#[test]
fn query_and_aggregate_reject_bad_arguments_clearly() {
    let out = tapwire()
        .args(["query", "connections", "--window", "15x"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unit must be s, m, h or d"), "{err}");

    let out = tapwire()
        .args(["aggregate", "--clickhouse-url", "ftp://example"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("aggregate.clickhouse_url"), "{err}");

    let out = tapwire().args(["query", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("connections") && help.contains("sql"),
        "{help}"
    );
}

#[test]
fn run_replays_a_capture_through_every_stage_into_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../capture/tests/fixtures/loopback.pcap"
    );
    let cef = dir.path().join("cef.log");
    let recordings = dir.path().join("rec");
    let out = tapwire()
        .args(["run", "--pcap", pcap, "--kfl", "http or dns", "--cef-out"])
        .arg(&cef)
        .arg("--record-dir")
        .arg(&recordings)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without policies every verdict is Other; every verdict is one CEF line.
    let verdicts: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cef "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cef line:\n{stdout}"));
    assert!(verdicts > 0);
    let lines = std::fs::read_to_string(&cef).expect("cef file");
    assert_eq!(lines.lines().count() as u64, verdicts, "{lines}");
    assert!(lines.lines().all(|l| l.contains("CEF:0|tapwire|")));
    assert!(stdout.contains("Enforce-mode connections (0)"), "{stdout}");
    assert!(!stdout.contains("Other connections (0)"), "{stdout}");
    assert!(stdout.contains(".pcap"), "slices recorded:\n{stdout}");

    let out = tapwire().args(["run"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to capture"));
}

#[test]
fn the_file_seed_variables_tapwire_variables_and_flags_are_layers_of_one_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tapwire.toml");
    std::fs::write(&config, "[capture]\nnode_name = \"from-file\"\n").expect("config");
    let pcap = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../capture/tests/fixtures/loopback.pcap"
    );
    // The node name is in every CEF line (syslog host and cs2).
    let node = |env: &[(&str, &str)], name: &str| {
        let out = dir.path().join(format!("{name}.log"));
        let mut cmd = tapwire();
        cmd.env_remove("NODE_NAME")
            .arg("--config")
            .arg(&config)
            .args(["run", "--pcap", pcap, "--cef-out"])
            .arg(&out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let run = cmd.output().expect("run");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let lines = std::fs::read_to_string(&out).expect("cef");
        lines.lines().next().expect("a CEF line").to_owned()
    };
    assert!(node(&[], "file").contains("cs2=from-file "));
    assert!(node(&[("NODE_NAME", "from-seed")], "seed").contains("cs2=from-seed "));
    assert!(node(&[("NODE_NAME", "  ")], "empty").contains("cs2=from-file "));
    let env = [
        ("NODE_NAME", "from-seed"),
        ("TAPWIRE_CAPTURE__NODE_NAME", "from-env"),
    ];
    assert!(node(&env, "env").contains("cs2=from-env "));

    // A flag wins over everything; a bad value names its layer.
    let out = tapwire()
        .env("TAPWIRE_POLICY__RELOAD_CHECK_MS", "soon")
        .args(["policy", "--policies", "x.yaml"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("policy.reload_check_ms") && stderr.contains("TAPWIRE_"),
        "{stderr}"
    );
    let out = tapwire()
        .env("TAPWIRE_POLICY__RELOAD_CHECK_MS", "soon")
        .args(["policy", "--policies", "x.yaml", "--reload-check-ms", "0"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("policy.reload_check_ms: must be at least 1"),
        "{stderr}"
    );
}

#[test]
fn a_protocol_nothing_dissects_is_refused_not_silently_unmatched() {
    let out = tapwire()
        .args(["kfl", "check", "dns or grpc"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not dissect `grpc`"), "{stderr}");
    assert!(stderr.contains("       ^"), "{stderr}");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tapwire()
        .args(["record", "--kfl", "redis", "--directory"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("record.queries.default") && stderr.contains("`redis`"),
        "{stderr}"
    );
}

/// Issue 20: one capture-file reader for replay and investigate: pcapng
/// investigates like its pcap twin, and a record whose original length is
/// below its captured length (some tools write that; tshark reads it) is
/// read, not an error.
#[test]
fn investigate_reads_pcapng_and_tolerates_what_tshark_tolerates() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../capture/tests/fixtures");
    let rows = |file: &str, kfl: &str| -> Vec<serde_json::Value> {
        let out = tapwire()
            .args(["investigate", file, "--kfl", kfl, "--format", "json"])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    for kfl in ["tcp", "http or dns"] {
        let pcap = rows(&format!("{fixtures}/loopback.pcap"), kfl);
        let pcapng = rows(&format!("{fixtures}/loopback.pcapng"), kfl);
        assert!(!pcap.is_empty(), "{kfl}");
        assert_eq!(pcap.len(), pcapng.len(), "{kfl}");
    }

    // Two DNS queries; the first record says 10 bytes fewer on the wire
    // than it holds.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("short.pcap");
    let dns = [
        0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3,
        b'c', b'o', b'm', 0, 0, 1, 0, 1,
    ];
    let mut udp = Vec::new();
    udp.extend(40000u16.to_be_bytes());
    udp.extend(53u16.to_be_bytes());
    udp.extend((8 + dns.len() as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(dns);
    let mut ip = vec![0x45, 0];
    ip.extend((20 + udp.len() as u16).to_be_bytes());
    ip.extend([0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    ip.extend(udp);
    let mut frame = vec![
        0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 8, 0,
    ];
    frame.extend(ip);
    let mut file = Vec::new();
    file.extend(0xa1b2c3d4u32.to_le_bytes());
    file.extend(2u16.to_le_bytes());
    file.extend(4u16.to_le_bytes());
    file.extend([0u8; 8]);
    file.extend(65535u32.to_le_bytes());
    file.extend(1u32.to_le_bytes());
    for (sec, orig) in [
        (1_700_000_000u32, frame.len() - 10),
        (1_700_000_001, frame.len()),
    ] {
        file.extend(sec.to_le_bytes());
        file.extend(0u32.to_le_bytes());
        file.extend((frame.len() as u32).to_le_bytes());
        file.extend((orig as u32).to_le_bytes());
        file.extend(&frame);
    }
    std::fs::write(&path, file).expect("write");
    // Both records read: two queries (one row each) of one stream.
    let found = rows(path.to_str().expect("utf-8"), "dns");
    assert_eq!(found.len(), 2, "two DNS queries: {found:?}");
    assert_eq!(found[0]["stream"], found[1]["stream"], "{found:?}");
}

/// A pcap file of `frames` with link type `link` (microsecond stamps).
fn pcap_bytes(link: u32, frames: &[(i64, Vec<u8>)]) -> Vec<u8> {
    let mut file = Vec::new();
    file.extend(0xa1b2c3d4u32.to_le_bytes());
    file.extend(2u16.to_le_bytes());
    file.extend(4u16.to_le_bytes());
    file.extend([0u8; 8]);
    file.extend(65535u32.to_le_bytes());
    file.extend(link.to_le_bytes());
    for (ts, data) in frames {
        let us = ts / 1_000;
        file.extend(((us / 1_000_000) as u32).to_le_bytes());
        file.extend(((us % 1_000_000) as u32).to_le_bytes());
        file.extend((data.len() as u32).to_le_bytes());
        file.extend((data.len() as u32).to_le_bytes());
        file.extend(data);
    }
    file
}

/// A pcapng file with one interface per link type in `links`, and
/// `(interface, time, bytes)` packets in that order.
fn pcapng_bytes(links: &[u16], packets: &[(u32, i64, &[u8])]) -> Vec<u8> {
    let block = |kind: u32, body: &[u8]| {
        let mut b = Vec::new();
        let padded = body.len().div_ceil(4) * 4;
        let total = (12 + padded) as u32;
        b.extend(kind.to_le_bytes());
        b.extend(total.to_le_bytes());
        b.extend(body);
        b.resize(8 + padded, 0);
        b.extend(total.to_le_bytes());
        b
    };
    let mut shb = Vec::new();
    shb.extend(0x1A2B3C4Du32.to_le_bytes());
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    let mut file = block(0x0A0D0D0A, &shb);
    for link in links {
        let mut idb = Vec::new();
        idb.extend(link.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(65535u32.to_le_bytes());
        file.extend(block(1, &idb));
    }
    for (interface, ts, data) in packets {
        let us = (ts / 1_000) as u64;
        let mut epb = Vec::new();
        epb.extend(interface.to_le_bytes());
        epb.extend(((us >> 32) as u32).to_le_bytes());
        epb.extend((us as u32).to_le_bytes());
        epb.extend((data.len() as u32).to_le_bytes());
        epb.extend((data.len() as u32).to_le_bytes());
        epb.extend(*data);
        file.extend(block(6, &epb));
    }
    file
}

/// Issue 20: a pcapng capture from two interfaces of different link types
/// (Ethernet and raw IP) investigates like the two pcap files of the same
/// packets, one per link type.
#[test]
fn pcapng_with_two_link_types_investigates_like_its_pcap_equivalent() {
    use tapwire_packet::synth;
    const T0: i64 = 1_700_000_000_000_000_000;
    let at = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
    let http = synth::tcp_session(
        T0,
        at("10.0.0.7:40000"),
        at("10.0.0.9:8080"),
        &[(
            b"GET /eth HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        )],
    );
    // The raw-IP interface carries IP packets without a link header.
    let raw: Vec<synth::Frame> = synth::tcp_session(
        T0 + 500_000,
        at("10.0.1.7:41000"),
        at("10.0.1.9:80"),
        &[(
            b"GET /raw HTTP/1.1\r\nHost: b\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        )],
    )
    .into_iter()
    .chain(synth::udp_exchange(
        T0 + 700_000,
        at("10.0.1.7:53000"),
        at("10.0.1.53:53"),
        &synth::dns_query(7, "example.com"),
        &synth::dns_answer(7, "example.com", [93, 184, 215, 14].into()),
    ))
    .map(|f| synth::Frame {
        ts_ns: f.ts_ns,
        data: f.data[14..].to_vec(),
    })
    .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let eth_pcap = dir.path().join("eth.pcap");
    let raw_pcap = dir.path().join("raw.pcap");
    let both = dir.path().join("both.pcapng");
    let frames = |f: &[synth::Frame]| -> Vec<(i64, Vec<u8>)> {
        f.iter().map(|f| (f.ts_ns, f.data.clone())).collect()
    };
    std::fs::write(&eth_pcap, pcap_bytes(1, &frames(&http))).expect("write");
    std::fs::write(&raw_pcap, pcap_bytes(101, &frames(&raw))).expect("write");
    let mut packets: Vec<(u32, i64, &[u8])> = http
        .iter()
        .map(|f| (0, f.ts_ns, f.data.as_slice()))
        .chain(raw.iter().map(|f| (1, f.ts_ns, f.data.as_slice())))
        .collect();
    packets.sort_by_key(|p| p.1);
    std::fs::write(&both, pcapng_bytes(&[1, 101], &packets)).expect("write");

    // Rows without the stream id and slice name (numbered per file).
    let rows = |file: &std::path::Path, kfl: &str| -> Vec<String> {
        let out = tapwire()
            .arg("investigate")
            .arg(file)
            .args(["--kfl", kfl, "--format", "json"])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("json line");
                let row = v.as_object_mut().expect("object");
                row.remove("stream");
                // Each link type has its own slice: `...-lt1.pcap`, `...-lt101.pcap`.
                let slice = row.remove("slice").expect("slice");
                let link = slice
                    .as_str()
                    .and_then(|s| s.rsplit("-lt").next())
                    .unwrap_or("");
                row.insert("link".into(), link.into());
                v.to_string()
            })
            .collect();
        rows.sort();
        rows
    };
    for kfl in ["tcp", "http or dns", "dns", r#"request.path == "/raw""#] {
        let mut apart = rows(&eth_pcap, kfl);
        apart.extend(rows(&raw_pcap, kfl));
        apart.sort();
        let together = rows(&both, kfl);
        assert!(!together.is_empty(), "{kfl}");
        assert_eq!(together, apart, "{kfl}");
    }
    assert_eq!(rows(&both, "http").len(), 2, "one exchange per interface");
}

#[test]
fn an_invalid_cef_filter_is_refused_at_start_not_ignored() {
    let out = tapwire()
        .args(["--brokers", "127.0.0.1:1", "cef", "--filter", "mode == "])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cef.filter") && stderr.contains('^'),
        "{stderr}"
    );
}

/// `tapwire serve --help` names the console's address and the sign-in.
#[test]
fn serve_help_names_the_console() {
    let out = tapwire().args(["serve", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("The console is at http://LISTEN/"), "{help}");
    assert!(help.contains("Authorization: Bearer"), "{help}");
}

/// `GET path` on `addr` with an optional bearer token: status and body.
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, body) = tapwire_tests::http_get(addr.parse().expect("addr"), path, token);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// With no token configured, `tapwire serve` prints a one-time admin
/// sign-in link; the console's page is open, the API needs that token.
#[test]
fn serve_without_tokens_prints_a_one_time_sign_in_link() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = tapwire()
        .args(["serve", "--listen", &addr])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let link = tapwire_tests::stderr_line(&mut child, |l| {
        l.split_once("/?token=").map(|(_, t)| t.trim().to_owned())
    })
    .expect("a sign-in link");
    let (status, page) = get(&addr, "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("console.js"), "{page}");
    assert_eq!(get(&addr, "/api/v1/whoami", None).0, 401);
    let (status, me) = get(&addr, "/api/v1/whoami", Some(&link));
    assert_eq!(status, 200, "{me}");
    assert!(me.contains("\"admin\""), "{me}");
    let _ = child.kill();
    let _ = child.wait();
}

/// `tapwire serve` over HTTPS with a certificate from files: curl trusting
/// the test bed's CA gets the console and a signed-in answer; plain HTTP
/// to the same port gets nothing.
#[test]
fn serve_speaks_https_with_a_certificate_from_files() {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let tls = std::path::PathBuf::from(
        std::env::var("TAPWIRE_SYSLOG_DIR")
            .unwrap_or_else(|_| format!("{home}/.cache/tapwire-services")),
    )
    .join("tls");
    if !tls.join("server.pem").is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the test bed's TLS material is missing: scripts/services.sh start makes it"
        );
        eprintln!(
            "skipped: no TLS material in {} (scripts/services.sh start makes it)",
            tls.display()
        );
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tapwire.toml");
    std::fs::write(
        &config,
        format!(
            "[aggregate]\nlisten = \"127.0.0.1:{port}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\
             tokens = [{{name = \"soc\", role = \"viewer\", token = \"viewer-secret-0123456789\"}}]\n",
            tls.join("server.pem").display(),
            tls.join("server.key").display()
        ),
    )
    .expect("config");
    let mut child = tapwire()
        .arg("-c")
        .arg(&config)
        .arg("serve")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let line = tapwire_tests::stderr_line(&mut child, |l| {
        l.contains("serving the console").then(|| l.to_owned())
    })
    .expect("serve starts");
    assert!(
        line.contains(&format!("https://127.0.0.1:{port}/")),
        "{line}"
    );
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .args(args)
            .output()
            .expect("curl")
    };
    let base = format!("https://127.0.0.1:{port}");
    let ca = tls.join("ca.pem");
    let page = curl(&["--cacert", ca.to_str().expect("path"), &format!("{base}/")]);
    assert!(
        page.status.success(),
        "{}",
        String::from_utf8_lossy(&page.stderr)
    );
    assert!(String::from_utf8_lossy(&page.stdout).contains("console.js"));
    let me = curl(&[
        "--cacert",
        ca.to_str().expect("path"),
        "-H",
        "Authorization: Bearer viewer-secret-0123456789",
        &format!("{base}/api/v1/whoami"),
    ]);
    assert!(
        String::from_utf8_lossy(&me.stdout).contains("\"soc\""),
        "{me:?}"
    );
    let plain = curl(&[&format!("http://127.0.0.1:{port}/healthz")]);
    assert!(
        !plain.status.success(),
        "plain HTTP is not served on the TLS port"
    );
    let _ = child.kill();
    let _ = child.wait();
}
