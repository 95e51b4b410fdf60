//! Issue 19: the capture agent's replay keeps several batches in flight
//! against a real broker (Tansu) and still keeps the order per key, loses
//! nothing, and counts a record as sent only once its batch is
//! acknowledged; a delivery failure fails the replay.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapPacket, PcapWriter};
use rdkafka::Message as _;
use tapwire_capture::{Agent, CaptureConfig, CaptureError, SourceSpec, Summary};
use tapwire_plumbing::bus::kafka::{self, KafkaSink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::{AnyEvent, decode_any, topics};
use tapwire_tests::{Broker, Storage, from_the_start, wait_until};

/// `exchanges` UDP request/response pairs over `flows` flows, `step_ns`
/// apart; each frame ends with its flow and its sequence number in the flow
/// (both u32, big-endian).
fn write_capture(path: &Path, flows: u32, exchanges: u32, step_ns: i64) -> u64 {
    let file = std::fs::File::create(path).expect("create pcap");
    let mut writer = PcapWriter::new(std::io::BufWriter::new(file)).expect("pcap writer");
    let mut seq = vec![0u32; flows as usize];
    let mut frames = 0;
    for i in 0..exchanges {
        let flow = i % flows;
        let client: SocketAddr =
            format!("10.9.{}.{}:{}", flow / 200, flow % 200 + 1, 40_000 + flow)
                .parse()
                .expect("client");
        let server: SocketAddr = "10.8.0.1:7000".parse().expect("server");
        let mark = |s: u32| [flow.to_be_bytes(), s.to_be_bytes()].concat();
        let s = seq[flow as usize];
        seq[flow as usize] += 2;
        let t0 = 1_700_000_000_000_000_000 + i64::from(i) * 2 * step_ns;
        let pair = tapwire_packet::synth::udp_exchange(t0, client, server, &mark(s), &mark(s + 1));
        for (k, f) in pair.iter().enumerate() {
            let ts = Duration::from_nanos((t0 + k as i64 * step_ns) as u64);
            writer
                .write_packet(&PcapPacket::new(ts, f.data.len() as u32, &f.data))
                .expect("write frame");
            frames += 1;
        }
    }
    frames
}

fn create_topics(kafka: &KafkaConfig) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(kafka::create_topics(
            kafka,
            topics::ALL,
            3,
            1,
            Duration::from_secs(30),
        ))
        .expect("topics");
}

fn kafka(broker: &Broker, options: &[(&str, &str)]) -> KafkaConfig {
    KafkaConfig {
        brokers: broker.address(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..KafkaConfig::default()
    }
}

fn agent(input: &Path, batches_in_flight: usize, realtime: bool) -> Agent {
    let config = CaptureConfig {
        node_name: Some("node-f".into()),
        sensor_id: Some("in-flight".into()),
        batches_in_flight,
        ..CaptureConfig::default()
    };
    Agent::new(
        config,
        Some(vec![SourceSpec::Pcap {
            path: input.to_owned(),
            realtime,
        }]),
    )
}

/// (key, flow, sequence) of every packet record on the topic, per
/// partition in offset order; stops once `expected` were read, or after
/// 5 s without a message.
fn read_packets(broker: &str, expected: usize) -> Vec<(Vec<u8>, u32, u32)> {
    let consumer = from_the_start(broker, topics::PACKETS_RAW);
    let mut out = Vec::new();
    let mut idle_since = Instant::now();
    while out.len() < expected && idle_since.elapsed() < Duration::from_secs(5) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let AnyEvent::PacketRecord(p) =
                    decode_any(m.payload().expect("payload")).expect("decodes")
                else {
                    panic!("not a packet record");
                };
                let tail = &p.data[p.data.len() - 8..];
                let flow = u32::from_be_bytes(tail[..4].try_into().expect("4 bytes"));
                let seq = u32::from_be_bytes(tail[4..].try_into().expect("4 bytes"));
                out.push((m.key().expect("key").to_vec(), flow, seq));
                idle_since = Instant::now();
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    out
}

#[test]
fn several_batches_in_flight_keep_the_order_per_key_and_lose_nothing() {
    let Some(broker) = Broker::start(Storage::Memory) else {
        return;
    };
    // A small local queue makes batches wait for room while others are in
    // flight; small produce requests make several per partition in flight.
    let kafka = kafka(
        &broker,
        &[
            ("queue.buffering.max.messages", "1500"),
            ("batch.num.messages", "100"),
        ],
    );
    create_topics(&kafka);
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("flows.pcap");
    let frames = write_capture(&input, 64, 12_000, 1_000);

    let summary = Arc::new(Summary::default());
    let sink = KafkaSink::new(&kafka).expect("sink");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(agent(&input, 8, false).run(sink, CancellationToken::new(), summary.clone()))
        .expect("replay");
    assert_eq!(
        Summary::get(&summary.packets),
        frames,
        "every frame counted"
    );

    let got = read_packets(&broker.address(), frames as usize);
    assert_eq!(got.len() as u64, frames, "every frame on the topic, once");
    let mut per_flow: BTreeMap<u32, (Vec<u8>, Vec<u32>)> = BTreeMap::new();
    for (key, flow, seq) in got {
        let (flow_key, seqs) = per_flow
            .entry(flow)
            .or_insert_with(|| (key.clone(), Vec::new()));
        assert_eq!(*flow_key, key, "flow {flow} has one key");
        seqs.push(seq);
    }
    assert_eq!(per_flow.len(), 64);
    for (flow, (_, seqs)) in per_flow {
        let expected: Vec<u32> = (0..seqs.len() as u32).collect();
        assert!(
            seqs == expected,
            "flow {flow} out of order or with gaps: {seqs:?}"
        );
    }
}

#[test]
fn a_delivery_failure_fails_the_replay_and_only_acknowledged_batches_count() {
    let Some(mut broker) = Broker::start(Storage::Sqlite) else {
        return;
    };
    let kafka = kafka(&broker, &[("message.timeout.ms", "2000")]);
    create_topics(&kafka);
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("paced.pcap");
    // 12 s at capture speed: the broker dies well before the end.
    let frames = write_capture(&input, 16, 3_000, 2_000_000);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let summary = Arc::new(Summary::default());
    let sink = KafkaSink::new(&kafka).expect("sink");
    let replay =
        runtime.spawn(agent(&input, 8, true).run(sink, CancellationToken::new(), summary.clone()));
    assert!(
        wait_until(Duration::from_secs(20), || Summary::get(&summary.packets)
            >= 200),
        "nothing acknowledged; broker log:\n{}",
        broker.log()
    );
    broker.kill();
    let killed_at = Instant::now();
    let result = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), replay).await })
        .expect("the replay stops on the failure")
        .expect("replay task");
    let counted = Summary::get(&summary.packets);
    match result {
        Err(CaptureError::Bus(err)) => eprintln!(
            "failed after {:?} with {err}; {counted} of {frames} packets counted",
            killed_at.elapsed()
        ),
        other => panic!("expected a bus error, got {other:?}"),
    }
    assert!(counted < frames, "{counted} counted of {frames}");

    // Every counted packet is stored (more may be: sent, never acknowledged).
    broker.restart();
    let stored = read_packets(&broker.address(), frames as usize);
    let distinct: std::collections::BTreeSet<(u32, u32)> =
        stored.iter().map(|(_, f, s)| (*f, *s)).collect();
    assert!(
        distinct.len() as u64 >= counted,
        "{} stored, {counted} counted as sent",
        distinct.len()
    );
}
