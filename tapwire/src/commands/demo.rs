//! `tapwire demo`: what works today, with nothing installed. Synthetic L4
//! events and three malformed messages go through the in-memory bus into a
//! consumer stage; the good ones are decoded, the bad ones land in the
//! dead-letter topic with their reasons, and offsets advance only after
//! output. The pipeline stages join this demo as they are built.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::Config;
use tapwire_plumbing::bus::memory::MemoryBus;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::consumer::{self, StageContext};
use tapwire_plumbing::dlq::DeadLetter;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::{L4Event, decode, encode, samples, topics};

use super::tail::TailHandler;
use crate::cli::{DemoArgs, TailFormat};

/// Runs the demo and prints what happened.
pub async fn run(config: &Config, args: &DemoArgs) -> anyhow::Result<()> {
    let bus = MemoryBus::new();
    for spec in topics::ALL {
        bus.create_topic(spec.name, config.topics.partitions.max(1) as usize);
    }

    // A sensor's worth of traffic: flows from 8 nodes, plus what a broken
    // producer might send.
    let started = Instant::now();
    let mut records = Vec::with_capacity(args.events as usize + 3);
    for i in 0..args.events {
        let node = format!("node-{}", i % 8);
        let header = samples::header(
            &node,
            "demo-sensor",
            i,
            1_700_000_000_000_000_000 + i as i64,
        );
        records.push(OutRecord::new(
            topics::L4_RAW,
            Some(node.into_bytes()),
            encode(&samples::l4_flow(header, i))?,
        ));
    }
    let valid = encode(&samples::l4_flow(
        samples::header("node-0", "demo-sensor", 0, 0),
        0,
    ))?;
    let mut unknown_schema = valid.clone();
    unknown_schema[2..10].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1]);
    records.push(OutRecord::new(
        topics::L4_RAW,
        None,
        b"{\"not\": \"avro\"}".to_vec(),
    ));
    records.push(OutRecord::new(topics::L4_RAW, None, unknown_schema));
    records.push(OutRecord::new(
        topics::L4_RAW,
        None,
        valid[..valid.len() - 4].to_vec(),
    ));
    bus.sink().send_batch(records).await?;

    // The consumer stage: decode and write each event (here to memory),
    // dead-letter what does not decode.
    let shutdown = CancellationToken::new();
    let ctx = StageContext::new("demo", config.consumer.loop_settings(), shutdown.clone());
    let source = bus.source("demo", &[topics::L4_RAW])?;
    let mut handler = TailHandler::new(Vec::new(), TailFormat::Json, ctx.metrics.clone());
    let total = args.events + 3;
    let bus_for_stop = bus.clone();
    let watcher = tokio::spawn(async move {
        // Stop once the group has stored every message.
        while bus_for_stop.lag("demo", topics::L4_RAW) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
    });
    let summary = consumer::run(&ctx, source, &bus.sink(), &mut handler).await?;
    watcher.await?;
    let elapsed = started.elapsed();
    let lines = handler.into_inner();

    let events: Vec<L4Event> = bus
        .messages(topics::L4_RAW)
        .iter()
        .filter_map(|m| decode::<L4Event>(&m.payload).ok())
        .collect();
    let mut per_node: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &events {
        *per_node.entry(e.header.node.as_str()).or_default() += 1;
    }

    println!("tapwire demo: the foundation (bus, contracts, consumer loop, dead letters)\n");
    println!(
        "produced   {total} messages to {} ({} partitions): {} L4 flow events, 3 malformed",
        topics::L4_RAW,
        config.topics.partitions,
        args.events
    );
    println!(
        "consumed   {} messages in {} batches, {:.0} ms",
        summary.messages,
        summary.batches,
        elapsed.as_secs_f64() * 1000.0
    );
    println!(
        "decoded    {} events ({} bytes of JSON lines), by node:",
        summary.messages - summary.dead_lettered,
        lines.len()
    );
    for (node, n) in &per_node {
        println!("             {node:<8} {n}");
    }
    if let Some(first) = lines.split(|b| *b == b'\n').next() {
        println!("first line {}", String::from_utf8_lossy(first));
    }
    println!(
        "\ndead-lettered {} to {}:",
        summary.dead_lettered,
        topics::DLQ
    );
    for m in bus.messages(topics::DLQ) {
        if let Some(d) = DeadLetter::from_message(&m) {
            println!(
                "  {}/{}@{} [{}] {}",
                d.source_topic, d.source_partition, d.source_offset, d.error, d.reason
            );
        }
    }
    println!(
        "\nNot in this demo yet: capture, enrich, policy, aggregate, cef and record are being built\n\
         (see `tapwire --help`); each joins the demo as it lands."
    );
    if summary.messages != total || summary.dead_lettered != 3 {
        anyhow::bail!(
            "demo accounting is off: {} of {total} consumed, {} dead-lettered",
            summary.messages,
            summary.dead_lettered
        );
    }
    Ok(())
}
