//! CEF: formatting verdicts on one core (against serializing the same
//! verdicts as JSON), and forwarding over TCP to a real syslog-ng (against
//! writing the same pre-formatted frames to it with a bare socket). Both
//! forwarding clocks stop when syslog-ng has written every message.

use std::hint::black_box;
use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tapwire_cef_forwarder::config::CefConfig;
use tapwire_cef_forwarder::format::Formatter;
use tapwire_cef_forwarder::transport::Sender;
use tapwire_schemas::{Verdict, samples};
use tapwire_tests::{SyslogNg, wait_until};

use crate::report::{Row, peak_rss_mib, rate};

fn sample_verdicts() -> Vec<Verdict> {
    (0..1024)
        .map(|i| {
            samples::flow_verdict(
                samples::header("node-7", "bench", i, i as i64 * 1_000_000),
                i,
            )
        })
        .collect()
}

pub fn run(n: u64, forward_n: u64) -> anyhow::Result<Vec<Row>> {
    let verdicts = sample_verdicts();
    let config = CefConfig {
        cluster_name: Some("bench".into()),
        ..CefConfig::default()
    };
    let formatter = Formatter::new(&config);
    let mut out = Vec::with_capacity(2048);
    let started = Instant::now();
    for i in 0..n {
        out.clear();
        formatter.format(&verdicts[(i % 1024) as usize], &mut out);
        black_box(&out);
    }
    let ours = rate(n, started.elapsed());
    let started = Instant::now();
    for i in 0..n / 4 {
        out.clear();
        serde_json::to_writer(&mut out, &verdicts[(i % 1024) as usize])?;
        black_box(&out);
    }
    let json = rate(n / 4, started.elapsed());
    let mut rows = vec![Row {
        stage: "cef: format verdict (1 core)".into(),
        events_per_s: ours,
        baseline_name: "serde_json of the verdict".into(),
        baseline_per_s: json,
        peak_rss_mib: peak_rss_mib(),
    }];
    rows.push(forward(&formatter, &verdicts, forward_n)?);
    Ok(rows)
}

fn forward(formatter: &Formatter, verdicts: &[Verdict], n: u64) -> anyhow::Result<Row> {
    let receiver =
        SyslogNg::start().ok_or_else(|| anyhow!("the forwarding benchmark needs syslog-ng"))?;
    // Pre-format n messages once; both runs send exactly these bytes.
    let mut buf = Vec::new();
    let mut ranges = Vec::with_capacity(n as usize);
    for i in 0..n {
        let start = buf.len();
        formatter.format(&verdicts[(i % 1024) as usize], &mut buf);
        ranges.push(start..buf.len());
    }
    let lines = |r: &SyslogNg| r.received("tcp").len() as u64;
    let wait = |r: &SyslogNg, want: u64| {
        anyhow::ensure!(
            wait_until(Duration::from_secs(300), || lines(r) >= want),
            "syslog-ng received {} of {want}",
            lines(r)
        );
        Ok(())
    };

    // Baseline: a bare socket writing octet-counted frames.
    let started = Instant::now();
    let mut stream = std::io::BufWriter::with_capacity(
        1 << 16,
        TcpStream::connect(("127.0.0.1", receiver.tcp_port))?,
    );
    for r in &ranges {
        write!(stream, "{} ", r.len())?;
        stream.write_all(&buf[r.clone()])?;
    }
    stream.flush()?;
    wait(&receiver, n)?;
    let bare = rate(n, started.elapsed());
    drop(stream);

    // tapwire's sender, in consumer-loop-sized batches.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config = CefConfig {
        target: format!("tcp://127.0.0.1:{}", receiver.tcp_port),
        ..CefConfig::default()
    };
    let mut sender = Sender::new(&config)?;
    let started = Instant::now();
    runtime.block_on(async {
        for chunk in ranges.chunks(5000) {
            sender.send(&buf, chunk).await?;
        }
        anyhow::Ok(())
    })?;
    wait(&receiver, 2 * n)?;
    let ours = rate(n, started.elapsed());
    Ok(Row {
        stage: "cef: forward over TCP to syslog-ng".into(),
        events_per_s: ours,
        baseline_name: "bare socket, same frames".into(),
        baseline_per_s: bare,
        peak_rss_mib: peak_rss_mib(),
    })
}
