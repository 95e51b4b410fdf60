//! pcap replay into Kafka (issue 3): `tapwire capture --source pcap:FILE`
//! as the agent runs it (a reader thread, packet records keyed by flow hash
//! to `tapwire.packets.raw`, L4/DNS events derived from the packets to
//! `tapwire.l4.raw`, batches of 1,000 awaited on their delivery reports)
//! over the synthetic capture of `synth.rs`, against the foundation's bare
//! rdkafka producer (`kafka.rs` settings) sending the same packet records,
//! encoded beforehand, with the same keys. Both through one private Tansu
//! broker (memory storage, like `kafka.rs`): the shared test bed's broker
//! keeps sqlite storage and its `tapwire.packets.raw` is read by tests. Both
//! clocks stop when the last record is acknowledged. The eBPF event rate is
//! the capture engineer's benchmark.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pcap_file::pcap::PcapReader;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tapwire_capture::agent::Summary;
use tapwire_capture::{Agent, CaptureConfig, SourceSpec};
use tapwire_plumbing::bus::kafka::{self, KafkaSink};
use tapwire_plumbing::bus::{BusError, OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::events::{EventHeader, PacketRecord};
use tapwire_schemas::topics::{self, TopicSpec};
use tapwire_schemas::{EventId, encode};
use tapwire_tests::{Broker, Storage, tansu_binary};

use crate::report::{Row, peak_rss_mib, rate};
use crate::synth;

const BARE_OUT: &str = "bench.capture.bare";
const NODE: &str = "node-bench";
const SENSOR: &str = "capture-bench";

pub fn run(mib: u64) -> anyhow::Result<Vec<Row>> {
    if tansu_binary().is_none() {
        eprintln!(
            "SKIPPED capture: the tansu binary is missing (scripts/services.sh install); \
             no row"
        );
        return Ok(Vec::new());
    }
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("replay.pcap");
    let s = synth::write(&input, mib << 20)?;
    let records = encoded_records(&input)?;
    anyhow::ensure!(records.len() as u64 == s.packets, "read back fewer frames");
    let mean = records.iter().map(|(_, p)| p.len()).sum::<usize>() / records.len().max(1);
    eprintln!(
        "capture: {} frames ({:.0} MB), packet records of {mean} bytes on average",
        s.packets,
        s.bytes as f64 / 1e6
    );

    let broker = Broker::start(Storage::Memory).context("starting tansu")?;
    let config = KafkaConfig {
        brokers: broker.address(),
        ..KafkaConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let specs = [topics::PACKETS_RAW, topics::L4_RAW, BARE_OUT].map(|name| TopicSpec {
            name,
            compacted: false,
        });
        kafka::create_topics(&config, &specs, 4, 1, Duration::from_secs(30)).await
    })?;

    let bare = bare_producer(&config, &records)?;
    eprintln!("capture: bare producer {bare:.0} records/s");
    let serial = runtime.block_on(sink_in_batches(&config, &records))?;
    drop(records);
    eprintln!(
        "capture: the same records through tapwire's KafkaSink, 1,000 per send_batch awaited \
         one after another (as the agent sends): {serial:.0} records/s; replaying with the agent"
    );

    let summary = Arc::new(Summary::default());
    let capture_config = CaptureConfig {
        node_name: Some(NODE.into()),
        sensor_id: Some(SENSOR.into()),
        ..CaptureConfig::default()
    };
    let agent = Agent::new(
        capture_config.clone(),
        Some(vec![SourceSpec::Pcap {
            path: input.clone(),
            realtime: false,
        }]),
    );
    let sink = KafkaSink::new(&config)?;
    let started = Instant::now();
    runtime.block_on(agent.run(sink, CancellationToken::new(), summary.clone()))?;
    let elapsed = started.elapsed();
    let sent = Summary::get(&summary.packets);
    anyhow::ensure!(
        sent == s.packets,
        "the agent sent {sent} packet records of {}",
        s.packets
    );
    let ours = rate(sent, elapsed);
    eprintln!(
        "capture: agent {ours:.0} packets/s ({:.2} Gbit/s of frames; {} L4 and {} DNS events \
         derived and sent too)",
        s.bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9,
        Summary::get(&summary.l4_events),
        Summary::get(&summary.dns_events)
    );
    let discarded = runtime.block_on(without_kafka(&capture_config, &input))?;
    eprintln!(
        "capture: the same replay into a sink that drops every batch: {discarded:.0} packets/s \
         (what the agent does without Kafka)"
    );
    Ok(vec![Row {
        stage: "capture: pcap replay into Tansu".into(),
        events_per_s: ours,
        baseline_name: "bare rdkafka produce, same recs".into(),
        baseline_per_s: bare,
        peak_rss_mib: peak_rss_mib(),
    }])
}

