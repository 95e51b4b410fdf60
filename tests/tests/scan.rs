//! Issue 18: object scans. `tapwire scan` offline over captures, slice
//! directories and filesystem trees; the scan job queue over Tansu with
//! slices in SeaweedFS and results in ClickHouse.

use std::process::{Command, Output};

use tapwire_tests::planted;
use tapwire_tests::tapwire_binary;

fn scan(args: &[&str]) -> Output {
    Command::new(tapwire_binary())
        .arg("scan")
        .args(args)
        .arg("--no-progress")
        .env_remove("TAPWIRE_CONFIG")
        .output()
        .expect("run tapwire scan")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn a_capture_yields_exactly_the_planted_findings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("planted.pcap");
    let (frames, planted) = planted::frames(1_700_000_000_000_000_000);
    planted::write_pcap(&pcap, &frames);
    let out = scan(&[pcap.to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings = json_lines(&out);
    planted::assert_exactly(&findings, &planted, &pcap);
    // The same through the table: one line per finding and a header.
    let table = scan(&[pcap.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("KIND"), "{text}");
    assert_eq!(text.lines().count(), planted.len() + 1, "{text}");
    for p in planted.iter().filter(|p| p.secret) {
        assert!(!text.contains(p.value), "the table shows {}", p.value);
    }
}

#[test]
fn a_directory_of_captures_and_a_clean_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (frames, planted) = planted::frames(1_700_000_000_000_000_000);
    planted::write_pcap(&dir.path().join("a.pcap"), &frames);
    let clean: Vec<_> = tapwire_packet::synth::tcp_session(
        1_700_000_001_000_000_000,
        "10.1.0.4:41000".parse().expect("addr"),
        "10.1.0.9:80".parse().expect("addr"),
        &[(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\nhello",
        )],
    );
    planted::write_pcap(&dir.path().join("b.pcap"), &clean);
    std::fs::write(dir.path().join("notes.txt"), "not a capture").expect("write");
    let out = scan(&[dir.path().to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let findings = json_lines(&out);
    assert_eq!(findings.len(), planted.len(), "{findings:#?}");
    assert!(
        findings
            .iter()
            .all(|f| f["object"].as_str().is_some_and(|o| o.ends_with("/a.pcap")))
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 captures"), "{stderr}");

    let clean_only = scan(&[dir.path().join("b.pcap").to_str().expect("utf-8")]);
    assert_eq!(clean_only.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&clean_only.stdout), "no findings\n");
}

#[test]
fn a_malformed_capture_is_reported_and_the_rest_still_scanned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (frames, planted) = planted::frames(1_700_000_000_000_000_000);
    planted::write_pcap(&dir.path().join("good.pcap"), &frames);
    std::fs::write(dir.path().join("bad.pcap"), b"this is not a pcap at all").expect("write");
    let out = scan(&[dir.path().to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "unscanned objects exit 2");
    assert_eq!(json_lines(&out).len(), planted.len());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not scanned")
            && stderr.contains("bad.pcap")
            && stderr.contains("not a readable capture"),
        "{stderr}"
    );
}

#[test]
fn own_rules_are_added_and_a_bad_rule_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (frames, _) = planted::frames(1_700_000_000_000_000_000);
    let pcap = dir.path().join("p.pcap");
    planted::write_pcap(&pcap, &frames);
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    std::fs::write(
        rules.join("orders.yar"),
        "rule upload_path { strings: $a = \"POST /upload\" condition: $a }",
    )
    .expect("write");
    let out = scan(&[
        pcap.to_str().expect("utf-8"),
        "--rules",
        rules.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    let findings = json_lines(&out);
    let hits: Vec<_> = findings
        .iter()
        .filter(|f| f["rule"] == "upload_path")
        .collect();
    assert_eq!(hits.len(), 1, "{findings:#?}");
    std::fs::write(rules.join("broken.yar"), "rule broken { condition: $nope }").expect("write");
    let out = scan(&[
        pcap.to_str().expect("utf-8"),
        "--rules",
        rules.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.yar") && stderr.contains("invalid YARA rules"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_tree_with_a_planted_key_and_the_test_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("root/.ssh")).expect("mkdir");
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
    std::fs::write(root.join("root/.ssh/id_ed25519"), key).expect("write");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    std::fs::write(root.join("tmp/x.com"), planted::eicar()).expect("write");
    std::fs::write(root.join("README"), "nothing here").expect("write");
    let out = scan(&["--tree", root.to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings = json_lines(&out);
    let got: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or("").to_owned(),
                f["location"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("private-key".to_owned(), "/root/.ssh/id_ed25519".to_owned()),
            ("eicar_test_file".to_owned(), "/tmp/x.com".to_owned())
        ]
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("b3BlbnNzaC1rZXktdjEA"));
}
