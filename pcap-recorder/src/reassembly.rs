//! L4 streams from packets: TCP connections reassembled in both directions,
//! UDP flows by 5-tuple. [`Reassembler`] keeps every original packet of a
//! stream (bytes, timestamp, link type, original length) so that a matching
//! stream is written out verbatim, and the payload in order for dissection.
//!
//! TCP: a SYN starts a connection and fixes the initial sequence numbers
//! (without one, the first segment seen does). Segments ahead of the next
//! expected byte wait (bounded) until the hole is filled; bytes already seen
//! (retransmissions, overlaps) are skipped. A connection ends when both sides
//! sent FIN, or one sent RST, and then nothing arrived for
//! [`ReassemblyConfig::close_linger_ns`] (so the last ACKs stay with it); when
//! idle for [`ReassemblyConfig::tcp_idle_ns`]; or when a new SYN reuses the
//! 5-tuple. Holes still open at the end are skipped over and counted as gaps.
//!
//! UDP: datagrams of one 5-tuple (either direction) form a flow, which ends
//! after [`ReassemblyConfig::udp_idle_ns`] without traffic.
//!
//! Time is the packets' own: the caller passes the capture time to
//! [`Reassembler::expire`], so replaying a file behaves like live capture.
//! Every bound is counted where it bites ([`ReassemblyStats`], evictions).

use std::collections::{BTreeMap, HashMap};

use tapwire_packet::defrag::{Defragmenter, Fragment, FragmentKey};
use tapwire_packet::{FlowKey, Packet, PacketError, TcpInfo, Transport};

use crate::index::{EndReason, ReassemblyStats};

/// Bounds and timeouts of reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// A TCP connection without packets for this long ends (`idle`).
    pub tcp_idle_ns: i64,
    /// A UDP flow without packets for this long ends (`idle`).
    pub udp_idle_ns: i64,
    /// After FIN from both sides or an RST, the connection is kept this long
    /// for the last ACKs before it ends.
    pub close_linger_ns: i64,
    /// Open streams at most; beyond it the least recently active ends
    /// (`evicted`).
    pub max_streams: usize,
    /// Packets kept per stream; beyond it the stream ends (`limit`) and its
    /// later packets start a new stream of the same 5-tuple.
    pub max_packets_per_stream: usize,
    /// Payload bytes kept per direction for dissection; the rest is counted
    /// in `dropped_bytes` (the packets are still all kept).
    pub max_payload_bytes: usize,
    /// Out-of-order segments buffered per direction.
    pub max_out_of_order: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            tcp_idle_ns: 120_000_000_000,
            udp_idle_ns: 30_000_000_000,
            close_linger_ns: 1_000_000_000,
            max_streams: 100_000,
            max_packets_per_stream: 100_000,
            max_payload_bytes: 1 << 20,
            max_out_of_order: 256,
        }
    }
}

/// A captured frame as it will be written to a PCAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// Capture time, ns since the epoch.
    pub timestamp_ns: i64,
    /// PCAP link type of `data`.
    pub link_type: u32,
    /// Length on the wire (`data` may be shorter).
    pub original_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// One direction's payload in order, with the capture time of each piece.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// The bytes, in sequence order, up to the per-direction bound.
    pub bytes: Vec<u8>,
    /// `(offset, timestamp_ns)` of every appended piece, offsets increasing.
    pub marks: Vec<(usize, i64)>,
    /// Offsets where bytes are missing (a hole was skipped).
    pub gaps: Vec<usize>,
    /// Whether bytes were dropped at the end for the bound.
    pub truncated: bool,
}

impl Payload {
    /// Capture time of the byte at `offset` (of the piece holding it).
    pub fn time_at(&self, offset: usize) -> Option<i64> {
        let i = self.marks.partition_point(|&(o, _)| o <= offset);
        i.checked_sub(1).map(|i| self.marks[i].1)
    }

