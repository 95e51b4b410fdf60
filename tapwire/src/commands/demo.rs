//! `tapwire demo`: the whole pipeline on bundled traffic, with nothing
//! installed.
//!
//! A small cluster (namespaces shop and dev, a node, the cluster DNS
//! Service), example policies (one enforce-mode, one audit-mode) and a
//! node's traffic, written as a pcap file from synthetic frames: HTTP calls
//! between pods, database sessions, a DNS lookup and the HTTPS connection
//! that follows it, calls to the cloud metadata address, a refused connect,
//! plus three malformed messages and a capture agent's loss record.
//! `tapwire run`'s pipeline replays it (capture -> enrich -> policy ->
//! aggregate, cef, record) and the demo prints what each stage did, the
//! connections view with its tabs, sample CEF lines (all of them are in
//! `cef.log` beside the traffic), the PCAP slices recorded and the dead
//! letters.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use tapwire_aggregator::memory::MemoryConnections;
use tapwire_capture::agent::SourceSpec;
use tapwire_cluster::ClusterRecord;
use tapwire_packet::synth::{self, Frame};
use tapwire_plumbing::bus::OutRecord;
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::events::*;
use tapwire_schemas::{Ip, encode, samples, topics};

use crate::cli::DemoArgs;
use crate::commands::run::{CefOut, RunInputs, RunReport, pipeline, print_report};
use crate::config::Config;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_795_428_000 * S; // 2026-11-23 10:00:00 UTC

/// The demo's policies (also a starting point for your own).
pub const POLICIES: &str = "\
apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: shop}
spec:
  mode: enforce
  selector: {matchLabels: {app: web-1}}
  egress:
    - name: to-api
      to: [{pod: {namespace: shop, matchLabels: {app: api-0}}}]
      ports: [8080]
      protocols: [tcp]
    - name: cluster-dns
      to: [{cidr: 10.96.0.0/12}]
      ports: [53]
    - name: example-https
      to: [{dnsName: example.com}, {dnsName: \"*.example.com\"}]
      ports: [443]
---
apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {name: shop-audit, namespace: shop}
spec:
  mode: audit
  egress:
    - name: no-metadata-service
      action: deny
      to: [{cidr: 169.254.169.254/32}]
  ingress:
    - name: from-shop
      from: [{pod: {namespace: shop}}]
";

fn pod(name: &str, namespace: &str, ip: &str) -> PodMetadata {
    let mut p = samples::pod(
        samples::header("node-a", "demo", 0, T0),
        name,
        namespace,
        ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
    );
    p.uid = format!("uid-{namespace}-{name}");
    p.containers[0].id = format!("ctr-{name}");
    p.start_ns = Some(T0 - 3600 * S);
    p
}

/// The cluster: pods, the node, the DNS Service.
pub fn cluster() -> Vec<ClusterRecord> {
    vec![
        ClusterRecord::Pod(pod("web-1", "shop", "10.1.0.7")),
        ClusterRecord::Pod(pod("api-0", "shop", "10.1.2.3")),
        ClusterRecord::Pod(pod("db-0", "shop", "10.1.5.5")),
        ClusterRecord::Pod(pod("tool-0", "dev", "10.2.0.9")),
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

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])), port)
}

