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

pub fn run(n: u64) -> anyhow::Result<Vec<Row>> {
    let encoded: Vec<Vec<u8>> = (0..4096u64)
        .map(|i| {
            encode(&samples::l4_flow(
                samples::header("node-a", "bench", i, i as i64),
                i,
            ))
        })
        .collect::<Result<_, _>>()?;
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
    let mut unresolved = 0u64;
    for i in 0..n {
        let message = &encoded[(i % 4096) as usize];
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
        black_box(&out);
    }
    let ours = rate(n, started.elapsed());
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