    fn append(&mut self, data: &[u8], ts: i64, max: usize, stats: &mut ReassemblyStats) {
        if data.is_empty() {
            return;
        }
        let room = max.saturating_sub(self.bytes.len());
        let keep = room.min(data.len());
        if keep < data.len() {
            self.truncated = true;
            stats.dropped_bytes += (data.len() - keep) as u64;
        }
        if keep > 0 {
            self.marks.push((self.bytes.len(), ts));
            self.bytes.extend_from_slice(&data[..keep]);
        }
    }
}

/// A UDP datagram's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Sent by the client.
    pub from_client: bool,
    /// Capture time, ns.
    pub timestamp_ns: i64,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A finished stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Reassembler-local id, increasing in order of the streams' starts.
    pub id: u64,
    /// The 5-tuple as the client sent it (`src` is the client).
    pub key: FlowKey,
    /// Every packet, in arrival order.
    pub packets: Vec<CapturedPacket>,
    /// First packet time, ns.
    pub first_ns: i64,
    /// Last packet time, ns.
    pub last_ns: i64,
    /// Why it ended.
    pub end: EndReason,
    /// TCP payload from the client, in order.
    pub client_data: Payload,
    /// TCP payload from the server, in order.
    pub server_data: Payload,
    /// UDP payloads, in arrival order.
    pub datagrams: Vec<Datagram>,
    /// Counters.
    pub stats: ReassemblyStats,
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
struct Half {
    /// The SYN's sequence number, if one was seen.
    isn: Option<u32>,
    /// Next expected sequence number; `None` before the first segment.
    next: Option<u32>,
    /// Sequence number of payload offset 0.
    base: u32,
    /// Segments ahead of `next`, by offset from `base`.
    pending: BTreeMap<u32, (Vec<u8>, i64)>,
    fin: bool,
    out: Payload,
}

impl Half {
    fn segment(
        &mut self,
        tcp: &TcpInfo,
        payload: &[u8],
        ts: i64,
        config: &ReassemblyConfig,
        stats: &mut ReassemblyStats,
    ) {
        if tcp.syn {
            if self.next.is_none() || self.isn.is_none() {
                self.isn = Some(tcp.seq);
                self.next = Some(tcp.seq.wrapping_add(1));
                self.base = tcp.seq.wrapping_add(1);
            } else if self.isn == Some(tcp.seq) && payload.is_empty() {
                stats.retransmitted += 1;
            }
        }
        let start = if tcp.syn {
            tcp.seq.wrapping_add(1)
        } else {
            tcp.seq
        };
        if self.next.is_none() {
            self.next = Some(start);
            self.base = start;
        }
        if tcp.fin {
            self.fin = true;
        }
        if payload.is_empty() {
            return;
        }
        let next = self.next.unwrap_or(start);
        // Signed distance in sequence space (RFC 793 modular comparison).
        let ahead = start.wrapping_sub(next) as i32;
        if ahead > 0 {
            stats.out_of_order += 1;
            if self.pending.len() >= config.max_out_of_order {
                stats.dropped_bytes += payload.len() as u64;
                return;
            }
            let offset = start.wrapping_sub(self.base);
            let slot = self
                .pending
                .entry(offset)
                .or_insert_with(|| (Vec::new(), ts));
            if payload.len() > slot.0.len() {
                *slot = (payload.to_vec(), ts);
            }
            return;
        }
        let overlap = ahead.unsigned_abs() as usize;
        if overlap >= payload.len() {
            stats.retransmitted += 1;
            return;
        }
        self.accept(&payload[overlap..], ts, config, stats);
        self.drain(config, stats);
    }

    fn accept(&mut self, data: &[u8], ts: i64, config: &ReassemblyConfig, s: &mut ReassemblyStats) {
        self.out.append(data, ts, config.max_payload_bytes, s);
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.next = self.next.map(|n| n.wrapping_add(len));
    }

