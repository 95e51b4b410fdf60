//! Enrichment on one core as the stage does it (read the event without
//! copies, decide, splice its bytes with cached pod contexts), against decoding the event and
//! encoding an enriched event with empty context (the serde codec's cost),
//! with ~2,000 pods indexed; and the enrich stage through Tansu (`kafka.rs`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use tapwire_cluster::OwnerIndex;
use tapwire_enricher::dns::DnsCache;
use tapwire_enricher::enrich::{Enricher, Held};
use tapwire_schemas::{EnrichedEvent, EventBody, L4Event, decode, encode, encode_into, samples};

use crate::report::{Row, peak_rss_mib, rate};

/// An enricher that knows a pod for every address the sample flows use.
pub fn enricher() -> Enricher {
    let mut index = OwnerIndex::new(1_000_000, 16);
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in 0..7u8 {
        for b in 0..251u8 {
            ips.push(IpAddr::V4(Ipv4Addr::new(10, 1, a, b)));
        }
    }
    ips.extend((0..13u8).map(|d| IpAddr::V4(Ipv4Addr::new(10, 1, 200, d))));
    ips.extend((0..251u16).map(|x| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, x))));
    ips.push(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 2, 80)));
    for (i, ip) in ips.into_iter().enumerate() {
        let mut pod = samples::pod(
            samples::header("node-a", "bench", 0, 0),
            &format!("pod-{i}"),
            "bench",
            ip,
        );
        pod.uid = format!("uid-{i}");
        pod.containers[0].id = format!("ctr-{i}");
        pod.start_ns = Some(0);
        index.apply(pod);
    }
    let nets = ["10.0.0.0/8", "fd00::/8"]
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    Enricher::new(index, DnsCache::new(100_000), nets, Vec::new(), 100_000)
}

/// The stage's per-message work for `n` messages: a borrowed view of the
/// event, its pod contexts spliced in (or, when unresolved, the owned path).
/// Returns the unresolved events and the bytes written.
fn stage_path(enricher: &mut Enricher, encoded: &[Vec<u8>], n: u64) -> anyhow::Result<(u64, u64)> {
    let mut out = Vec::with_capacity(1024);
    let (mut unresolved, mut bytes) = (0u64, 0u64);
    for i in 0..n {
        let message = &encoded[(i % encoded.len() as u64) as usize];
        let view = tapwire_schemas::codec::decode_l4_view(message)?;
        out.clear();
        if !enricher.enrich_l4_into(&view, message, &mut out) {
            unresolved += 1;
            let event: L4Event = decode(message)?;
            let enriched = match enricher.enrich(Held::L4(event), false) {
                Ok(e) => e,
                Err(held) => enricher.finish(held),
            };
            encode_into(&enriched, &mut out)?;
        }
        bytes += out.len() as u64;
        black_box(&out);
    }
    Ok((unresolved, bytes))
}

/// The raw L4 messages the benchmark enriches.
fn raw_messages() -> anyhow::Result<Vec<Vec<u8>>> {
    Ok((0..4096u64)
        .map(|i| {
            encode(&samples::l4_flow(
                samples::header("node-a", "bench", i, i as i64),
                i,
            ))
        })
        .collect::<Result<_, _>>()?)
}

/// [`stage_path`] over the benchmark's pods, for `perf record`.
pub fn profile(n: u64) -> anyhow::Result<()> {
    stage_path(&mut enricher(), &raw_messages()?, n).map(drop)
}

pub fn run(n: u64) -> anyhow::Result<Vec<Row>> {
    let encoded = raw_messages()?;
    let mut out = Vec::with_capacity(1024);

    // Baseline: the codec alone, decode an L4 event and encode an enriched
    // event with empty context.
    let started = Instant::now();
    for i in 0..n {
        let event: L4Event = decode(&encoded[(i % 4096) as usize])?;
        let enriched = EnrichedEvent {
            body: EventBody::L4(event),
            src: tapwire_schemas::PeerContext::of_kind(tapwire_schemas::PeerKind::None),
            dst: tapwire_schemas::PeerContext::of_kind(tapwire_schemas::PeerKind::None),
        };
        out.clear();
        encode_into(&enriched, &mut out)?;
        black_box(&out);
    }
    let codec = rate(n, started.elapsed());

    let mut enricher = enricher();
    let started = Instant::now();
    let (unresolved, enriched_bytes) = stage_path(&mut enricher, &encoded, n)?;
    let ours = rate(n, started.elapsed());
    let raw_bytes: usize = encoded.iter().map(Vec::len).sum();
    crate::report::size(
        "tapwire.l4.raw (enrich input)",
        raw_bytes as f64 / encoded.len() as f64,
    );
    crate::report::size(
        "tapwire.l4.enriched (enrich output)",
        enriched_bytes as f64 / n as f64,
    );
    anyhow::ensure!(
        unresolved == 0,
        "{unresolved} events did not resolve: the benchmark's pods are wrong"
    );
    Ok(vec![Row {
        stage: "enrich: decode+enrich+encode".into(),
        events_per_s: ours,
        baseline_name: "decode+encode only".into(),
        baseline_per_s: codec,
        peak_rss_mib: peak_rss_mib(),
    }])
}