/// The node's traffic: `requests` HTTP calls from web-1 to api-0 and the
/// rest around them, in time order.
pub fn traffic(requests: u64) -> Vec<Frame> {
    let mut frames = Vec::new();
    let api = at("10.1.2.3", 8080);
    for i in 0..requests {
        let t = T0 + i as i64 * 20_000_000; // every 20 ms
        let client = at("10.1.0.7", 40_000 + (i % 20_000) as u16);
        let request =
            format!("GET /api/cart/{i} HTTP/1.1\r\nHost: api-0\r\nUser-Agent: web/1\r\n\r\n");
        let body = format!("{{\"cart\":{i}}}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        frames.extend(synth::tcp_session(
            t,
            client,
            api,
            &[(request.as_bytes(), response.as_bytes())],
        ));
        if i % 5 == 0 {
            // api-0 reads from the database.
            let c = at("10.1.2.3", 50_000 + (i % 10_000) as u16);
            frames.extend(synth::tcp_session(
                t + 2_000_000,
                c,
                at("10.1.5.5", 5432),
                &[(b"Q\0\0\0\x1dSELECT * FROM carts;\0", b"T\0\0\0\x06\0\0")],
            ));
        }
        if i % 50 == 0 {
            // web-1 looks up example.com, then connects to it.
            let id = (i % 65_000) as u16;
            let dns_client = at("10.1.0.7", 33_000 + (i % 1000) as u16);
            frames.extend(synth::udp_exchange(
                t + 4_000_000,
                dns_client,
                at("10.96.0.10", 53),
                &synth::dns_query(id, "example.com"),
                &synth::dns_answer(id, "example.com", [93, 184, 215, 14].into()),
            ));
            frames.extend(synth::tcp_session(
                t + 5_000_000,
                at("10.1.0.7", 45_000 + (i % 1000) as u16),
                at("93.184.215.14", 443),
                &[(b"\x16\x03\x01\x00\x05hello", b"\x16\x03\x03\x00\x05world")],
            ));
            // dev's tool pod probes the database.
            frames.extend(synth::tcp_session(
                t + 6_000_000,
                at("10.2.0.9", 36_000 + (i % 1000) as u16),
                at("10.1.5.5", 5432),
                &[(b"\0\0\0\x08\x04\xd2\x16\x2f", b"N")],
            ));
        }
        if i % 100 == 0 {
            // Something in web-1 asks the cloud metadata service...
            frames.extend(synth::tcp_session(
                t + 7_000_000,
                at("10.1.0.7", 47_000 + (i % 1000) as u16),
                at("169.254.169.254", 80),
                &[(
                    b"GET /latest/meta-data/iam/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                )],
            ));
            // ... and tries a port api-0 does not serve.
            frames.extend(synth::tcp_refused(
                t + 8_000_000,
                at("10.1.0.7", 48_000 + (i % 1000) as u16),
                at("10.1.2.3", 9090),
            ));
        }
    }
    frames.sort_by_key(|f| f.ts_ns);
    frames
}

/// Writes `frames` as a classic nanosecond pcap (Ethernet).
pub fn write_pcap(path: &Path, frames: &[Frame]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::io::BufWriter::new(file), header)?;
    for f in frames {
        let ts = std::time::Duration::from_nanos(f.ts_ns as u64);
        w.write_packet(&PcapPacket::new(ts, f.data.len() as u32, &f.data))?;
    }
    Ok(())
}

/// What a broken producer might send (three malformed messages), and the
/// loss record a capture agent sends when its ring buffer overflowed (not
/// bad data: it travels to the end and is counted there).
fn injected() -> anyhow::Result<Vec<OutRecord>> {
    let valid = encode(&samples::dns_resolution(samples::header(
        "node-a", "demo", 0, T0,
    )))?;
    let mut unknown_schema = valid.clone();
    unknown_schema[2..10].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1]);
    Ok(vec![
        OutRecord::new(topics::L4_RAW, None, b"{\"not\": \"avro\"}".to_vec()),
        OutRecord::new(topics::L4_RAW, None, unknown_schema),
        OutRecord::new(topics::L4_RAW, None, valid[..valid.len() - 4].to_vec()),
        OutRecord::new(
            topics::L4_RAW,
            Some(b"node-a".to_vec()),
            encode(&LossRecord {
                header: samples::header("node-a", "demo-sensor", 0, T0),
                source: "ringbuf".into(),
                lost: 7,
            })?,
        ),
    ])
}

