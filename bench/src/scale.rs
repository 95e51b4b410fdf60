//! The policy stage (1,000 rules) through Tansu with 1, 2 and 4 consumer
//! processes in one group, on an input topic of 8 partitions: total verdicts
//! per second.
//!
//! Each member is this benchmark run again as a child (`--scale-member`),
//! running the stage in-process. Members join one after another on an empty
//! topic (Tansu 0.6 can leave a group without assignments when members join
//! at the same moment), the group settles, then the parent produces the
//! events. Each member reports after each batch (its verdicts acknowledged)
//! how many it handled and when: the rate is the events over the time from
//! the first batch any member began to the one that completed them all, and
//! a member that got no partitions shows in the counts. (Tansu's high
//! watermarks lag the last batch of each partition, so they are not used.)
//! Producer, broker and members share this machine's cores: the table says
//! where the curve flattens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use tapwire_plumbing::bus::kafka::{self, KafkaSink, KafkaSource};
use tapwire_plumbing::bus::{Message, OutRecord, Sink};
use tapwire_plumbing::config::KafkaConfig;
use tapwire_plumbing::consumer::{self, BatchHandler, HandlerError, LoopSettings, StageContext};
use tapwire_plumbing::dlq::Rejection;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::topics::{self, TopicSpec};
use tapwire_tests::{Broker, Storage};

use crate::report::{Row, peak_rss_mib, rate};

const PARTITIONS: i32 = 8;

