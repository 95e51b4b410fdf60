//! pcap replay into Kafka (issues 3 and 19): `tapwire capture --source
//! pcap:FILE` as the agent runs it (a reader thread, packet records keyed by
//! flow hash to `tapwire.packets.raw`, L4/DNS events derived from the
//! packets to `tapwire.l4.raw`, batches of 1,000 acknowledged by their
//! delivery reports) over the synthetic capture of `synth.rs`, twice: with
//! one batch in flight (each awaited before the next is sent, as before
//! issue 19) and with the default `capture.batches_in_flight`. Both against
//! the foundation's bare rdkafka producer (`kafka.rs` settings) sending the
//! same packet records, encoded beforehand, with the same keys. All through
//! one private Tansu broker (memory storage, like `kafka.rs`): the shared
//! test bed's broker keeps sqlite storage and its `tapwire.packets.raw` is
//! read by tests. Every clock starts once its producer delivered a first
//! record (the idempotent producer's start, 0.5 to 1 s, is printed apart)
//! and stops when the last record is acknowledged. The eBPF event rate is
//! the capture engineer's benchmark.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
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
    let in_flight = CaptureConfig::default().batches_in_flight;
    for n in [1, in_flight] {
        let through_sink = runtime.block_on(sink_in_batches(&config, &records, n))?;
        eprintln!(
            "capture: the same records through tapwire's KafkaSink, 1,000 per send_batch, {n} \
             in flight: {through_sink:.0} records/s"
        );
    }
    drop(records);

    let capture_config = CaptureConfig {
        node_name: Some(NODE.into()),
        sensor_id: Some(SENSOR.into()),
        ..CaptureConfig::default()
    };
    let discard = Discard::default();
    let discarded = runtime.block_on(without_kafka(&capture_config, &input, discard.clone()))?;
    eprintln!(
        "capture: the replay into a sink that drops every batch: {discarded:.0} packets/s \
         (what the agent does without Kafka)"
    );
    for (topic, (messages, bytes)) in discard.per_topic() {
        crate::report::size(
            &format!("{topic} (capture output, {messages} messages)"),
            bytes as f64 / messages.max(1) as f64,
        );
    }

    let mut rows = Vec::new();
    for (n, stage) in [
        (1, "capture pcap replay, 1 batch in flight (old)".to_owned()),
        (
            in_flight,
            format!("capture pcap replay, {in_flight} batches in flight"),
        ),
    ] {
        crate::report::reset_peak_rss();
        let capture = CaptureConfig {
            batches_in_flight: n,
            ..capture_config.clone()
        };
        let (sink, start) = runtime.block_on(ready_sink(&config))?;
        let ours = runtime.block_on(replay(&capture, &input, sink, start, s))?;
        rows.push(Row {
            stage,
            events_per_s: ours,
            baseline_name: "bare rdkafka produce, same recs".into(),
            baseline_per_s: bare,
            peak_rss_mib: peak_rss_mib(),
        });
    }
    Ok(rows)
}

/// Packets/s of the agent's replay of `input` into `sink` (ready after
/// `start`), from start to the last acknowledgement; checks that every
/// frame was sent.
async fn replay(
    config: &CaptureConfig,
    input: &std::path::Path,
    sink: KafkaSink,
    start: Duration,
    s: synth::Synth,
) -> anyhow::Result<f64> {
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
        .run(sink, CancellationToken::new(), summary.clone())
        .await?;
    let elapsed = started.elapsed();
    let sent = Summary::get(&summary.packets);
    anyhow::ensure!(
        sent == s.packets,
        "the agent sent {sent} packet records of {}",
        s.packets
    );
    let ours = rate(sent, elapsed);
    eprintln!(
        "capture: agent, {} batches in flight: {ours:.0} packets/s ({:.2} Gbit/s of frames; {} \
         L4 and {} DNS events derived and sent too); {:.0} packets/s counting the producer's \
         start",
        config.batches_in_flight,
        s.bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9,
        Summary::get(&summary.l4_events),
        Summary::get(&summary.dns_events),
        rate(sent, start + elapsed)
    );
    Ok(ours)
}

/// A [`KafkaSink`] whose first record was acknowledged: the clocks measure
/// sending, not the producer's start (the idempotent producer waits for its
/// producer id, polled every 500 ms: 0.5 to 1 s, as long as the whole
/// replay at full speed).
async fn ready_sink(config: &KafkaConfig) -> anyhow::Result<(KafkaSink, Duration)> {
    let started = Instant::now();
    let sink = KafkaSink::new(config)?;
    sink.send_batch(vec![OutRecord::new(BARE_OUT, None, b"ready".to_vec())])
        .await?;
    let start = started.elapsed();
    eprintln!("capture: KafkaSink ready (first record acknowledged) after {start:.0?}");
    Ok((sink, start))
}

/// Records/s through [`KafkaSink`] in batches of 1,000 with up to
/// `in_flight` sends awaiting their delivery reports, to `BARE_OUT`.
async fn sink_in_batches(
    config: &KafkaConfig,
    records: &[([u8; 8], Vec<u8>)],
    in_flight: usize,
) -> anyhow::Result<f64> {
    let (sink, _) = ready_sink(config).await?;
    let mut sends = VecDeque::new();
    let started = Instant::now();
    for chunk in records.chunks(1000) {
        let batch: Vec<OutRecord> = chunk
            .iter()
            .map(|(key, payload)| OutRecord::new(BARE_OUT, Some(key.to_vec()), payload.clone()))
            .collect();
        if sends.len() >= in_flight
            && let Some(oldest) = sends.pop_front()
        {
            oldest.await??;
        }
        let sink = sink.clone();
        sends.push_back(tokio::spawn(async move { sink.send_batch(batch).await }));
    }
    for send in sends {
        send.await??;
    }
    Ok(rate(records.len() as u64, started.elapsed()))
}

/// Drops every batch at once (the replay's own cost), counting messages
/// and payload bytes per topic.
#[derive(Clone, Default)]
struct Discard(Arc<Mutex<BTreeMap<String, (u64, u64)>>>);

impl Discard {
    /// (messages, payload bytes) per topic.
    fn per_topic(&self) -> BTreeMap<String, (u64, u64)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Sink for Discard {
    async fn send_batch(&self, records: Vec<OutRecord>) -> Result<(), BusError> {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for r in &records {
            let bytes = r.payload.len() as u64;
            match seen.get_mut(&r.topic) {
                Some((m, b)) => (*m, *b) = (*m + 1, *b + bytes),
                None => {
                    seen.insert(r.topic.clone(), (1, bytes));
                }
            }
        }
        drop(std::hint::black_box(records));
        Ok(())
    }
}

/// Packets/s of the agent's replay into `discard`.
async fn without_kafka(
    config: &CaptureConfig,
    input: &std::path::Path,
    discard: Discard,
) -> anyhow::Result<f64> {
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
        .run(discard, CancellationToken::new(), summary.clone())
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
/// flushed; records/s from the first send to the last acknowledgement, once
/// a first record was delivered (connected, like the [`ready_sink`]s).
fn bare_producer(config: &KafkaConfig, records: &[([u8; 8], Vec<u8>)]) -> anyhow::Result<f64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    producer
        .send(BaseRecord::<(), [u8]>::to(BARE_OUT).payload(&b"ready"[..]))
        .map_err(|(err, _)| err)?;
    producer.flush(Duration::from_secs(30))?;
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
