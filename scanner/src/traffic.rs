//! Recorded traffic to findings: [`scan_capture`] reads a PCAP or pcapng
//! (a recorder slice or any capture file), reassembles its TCP streams and
//! UDP flows with the recorder's own reassembler, and scans each
//! direction's payload and each datagram. A finding names the stream (its
//! endpoints, with pod names when the slice's index knows them), the
//! direction, the byte offset in that direction and the frame number that
//! holds its first byte.

use std::collections::HashMap;
use std::io::Read;

use tapwire_packet::capture_file::CaptureFile;
use tapwire_pcap_recorder::index::SliceIndex;
use tapwire_pcap_recorder::reassembly::{CapturedPacket, Payload, Reassembler, Stream};
use tapwire_pcap_recorder::{PodLookup, ReassemblyConfig};

use crate::content::{ContentScanner, Hit};
use crate::finding::Finding;

/// What a capture could not give.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// Not a PCAP/pcapng, or cut short.
    #[error("{object}: not a readable capture: {reason}")]
    Capture {
        /// The object.
        object: String,
        /// Why.
        reason: String,
    },
    /// YARA gave up on a buffer (time-out).
    #[error("{object}: {reason}")]
    Scan {
        /// The object.
        object: String,
        /// Why.
        reason: String,
    },
}

/// Totals of one capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficStats {
    /// Frames read.
    pub frames: u64,
    /// Frames that were not TCP/UDP over IP.
    pub skipped_frames: u64,
    /// Streams and flows scanned.
    pub streams: u64,
    /// Payload bytes scanned.
    pub bytes: u64,
}

/// Scans the capture in `reader` named `object` (its findings carry that
/// name); `index` (the slice's index, when there is one) names the pods.
///
/// # Errors
///
/// [`TrafficError`]: an unreadable capture, or a YARA time-out.
pub fn scan_capture<R: Read>(
    object: &str,
    reader: R,
    index: Option<&SliceIndex>,
    scanner: &ContentScanner,
    findings: &mut Vec<Finding>,
) -> Result<TrafficStats, TrafficError> {
    let bad = |reason: String| TrafficError::Capture {
        object: object.to_owned(),
        reason,
    };
    let capture = CaptureFile::new(object, reader).map_err(|e| bad(e.to_string()))?;
    let mut reassembler = Reassembler::new(ReassemblyConfig {
        tcp_idle_ns: i64::MAX / 4,
        udp_idle_ns: i64::MAX / 4,
        max_payload_bytes: 64 << 20,
        ..ReassemblyConfig::default()
    });
    let mut stats = TrafficStats::default();
    // Frame numbers of each stream's packets, in the stream's order.
    let mut frames: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut ended = Vec::new();
    let mut session = scanner.session();
    let mut hits = Vec::new();
    let mut scan_ended = |ended: &mut Vec<Stream>,
                          frames: &mut HashMap<u64, Vec<u64>>,
                          stats: &mut TrafficStats|
     -> Result<(), TrafficError> {
        for stream in ended.drain(..) {
            let numbers = frames.remove(&stream.id).unwrap_or_default();
            stats.streams += 1;
            scan_stream(
                object,
                &stream,
                &numbers,
                index,
                &mut session,
                &mut hits,
                findings,
                &mut stats.bytes,
            )?;
        }
        Ok(())
    };
    for frame in capture {
        let frame = frame.map_err(|e| bad(e.to_string()))?;
        stats.frames += 1;
        let number = frame.index + 1;
        let packet = CapturedPacket {
            timestamp_ns: frame.timestamp_ns,
            link_type: frame.link_type,
            original_len: frame.original_len,
            data: frame.data,
        };
        match reassembler.push(packet, &mut ended) {
            Ok(Some(id)) => frames.entry(id).or_default().push(number),
            Ok(None) => {}
            Err(_) => stats.skipped_frames += 1,
        }
        scan_ended(&mut ended, &mut frames, &mut stats)?;
    }
    reassembler.flush(&mut ended);
    scan_ended(&mut ended, &mut frames, &mut stats)?;
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn scan_stream(
    object: &str,
    stream: &Stream,
    numbers: &[u64],
    index: Option<&SliceIndex>,
    session: &mut crate::content::Session<'_>,
    hits: &mut Vec<Hit>,
    findings: &mut Vec<Finding>,
    bytes: &mut u64,
) -> Result<(), TrafficError> {
    let failed = |reason: String| TrafficError::Scan {
        object: object.to_owned(),
        reason: format!("stream {}: {reason}", endpoints(stream, index)),
    };
    let frame_at = |ts: Option<i64>| -> Option<u64> {
        let ts = ts?;
        let i = stream
            .packets
            .iter()
            .position(|p| p.timestamp_ns == ts && !p.data.is_empty())?;
        numbers.get(i).copied()
    };
    let directions: [(&str, &Payload); 2] = [
        ("client", &stream.client_data),
        ("server", &stream.server_data),
    ];
    for (side, payload) in directions {
        if payload.bytes.is_empty() {
            continue;
        }
        *bytes += payload.bytes.len() as u64;
        hits.clear();
        session.scan(&payload.bytes, hits).map_err(failed)?;
        for hit in hits.drain(..) {
            let frame = frame_at(payload.time_at(hit.offset));
            findings.push(to_finding(object, stream, index, side, hit, frame));
        }
    }
    for (n, datagram) in stream.datagrams.iter().enumerate() {
        *bytes += datagram.payload.len() as u64;
        hits.clear();
        session.scan(&datagram.payload, hits).map_err(failed)?;
        let side = if datagram.from_client {
            format!("client datagram {}", n + 1)
        } else {
            format!("server datagram {}", n + 1)
        };
        for hit in hits.drain(..) {
            let frame = frame_at(Some(datagram.timestamp_ns));
            findings.push(to_finding(object, stream, index, &side, hit, frame));
        }
    }
    Ok(())
}

fn to_finding(
    object: &str,
    stream: &Stream,
    index: Option<&SliceIndex>,
    side: &str,
    hit: Hit,
    frame: Option<u64>,
) -> Finding {
    Finding::new(
        hit.kind,
        &hit.rule,
        hit.severity,
        object,
        format!("{} {side}", endpoints(stream, index)),
        Some(hit.offset as u64),
        frame,
        hit.excerpt,
    )
}

/// `tcp 10.1.0.4:40312 (shop/web-1) -> 10.1.0.9:80`: transport, client and
/// server, with the pods the slice's index names.
fn endpoints(stream: &Stream, index: Option<&SliceIndex>) -> String {
    let key = &stream.key;
    let transport = match key.protocol {
        tapwire_packet::Transport::Tcp => "tcp",
        tapwire_packet::Transport::Udp => "udp",
    };
    let pod = |ip: std::net::IpAddr| -> String {
        index
            .and_then(|index| index.pods.pod_at(ip, stream.first_ns))
            .map(|p| format!(" ({}/{})", p.namespace, p.name))
            .unwrap_or_default()
    };
    let side = |ip: std::net::IpAddr, port: u16| match ip {
        std::net::IpAddr::V6(_) => format!("[{ip}]:{port}{}", pod(ip)),
        std::net::IpAddr::V4(_) => format!("{ip}:{port}{}", pod(ip)),
    };
    format!(
        "{transport} {} -> {}",
        side(key.src_ip, key.src_port),
        side(key.dst_ip, key.dst_port)
    )
}
