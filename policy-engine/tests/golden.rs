//! Golden verdicts: `golden/policies.yaml` and the events described in
//! `golden/events.yaml` in, one line per verdict out, compared with
//! `golden/verdicts.golden`. The cases cover each mode (audit, enforce,
//! other), each event family (connect, accept, listen, flow, DNS, exec, exit,
//! file operations), overlapping policies and KFL `when` conditions.
//!
//! After an intended change, rewrite the expected file with
//! `TAPWIRE_BLESS=1 cargo test -p tapwire-policy-engine --test golden` and
//! review the diff.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use tapwire_policy_engine::{PolicySet, parse};
use tapwire_schemas::events::*;
use tapwire_schemas::{Ip, encode, samples};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// One side of an event, as the golden file spells it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Side {
    pod: Option<String>,
    namespace: Option<String>,
    external: Option<String>,
    host: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Side {
    fn context(&self) -> PeerContext {
        let mut p = match (&self.pod, &self.external, &self.host) {
            (Some(pod), None, None) => {
                samples::pod_peer(pod, self.namespace.as_deref().expect("pod needs namespace"))
            }
            (None, Some(name), None) => {
                let mut p = PeerContext::of_kind(PeerKind::External);
                p.dns_name = (!name.is_empty()).then(|| name.clone());
                p
            }
            (None, None, Some(node)) => {
                let mut p = PeerContext::of_kind(PeerKind::Host);
                p.node = Some(node.clone());
                p
            }
            _ => panic!("a side is one of pod, external or host: {self:?}"),
        };
        p.labels.extend(self.labels.clone());
        p
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    kind: String,
    direction: Option<Direction>,
    src: Side,
    dst: Option<Side>,
    dst_ip: Option<String>,
    dst_port: Option<u16>,
    protocol: Option<Protocol>,
    bytes_sent: Option<u64>,
    dns_name: Option<String>,
    binary: Option<String>,
    command_line: Option<String>,
    path: Option<String>,
    uid: Option<u32>,
}

fn kind<T: for<'de> Deserialize<'de>>(name: &str) -> Option<T> {
    serde_norway::from_str(name).ok()
}

impl Case {
    fn event(&self, seq: u64) -> EnrichedEvent {
        let header = samples::header("node-a", "golden", seq, 1_700_000_000_000_000_000);
        let src = self.src.context();
        let dst = self
            .dst
            .as_ref()
            .map_or_else(|| PeerContext::of_kind(PeerKind::None), Side::context);
        let body = if let Some(k) = kind::<L4Kind>(&self.kind) {
            let mut l4 = samples::l4_flow(header, seq);
            l4.kind = k;
            l4.direction = self.direction.unwrap_or(Direction::Egress);
            if let Some(ip) = &self.dst_ip {
                l4.dst.ip = ip.parse::<Ip>().expect("dst_ip");
            }
            l4.dst.port = self.dst_port.unwrap_or(l4.dst.port);
            l4.protocol = self.protocol.unwrap_or(l4.protocol);
            l4.bytes_sent = self.bytes_sent.or(l4.bytes_sent);
            EventBody::L4(l4)
        } else if let Some(k) = kind::<DnsKind>(&self.kind) {
            let mut dns = samples::dns_resolution(header);
            dns.kind = k;
            dns.name = self.dns_name.clone().expect("dns events need dns_name");
            EventBody::Dns(dns)
        } else if let Some(k) = kind::<RuntimeKind>(&self.kind) {
            let mut rt = samples::file_rename(header);
            rt.kind = k;
            rt.binary = self.binary.clone().expect("runtime events need binary");
            rt.command_line = self.command_line.clone();
            rt.path = self.path.clone();
            rt.old_path = None;
            rt.uid = self.uid.unwrap_or(rt.uid);
            EventBody::Runtime(rt)
        } else {
            panic!("{}: unknown kind {:?}", self.name, self.kind);
        };
        EnrichedEvent { body, src, dst }
    }
}

fn line(name: &str, v: &Verdict) -> String {
    format!(
        "{name} | {:?} {:?} | {} | {} | {} {}",
        v.mode,
        v.outcome,
        v.policy.as_deref().unwrap_or("-"),
        v.rule.as_deref().unwrap_or("-"),
        v.signature_id,
        v.severity
    )
}

#[test]
fn verdicts_match_the_golden_file() {
    let policies = std::fs::read_to_string(format!("{DIR}/policies.yaml")).expect("policies");
    let docs = parse("policies.yaml", &policies).expect("golden policies parse");
    let set = PolicySet::compile(&docs).expect("golden policies compile");
    let cases: Vec<Case> = serde_norway::from_str(
        &std::fs::read_to_string(format!("{DIR}/events.yaml")).expect("events"),
    )
    .expect("events.yaml is a list of cases");
    assert!(cases.len() >= 20, "the golden set covers every family");

    let mut actual = String::new();
    for (seq, case) in cases.iter().enumerate() {
        let event = case.event(seq as u64 + 1);
        let message = encode(&event).expect("encode the event");
        let verdict = set.judge(event);
        // The stage's path (a borrowed view, the verdict spliced from the
        // message) writes exactly the verdict judged from the owned event.
        let mut spliced = Vec::new();
        assert!(
            set.judge_message(&message, &mut spliced)
                .expect("a current enriched event"),
            "{}: spliced",
            case.name
        );
        assert_eq!(
            spliced,
            encode(&verdict).expect("encode the verdict"),
            "{}: the message path's verdict",
            case.name
        );
        writeln!(actual, "{}", line(&case.name, &verdict)).expect("write to a String");
    }
    let golden_path = format!("{DIR}/verdicts.golden");
    if std::env::var_os("TAPWIRE_BLESS").is_some() {
        std::fs::write(&golden_path, &actual).expect("write the golden file");
    }
    let expected = std::fs::read_to_string(&golden_path)
        .expect("verdicts.golden (create it with TAPWIRE_BLESS=1 and review it)");
    for (i, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        assert_eq!(a, e, "verdict {} differs from the golden file", i + 1);
    }
    assert_eq!(
        actual.lines().count(),
        expected.lines().count(),
        "number of verdicts"
    );
}

#[test]
fn an_invalid_kfl_condition_names_the_rule_field() {
    let doc = "apiVersion: tapwire.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: ns}\nspec:\n  mode: audit\n  egress:\n    - name: r\n      when: 'dst.port == '\n";
    let docs = parse("bad.yaml", doc).expect("parses");
    let err = PolicySet::compile(&docs).expect_err("bad KFL");
    assert_eq!(
        (err.policy.as_str(), err.field.as_str()),
        ("ns/x", "spec.egress[0].when")
    );
    assert!(err.message.contains("invalid KFL condition"), "{err}");
    assert!(
        err.message.contains('^'),
        "the caret points at the fault: {err}"
    );
}
