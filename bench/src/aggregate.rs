//! The aggregator (issue 6: at least 500k events/s in, at least 100x fewer
//! connection-count rows than events). Traffic: `network_connect` verdicts
//! between 1,000 distinct pod pairs (a third each audit, enforce, other),
//! 10,000 connections per second of event time, in batches of 50,000 (the
//! `[aggregate]` default `batch_max_messages`).
//!
//! - In process, one core: decode each verdict, `Counts::add`, and
//!   `Counts::rows()` once per batch, against decoding alone; and the rows
//!   out: events per `connection_counts` row. Per batch that ratio is at
//!   most 50,000 / distinct keys, so it is also printed for 250 and 10,000
//!   pairs.
//! - Through a real ClickHouse (`TAPWIRE_CLICKHOUSE_URL`, default
//!   `http://127.0.0.1:8123`; the rows are skipped with the reason when it
//!   does not answer): `AggregateStage::handle` on batches of 50,000 into a
//!   fresh, migrated database (counts, `network_events`, `verdicts`: about
//!   two rows per event), events/s in and rows/s out, against the bare
//!   insert: the same number of prebuilt `network_events` rows as events,
//!   50,000 per `INSERT`, with the clickhouse crate into another fresh
//!   database. Only the inserts and `handle` are timed; building messages
//!   and rows is not. Bytes into ClickHouse: the uncompressed bytes of the
//!   parts each database holds afterwards, over the insert time.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use tapwire_aggregator::rows::{
    CountRow, Counts, EventRows, FlowRow, NetworkEventRow, RuntimeRow, VerdictRow,
};
use tapwire_aggregator::schema;
use tapwire_aggregator::sink::{AggregateStage, client};
use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::BatchHandler;
use tapwire_schemas::codec::decode_verdict_view;
use tapwire_schemas::events::{EnrichedEvent, EventBody, L4Kind, Mode, Outcome, Verdict};
use tapwire_schemas::{AnyEvent, Ip, decode_any, encode, samples, topics};

use crate::report::{Row, peak_rss_mib, rate};

/// Messages per batch (`[aggregate] batch_max_messages`).
const BATCH: usize = 50_000;
/// A whole minute, so one batch (5 s of events) falls in one minute.
const BASE_NS: i64 = 1_700_000_040_000_000_000;

/// Connect verdict `i` of a mix of `pairs` pod pairs.
fn connect(i: u64, pairs: u64) -> Verdict {
    // Spread the pairs over the batch (Knuth's multiplicative hash).
    let p = i.wrapping_mul(2_654_435_761) % pairs;
    let ns = BASE_NS + i as i64 * 100_000;
    let mut e = samples::l4_flow(samples::header("node-a", "sensor-a", i, ns), i);
    e.kind = L4Kind::NetworkConnect;
    e.duration_ns = None;
    e.bytes_sent = None;
    e.bytes_received = None;
    e.final_state = None;
    let server = p % 50;
    e.src.ip = Ip(IpAddr::V4(Ipv4Addr::new(
        10,
        1,
        (p / 250 % 250) as u8,
        (p % 250) as u8,
    )));
    e.dst.ip = Ip(IpAddr::V4(Ipv4Addr::new(10, 2, 0, server as u8)));
    e.dst.port = 8080;
    let (mode, outcome) = match p % 3 {
        0 => (Mode::Audit, Outcome::Audited),
        1 => (Mode::Enforce, Outcome::Allowed),
        _ => (Mode::Other, Outcome::Allowed),
    };
    samples::verdict(
        EnrichedEvent {
            body: EventBody::L4(e),
            src: samples::pod_peer(&format!("client-{p}"), &format!("ns-{}", p % 20)),
            dst: samples::pod_peer(&format!("server-{server}"), "backend"),
        },
        mode,
        outcome,
    )
}

fn batch_of(pairs: u64) -> anyhow::Result<(Vec<Verdict>, Vec<Vec<u8>>)> {
    let verdicts: Vec<Verdict> = (0..BATCH as u64).map(|i| connect(i, pairs)).collect();
    let payloads = verdicts.iter().map(encode).collect::<Result<_, _>>()?;
    Ok((verdicts, payloads))
}

/// Rows one batch of `payloads` pre-aggregates to.
fn count_rows(payloads: &[Vec<u8>]) -> anyhow::Result<(u64, usize)> {
    let mut counts = Counts::default();
    for (o, p) in payloads.iter().enumerate() {
        counts.add(&decode_verdict_view(p)?, 0, o as u64);
    }
    Ok((counts.events, counts.rows().len()))
}

/// The stage's per-message work without ClickHouse, for `perf record`:
/// view decode, counts and per-event rows, batch after batch.
pub fn profile(n: u64) -> anyhow::Result<()> {
    let (_, payloads) = batch_of(1000)?;
    for b in 0..n.div_ceil(BATCH as u64) {
        let mut counts = Counts::default();
        let mut rows = EventRows::default();
        for (o, p) in payloads.iter().enumerate() {
            let v = decode_verdict_view(p)?;
            let offset = b * BATCH as u64 + o as u64;
            counts.add(&v, 0, offset);
            rows.add(&v, 0, offset);
        }
        black_box((counts.rows(), rows));
    }
    Ok(())
}

