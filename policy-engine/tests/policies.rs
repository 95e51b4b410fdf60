//! Policies and enriched events in, verdicts out: each mode, each event
//! family, overlapping policies, and documents rejected with line and field.

use tapwire_policy_engine::{PolicySet, parse};
use tapwire_schemas::events::*;
use tapwire_schemas::{Ip, samples};

fn policies() -> PolicySet {
    let docs = parse("shop.yaml", include_str!("fixtures/shop.yaml")).expect("documents parse");
    PolicySet::compile(&docs).expect("policies compile")
}

fn flow(dst: PeerContext, ip: &str, port: u16) -> EnrichedEvent {
    let mut l4 = samples::l4_flow(samples::header("node-a", "s", 1, 1), 1);
    l4.dst.ip = ip.parse::<Ip>().expect("ip");
    l4.dst.port = port;
    EnrichedEvent {
        body: EventBody::L4(l4),
        src: samples::pod_peer("web-1", "shop"),
        dst,
    }
}

fn external(name: Option<&str>) -> PeerContext {
    let mut p = PeerContext::of_kind(PeerKind::External);
    p.dns_name = name.map(str::to_owned);
    p
}

fn runtime(kind: RuntimeKind, binary: &str, path: Option<&str>) -> EnrichedEvent {
    let mut rt = samples::file_rename(samples::header("node-a", "s", 2, 2));
    rt.kind = kind;
    rt.binary = binary.to_owned();
    rt.path = path.map(str::to_owned);
    EnrichedEvent {
        body: EventBody::Runtime(rt),
        src: samples::pod_peer("web-1", "shop"),
        dst: PeerContext::of_kind(PeerKind::None),
    }
}

fn summary(v: &Verdict) -> (Mode, Outcome, Option<&str>, Option<&str>, &str, i32) {
    (
        v.mode,
        v.outcome,
        v.policy.as_deref(),
        v.rule.as_deref(),
        v.signature_id.as_str(),
        v.severity,
    )
}

#[test]
fn network_verdicts_by_mode_and_precedence() {
    let set = policies();
    let v = set.judge(flow(samples::pod_peer("db-0", "shop"), "10.1.5.5", 5432));
    assert_eq!(
        summary(&v),
        (
            Mode::Enforce,
            Outcome::Allowed,
            Some("shop/web-egress"),
            Some("to-db"),
            "NT-004",
            3
        )
    );

    let v = set.judge(flow(samples::pod_peer("db-0", "shop"), "10.1.5.5", 22));
    assert_eq!(
        summary(&v),
        (
            Mode::Enforce,
            Outcome::NotPrevented,
            Some("shop/web-egress"),
            None,
            "FNT-004",
            7
        ),
        "not on the allow-list"
    );

    let v = set.judge(flow(
        external(Some("api.example.com")),
        "93.184.215.14",
        443,
    ));
    assert_eq!(summary(&v).3, Some("example"));
    assert_eq!(v.outcome, Outcome::Allowed);

    let v = set.judge(flow(external(Some("evil.test")), "203.0.113.9", 443));
    assert_eq!(
        summary(&v),
        (
            Mode::Enforce,
            Outcome::NotPrevented,
            Some("shop/web-egress"),
            None,
            "FNT-004",
            7
        )
    );

    // Both policies cover it: the enforce violation decides over the audit deny.
    let v = set.judge(flow(external(None), "169.254.169.254", 80));
    assert_eq!(
        summary(&v),
        (
            Mode::Enforce,
            Outcome::NotPrevented,
            Some("shop/web-egress"),
            None,
            "FNT-004",
            7
        )
    );

    // Another pod of the namespace: only the audit policy covers it.
    let mut e = flow(external(None), "169.254.169.254", 80);
    e.src = samples::pod_peer("batch", "shop");
    let v = set.judge(e);
    assert_eq!(
        summary(&v),
        (
            Mode::Audit,
            Outcome::Audited,
            Some("shop/shop-audit"),
            Some("no-metadata-service"),
            "FNT-004",
            7
        )
    );

    // Another namespace: no policy covers it.
    let mut e = flow(external(None), "203.0.113.9", 443);
    e.src = samples::pod_peer("web-1", "other");
    let v = set.judge(e);
    assert_eq!(
        summary(&v),
        (Mode::Other, Outcome::Allowed, None, None, "NT-004", 3)
    );
}

