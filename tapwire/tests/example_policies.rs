//! The example policies in `deploy/policies/`: every topic comes as an audit
//! and an enforce flavour, each flavour says its mode, and `tapwire policy
//! check` accepts every file alone and all of them loaded together.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tapwire() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tapwire"));
    cmd.env_remove("TAPWIRE_CONFIG");
    cmd
}

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policies")
}

/// Every `*.yaml` in `deploy/policies/`, sorted.
fn policy_files() -> Vec<PathBuf> {
    let dir = policies_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("UTF-8 file name")
}

fn check(files: &[PathBuf]) -> Output {
    tapwire()
        .args(["policy", "check"])
        .args(files)
        .output()
        .expect("run tapwire policy check")
}

/// Asserts exit status 0 and that every document read was compiled.
fn assert_ok(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let documents: usize = stdout
        .lines()
        .filter_map(|l| l.strip_suffix(" document(s)"))
        .map(|l| {
            l.rsplit(": ")
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("{what}: unexpected line {l:?}"))
        })
        .sum();
    assert!(documents > 0, "{what}: no documents read:\n{stdout}");
    assert!(
        stdout.contains(&format!("ok: {documents} policies compile")),
        "{what}: expected {documents} policies to compile:\n{stdout}"
    );
}

#[test]
fn every_topic_has_an_audit_and_an_enforce_flavour() {
    let files = policy_files();
    assert!(
        files.len() >= 10,
        "expected at least 10 example policies, found {}: {files:?}",
        files.len()
    );
    let mut topics = BTreeSet::new();
    for f in &files {
        let name = file_name(f);
        let topic = name
            .strip_suffix(".audit.yaml")
            .or_else(|| name.strip_suffix(".enforce.yaml"))
            .unwrap_or_else(|| panic!("{name}: not <topic>.audit.yaml or <topic>.enforce.yaml"));
        topics.insert(topic.to_owned());
    }
    for topic in &topics {
        for flavour in ["audit", "enforce"] {
            let path = policies_dir().join(format!("{topic}.{flavour}.yaml"));
            assert!(path.is_file(), "{topic}: {} is missing", path.display());
        }
    }
    let readme = std::fs::read_to_string(policies_dir().join("README.md")).expect("README.md");
    for topic in &topics {
        assert!(
            readme.contains(topic.as_str()),
            "README.md does not list {topic}"
        );
    }
}

#[test]
fn each_flavour_states_its_mode_and_begins_with_a_comment() {
    for f in policy_files() {
        let name = file_name(&f);
        let text = std::fs::read_to_string(&f).expect("read policy");
        assert!(
            text.starts_with('#'),
            "{name}: begins with a comment saying what it does and what to adapt"
        );
        let modes: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("mode:"))
            .map(|m| m.split('#').next().unwrap_or_default().trim())
            .collect();
        let expected = if name.ends_with(".enforce.yaml") {
            "enforce"
        } else {
            "audit"
        };
        assert_eq!(modes, [expected], "{name}: expected `mode: {expected}`");
        assert!(
            text.contains(&format!("mode: {expected}")),
            "{name}: expected `mode: {expected}`"
        );
    }
}

#[test]
fn policy_check_accepts_each_file_alone_and_all_together() {
    let files = policy_files();
    assert!(!files.is_empty());
    for f in &files {
        assert_ok(&check(std::slice::from_ref(f)), file_name(f));
    }
    // Names (`namespace/name`) are unique across all of them, so the audit
    // and enforce flavours load side by side.
    assert_ok(&check(&files), "all example policies together");
}
