//! The recorder from a pcap file on one core (issue 8: at least 1 Gbit/s per
//! core): a synthetic capture (`synth.rs`, HTTP on port 80 and opaque
//! port-443 connections) read frame by frame into [`Recorder`] with the
//! query `tcp and (src.port == 80 or dst.port == 80)`, every finished slice
//! written to a directory (PCAP and JSON index), against `tcpdump -r IN -w
//! OUT 'tcp port 80'` on the same file in the same run (tshark's
//! `-Y 'tcp.port == 80'` when tcpdump is missing, labelled so). Both clocks
//! include reading the file (from the page cache) and writing the output;
//! Gbit/s counts the frames' bytes. The recorder must keep exactly the
//! packets the baseline kept.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, anyhow};
use pcap_file::pcap::PcapReader;
use tapwire_pcap_recorder::{NamedQuery, NoPods, Recorder, RecorderConfig};
use tapwire_schemas::EventId;
use tapwire_schemas::events::{EventHeader, PacketRecord};

use crate::report::{Row, peak_rss_mib, rate};
use crate::synth;

const QUERY: &str = "tcp and (src.port == 80 or dst.port == 80)";

fn gbit_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs.max(1e-9) / 1e9
}

pub fn run(mib: u64) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.pcap");
    let s = synth::write(&input, mib << 20)?;
    eprintln!(
        "record: {} frames, {:.0} MB, {} connections ({} port-80 frames) in {}",
        s.packets,
        s.bytes as f64 / 1e6,
        s.streams,
        s.port80_packets,
        input.display()
    );

    // Baseline: tcpdump (or tshark) with the same filter.
    let out = dir.path().join("baseline.pcap");
    let (name, started, status) = if which("tcpdump") {
        let started = Instant::now();
        let status = Command::new("tcpdump")
            .arg("-r")
            .arg(&input)
            .arg("-w")
            .arg(&out)
            .arg("tcp port 80")
            .output()
            .context("running tcpdump")?;
        ("tcpdump -r -w 'tcp port 80'", started, status)
    } else {
        eprintln!(
            "record: tcpdump is missing (apt-get install tcpdump); \
             the baseline is tshark -Y 'tcp.port == 80'"
        );
        let started = Instant::now();
        let status = Command::new("tshark")
            .arg("-r")
            .arg(&input)
            .arg("-w")
            .arg(&out)
            .args(["-Y", "tcp.port == 80"])
            .output()
            .context("running tshark (neither tcpdump nor tshark is installed?)")?;
        ("tshark -r -w -Y 'tcp.port == 80'", started, status)
    };
    let baseline_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        status.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let kept = count_frames(&out)?;
    anyhow::ensure!(
        kept == s.port80_packets,
        "{name} kept {kept} frames, expected {}",
        s.port80_packets
    );

    // The recorder.
    let slices = dir.path().join("slices");
    std::fs::create_dir(&slices)?;
    let started = Instant::now();
    let mut reader = PcapReader::new(BufReader::with_capacity(1 << 20, File::open(&input)?))?;
    let link_type = u32::from(reader.header().datalink);
    let mut recorder = Recorder::new(
        RecorderConfig::default(),
        vec![NamedQuery {
            name: "http80".into(),
            query: QUERY.into(),
        }],
    )?;
    let mut n = 0u64;
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        let data = packet.data.into_owned();
        let record = PacketRecord {
            header: EventHeader {
                id: EventId([0; 16]),
                timestamp_ns: packet.timestamp.as_nanos() as i64,
                node: "node-a".into(),
                sensor_id: "bench".into(),
                node_ip: None,
            },
            link_type,
            captured_len: data.len() as u32,
            original_len: packet.orig_len,
            data,
            flow_hash: 0,
            interface: None,
        };
        recorder.push(record, &NoPods)?;
        n += 1;
        if n.is_multiple_of(1024) {
            for slice in recorder.take_finished() {
                slice.write_to_dir(&slices)?;
            }
        }
    }
    recorder.flush(&NoPods)?;
    for slice in recorder.take_finished() {
        slice.write_to_dir(&slices)?;
    }
    let ours_secs = started.elapsed().as_secs_f64();
    let stats = recorder.stats().clone();
    anyhow::ensure!(
        stats.packets_recorded == s.port80_packets,
        "the recorder kept {} frames, {name} {}: {stats:?}",
        stats.packets_recorded,
        s.port80_packets
    );
    let (ours_gbit, base_gbit) = (
        gbit_per_s(s.bytes, ours_secs),
        gbit_per_s(s.bytes, baseline_secs),
    );
    eprintln!(
        "record: recorder {ours_gbit:.2} Gbit/s ({} streams recorded, {} dropped, {} slices); \
         {name} {base_gbit:.2} Gbit/s",
        stats.streams_recorded, stats.streams_dropped, stats.slices
    );
    Ok(vec![Row {
        stage: format!("record: pcap, {ours_gbit:.2} Gbit/s (pkt/s)"),
        events_per_s: rate(s.packets, std::time::Duration::from_secs_f64(ours_secs)),
        baseline_name: format!("{name}, {base_gbit:.2} Gbit/s"),
        baseline_per_s: rate(s.packets, std::time::Duration::from_secs_f64(baseline_secs)),
        peak_rss_mib: peak_rss_mib(),
    }])
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn count_frames(path: &Path) -> anyhow::Result<u64> {
    let mut reader = PcapReader::new(BufReader::new(
        File::open(path).with_context(|| format!("{}", path.display()))?,
    ))
    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut n = 0;
    while let Some(p) = reader.next_packet() {
        p?;
        n += 1;
    }
    Ok(n)
}
