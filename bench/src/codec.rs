//! L4 event codec: tapwire's single-object codec (serde_avro_fast) against
//! apache-avro's `Value` path on the same events, one core.

use std::hint::black_box;
use std::time::Instant;

use tapwire_schemas::{L4Event, SchemaKind, decode, encode_into, registry, samples};

use crate::report::{Row, peak_rss_mib, rate};

pub fn run(n: u64) -> anyhow::Result<Vec<Row>> {
    let events: Vec<L4Event> = (0..1024)
        .map(|i| samples::l4_flow(samples::header("node-7", "bench", i, i as i64), i))
        .collect();
    let schema = &registry().current(SchemaKind::L4Event).apache;

    // tapwire encode
    let mut buf = Vec::with_capacity(256);
    let started = Instant::now();
    for i in 0..n {
        buf.clear();
        encode_into(&events[(i % 1024) as usize], &mut buf)?;
        black_box(&buf);
    }
    let ours_encode = rate(n, started.elapsed());

    // apache-avro encode: serde -> Value -> datum (with the same header).
    let apache_n = n / 10;
    let started = Instant::now();
    for i in 0..apache_n {
        let value = apache_avro::to_value(&events[(i % 1024) as usize])?;
        black_box(apache_avro::to_avro_datum(schema, value)?);
    }
    let apache_encode = rate(apache_n, started.elapsed());

    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let mut b = Vec::new();
            encode_into(e, &mut b).map(|()| b)
        })
        .collect::<Result<_, _>>()?;

    let started = Instant::now();
    for i in 0..n {
        black_box(decode::<L4Event>(&encoded[(i % 1024) as usize])?);
    }
    let ours_decode = rate(n, started.elapsed());

    let started = Instant::now();
    for i in 0..apache_n {
        let bytes = &encoded[(i % 1024) as usize][10..];
        let value = apache_avro::from_avro_datum(schema, &mut &bytes[..], None)?;
        black_box(apache_avro::from_value::<L4Event>(&value)?);
    }
    let apache_decode = rate(apache_n, started.elapsed());

    let rss = peak_rss_mib();
    Ok(vec![
        Row {
            stage: "codec: L4 encode (serde_avro_fast)".into(),
            events_per_s: ours_encode,
            baseline_name: "apache-avro Value encode".into(),
            baseline_per_s: apache_encode,
            peak_rss_mib: rss,
        },
        Row {
            stage: "codec: L4 decode (serde_avro_fast)".into(),
            events_per_s: ours_decode,
            baseline_name: "apache-avro Value decode".into(),
            baseline_per_s: apache_decode,
            peak_rss_mib: rss,
        },
    ])
}