#[test]
fn runtime_verdicts_for_processes_and_files() {
    let set = policies();
    let v = set.judge(runtime(RuntimeKind::ProcessExec, "/usr/bin/nc", None));
    assert_eq!(
        summary(&v),
        (
            Mode::Audit,
            Outcome::Audited,
            Some("shop/web-runtime"),
            Some("no-shells"),
            "FPM-001",
            7
        )
    );
    let v = set.judge(runtime(RuntimeKind::ProcessExec, "/usr/bin/curl", None));
    assert_eq!(
        summary(&v),
        (
            Mode::Audit,
            Outcome::Allowed,
            Some("shop/web-runtime"),
            None,
            "PM-001",
            3
        )
    );
    let v = set.judge(runtime(
        RuntimeKind::FileRename,
        "/bin/mv",
        Some("/etc/app/db.conf"),
    ));
    assert_eq!(
        summary(&v),
        (
            Mode::Audit,
            Outcome::Audited,
            Some("shop/web-runtime"),
            Some("etc-read-only"),
            "FFM-007",
            7
        )
    );
    let v = set.judge(runtime(
        RuntimeKind::FileOpen,
        "/bin/cat",
        Some("/etc/app/db.conf"),
    ));
    assert_eq!(
        v.outcome,
        Outcome::Allowed,
        "open is not among the denied operations"
    );
    let v = set.judge(runtime(RuntimeKind::FileWrite, "/bin/app", Some("/tmp/x")));
    assert_eq!(
        (v.mode, v.outcome, v.signature_id.as_str()),
        (Mode::Audit, Outcome::Allowed, "FM-003")
    );
}

/// Comments only, empty documents, a trailing `---`: no policy, no error
/// (a file whose policies were all removed withdraws them).
#[test]
fn empty_documents_hold_no_policy() {
    assert_eq!(parse("e.yaml", "").expect("empty"), vec![]);
    assert_eq!(
        parse("e.yaml", "# none yet\n---\n\n---\n").expect("comments"),
        vec![]
    );
    let one = "apiVersion: tapwire.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  mode: audit\n---\n";
    assert_eq!(parse("e.yaml", one).expect("trailing separator").len(), 1);
}

#[test]
fn invalid_documents_name_file_line_and_field() {
    let unknown = "apiVersion: tapwire.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  mode: enforce\n  egres: []\n";
    let err = parse("bad.yaml", unknown).expect_err("unknown field");
    assert_eq!((err.file.as_str(), err.line), ("bad.yaml", 6), "{err}");
    assert!(err.message.contains("egres"), "{err}");

    let bad_mode = "apiVersion: tapwire.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  mode: block\n";
    let err = parse("bad.yaml", bad_mode).expect_err("bad mode");
    assert_eq!(err.line, 5, "{err}");
    assert!(err.message.contains("block"), "{err}");

    // In a second document, the line is the file's.
    let second = format!(
        "# two policies\n---\n{}---\n{unknown}---\n",
        bad_mode.replace("block", "audit")
    );
    let err = parse("two.yaml", &second).expect_err("unknown field in the second");
    assert_eq!(err.line, 14, "{err}");
    assert!(err.message.contains("line 14"), "{err}");

    let bad_cidr = "apiVersion: tapwire.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: ns}\nspec:\n  mode: audit\n  egress:\n    - name: r\n      to: [{cidr: 10.0.0.0/99}]\n";
    let docs = parse("bad.yaml", bad_cidr).expect("parses");
    let err = PolicySet::compile(&docs).expect_err("bad cidr");
    assert_eq!(
        (err.policy.as_str(), err.field.as_str()),
        ("ns/x", "spec.egress[0].to[0].cidr"),
        "{err}"
    );
}