pub fn run(n: u64, clickhouse_n: u64) -> anyhow::Result<Vec<Row>> {
    let (verdicts, payloads) = batch_of(1000)?;
    let batches = n.div_ceil(BATCH as u64).max(1);
    let n = batches * BATCH as u64;

    // Before: each verdict decoded owned, then counted.
    let started = Instant::now();
    for b in 0..batches {
        let mut counts = Counts::default();
        for (o, p) in payloads.iter().enumerate() {
            if let AnyEvent::Verdict(v) = decode_any(p)? {
                counts.add(&v.view(), 0, b * BATCH as u64 + o as u64);
            }
        }
        black_box(counts.rows());
    }
    let owned = rate(n, started.elapsed());

    let started = Instant::now();
    let mut rows_out = 0u64;
    for b in 0..batches {
        let mut counts = Counts::default();
        for (o, p) in payloads.iter().enumerate() {
            counts.add(&decode_verdict_view(p)?, 0, b * BATCH as u64 + o as u64);
        }
        rows_out += black_box(counts.rows()).len() as u64;
    }
    let elapsed = started.elapsed();
    let ours = rate(n, elapsed);
    let per_row = n as f64 / rows_out.max(1) as f64;
    eprintln!(
        "aggregate: {ours:.0} events/s in, {:.0} count rows/s out, {per_row:.1} events per row \
         (1,000 pairs, {BATCH} per batch)",
        rate(rows_out, elapsed)
    );
    for pairs in [250, 10_000] {
        let (events, rows) = count_rows(&batch_of(pairs)?.1)?;
        eprintln!(
            "aggregate: {pairs} pairs: {:.1} events per count row",
            events as f64 / rows.max(1) as f64
        );
    }
    let mut out = vec![
        Row {
            stage: "aggregate: decode+count (1 core)".into(),
            events_per_s: ours,
            baseline_name: "before: owned decode+count".into(),
            baseline_per_s: owned,
            peak_rss_mib: peak_rss_mib(),
        },
        Row {
            stage: "aggregate: count rows out (ratio=ev/row)".into(),
            events_per_s: ours,
            baseline_name: "count rows/s out, 1k pairs".into(),
            baseline_per_s: rate(rows_out, elapsed),
            peak_rss_mib: peak_rss_mib(),
        },
    ];
    out.extend(through_clickhouse(&verdicts, &payloads, clickhouse_n)?);
    Ok(out)
}

/// The ClickHouse URL when something answers there; otherwise why not.
fn clickhouse_url() -> Result<String, String> {
    let url = std::env::var("TAPWIRE_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned());
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let reachable = address
        .parse()
        .ok()
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        Ok(url)
    } else {
        Err(format!(
            "ClickHouse does not answer at {url} (TAPWIRE_CLICKHOUSE_URL; \
             scripts/services.sh start)"
        ))
    }
}