/// Runs the demo and prints what happened.
pub async fn run(
    config: &Config,
    args: &DemoArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let dir: PathBuf = args.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tapwire-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pcap = dir.join("node-a.pcap");
    let frames = traffic(args.events);
    write_pcap(&pcap, &frames)?;
    let policies = dir.join("policies.yaml");
    std::fs::write(&policies, POLICIES)?;
    let recordings = dir.join("recordings");

    let mut config = config.clone();
    config.capture.node_name = Some("node-a".into());
    config.capture.sensor_id = Some("demo-sensor".into());
    config.cef.cluster_name = Some("demo".into());
    let counts = Arc::new(Mutex::new(MemoryConnections::default()));
    let inputs = RunInputs {
        sources: vec![SourceSpec::Pcap {
            path: pcap.clone(),
            realtime: false,
        }],
        cluster: cluster(),
        policy_files: vec![policies.clone()],
        cef: CefOut::Samples(dir.clone()),
        record: Some((
            recordings.clone(),
            BTreeMap::from([("demo".to_owned(), "http or dns".to_owned())]),
        )),
        counts: Some(counts.clone()),
        inject: injected()?,
    };
    println!(
        "tapwire demo: {} frames of one node's traffic ({}), namespaces shop and dev, the policies of {}\n",
        frames.len(),
        pcap.display(),
        policies.display()
    );
    let report: RunReport = pipeline(&config, inputs, CancellationToken::new()).await?;
    print_report(&report, &mut std::io::stdout())?;
    println!(
        "\nA replay stops nothing: enforce-mode violations above went through and are recorded \
         as not prevented (CEF reason=not prevented); only a node's kernel can block."
    );
    println!(
        "\nEverything is in {}; open the slices with Wireshark or `tapwire investigate {}`.",
        dir.display(),
        recordings.display()
    );
    check(&report, args.events)?;
    if let Some(addr) = &args.serve {
        super::run::console(addr, &counts, &cluster(), shutdown.clone()).await?;
        println!(
            "\nThe console serves this run's results (sign-in link above, on stderr; open it in a \
             browser): the network graph and its tabs. Ctrl-C stops it."
        );
        shutdown.cancelled().await;
    }
    Ok(())
}

/// The demo's own accounting: what this traffic must produce.
fn check(report: &RunReport, requests: u64) -> anyhow::Result<()> {
    let tab = |rows: &[tapwire_aggregator::query::Connection], src: &str, dst: &str| {
        rows.iter()
            .filter(|r| r.src_pod == src && r.destination().starts_with(dst))
            .map(|r| r.connections)
            .sum::<u64>()
    };
    let v = &report.view;
    // A replay has no kernel in the loop: nothing it shows was blocked.
    if report.enforce_outcomes.0 != 0 {
        anyhow::bail!(
            "the demo's replay reports {} blocked events; no kernel refused anything in it",
            report.enforce_outcomes.0
        );
    }
    let problems: Vec<String> = [
        (
            tab(&v.enforce, "web-1", "api-0 10.1.2.3:8080"),
            requests,
            "web-1 -> api-0 in Enforce",
        ),
        (
            tab(&v.audit, "api-0", "db-0"),
            requests.div_ceil(5),
            "api-0 -> db-0 in Audit",
        ),
        // No egress policy covers tool-0 (namespace dev); db-0's ingress
        // (audit, from shop only) decides the connection's tab.
        (
            tab(&v.audit, "tool-0", "db-0"),
            requests.div_ceil(50),
            "tool-0 -> db-0 in Audit (db-0's ingress policy)",
        ),
        (
            v.other.iter().map(|r| r.connections).sum::<u64>(),
            0,
            "connections in Other",
        ),
        (report.dead_letters.len() as u64, 3, "dead letters"),
    ]
    .iter()
    .filter(|(got, want, _)| got != want)
    .map(|(got, want, what)| format!("{what}: {got}, expected {want}"))
    .collect();
    if !problems.is_empty() {
        anyhow::bail!("demo accounting is off: {}", problems.join("; "));
    }
    if report.slices.is_empty() {
        anyhow::bail!("demo accounting is off: no PCAP slice was recorded");
    }
    Ok(())
}
