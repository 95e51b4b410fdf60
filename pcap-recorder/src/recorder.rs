//! [`Recorder`]: packets in, KFL-matched streams out as finished PCAP slices.
//!
//! Each packet record is decoded (`tapwire_packet`), reassembled into its
//! stream, and kept. When a stream ends it is dissected, its endpoints are
//! named with the pod lookup at the stream's time, and every recording query
//! is evaluated on its entries. A stream that matches at least one query
//! goes whole into the open slice of its link type; one that matches none is
//! dropped and counted. Slices close by size, by age ([`Recorder::tick`]),
//! and on [`Recorder::flush`]; [`Recorder::take_finished`] hands them over.
//!
//! Undecodable packets (not IP, not TCP/UDP, fragments, truncated) are
//! counted by reason and not recorded.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use tapwire_kfl::Filter;
use tapwire_packet::{PacketError, Transport};
use tapwire_schemas::events::PacketRecord;

use crate::dissect::dissect;
use crate::entry::stream_matches;
use crate::index::{
    EndpointRecord, NamedQuery, NodeRef, ReassemblyStats, StreamRecord, TransportName,
};
use crate::pods::PodLookup;
use crate::reassembly::{CapturedPacket, Reassembler, ReassemblyConfig, Stream};
use crate::slice::{FinishedSlice, SliceBuilder, SliceConfig, SliceError};

/// Reassembly and slice settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderConfig {
    /// Stream bounds and timeouts.
    pub reassembly: ReassemblyConfig,
    /// Slice rotation.
    pub slice: SliceConfig,
}

/// A recorder that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// No query: recording is off.
    #[error("no recording query (set RECORDING_KFL or name queries in the configuration)")]
    NoQuery,
    /// A query does not parse or compile.
    #[error("recording query {name:?} is not valid KFL")]
    Query {
        /// The query's name.
        name: String,
        /// The cause.
        #[source]
        source: tapwire_kfl::Error,
    },
    /// A slice could not be written.
    #[error(transparent)]
    Slice(#[from] SliceError),
}

/// What the recorder did, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Packet records received.
    pub packets: u64,
    /// Records that did not decode to TCP/UDP, by reason
    /// (`link_type`, `not_ip`, `transport`, `fragment`, `truncated`,
    /// `malformed`).
    pub undecodable: BTreeMap<&'static str, u64>,
    /// Streams that ended.
    pub streams: u64,
    /// Streams that matched a query and were recorded.
    pub streams_recorded: u64,
    /// Streams that matched no query and were dropped.
    pub streams_dropped: u64,
    /// Packets written to slices.
    pub packets_recorded: u64,
    /// Packets of dropped streams.
    pub packets_dropped: u64,
    /// Slices finished.
    pub slices: u64,
    /// Streams ended early for the open-stream bound.
    pub streams_evicted: u64,
    /// IP datagrams put together from fragments.
    pub defragmented: u64,
    /// Fragments dropped: their datagram never completed (timeout, bound).
    pub fragments_dropped: u64,
    /// Reassembly counters summed over all ended streams.
    pub reassembly: ReassemblyStats,
}

impl RecorderStats {
    /// All undecodable records.
    pub fn undecodable_total(&self) -> u64 {
        self.undecodable.values().sum()
    }
}

fn reason(err: &PacketError) -> &'static str {
    match err {
        PacketError::UnsupportedLinkType(_) => "link_type",
        PacketError::NotIp => "not_ip",
        PacketError::UnsupportedTransport(_) => "transport",
        PacketError::Fragment => "fragment",
        PacketError::Truncated { .. } => "truncated",
        PacketError::Malformed(_) => "malformed",
    }
}

/// Packets in, finished slices out. See the module documentation.
pub struct Recorder {
    queries: Vec<(NamedQuery, Filter)>,
    config: RecorderConfig,
    reassembler: Reassembler,
    /// Open slice per link type.
    open: BTreeMap<u32, SliceBuilder>,
    finished: Vec<FinishedSlice>,
    /// Node of each open stream's first packet, by stream id.
    nodes: BTreeMap<u64, NodeRef>,
    next_seq: u64,
    now_ns: i64,
    stats: RecorderStats,
    ended: Vec<Stream>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field(
                "queries",
                &self.queries.iter().map(|(q, _)| q).collect::<Vec<_>>(),
            )
            .field("open_streams", &self.reassembler.open_streams())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder for `queries` (compiled here, once).
    ///
    /// # Errors
    ///
    /// [`RecorderError::NoQuery`] for an empty list, [`RecorderError::Query`]
    /// for a query that is not valid KFL.
    pub fn new(
        config: RecorderConfig,
        queries: Vec<NamedQuery>,
    ) -> Result<Recorder, RecorderError> {
        if queries.is_empty() {
            return Err(RecorderError::NoQuery);
        }
        let mut recorder = Recorder::idle(config);
        recorder.set_queries(queries)?;
        Ok(recorder)
    }

