//! `tapwire demo`: the stages built so far, in one process over the
//! in-memory bus, with nothing installed.
//!
//! A small cluster (pods, a node, a Service) and a node's traffic (DNS
//! answers, connections, a process start, three malformed messages) go
//! through the real enrich stage and consumer loop; the demo then prints the
//! connections it saw with their pod context, sample CEF lines as `tapwire
//! cef` formats them, and the dead letters. Stages not built yet (capture,
//! policy, aggregate, record) are named as such; they join as they land.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tapwire_cef_forwarder::CefConfig;
use tapwire_cef_forwarder::format::Formatter;
use tapwire_enricher::enrich::ClusterRecord;
use tapwire_enricher::stage::EnrichStage;
use tapwire_plumbing::bus::memory::MemoryBus;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::consumer::{self, StageContext};
use tapwire_plumbing::dlq::DeadLetter;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::events::*;
use tapwire_schemas::{EnrichedEvent, Ip, Record, decode, encode, samples, topics};

use crate::cli::DemoArgs;
use crate::config::Config;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_795_428_000 * S; // 2026-11-23 10:00:00 UTC

fn pod(name: &str, namespace: &str, ip: &str, container: &str) -> PodMetadata {
    let mut p = samples::pod(
        samples::header("node-a", "demo", 0, T0),
        name,
        namespace,
        ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
    );
    p.uid = format!("uid-{namespace}-{name}");
    p.containers[0].id = container.to_owned();
    p.start_ns = Some(T0 - 3600 * S);
    p
}

fn cluster() -> Vec<ClusterRecord> {
    vec![
        ClusterRecord::Pod(pod("web-1", "shop", "10.1.0.7", "ctr-web-1")),
        ClusterRecord::Pod(pod("db-0", "shop", "10.1.5.5", "ctr-db-0")),
        ClusterRecord::Node(NodeMetadata {
            header: samples::header("node-a", "demo", 0, T0),
            uid: "node-a-uid".into(),
            name: "node-a".into(),
            addresses: vec![Ip(IpAddr::from([192, 168, 10, 11]))],
            labels: BTreeMap::new(),
            end_ns: None,
        }),
        ClusterRecord::Service(ServiceMetadata {
            header: samples::header("", "demo", 0, T0),
            uid: "kube-dns-uid".into(),
            name: "kube-dns".into(),
            namespace: "kube-system".into(),
            cluster_ips: vec![Ip(IpAddr::from([10, 96, 0, 10]))],
            ports: vec![53],
            selector: BTreeMap::new(),
            start_ns: Some(T0 - 86_400 * S),
            end_ns: None,
        }),
    ]
}

fn connection(seq: u64, at: i64, src: &str, dst: &str, port: u16) -> L4Event {
    let mut e = samples::l4_flow(samples::header("node-a", "demo-sensor", seq, at), seq);
    e.src.ip = src.parse().unwrap_or_default();
    e.dst.ip = dst.parse().unwrap_or_default();
    e.dst.port = port;
    e.container_id = Some("ctr-web-1".into());
    e
}

fn record<T: Record>(topic: &str, value: &T) -> anyhow::Result<OutRecord> {
    Ok(OutRecord::new(
        topic,
        Some(b"node-a".to_vec()),
        encode(value)?,
    ))
}