    /// Moves buffered segments that now start at or before `next`.
    fn drain(&mut self, config: &ReassemblyConfig, stats: &mut ReassemblyStats) {
        while let Some(next) = self.next {
            let Some((&offset, _)) = self.pending.first_key_value() else {
                return;
            };
            let seq = self.base.wrapping_add(offset);
            let ahead = seq.wrapping_sub(next) as i32;
            if ahead > 0 {
                return;
            }
            let Some((data, ts)) = self.pending.remove(&offset) else {
                return;
            };
            let overlap = ahead.unsigned_abs() as usize;
            if overlap < data.len() {
                self.accept(&data[overlap..], ts, config, stats);
            } else {
                stats.retransmitted += 1;
            }
        }
    }

    /// Skips the holes that are still open, counting each as a gap.
    fn close(&mut self, config: &ReassemblyConfig, stats: &mut ReassemblyStats) {
        while let Some((&offset, _)) = self.pending.first_key_value() {
            stats.gaps += 1;
            self.out.gaps.push(self.out.bytes.len());
            self.next = Some(self.base.wrapping_add(offset));
            self.drain(config, stats);
        }
    }
}

#[derive(Debug)]
enum State {
    Open,
    /// Both FINs or an RST seen at this time.
    Closing(EndReason),
}

#[derive(Debug)]
struct Conn {
    id: u64,
    key: FlowKey,
    packets: Vec<CapturedPacket>,
    first_ns: i64,
    last_ns: i64,
    client: Half,
    server: Half,
    datagrams: Vec<Datagram>,
    datagram_bytes: usize,
    state: State,
    stats: ReassemblyStats,
}

impl Conn {
    fn new(id: u64, key: FlowKey, ts: i64) -> Conn {
        Conn {
            id,
            key,
            packets: Vec::new(),
            first_ns: ts,
            last_ns: ts,
            client: Half::default(),
            server: Half::default(),
            datagrams: Vec::new(),
            datagram_bytes: 0,
            state: State::Open,
            stats: ReassemblyStats::default(),
        }
    }

    fn finish(mut self, end: EndReason, config: &ReassemblyConfig) -> Stream {
        self.client.close(config, &mut self.stats);
        self.server.close(config, &mut self.stats);
        Stream {
            id: self.id,
            key: self.key,
            packets: self.packets,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            end,
            client_data: self.client.out,
            server_data: self.server.out,
            datagrams: self.datagrams,
            stats: self.stats,
        }
    }

    fn idle_limit(&self, config: &ReassemblyConfig) -> i64 {
        match (&self.state, self.key.protocol) {
            (State::Closing(_), _) => config.close_linger_ns,
            (State::Open, Transport::Tcp) => config.tcp_idle_ns,
            (State::Open, Transport::Udp) => config.udp_idle_ns,
        }
    }
}

/// Counters of the reassembler as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblerStats {
    /// Streams ended early for [`ReassemblyConfig::max_streams`].
    pub evicted: u64,
    /// Streams ended for [`ReassemblyConfig::max_packets_per_stream`].
    pub limited: u64,
    /// IP datagrams put together from fragments.
    pub defragmented: u64,
    /// Fragments of datagrams that never completed (timeout, bound).
    pub fragments_dropped: u64,
}

/// Fragmented datagrams pending at most, and for how long.
const MAX_FRAGMENTED: usize = 4096;
const FRAGMENT_TIMEOUT_NS: i64 = 30_000_000_000;

/// Packets in, finished [`Stream`]s out.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    conns: HashMap<FlowKey, Conn>,
    next_id: u64,
    stats: ReassemblerStats,
    defrag: Defragmenter,
    /// The frames of each pending datagram, written to its stream's slice
    /// once it completes.
    fragments: HashMap<FragmentKey, Vec<CapturedPacket>>,
    /// `defrag.dropped` when `fragments` was last pruned.
    defrag_dropped: u64,
}