/// Records/s through [`KafkaSink`] in batches of 1,000, each awaited before
/// the next is sent (the agent's pattern), to `BARE_OUT`.
async fn sink_in_batches(
    config: &KafkaConfig,
    records: &[([u8; 8], Vec<u8>)],
) -> anyhow::Result<f64> {
    let sink = KafkaSink::new(config)?;
    let started = Instant::now();
    for chunk in records.chunks(1000) {
        let batch = chunk
            .iter()
            .map(|(key, payload)| OutRecord::new(BARE_OUT, Some(key.to_vec()), payload.clone()))
            .collect();
        sink.send_batch(batch).await?;
    }
    Ok(rate(records.len() as u64, started.elapsed()))
}

/// Drops every batch at once: the replay's own cost.
#[derive(Clone)]
struct Discard;

impl Sink for Discard {
    async fn send_batch(&self, records: Vec<OutRecord>) -> Result<(), BusError> {
        drop(std::hint::black_box(records));
        Ok(())
    }
}

/// Packets/s of the agent's replay into [`Discard`].
async fn without_kafka(config: &CaptureConfig, input: &std::path::Path) -> anyhow::Result<f64> {
    let summary = Arc::new(Summary::default());
    let agent = Agent::new(
        config.clone(),
        Some(vec![SourceSpec::Pcap {
            path: input.to_owned(),
            realtime: false,
        }]),
    );
    let started = Instant::now();
    agent
        .run(Discard, CancellationToken::new(), summary.clone())
        .await?;
    Ok(rate(Summary::get(&summary.packets), started.elapsed()))
}

/// The file's frames as the agent's packet records (flow-hash key, payload).
fn encoded_records(path: &std::path::Path) -> anyhow::Result<Vec<([u8; 8], Vec<u8>)>> {
    let mut reader = PcapReader::new(std::io::BufReader::new(std::fs::File::open(path)?))?;
    let link_type = u32::from(reader.header().datalink);
    let mut out = Vec::new();
    let mut index = 0u64;
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        let ts = packet.timestamp.as_nanos() as i64;
        let flow_hash =
            tapwire_packet::parse(link_type, &packet.data).map_or(0, |p| p.flow.flow_hash());
        let record = PacketRecord {
            header: EventHeader {
                id: EventId::derive(&[
                    NODE.as_bytes(),
                    SENSOR.as_bytes(),
                    b"packet",
                    &index.to_le_bytes(),
                ]),
                timestamp_ns: ts,
                node: NODE.into(),
                sensor_id: SENSOR.into(),
                node_ip: None,
            },
            link_type,
            captured_len: packet.data.len() as u32,
            original_len: packet.orig_len,
            data: packet.data.into_owned(),
            flow_hash,
            interface: None,
        };
        out.push((flow_hash.to_be_bytes(), encode(&record)?));
        index += 1;
    }
    Ok(out)
}

/// The foundation's bare producer (`kafka.rs`): everything sent, then
/// flushed; records/s from the first send to the last acknowledgement.
fn bare_producer(config: &KafkaConfig, records: &[([u8; 8], Vec<u8>)]) -> anyhow::Result<f64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let started = Instant::now();
    for (key, payload) in records {
        let mut record = BaseRecord::to(BARE_OUT).key(&key[..]).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(1));
                    record = back;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(rate(records.len() as u64, started.elapsed()))
}
