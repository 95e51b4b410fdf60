//! A synthetic capture for the packet benchmarks (`record.rs`, `capture.rs`):
//! Ethernet/IPv4 TCP connections, 32 of them interleaved at a time, one
//! packet every 10 µs of capture time. Three in four are HTTP/1.1 on port 80
//! (a request, an 8-23 KB response in MSS-sized segments with the client's
//! ACKs, FIN both ways); the fourth is opaque bytes on port 443, so the
//! `tcp port 80` filter has something to drop.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};

/// What was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Synth {
    /// Frames in the file.
    pub packets: u64,
    /// Bytes of those frames (what a filter reads).
    pub bytes: u64,
    /// Frames of port-80 connections (what `tcp port 80` keeps).
    pub port80_packets: u64,
    /// Connections.
    pub streams: u64,
}

const MSS: usize = 1448;
const CONCURRENT: usize = 32;
const T0_NS: u64 = 1_700_000_040_000_000_000;

/// One connection's frames, in order.
fn stream(k: u64) -> (bool, Vec<Vec<u8>>) {
    let http = k % 4 != 3;
    let client = [10, 0, (k / 250 % 250) as u8, (k % 250 + 1) as u8];
    let server = [10, 1, 0, (k % 20 + 1) as u8];
    let cport = 1024 + (k % 60_000) as u16;
    let sport = if http { 80 } else { 443 };
    let (mut cseq, mut sseq) = (
        (k as u32).wrapping_mul(7919),
        (k as u32).wrapping_mul(104_729),
    );
    let mut frames = Vec::new();
    // (from client, seq, ack, flags "SAFP", payload)
    let mut push = |from_client: bool, seq: u32, ack: Option<u32>, flags: &str, payload: &[u8]| {
        let (src, dst, sp, dp) = if from_client {
            (client, server, cport, sport)
        } else {
            (server, client, sport, cport)
        };
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 64_000);
        if flags.contains('S') {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        if flags.contains('F') {
            b = b.fin();
        }
        if flags.contains('P') {
            b = b.psh();
        }
        let mut out = Vec::with_capacity(54 + payload.len());
        b.write(&mut out, payload).expect("a frame into a Vec");
        frames.push(out);
    };
    push(true, cseq, None, "S", b"");
    cseq = cseq.wrapping_add(1);
    push(false, sseq, Some(cseq), "S", b"");
    sseq = sseq.wrapping_add(1);
    push(true, cseq, Some(sseq), "", b"");
    let request = if http {
        format!(
            "GET /objects/{k} HTTP/1.1\r\nHost: svc-{}.shop.svc\r\nUser-Agent: bench/1\r\n\
             Accept: */*\r\n\r\n",
            k % 20
        )
        .into_bytes()
    } else {
        vec![0x16; 180]
    };
    push(true, cseq, Some(sseq), "P", &request);
    cseq = cseq.wrapping_add(request.len() as u32);
    let body_len = 8_000 + (k % 16) as usize * 1000;
    let mut response = if http {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {body_len}\r\n\r\n"
        )
        .into_bytes()
    } else {
        Vec::new()
    };
    response.extend((0..body_len).map(|i| (i as u8).wrapping_mul(31)));
    for (i, segment) in response.chunks(MSS).enumerate() {
        push(false, sseq, Some(cseq), "P", segment);
        sseq = sseq.wrapping_add(segment.len() as u32);
        if i % 2 == 1 {
            push(true, cseq, Some(sseq), "", b"");
        }
    }
    push(false, sseq, Some(cseq), "F", b"");
    sseq = sseq.wrapping_add(1);
    push(true, cseq, Some(sseq), "F", b"");
    cseq = cseq.wrapping_add(1);
    push(false, sseq, Some(cseq), "", b"");
    (http, frames)
}

/// Writes at least `target_bytes` of frames to `path` (classic pcap,
/// microseconds, Ethernet).
pub fn write(path: &Path, target_bytes: u64) -> anyhow::Result<Synth> {
    let mut writer = PcapWriter::new(BufWriter::with_capacity(1 << 20, File::create(path)?))?;
    let mut s = Synth::default();
    let mut active: Vec<(bool, std::vec::IntoIter<Vec<u8>>)> = Vec::with_capacity(CONCURRENT);
    loop {
        while active.len() < CONCURRENT && s.bytes < target_bytes {
            let (http, frames) = stream(s.streams);
            s.streams += 1;
            active.push((http, frames.into_iter()));
        }
        if active.is_empty() {
            break;
        }
        let mut i = 0;
        while i < active.len() {
            let (http, frames) = &mut active[i];
            let Some(frame) = frames.next() else {
                active.swap_remove(i);
                continue;
            };
            let ts = Duration::from_nanos(T0_NS + s.packets * 10_000);
            writer.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))?;
            s.packets += 1;
            s.bytes += frame.len() as u64;
            if *http {
                s.port80_packets += 1;
            }
            i += 1;
        }
    }
    writer.into_writer().flush()?;
    Ok(s)
}