/// Which side is the client when no SYN says: the first sender, unless it
/// sent from a well-known port (< 1024) to a higher one.
fn client_first(packet: &Packet<'_>) -> FlowKey {
    let f = packet.flow;
    match packet.tcp {
        Some(t) if t.syn && !t.ack => f,
        Some(t) if t.syn && t.ack => f.reversed(),
        _ if f.src_port < 1024 && f.dst_port > f.src_port => f.reversed(),
        _ => f,
    }
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(config: ReassemblyConfig) -> Reassembler {
        Reassembler {
            config,
            conns: HashMap::new(),
            next_id: 1,
            stats: ReassemblerStats::default(),
            defrag: Defragmenter::new(MAX_FRAGMENTED, FRAGMENT_TIMEOUT_NS),
            fragments: HashMap::new(),
            defrag_dropped: 0,
        }
    }

    /// Counters.
    pub fn stats(&self) -> ReassemblerStats {
        self.stats
    }

    /// Open streams.
    pub fn open_streams(&self) -> usize {
        self.conns.len()
    }

    /// Adds one frame; returns the id of the stream it joined, or `None`
    /// for an IP fragment whose datagram is not complete yet (it joins the
    /// stream with the fragment that completes it). Streams that end
    /// because of it (5-tuple reuse, bounds) are pushed to `ended`.
    ///
    /// # Errors
    ///
    /// The [`PacketError`] of a frame that is not TCP/UDP over IP (or a
    /// fragment of one); it is not kept.
    pub fn push(
        &mut self,
        frame: CapturedPacket,
        ended: &mut Vec<Stream>,
    ) -> Result<Option<u64>, PacketError> {
        let ts = frame.timestamp_ns;
        let key = match tapwire_packet::parse(frame.link_type, &frame.data) {
            Ok(packet) => self.take(&packet, ts, ended),
            Err(PacketError::Fragment) => return self.fragment(frame, ended),
            Err(err) => return Err(err),
        };
        let conn = self.conns.get_mut(&key).expect("the stream take opened");
        conn.packets.push(frame);
        Ok(Some(conn.id))
    }

    /// A fragment: held until its datagram completes, then the datagram
    /// goes to its stream with every fragment's frame.
    fn fragment(
        &mut self,
        frame: CapturedPacket,
        ended: &mut Vec<Stream>,
    ) -> Result<Option<u64>, PacketError> {
        let ts = frame.timestamp_ns;
        let step = self.defrag.fragment(frame.link_type, &frame.data, ts);
        let completed = match &step {
            Ok(Fragment::Complete(d)) => self.fragments.remove(&d.key),
            _ => None,
        };
        // Datagrams the defragmenter gave up on take their frames along
        // (looked for only when it gave some up).
        if self.defrag.dropped != self.defrag_dropped {
            self.defrag_dropped = self.defrag.dropped;
            let defrag = &self.defrag;
            let dropped: usize = self
                .fragments
                .iter()
                .filter(|(k, _)| !defrag.is_pending(k))
                .map(|(_, f)| f.len())
                .sum();
            self.fragments.retain(|k, _| defrag.is_pending(k));
            self.stats.fragments_dropped += dropped as u64;
        }
        match step? {
            Fragment::Pending(key) => {
                self.fragments.entry(key).or_default().push(frame);
                Ok(None)
            }
            Fragment::Complete(datagram) => {
                let mut frames = completed.unwrap_or_default();
                frames.push(frame);
                let k = datagram.key;
                let packet =
                    tapwire_packet::parse_transport(k.src, k.dst, k.protocol, &datagram.transport)?;
                self.stats.defragmented += 1;
                let key = self.take(&packet, ts, ended);
                let conn = self.conns.get_mut(&key).expect("the stream take opened");
                conn.packets.extend(frames);
                Ok(Some(conn.id))
            }
        }
    }

    /// Adds a decoded packet to its stream (opening it when new); returns
    /// the stream's key. The caller keeps the frame(s).
    fn take(&mut self, packet: &Packet<'_>, ts: i64, ended: &mut Vec<Stream>) -> FlowKey {
        let key = packet.flow.canonical();
        let config = self.config;
        // A new SYN on a closing connection, or with a different initial
        // sequence number, is a new connection reusing the 5-tuple.
        if let (Some(tcp), Some(conn)) = (packet.tcp, self.conns.get(&key))
            && tcp.syn
            && !tcp.ack
            && packet.flow == conn.key
            && (matches!(conn.state, State::Closing(_))
                || conn.client.isn.is_some_and(|isn| isn != tcp.seq))
            && let Some(old) = self.conns.remove(&key)
        {
            let end = match old.state {
                State::Closing(reason) => reason,
                State::Open => EndReason::Reused,
            };
            ended.push(old.finish(end, &config));
        }
        let orientation = match self.conns.get(&key) {
            Some(c) if c.packets.len() >= config.max_packets_per_stream => {
                let keep = c.key;
                if let Some(old) = self.conns.remove(&key) {
                    self.stats.limited += 1;
                    ended.push(old.finish(EndReason::Limit, &config));
                }
                Some(keep)
            }
            _ => None,
        };
        if !self.conns.contains_key(&key) && self.conns.len() >= config.max_streams {
            self.evict(ended);
        }
        let next_id = &mut self.next_id;
        let conn = self.conns.entry(key).or_insert_with(|| {
            let id = *next_id;
            *next_id += 1;
            let client = orientation.unwrap_or_else(|| client_first(packet));
            Conn::new(id, client, ts)
        });
        conn.last_ns = conn.last_ns.max(ts);
        conn.first_ns = conn.first_ns.min(ts);
        let from_client = packet.flow == conn.key;
        match packet.tcp {
            Some(tcp) => {
                let half = if from_client {
                    &mut conn.client
                } else {
                    &mut conn.server
                };
                half.segment(&tcp, packet.payload, ts, &config, &mut conn.stats);
                if tcp.rst {
                    conn.state = State::Closing(EndReason::Rst);
                } else if conn.client.fin
                    && conn.server.fin
                    && !matches!(conn.state, State::Closing(_))
                {
                    conn.state = State::Closing(EndReason::Fin);
                }
            }
            None => {
                let room = config.max_payload_bytes.saturating_sub(conn.datagram_bytes);
                let keep = room.min(packet.payload.len());
                conn.stats.dropped_bytes += (packet.payload.len() - keep) as u64;
                conn.datagram_bytes += keep;
                conn.datagrams.push(Datagram {
                    from_client,
                    timestamp_ns: ts,
                    payload: packet.payload[..keep].to_vec(),
                });
            }
        }
        key
    }

    /// Ends streams idle at `now_ns` (closed ones after the linger).
    pub fn expire(&mut self, now_ns: i64, ended: &mut Vec<Stream>) {
        let config = self.config;
        let due: Vec<FlowKey> = self
            .conns
            .iter()
            .filter(|(_, c)| now_ns.saturating_sub(c.last_ns) >= c.idle_limit(&config))
            .map(|(k, _)| *k)
            .collect();
        let mut out: Vec<Stream> = due
            .into_iter()
            .filter_map(|k| self.conns.remove(&k))
            .map(|c| {
                let end = match c.state {
                    State::Closing(reason) => reason,
                    State::Open => EndReason::Idle,
                };
                c.finish(end, &config)
            })
            .collect();
        out.sort_by_key(|s| s.id);
        ended.extend(out);
    }

    /// Ends every stream (shutdown, end of input).
    pub fn flush(&mut self, ended: &mut Vec<Stream>) {
        let config = self.config;
        let mut out: Vec<Stream> = self
            .conns
            .drain()
            .map(|(_, c)| {
                let end = match c.state {
                    State::Closing(reason) => reason,
                    State::Open => EndReason::Flush,
                };
                c.finish(end, &config)
            })
            .collect();
        out.sort_by_key(|s| s.id);
        ended.extend(out);
    }

    fn evict(&mut self, ended: &mut Vec<Stream>) {
        let oldest = self
            .conns
            .iter()
            .min_by_key(|(_, c)| (c.last_ns, c.id))
            .map(|(k, _)| *k);
        if let Some(conn) = oldest.and_then(|k| self.conns.remove(&k)) {
            self.stats.evicted += 1;
            ended.push(conn.finish(EndReason::Evicted, &self.config));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_packet::LINKTYPE_RAW;

    const C: [u8; 4] = [10, 0, 0, 1];
    const S: [u8; 4] = [10, 0, 0, 2];

    /// A raw-IP TCP frame; `flags` from "S", "A", "F", "R", "P".
    fn tcp(from_client: bool, seq: u32, ack: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sp, dp) = if from_client {
            (C, S, 40000, 80)
        } else {
            (S, C, 80, 40000)
        };
        let mut b = etherparse::PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, seq, 1000);
        if flags.contains('S') {
            b = b.syn();
        }
        if flags.contains('A') {
            b = b.ack(ack);
        }
        if flags.contains('F') {
            b = b.fin();
        }
        if flags.contains('R') {
            b = b.rst();
        }
        if flags.contains('P') {
            b = b.psh();
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn feed(r: &mut Reassembler, frames: &[(i64, Vec<u8>)]) -> Vec<Stream> {
        let mut ended = Vec::new();
        for (ts, data) in frames {
            let frame = CapturedPacket {
                timestamp_ns: *ts,
                link_type: LINKTYPE_RAW,
                original_len: data.len() as u32,
                data: data.clone(),
            };
            r.push(frame, &mut ended).unwrap();
        }
        ended
    }

    /// Handshake, the client sends "hello world" in 3 segments, the server
    /// answers "ok", both close. Client ISN 100, server ISN 500.
    fn conversation() -> Vec<(i64, Vec<u8>)> {
        vec![
            (1, tcp(true, 100, 0, "S", b"")),
            (2, tcp(false, 500, 101, "SA", b"")),
            (3, tcp(true, 101, 501, "A", b"")),
            (4, tcp(true, 101, 501, "AP", b"hell")),
            (5, tcp(true, 105, 501, "AP", b"o wo")),
            (6, tcp(true, 109, 501, "AP", b"rld")),
            (7, tcp(false, 501, 112, "AP", b"ok")),
            (8, tcp(true, 112, 503, "AF", b"")),
            (9, tcp(false, 503, 113, "AF", b"")),
            (10, tcp(true, 113, 504, "A", b"")),
        ]
    }

    fn run(frames: &[(i64, Vec<u8>)]) -> Stream {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut ended = feed(&mut r, frames);
        assert!(ended.is_empty(), "nothing ends before the linger");
        r.expire(10 + ReassemblyConfig::default().close_linger_ns, &mut ended);
        assert_eq!(ended.len(), 1);
        ended.pop().unwrap()
    }

    #[test]
    fn in_order_conversation() {
        let frames = conversation();
        let s = run(&frames);
        assert_eq!(s.end, EndReason::Fin);
        assert_eq!(s.client_data.bytes, b"hello world");
        assert_eq!(s.server_data.bytes, b"ok");
        assert_eq!(s.packets.len(), frames.len(), "every packet is kept");
        assert_eq!(s.key.src_port, 40000, "the SYN's sender is the client");
        assert_eq!((s.first_ns, s.last_ns), (1, 10));
        assert_eq!(s.stats, ReassemblyStats::default());
        assert_eq!(s.client_data.time_at(0), Some(4));
        assert_eq!(s.client_data.time_at(5), Some(5));
        assert_eq!(s.client_data.time_at(10), Some(6));
        for (kept, (ts, data)) in s.packets.iter().zip(&frames) {
            assert_eq!((&kept.timestamp_ns, &kept.data), (ts, data));
        }
    }

    #[test]
    fn out_of_order_segments_are_put_back_in_order() {
        let mut frames = conversation();
        // "o wo" and "rld" both before "hell".
        frames[3..6].rotate_left(1);
        let s = run(&frames);
        assert_eq!(s.client_data.bytes, b"hello world");
        assert_eq!(s.stats.out_of_order, 2);
        assert_eq!(s.stats.gaps, 0);
        assert_eq!(s.packets.len(), frames.len());
    }

    #[test]
    fn retransmissions_and_overlaps_are_skipped() {
        let mut frames = conversation();
        // The whole "hell" again, then a segment overlapping "o wo" + "rld".
        frames.insert(4, (4, tcp(true, 101, 501, "AP", b"hell")));
        frames.insert(6, (5, tcp(true, 107, 501, "AP", b"worl")));
        // The server's SYN-ACK retransmitted.
        frames.insert(2, (2, tcp(false, 500, 101, "SA", b"")));
        let s = run(&frames);
        assert_eq!(s.client_data.bytes, b"hello world");
        assert_eq!(s.server_data.bytes, b"ok");
        assert_eq!(s.stats.retransmitted, 2, "{:?}", s.stats);
        assert_eq!(s.packets.len(), frames.len());
    }

    #[test]
    fn a_hole_never_filled_is_a_gap() {
        let mut frames = conversation();
        frames.remove(4); // "o wo" lost
        let s = run(&frames);
        assert_eq!(s.client_data.bytes, b"hellrld");
        assert_eq!(s.client_data.gaps, vec![4]);
        assert_eq!(s.stats.gaps, 1);
    }

    #[test]
    fn rst_ends_and_a_new_syn_reuses_the_tuple() {
        let mut frames = conversation()[..7].to_vec();
        frames.push((8, tcp(false, 503, 112, "R", b"")));
        // Same ports again, new ISN.
        frames.push((9, tcp(true, 9000, 0, "S", b"")));
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let ended = feed(&mut r, &frames);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].end, EndReason::Rst);
        assert_eq!(ended[0].packets.len(), 8);
        let mut rest = Vec::new();
        r.flush(&mut rest);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].end, EndReason::Flush);
        assert_eq!(rest[0].packets.len(), 1);
        assert!(rest[0].id > ended[0].id);
    }

    #[test]
    fn idle_and_midstream_orientation() {
        // No handshake: the server (port 80) speaks first.
        let frames = vec![
            (1, tcp(false, 501, 112, "AP", b"ok")),
            (2, tcp(true, 112, 503, "AP", b"more")),
        ];
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut ended = feed(&mut r, &frames);
        r.expire(2 + ReassemblyConfig::default().tcp_idle_ns - 1, &mut ended);
        assert!(ended.is_empty());
        r.expire(2 + ReassemblyConfig::default().tcp_idle_ns, &mut ended);
        let s = &ended[0];
        assert_eq!(s.end, EndReason::Idle);
        assert_eq!(s.key.dst_port, 80, "the well-known port is the server");
        assert_eq!(s.client_data.bytes, b"more");
        assert_eq!(s.server_data.bytes, b"ok");
    }

    #[test]
    fn bounds_are_counted() {
        let config = ReassemblyConfig {
            max_payload_bytes: 6,
            max_packets_per_stream: 4,
            max_streams: 1,
            ..ReassemblyConfig::default()
        };
        let mut r = Reassembler::new(config);
        let mut ended = feed(&mut r, &conversation()[..6]);
        assert_eq!(ended.len(), 1, "the fifth packet starts a new stream");
        assert_eq!(ended[0].end, EndReason::Limit);
        assert_eq!(ended[0].packets.len(), 4);
        assert_eq!(r.stats().limited, 1);
        // The continuation keeps the orientation.
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ipv4(C, S, 64)
            .udp(5000, 53)
            .write(&mut udp, b"0123456789")
            .unwrap();
        ended.extend(feed(&mut r, &[(7, udp)]));
        assert_eq!(ended.len(), 2, "max_streams evicts the TCP stream");
        assert_eq!(ended[1].end, EndReason::Evicted);
        assert_eq!(ended[1].key.src_port, 40000);
        assert_eq!(ended[1].client_data.bytes, b"o worl");
        assert_eq!(ended[1].stats.dropped_bytes, 1);
        let mut rest = Vec::new();
        r.flush(&mut rest);
        assert_eq!(rest[0].datagrams[0].payload, b"012345");
        assert_eq!(rest[0].stats.dropped_bytes, 4);
    }
}
