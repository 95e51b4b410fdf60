//! Policy verdicts on one core with 1,000 rules (10 enforce and audit policies
//! of 100 egress rules each, all covering the events' pod): the stage's
//! message path (a borrowed view judged, the verdict spliced from the
//! message) against the owned path it replaced (decode, judge, encode), and
//! against its own codec share (view decode and splice with no judging).

use std::hint::black_box;
use std::time::Instant;

use tapwire_policy_engine::{PolicySet, parse};
use tapwire_schemas::codec::{self, VerdictTail};
use tapwire_schemas::events::{EnrichedEvent, Mode, Outcome};
use tapwire_schemas::{decode, encode, encode_into, samples};

use crate::report::{Row, peak_rss_mib, rate};

/// The 1,000 rules as YAML (also the policy stage's input in `kafka.rs`).
pub fn policies_yaml() -> String {
    let mut yaml = String::new();
    for p in 0..10 {
        let mode = if p % 2 == 0 { "enforce" } else { "audit" };
        yaml.push_str(&format!(
            "---\napiVersion: tapwire.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{p}, namespace: shop}}\nspec:\n  mode: {mode}\n  selector: {{matchLabels: {{app: web-1}}}}\n  egress:\n"
        ));
        for r in 0..100 {
            yaml.push_str(&format!(
                "    - name: r{r}\n      to: [{{cidr: 10.{p}.{r}.0/24}}, {{dnsName: \"*.svc{r}.example\"}}]\n      ports: [{}]\n      protocols: [tcp]\n",
                8000 + r
            ));
        }
    }
    yaml
}

fn policies() -> anyhow::Result<PolicySet> {
    Ok(PolicySet::compile(&parse("bench.yaml", &policies_yaml())?)?)
}

/// The enriched event messages the in-process benchmarks judge.
pub fn enriched_messages() -> anyhow::Result<Vec<Vec<u8>>> {
    Ok((0..1024u64)
        .map(|i| {
            encode(&samples::flow_verdict(samples::header("node-a", "bench", i, i as i64), i).event)
        })
        .collect::<Result<_, _>>()?)
}

/// The stage's per-message work for `n` messages: judge the borrowed view,
/// splice the verdict (what `perf` profiles).
pub fn message_path(set: &PolicySet, encoded: &[Vec<u8>], n: u64) -> anyhow::Result<u64> {
    let mut out = Vec::with_capacity(1024);
    let mut bytes = 0u64;
    for i in 0..n {
        out.clear();
        let message = &encoded[(i % encoded.len() as u64) as usize];
        anyhow::ensure!(set.judge_message(message, &mut out)?, "not spliced");
        bytes += out.len() as u64;
        black_box(&out);
    }
    Ok(bytes)
}

/// [`message_path`] with the bench policies, for `perf record`.
pub fn profile(n: u64) -> anyhow::Result<()> {
    message_path(&policies()?, &enriched_messages()?, n).map(drop)
}

pub fn run(n: u64) -> anyhow::Result<Vec<Row>> {
    let set = policies()?;
    let encoded = enriched_messages()?;
    let mut out = Vec::with_capacity(1024);

    // Before: the owned path (decode the whole event, judge, encode the
    // verdict with its copy of the event), as every message went until
    // now and older schema versions still go.
    let started = Instant::now();
    let mut blocked = 0u64;
    for i in 0..n {
        let event: EnrichedEvent = decode(&encoded[(i % 1024) as usize])?;
        let verdict = set.judge(event);
        blocked += u64::from(verdict.outcome.is_violation());
        out.clear();
        encode_into(&verdict, &mut out)?;
        black_box(&out);
    }
    let owned = rate(n, started.elapsed());
    anyhow::ensure!(
        blocked == n,
        "every sample flow violates the allow-lists; {blocked} of {n} flagged"
    );

    // The codec's share of the message path: the view decoded and the
    // verdict spliced with a fixed decision, no judging.
    let started = Instant::now();
    for i in 0..n {
        let message = &encoded[(i % 1024) as usize];
        let view = codec::decode_enriched_view(message)?;
        black_box(&view);
        out.clear();
        let tail = VerdictTail {
            mode: Mode::Other,
            policy: None,
            rule: None,
            signature_id: "NT-004",
            severity: 3,
            outcome: Outcome::Allowed,
            sides: &[],
        };
        anyhow::ensure!(
            codec::write_verdict(message, &tail, &mut out),
            "not spliced"
        );
        black_box(&out);
    }
    let codec_only = rate(n, started.elapsed());

    let started = Instant::now();
    let verdict_bytes = message_path(&set, &encoded, n)?;
    let ours = rate(n, started.elapsed());
    let enriched_bytes: usize = encoded.iter().map(Vec::len).sum();
    crate::report::size(
        "tapwire.l4.enriched (policy input)",
        enriched_bytes as f64 / encoded.len() as f64,
    );
    crate::report::size(
        "tapwire.verdicts (policy output)",
        verdict_bytes as f64 / n as f64,
    );
    Ok(vec![
        Row {
            stage: "policy: decode+judge+encode, 1k rules".into(),
            events_per_s: ours,
            baseline_name: "before: owned decode+judge+encode".into(),
            baseline_per_s: owned,
            peak_rss_mib: peak_rss_mib(),
        },
        Row {
            stage: "policy: the same against its codec alone".into(),
            events_per_s: ours,
            baseline_name: "view decode + verdict splice, no judging".into(),
            baseline_per_s: codec_only,
            peak_rss_mib: peak_rss_mib(),
        },
    ])
}
