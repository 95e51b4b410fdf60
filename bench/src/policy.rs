//! Policy verdicts on one core with 1,000 rules (10 enforce and audit policies
//! of 100 egress rules each, all covering the events' pod), against decoding
//! the enriched event and encoding a verdict without judging (the codec's
//! cost).

use std::hint::black_box;
use std::time::Instant;

use tapwire_policy_engine::{PolicySet, parse};
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

pub fn run(n: u64) -> anyhow::Result<Vec<Row>> {
    let set = policies()?;
    let encoded: Vec<Vec<u8>> = (0..1024u64)
        .map(|i| {
            encode(&samples::flow_verdict(samples::header("node-a", "bench", i, i as i64), i).event)
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(1024);

    let started = Instant::now();
    for i in 0..n {
        let event: EnrichedEvent = decode(&encoded[(i % 1024) as usize])?;
        let verdict = samples::verdict(event, Mode::Other, Outcome::Allowed);
        out.clear();
        encode_into(&verdict, &mut out)?;
        black_box(&out);
    }
    let codec = rate(n, started.elapsed());

    let started = Instant::now();
    let mut blocked = 0u64;
    for i in 0..n {
        let event: EnrichedEvent = decode(&encoded[(i % 1024) as usize])?;
        let verdict = set.judge(event);
        blocked += u64::from(verdict.outcome == Outcome::Blocked);
        out.clear();
        encode_into(&verdict, &mut out)?;
        black_box(&out);
    }
    let ours = rate(n, started.elapsed());
    anyhow::ensure!(
        blocked == n,
        "every sample flow violates the allow-lists; {blocked} of {n} blocked"
    );
    // The judging alone: events decoded up front, cloned per verdict.
    let decoded: Vec<EnrichedEvent> = encoded
        .iter()
        .map(|b| decode(b))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    for i in 0..n {
        black_box(decoded[(i % 1024) as usize].clone());
    }
    let clone_only = rate(n, started.elapsed());
    let started = Instant::now();
    for i in 0..n {
        black_box(set.judge(decoded[(i % 1024) as usize].clone()));
    }
    let judge_only = rate(n, started.elapsed());
    Ok(vec![
        Row {
            stage: "policy: decode+judge+encode, 1k rules".into(),
            events_per_s: ours,
            baseline_name: "decode+encode, no judging".into(),
            baseline_per_s: codec,
            peak_rss_mib: peak_rss_mib(),
        },
        Row {
            stage: "policy: judge only, 1k rules".into(),
            events_per_s: judge_only,
            baseline_name: "clone of the event only".into(),
            baseline_per_s: clone_only,
            peak_rss_mib: peak_rss_mib(),
        },
    ])
}