fn through_clickhouse(
    verdicts: &[Verdict],
    payloads: &[Vec<u8>],
    n: u64,
) -> anyhow::Result<Vec<Row>> {
    let url = match clickhouse_url() {
        Ok(url) => url,
        Err(reason) => {
            eprintln!("SKIPPED aggregate through ClickHouse: {reason}");
            return Ok(Vec::new());
        }
    };
    let batches = n.div_ceil(BATCH as u64).max(1);
    let n = batches * BATCH as u64;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let admin = clickhouse::Client::default()
            .with_url(&url)
            .with_validation(false);
        let stage_db = format!("tapwire_bench_stage_{}", std::process::id());
        let bare_db = format!("tapwire_bench_bare_{}", std::process::id());
        let before_db = format!("tapwire_bench_before_{}", std::process::id());
        for db in [&stage_db, &bare_db, &before_db] {
            admin
                .query(&format!("DROP DATABASE IF EXISTS {db}"))
                .execute()
                .await?;
            schema::migrate(&admin, db, 0).await?;
        }
        let result = async {
            // Baseline: the bare insert of prebuilt rows.
            let mut rows = EventRows::default();
            for (o, v) in verdicts.iter().enumerate() {
                rows.add(&v.view(), 0, o as u64);
            }
            let rows: Vec<NetworkEventRow<'_>> = rows.network;
            let bare_client = client(&url, &bare_db, "default", "");
            let mut bare_time = Duration::ZERO;
            for _ in 0..batches {
                let started = Instant::now();
                let mut insert = bare_client
                    .insert::<NetworkEventRow<'static>>("network_events")
                    .await?;
                for row in &rows {
                    insert.write(row).await?;
                }
                insert.end().await?;
                bare_time += started.elapsed();
            }
            let bare = rate(n, bare_time);
            let bare_mb =
                uncompressed_bytes(&admin, &bare_db).await? as f64 / 1e6 / bare_time.as_secs_f64();
            eprintln!("aggregate: bare insert {bare:.0} rows/s, {bare_mb:.1} MB/s into ClickHouse");

            // Before: the handler as it was, reproduced: owned decoding and
            // one insert after another (the rows' text no longer copied
            // field by field: the row types borrow now).
            let before_client = client(&url, &before_db, "default", "");
            let mut before_time = Duration::ZERO;
            for b in 0..batches {
                let started = Instant::now();
                let mut counts = Counts::default();
                let owned: Vec<Verdict> = payloads
                    .iter()
                    .map(|p| match decode_any(p) {
                        Ok(AnyEvent::Verdict(v)) => Ok(v),
                        Ok(other) => Err(anyhow::anyhow!("a {} in the batch", other.kind())),
                        Err(e) => Err(e.into()),
                    })
                    .collect::<anyhow::Result<_>>()?;
                let mut rows = EventRows::default();
                for (i, v) in owned.iter().enumerate() {
                    let offset = b * BATCH as u64 + i as u64;
                    counts.add(&v.view(), 0, offset);
                    rows.add(&v.view(), 0, offset);
                }
                let c = &before_client;
                insert_all::<CountRow>(c, "connection_counts", &counts.rows()).await?;
                insert_all::<NetworkEventRow<'static>>(c, "network_events", &rows.network).await?;
                insert_all::<FlowRow<'static>>(c, "flows", &rows.flows).await?;
                insert_all::<VerdictRow<'static>>(c, "verdicts", &rows.verdicts).await?;
                insert_all::<RuntimeRow<'static>>(c, "runtime_events", &rows.runtime).await?;
                before_time += started.elapsed();
            }
            let before = rate(n, before_time);
            eprintln!("aggregate: before (owned, inserts in turn) {before:.0} events/s");

            let mut stage = AggregateStage::new(client(&url, &stage_db, "default", ""));
            let mut stage_time = Duration::ZERO;
            for b in 0..batches {
                let batch: Vec<Message> = payloads
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Message {
                        topic: topics::VERDICTS.to_owned(),
                        partition: 0,
                        offset: (b * BATCH as u64 + i as u64) as i64,
                        key: None,
                        payload: p.clone(),
                        headers: Vec::new(),
                    })
                    .collect();
                let started = Instant::now();
                let rejected = stage
                    .handle(&batch)
                    .await
                    .map_err(|e| anyhow::anyhow!("aggregate stage: {e:?}"))?;
                stage_time += started.elapsed();
                anyhow::ensure!(rejected.is_empty(), "rejected: {:?}", rejected.first());
            }
            let written = stage.written().clone();
            let rows_out: u64 = written.rows.iter().sum();
            anyhow::ensure!(
                written.connections_counted == n,
                "counted {} of {n}",
                written.connections_counted
            );
            let ours = rate(n, stage_time);
            let out_per_s = rate(rows_out, stage_time);
            let stage_mb = uncompressed_bytes(&admin, &stage_db).await? as f64
                / 1e6
                / stage_time.as_secs_f64();
            eprintln!(
                "aggregate: stage {ours:.0} events/s in, {out_per_s:.0} rows/s out, \
                 {:.2} rows out per event in (rows per table {:?})",
                rows_out as f64 / n as f64,
                written.rows
            );
            Ok(vec![
                Row {
                    stage: "aggregate: stage into ClickHouse, ev/s".into(),
                    events_per_s: ours,
                    baseline_name: "before: owned, inserts in turn".into(),
                    baseline_per_s: before,
                    peak_rss_mib: peak_rss_mib(),
                },
                Row {
                    stage: "aggregate: stage into ClickHouse, rows/s".into(),
                    events_per_s: out_per_s,
                    baseline_name: "bare insert, rows/s".into(),
                    baseline_per_s: bare,
                    peak_rss_mib: peak_rss_mib(),
                },
                Row {
                    stage: "aggregate: stage into ClickHouse, MB/s".into(),
                    events_per_s: stage_mb,
                    baseline_name: "bare insert, MB/s (uncompressed)".into(),
                    baseline_per_s: bare_mb,
                    peak_rss_mib: peak_rss_mib(),
                },
            ])
        }
        .await;
        for db in [&stage_db, &bare_db, &before_db] {
            let _ = admin
                .query(&format!("DROP DATABASE IF EXISTS {db}"))
                .execute()
                .await;
        }
        result
    })
}

/// One `INSERT` of `rows` into `table` (skipped when empty).
async fn insert_all<T>(
    client: &clickhouse::Client,
    table: &str,
    rows: &[T::Value<'_>],
) -> anyhow::Result<()>
where
    T: clickhouse::Row + clickhouse::RowWrite,
    for<'b> T::Value<'b>: Sync,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = client.insert::<T>(table).await?;
    for row in rows {
        insert.write(row).await?;
    }
    Ok(insert.end().await?)
}

/// The uncompressed bytes of every active part in `database` (what the
/// inserts wrote, as ClickHouse counts it).
async fn uncompressed_bytes(admin: &clickhouse::Client, database: &str) -> anyhow::Result<u64> {
    Ok(admin
        .query("SELECT toUInt64(sum(data_uncompressed_bytes)) FROM system.parts WHERE database = ? AND active")
        .bind(database)
        .fetch_one::<u64>()
        .await?)
}
