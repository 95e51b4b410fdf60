//! Enrichment on one core as the stage does it (read the event without
//! copies, decide, splice its bytes with cached pod contexts), against the
//! same with the event read by serde's generic path (as it was before
//! `events/read.rs`), and against decoding the event and
//! encoding an enriched event with empty context (the serde codec's cost),
//! with ~2,000 pods indexed; and the enrich stage through Tansu (`kafka.rs`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use anyhow::Context as _;
use tapwire_cluster::OwnerIndex;
use tapwire_enricher::dns::DnsCache;
use tapwire_enricher::enrich::{Enricher, Held};
use tapwire_schemas::codec;
use tapwire_schemas::events::{
    Direction, Endpoint, EventHeaderView, FinalState, L4EventView, L4Kind, Protocol,
};
use tapwire_schemas::{
    EnrichedEvent, EventBody, EventId, Ip, L4Event, SchemaKind, decode, encode, encode_into,
    registry, samples,
};

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

/// The view as the enricher read it before `events/read.rs`: serde's
/// generic path over the same schema, record fields matched by name.
#[derive(serde::Deserialize)]
struct SerdeL4<'a> {
    #[serde(borrow)]
    header: SerdeHeader<'a>,
    kind: L4Kind,
    pid: u32,
    binary: &'a str,
    container_id: Option<&'a str>,
    src: Endpoint,
    dst: Endpoint,
    protocol: Protocol,
    direction: Direction,
    duration_ns: Option<u64>,
    bytes_sent: Option<u64>,
    bytes_received: Option<u64>,
    final_state: Option<FinalState>,
    ppid: Option<u32>,
    euid: Option<u32>,
    egid: Option<u32>,
    binary_path: Option<&'a str>,
    command_line: Option<&'a str>,
    blocked_by: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct SerdeHeader<'a> {
    id: EventId,
    timestamp_ns: i64,
    node: &'a str,
    sensor_id: &'a str,
    node_ip: Option<Ip>,
}

/// The before path's decoding of one current L4 message.
fn serde_view(message: &[u8]) -> anyhow::Result<L4EventView<'_>> {
    let schema = registry()
        .current(SchemaKind::L4Event)
        .fast
        .as_ref()
        .context("the current L4 schema has a fast form")?;
    let v: SerdeL4<'_> = serde_avro_fast::from_datum_slice(&message[codec::HEADER_LEN..], schema)?;
    Ok(L4EventView {
        header: EventHeaderView {
            id: v.header.id,
            timestamp_ns: v.header.timestamp_ns,
            node: v.header.node,
            sensor_id: v.header.sensor_id,
            node_ip: v.header.node_ip,
        },
        kind: v.kind,
        pid: v.pid,
        binary: v.binary,
        container_id: v.container_id,
        src: v.src,
        dst: v.dst,
        protocol: v.protocol,
        direction: v.direction,
        duration_ns: v.duration_ns,
        bytes_sent: v.bytes_sent,
        bytes_received: v.bytes_received,
        final_state: v.final_state,
        ppid: v.ppid,
        euid: v.euid,
        egid: v.egid,
        binary_path: v.binary_path,
        command_line: v.command_line,
        blocked_by: v.blocked_by,
    })
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

    // Before: the same, with the view read by serde's generic path.
    let mut enricher = crate::enrich::enricher();
    let started = Instant::now();
    for i in 0..n {
        let message = &encoded[(i % 4096) as usize];
        let view = serde_view(message)?;
        out.clear();
        anyhow::ensure!(
            enricher.enrich_l4_into(&view, message, &mut out),
            "unresolved"
        );
        black_box(&out);
    }
    let before = rate(n, started.elapsed());

    let mut enricher = crate::enrich::enricher();
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
    Ok(vec![
        Row {
            stage: "enrich: decode+enrich+encode".into(),
            events_per_s: ours,
            baseline_name: "before: serde view decode + enrich".into(),
            baseline_per_s: before,
            peak_rss_mib: peak_rss_mib(),
        },
        Row {
            stage: "enrich: decode+enrich+encode".into(),
            events_per_s: ours,
            baseline_name: "decode+encode only".into(),
            baseline_per_s: codec,
            peak_rss_mib: peak_rss_mib(),
        },
    ])
}