pub fn run(n: u64) -> anyhow::Result<Vec<Row>> {
    let broker = Broker::start(Storage::Memory).ok_or_else(|| {
        anyhow!("the scaling benchmark needs tansu (scripts/services.sh install)")
    })?;
    let config = KafkaConfig {
        brokers: broker.address(),
        ..KafkaConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rates = Vec::new();
    // Topics of their own per run, so each starts empty.
    let runs = [
        (1usize, "bench.scale.in.1", "bench.scale.out.1"),
        (2, "bench.scale.in.2", "bench.scale.out.2"),
        (4, "bench.scale.in.4", "bench.scale.out.4"),
    ];
    for (members, input, output) in runs {
        runtime.block_on(async {
            let specs = [input, output, topics::DLQ].map(|name| TopicSpec {
                name,
                compacted: false,
            });
            kafka::create_topics(&config, &specs, PARTITIONS, 1, Duration::from_secs(30)).await
        })?;
        let total = measure(&config, members, input, output, n)?;
        eprintln!("scale: {members} member(s): {total:.0} verdicts/s");
        rates.push((members, total));
    }
    let one = rates[0].1;
    Ok(rates
        .iter()
        .map(|&(members, total)| Row {
            stage: format!("policy through Tansu, {members} process(es), 8 part."),
            events_per_s: total,
            baseline_name: "1 process".into(),
            baseline_per_s: one,
            peak_rss_mib: peak_rss_mib(),
        })
        .collect())
}

/// What each member reported: messages handled and acknowledged, the time
/// its first batch began and its last one ended (ns since the epoch).
#[derive(Debug, Clone, Copy, Default)]
struct Report {
    handled: u64,
    first_ns: u64,
    last_ns: u64,
}

/// Runs `members` children on `input`, produces `n` events, and returns
/// the verdicts per second they wrote, from the first batch any member
/// began to the batch that made the total `n`.
fn measure(
    config: &KafkaConfig,
    members: usize,
    input: &str,
    output: &str,
    n: u64,
) -> anyhow::Result<f64> {
    let group = format!("bench-scale-{members}");
    let reports = Arc::new(Mutex::new(vec![Report::default(); members]));
    let mut children = Vec::new();
    for m in 0..members {
        let child = spawn_member(config, &group, input, output, m, Arc::clone(&reports))?;
        children.push(Killed(child));
        std::thread::sleep(Duration::from_secs(3));
    }
    std::thread::sleep(Duration::from_secs(3));
    let producing = {
        let config = config.clone();
        let input = input.to_owned();
        std::thread::spawn(move || -> anyhow::Result<()> {
            tokio::runtime::Runtime::new()?.block_on(produce(&config, &input, n))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let reports = loop {
        let now = reports.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if now.iter().map(|r| r.handled).sum::<u64>() >= n {
            break now;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{members} member(s) handled only {now:?} of {n} in 300 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    producing
        .join()
        .map_err(|_| anyhow!("the producer thread panicked"))??;
    drop(children);
    let first = reports
        .iter()
        .filter(|r| r.handled > 0)
        .map(|r| r.first_ns)
        .min()
        .unwrap_or_default();
    let last = reports.iter().map(|r| r.last_ns).max().unwrap_or_default();
    eprintln!(
        "scale: {members} member(s), handled per member: {:?}",
        reports.iter().map(|r| r.handled).collect::<Vec<_>>()
    );
    Ok(rate(n, Duration::from_nanos(last.saturating_sub(first))))
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_member(
    config: &KafkaConfig,
    group: &str,
    input: &str,
    output: &str,
    index: usize,
    reports: Arc<Mutex<Vec<Report>>>,
) -> anyhow::Result<Child> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--scale-member", group, "--scale-brokers", &config.brokers])
        .args(["--scale-topics", &format!("{input},{output}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a scale member")?;
    let stdout = child.stdout.take().context("member stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let fields: Vec<u64> = line
                .strip_prefix("handled ")
                .map(|rest| rest.split(' ').filter_map(|f| f.parse().ok()).collect())
                .unwrap_or_default();
            if let [handled, first_ns, last_ns] = fields[..] {
                reports.lock().unwrap_or_else(|p| p.into_inner())[index] = Report {
                    handled,
                    first_ns,
                    last_ns,
                };
            }
        }
    });
    Ok(child)
}

async fn produce(config: &KafkaConfig, topic: &str, n: u64) -> anyhow::Result<()> {
    let sink = KafkaSink::new(config)?;
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        sink.send_batch(crate::kafka::enriched_records(topic, i..end, 64)?)
            .await?;
        i = end;
    }
    Ok(())
}

/// One member (the child process): the policy stage on `input`, its
/// verdicts re-addressed to `output`, printing `handled N` after batches.
pub fn member(group: &str, brokers: &str, topics: &str) -> anyhow::Result<()> {
    let (input, output) = topics
        .split_once(',')
        .context("--scale-topics INPUT,OUTPUT")?;
    let config = KafkaConfig {
        brokers: brokers.to_owned(),
        ..KafkaConfig::default()
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench-policies.yaml");
    std::fs::write(&path, crate::policy::policies_yaml())?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let files = tapwire_policy_engine::stage::PolicyFiles::load(vec![path])?;
        let stage = tapwire_policy_engine::stage::PolicyStage::new(
            files,
            Readdress {
                sink: KafkaSink::new(&config)?,
                topic: output.to_owned(),
            },
            Duration::from_secs(60),
            tapwire_plumbing::telemetry::StageMetrics::new("bench-scale"),
        );
        let shutdown = CancellationToken::new();
        let ctx = StageContext::new(group, LoopSettings::default(), shutdown.clone());
        let source = KafkaSource::new(&config, group, &[input])?;
        let dlq = KafkaSink::new(&config)?;
        let mut handler = Reporting {
            inner: stage,
            handled: 0,
            first_ns: None,
        };
        consumer::run(&ctx, source, &dlq, &mut handler).await?;
        Ok(())
    })
}

/// Sends the stage's verdicts to the run's own output topic (its
/// enforcement records go where they always go).
struct Readdress {
    sink: KafkaSink,
    topic: String,
}

impl Sink for Readdress {
    async fn send_batch(
        &self,
        mut records: Vec<OutRecord>,
    ) -> Result<(), tapwire_plumbing::bus::BusError> {
        for r in records.iter_mut().filter(|r| r.topic == topics::VERDICTS) {
            r.topic.clone_from(&self.topic);
        }
        self.sink.send_batch(records).await
    }
}

/// Prints, after each batch, how many messages the member handled and
/// when its first batch began and this one ended (ns since the epoch).
struct Reporting<H> {
    inner: H,
    handled: u64,
    first_ns: Option<u64>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl<H: BatchHandler> BatchHandler for Reporting<H> {
    async fn handle(&mut self, batch: &[Message]) -> Result<Vec<Rejection>, HandlerError> {
        let first = *self.first_ns.get_or_insert_with(now_ns);
        let rejections = self.inner.handle(batch).await?;
        self.handled += batch.len() as u64;
        println!("handled {} {first} {}", self.handled, now_ns());
        Ok(rejections)
    }
}