/// Runs the demo and prints what happened.
pub async fn run(config: &Config, args: &DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let bus = MemoryBus::new();
    for spec in topics::ALL {
        bus.create_topic(spec.name, config.topics.partitions.max(1) as usize);
    }

    // What a node's sensor would report: a DNS answer, then connections to
    // the database, to example.com and to the cluster DNS, and a process.
    let mut answer = samples::dns_resolution(samples::header("node-a", "demo-sensor", 0, T0));
    answer.container_id = Some("ctr-web-1".into());
    let mut raw = vec![record(topics::L4_RAW, &answer)?];
    for i in 0..args.events {
        let at = T0 + (i as i64 + 1) * 10_000_000; // every 10 ms
        let (dst, port) = match i % 4 {
            0 | 1 => ("10.1.5.5", 5432),
            2 => ("93.184.215.14", 443),
            _ => ("10.96.0.10", 53),
        };
        raw.push(record(
            topics::L4_RAW,
            &connection(i + 1, at, "10.1.0.7", dst, port),
        )?);
    }
    let mut exec =
        samples::file_rename(samples::header("node-a", "demo-sensor", 1_000_000, T0 + S));
    exec.kind = RuntimeKind::ProcessExec;
    exec.container_id = Some("ctr-web-1".into());
    exec.binary = "/usr/bin/psql".into();
    exec.command_line = Some("psql -h db-0 shop".into());
    (exec.path, exec.old_path) = (None, None);
    raw.push(record(topics::RUNTIME_RAW, &exec)?);
    // What a broken producer might send.
    let valid = encode(&answer)?;
    let mut unknown_schema = valid.clone();
    unknown_schema[2..10].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1]);
    raw.push(OutRecord::new(
        topics::L4_RAW,
        None,
        b"{\"not\": \"avro\"}".to_vec(),
    ));
    raw.push(OutRecord::new(topics::L4_RAW, None, unknown_schema));
    raw.push(OutRecord::new(
        topics::L4_RAW,
        None,
        valid[..valid.len() - 4].to_vec(),
    ));
    let total = raw.len() as u64;
    bus.sink().send_batch(raw).await?;

    // The enrich stage, fed the cluster's records as tapwire.pods would.
    let ec = &config.enrich;
    let mut enricher = ec.build()?;
    for r in cluster() {
        enricher.apply(r);
    }
    let (_no_more_pods, pods) = tokio::sync::mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let ctx = StageContext::new("enrich", config.consumer.loop_settings(), shutdown.clone());
    let mut stage = EnrichStage::new(
        enricher,
        pods,
        bus.sink(),
        Duration::from_millis(ec.metadata_wait_ms),
        ctx.metrics.clone(),
    );
    let source = bus.source("enrich", &[topics::L4_RAW, topics::RUNTIME_RAW])?;
    let watch = bus.clone();
    let stopper = tokio::spawn(async move {
        while watch.lag("enrich", topics::L4_RAW) + watch.lag("enrich", topics::RUNTIME_RAW) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
    });
    let summary = consumer::run(&ctx, source, &bus.sink(), &mut stage).await?;
    stopper.await?;

    let enriched: Vec<EnrichedEvent> = [topics::L4_ENRICHED, topics::RUNTIME_ENRICHED]
        .iter()
        .flat_map(|t| bus.messages(t))
        .filter_map(|m| decode::<EnrichedEvent>(&m.payload).ok())
        .collect();

    println!("tapwire demo: one node's traffic through the embedded pipeline\n");
    println!(
        "capture   (not built yet) {total} messages stand in for a sensor: {} connections, a DNS answer, a process start, 3 malformed",
        args.events
    );
    println!(
        "enrich    {} read, {} enriched, {} dead-lettered in {:.0} ms",
        summary.messages,
        enriched.len(),
        summary.dead_lettered,
        started.elapsed().as_secs_f64() * 1000.0
    );

    // A preview of the connections view: source, destination, count, last.
    let mut view: BTreeMap<(String, String, String), (u64, i64)> = BTreeMap::new();
    for e in enriched.iter().filter(|e| e.l4.is_some()) {
        let Some(l4) = &e.l4 else { continue };
        let side = |p: &PeerContext, ip: &Ip, port: u16| {
            let name = match p.kind {
                PeerKind::Pod => format!(
                    "{}/{}",
                    p.namespace.as_deref().unwrap_or("-"),
                    p.pod.as_deref().unwrap_or("-")
                ),
                PeerKind::Service | PeerKind::External => {
                    p.dns_name.clone().unwrap_or_else(|| "-".into())
                }
                PeerKind::Host => format!("host {}", p.node.as_deref().unwrap_or("-")),
                PeerKind::Unresolved | PeerKind::None => "unresolved".into(),
            };
            format!("{name} {ip}:{port}")
        };
        let key = (
            side(&e.src, &l4.src.ip, l4.src.port),
            side(&e.dst, &l4.dst.ip, l4.dst.port),
            format!("{:?}", e.dst.kind).to_lowercase(),
        );
        let entry = view.entry(key).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = entry.1.max(l4.header.timestamp_ns);
    }
    // Group by source pod and destination, not by ephemeral source port.
    let mut grouped: BTreeMap<(String, String, String), (u64, i64)> = BTreeMap::new();
    for ((src, dst, kind), (n, last)) in view {
        let src = src
            .rsplit_once(':')
            .map_or(src.clone(), |(a, _)| format!("{a}:*"));
        let e = grouped.entry((src, dst, kind)).or_insert((0, 0));
        e.0 += n;
        e.1 = e.1.max(last);
    }
    println!("\nconnections (policy not built yet: every row is Other)");
    println!(
        "  {:<26} {:<42} {:<9} {:>6}  last",
        "source", "destination", "peer", "count"
    );
    for ((src, dst, kind), (n, last)) in &grouped {
        let last = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*last))
            .map(|t| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()))
            .unwrap_or_default();
        println!("  {src:<26} {dst:<42} {kind:<9} {n:>6}  {last}");
    }

    println!("\nCEF, as `tapwire cef` sends it (one line per kind):");
    let formatter = Formatter::new(&CefConfig {
        cluster_name: Some("demo".into()),
        ..config.cef.clone()
    });
    let mut shown = std::collections::HashSet::new();
    for e in &enriched {
        let kind = tapwire_schemas::signature::EventKind::of(e);
        let dst_kind = e.dst.kind;
        if !shown.insert((format!("{kind:?}"), dst_kind)) {
            continue;
        }
        let verdict = samples::verdict(e.clone(), Mode::Other, Outcome::Allowed);
        let mut line = Vec::new();
        if formatter.format(&verdict, &mut line).is_ok() {
            println!("  {}", String::from_utf8_lossy(&line));
        }
    }

    println!("\ndead letters in {}:", topics::DLQ);
    for m in bus.messages(topics::DLQ) {
        if let Some(d) = DeadLetter::from_message(&m) {
            println!(
                "  {}/{}@{} [{}] {}",
                d.source_topic, d.source_partition, d.source_offset, d.error, d.reason
            );
        }
    }
    println!(
        "\nNot in this demo yet: capture, policy (audit/enforce tabs), aggregate (ClickHouse) and record (PCAP)."
    );
    if summary.messages != total || summary.dead_lettered != 3 || enriched.len() as u64 != total - 3
    {
        anyhow::bail!(
            "demo accounting is off: {} of {total} read, {} enriched, {} dead-lettered",
            summary.messages,
            enriched.len(),
            summary.dead_lettered
        );
    }
    Ok(())
}