    /// A recorder with no query: recording is off (streams end unrecorded)
    /// until [`Recorder::set_queries`] gives it some.
    pub fn idle(config: RecorderConfig) -> Recorder {
        Recorder {
            queries: Vec::new(),
            config,
            reassembler: Reassembler::new(config.reassembly),
            open: BTreeMap::new(),
            finished: Vec::new(),
            nodes: BTreeMap::new(),
            next_seq: 1,
            now_ns: i64::MIN,
            stats: RecorderStats::default(),
            ended: Vec::new(),
        }
    }

    /// Replaces the queries (compiled here): they decide every stream that
    /// ends from now on. An empty list turns recording off. An invalid query
    /// is an error and leaves the previous queries in force.
    ///
    /// # Errors
    ///
    /// [`RecorderError::Query`] naming the query that is not valid KFL.
    pub fn set_queries(&mut self, queries: Vec<NamedQuery>) -> Result<(), RecorderError> {
        self.queries = queries
            .into_iter()
            .map(|q| match crate::entry::compile(&q.query) {
                Ok(f) => Ok((q, f)),
                Err(source) => Err(RecorderError::Query {
                    name: q.name.clone(),
                    source,
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(())
    }

    /// The queries in force.
    pub fn queries(&self) -> impl Iterator<Item = &NamedQuery> {
        self.queries.iter().map(|(q, _)| q)
    }

    /// Counters so far.
    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    /// Finished slices not yet taken.
    pub fn take_finished(&mut self) -> Vec<FinishedSlice> {
        std::mem::take(&mut self.finished)
    }

    /// Adds one packet record. Streams it ends (and those idle at its time)
    /// are evaluated; slices that fill up are finished.
    ///
    /// # Errors
    ///
    /// Only [`RecorderError::Slice`] when a slice cannot be written.
    pub fn push(
        &mut self,
        record: PacketRecord,
        pods: &dyn PodLookup,
    ) -> Result<(), RecorderError> {
        self.stats.packets += 1;
        let ts = record.header.timestamp_ns;
        let frame = CapturedPacket {
            timestamp_ns: ts,
            link_type: record.link_type,
            original_len: record.original_len,
            data: record.data,
        };
        match self.reassembler.push(frame, &mut self.ended) {
            Err(err) => *self.stats.undecodable.entry(reason(&err)).or_default() += 1,
            // A fragment held until its datagram completes.
            Ok(None) => {}
            Ok(Some(id)) => {
                if !self.nodes.contains_key(&id) && !record.header.node.is_empty() {
                    self.nodes.insert(
                        id,
                        NodeRef {
                            name: record.header.node,
                            ip: record.header.node_ip.map(|ip| ip.0),
                        },
                    );
                }
            }
        }
        // Expiry scans every open stream: do it at most once per 100 ms of
        // capture time.
        if ts > self.now_ns {
            let due = self.now_ns == i64::MIN || ts - self.now_ns >= 100_000_000;
            if due {
                self.now_ns = ts;
                self.reassembler.expire(ts, &mut self.ended);
                self.process_ended(pods)?;
                self.close_old(ts, pods)?;
            }
        }
        self.process_ended(pods)?;
        Ok(())
    }

    /// Ends streams idle at `now_ns` and closes slices older than the
    /// configured age. Call it periodically with the current capture time
    /// (or the wall clock when packets stop arriving).
    ///
    /// # Errors
    ///
    /// [`RecorderError::Slice`] when a slice cannot be written.
    pub fn tick(&mut self, now_ns: i64, pods: &dyn PodLookup) -> Result<(), RecorderError> {
        self.now_ns = self.now_ns.max(now_ns);
        self.reassembler.expire(now_ns, &mut self.ended);
        self.process_ended(pods)?;
        self.close_old(now_ns, pods)
    }

    /// Closes the slices opened `max_age_ns` or longer before `now_ns`.
    fn close_old(&mut self, now_ns: i64, pods: &dyn PodLookup) -> Result<(), RecorderError> {
        let old: Vec<u32> = self
            .open
            .iter()
            .filter(|(_, s)| now_ns.saturating_sub(s.opened_ns()) >= self.config.slice.max_age_ns)
            .map(|(lt, _)| *lt)
            .collect();
        for lt in old {
            self.close(lt, pods)?;
        }
        Ok(())
    }

    /// Ends every stream and closes every slice (shutdown, end of input).
    ///
    /// # Errors
    ///
    /// [`RecorderError::Slice`] when a slice cannot be written.
    pub fn flush(&mut self, pods: &dyn PodLookup) -> Result<(), RecorderError> {
        self.reassembler.flush(&mut self.ended);
        self.process_ended(pods)?;
        let all: Vec<u32> = self.open.keys().copied().collect();
        for lt in all {
            self.close(lt, pods)?;
        }
        Ok(())
    }

    fn close(&mut self, link_type: u32, pods: &dyn PodLookup) -> Result<(), RecorderError> {
        if let Some(slice) = self.open.remove(&link_type) {
            if slice.is_empty() {
                return Ok(());
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let queries: Vec<NamedQuery> = self.queries.iter().map(|(q, _)| q.clone()).collect();
            self.finished.push(slice.finish(seq, &queries, pods)?);
            self.stats.slices += 1;
        }
        Ok(())
    }

    fn process_ended(&mut self, pods: &dyn PodLookup) -> Result<(), RecorderError> {
        let r = self.reassembler.stats();
        self.stats.streams_evicted = r.evicted;
        self.stats.defragmented = r.defragmented;
        self.stats.fragments_dropped = r.fragments_dropped;
        let ended = std::mem::take(&mut self.ended);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        for stream in ended {
            self.stats.streams += 1;
            let s = &mut self.stats.reassembly;
            s.gaps += stream.stats.gaps;
            s.out_of_order += stream.stats.out_of_order;
            s.retransmitted += stream.stats.retransmitted;
            s.dropped_bytes += stream.stats.dropped_bytes;
            s.dropped_packets += stream.stats.dropped_packets;
            let node = self.nodes.remove(&stream.id);
            let (mut record, packets) = stream_record(stream, node, pods);
            record.matched = self
                .queries
                .iter()
                .filter(|(_, f)| stream_matches(f, &record, now_ms))
                .map(|(q, _)| q.name.clone())
                .collect();
            if record.matched.is_empty() {
                self.stats.streams_dropped += 1;
                self.stats.packets_dropped += packets.len() as u64;
                continue;
            }
            self.stats.streams_recorded += 1;
            self.stats.packets_recorded += packets.len() as u64;
            self.add(record, packets, pods)?;
        }
        Ok(())
    }

    /// Puts a matched stream into the slices of its packets' link types.
    fn add(
        &mut self,
        record: StreamRecord,
        packets: Vec<CapturedPacket>,
        pods: &dyn PodLookup,
    ) -> Result<(), RecorderError> {
        let mut by_link: BTreeMap<u32, Vec<CapturedPacket>> = BTreeMap::new();
        for p in packets {
            by_link.entry(p.link_type).or_default().push(p);
        }
        for (lt, packets) in by_link {
            let size = SliceBuilder::size_of(&packets);
            let full = self
                .open
                .get(&lt)
                .is_some_and(|s| !s.is_empty() && s.size() + size > self.config.slice.max_bytes);
            if full {
                self.close(lt, pods)?;
            }
            let now = self.now_ns.max(record.first_ns);
            let slice = self
                .open
                .entry(lt)
                .or_insert_with(|| SliceBuilder::new(lt, now));
            slice.add(record.clone(), packets);
            if slice.size() >= self.config.slice.max_bytes {
                self.close(lt, pods)?;
            }
        }
        Ok(())
    }
}

/// The index record of a finished stream (before evaluation and slicing),
/// and its packets.
pub fn stream_record(
    stream: Stream,
    node: Option<NodeRef>,
    pods: &dyn PodLookup,
) -> (StreamRecord, Vec<CapturedPacket>) {
    let dissection = dissect(&stream);
    let key = if dissection.swapped {
        stream.key.reversed()
    } else {
        stream.key
    };
    let at = stream.first_ns;
    let summary = dissection
        .exchanges
        .first()
        .map(|e| {
            let mut s = e.summary();
            if dissection.exchanges.len() > 1 {
                s.push_str(&format!(" (+{})", dissection.exchanges.len() - 1));
            }
            s
        })
        .or_else(|| dissection.tls.as_ref().map(|t| t.summary()))
        .or_else(|| dissection.http2.then(|| "HTTP/2 (h2c)".to_owned()))
        .unwrap_or_default();
    let protocol = if dissection.http2 {
        Some(crate::entry::HTTP2_ABBR.to_owned())
    } else {
        dissection
            .exchanges
            .first()
            .map(|e| match e {
                crate::index::Exchange::Http(_) => "HTTP".to_owned(),
                crate::index::Exchange::Dns(_) => "DNS".to_owned(),
            })
            .or_else(|| dissection.tls.as_ref().map(|_| "TLS".to_owned()))
    };
    let record = StreamRecord {
        id: stream.id,
        transport: match key.protocol {
            Transport::Tcp => TransportName::Tcp,
            Transport::Udp => TransportName::Udp,
        },
        client: EndpointRecord {
            ip: key.src_ip,
            port: key.src_port,
            pod: pods.pod_at(key.src_ip, at),
        },
        server: EndpointRecord {
            ip: key.dst_ip,
            port: key.dst_port,
            pod: pods.pod_at(key.dst_ip, at),
        },
        first_ns: stream.first_ns,
        last_ns: stream.last_ns,
        packets: stream.packets.len() as u64,
        bytes: stream
            .packets
            .iter()
            .map(|p| u64::from(p.original_len))
            .sum(),
        end: stream.end,
        protocol,
        summary,
        matched: Vec::new(),
        frames: Vec::new(),
        exchanges: dissection.exchanges,
        tls: dissection.tls,
        reassembly: stream.stats,
        node,
    };
    (record, stream.packets)
}
