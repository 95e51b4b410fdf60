//! PCAP slices: the matched streams' original packets, one classic PCAP per
//! link type (nanosecond magic, snap length 262144), and the [`SliceIndex`]
//! beside it.
//!
//! A [`SliceBuilder`] collects whole streams; [`SliceBuilder::finish`] sorts
//! their packets by capture time, writes them with `pcap-file` (original
//! bytes and original lengths), and numbers every stream's frames in the
//! index. The recorder rotates slices by size and age ([`SliceConfig`]).
//!
//! Names: `<unix-seconds of the first packet>-<sequence>-lt<link type>.pcap`
//! and the index `<same stem>.index.json` ([`index_name`]).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

use crate::index::{INDEX_FORMAT, NamedQuery, NodeRef, SliceIndex, StreamRecord};
use crate::pods::PodLookup;
use crate::reassembly::CapturedPacket;

/// Largest record Wireshark accepts; longer captures are cut to it (the
/// original length is kept).
pub const SNAPLEN: u32 = 262_144;

/// Bytes of the classic PCAP global header and of each record header.
const GLOBAL_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;

/// When slices rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceConfig {
    /// A slice closes once it holds this many bytes (PCAP size). A stream is
    /// never split: a slice may exceed this by one stream.
    pub max_bytes: u64,
    /// A slice closes this long after its first stream was added (capture
    /// time as given to the recorder).
    pub max_age_ns: i64,
}

impl Default for SliceConfig {
    fn default() -> Self {
        SliceConfig {
            max_bytes: 64 << 20,
            max_age_ns: 300_000_000_000,
        }
    }
}

/// Something went wrong writing a slice.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// `pcap-file` refused a record or the header.
    #[error("writing PCAP slice {slice}")]
    Pcap {
        /// The slice's name.
        slice: String,
        /// The cause.
        #[source]
        source: pcap_file::PcapError,
    },
}

/// A finished slice: the PCAP bytes and their index.
#[derive(Debug, Clone)]
pub struct FinishedSlice {
    /// File name of the PCAP (also `index.slice`).
    pub name: String,
    /// The PCAP file's bytes.
    pub pcap: Vec<u8>,
    /// The index.
    pub index: SliceIndex,
}

impl FinishedSlice {
    /// The index's file name.
    pub fn index_name(&self) -> String {
        index_name(&self.name)
    }

    /// Writes `<name>` and its index into `dir`; returns both paths.
    ///
    /// # Errors
    ///
    /// I/O errors of writing the files.
    pub fn write_to_dir(
        &self,
        dir: &std::path::Path,
    ) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
        let pcap = dir.join(&self.name);
        let index = dir.join(self.index_name());
        std::fs::write(&pcap, &self.pcap)?;
        let json = self.index.to_json().map_err(std::io::Error::other)?;
        std::fs::write(&index, json)?;
        Ok((pcap, index))
    }
}

/// The index file name of slice `slice_name`: `x.pcap` -> `x.index.json`.
pub fn index_name(slice_name: &str) -> String {
    let stem = slice_name.strip_suffix(".pcap").unwrap_or(slice_name);
    format!("{stem}.index.json")
}

/// Collects streams for one slice.
#[derive(Debug)]
pub struct SliceBuilder {
    link_type: u32,
    opened_ns: i64,
    /// (packet, index into `streams`).
    packets: Vec<(CapturedPacket, usize)>,
    streams: Vec<StreamRecord>,
    size: u64,
}

impl SliceBuilder {
    /// An empty slice of `link_type`, opened at `now_ns`.
    pub fn new(link_type: u32, now_ns: i64) -> SliceBuilder {
        SliceBuilder {
            link_type,
            opened_ns: now_ns,
            packets: Vec::new(),
            streams: Vec::new(),
            size: GLOBAL_HEADER,
        }
    }

    /// The link type of every packet in it.
    pub fn link_type(&self) -> u32 {
        self.link_type
    }

    /// When it was opened.
    pub fn opened_ns(&self) -> i64 {
        self.opened_ns
    }

    /// PCAP bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether no stream was added.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// PCAP bytes `packets` would add.
    pub fn size_of(packets: &[CapturedPacket]) -> u64 {
        packets
            .iter()
            .map(|p| RECORD_HEADER + p.data.len().min(SNAPLEN as usize) as u64)
            .sum()
    }

    /// Adds a stream with its packets (all of this slice's link type). The
    /// record's `packets`, `bytes`, time range and `frames` are set from
    /// the packets.
    pub fn add(&mut self, mut record: StreamRecord, packets: Vec<CapturedPacket>) {
        let i = self.streams.len();
        record.packets = packets.len() as u64;
        record.bytes = packets.iter().map(|p| u64::from(p.original_len)).sum();
        if let (Some(first), Some(last)) = (
            packets.iter().map(|p| p.timestamp_ns).min(),
            packets.iter().map(|p| p.timestamp_ns).max(),
        ) {
            record.first_ns = first;
            record.last_ns = last;
        }
        record.frames.clear();
        self.size += Self::size_of(&packets);
        self.packets.extend(packets.into_iter().map(|p| (p, i)));
        self.streams.push(record);
    }

    /// Writes the PCAP and the index. `seq` numbers the slice in its
    /// recorder; `pods` gives the address history for the index.
    ///
    /// # Errors
    ///
    /// [`SliceError`] when a record cannot be written.
    pub fn finish(
        mut self,
        seq: u64,
        queries: &[NamedQuery],
        pods: &dyn PodLookup,
    ) -> Result<FinishedSlice, SliceError> {
        // Stable: packets of one stream with equal times keep their order.
        self.packets.sort_by_key(|(p, _)| p.timestamp_ns);
        let first_ns = self
            .packets
            .first()
            .map_or(self.opened_ns, |(p, _)| p.timestamp_ns);
        let last_ns = self
            .packets
            .last()
            .map_or(self.opened_ns, |(p, _)| p.timestamp_ns);
        let name = format!(
            "{}-{seq:06}-lt{}.pcap",
            first_ns.div_euclid(1_000_000_000),
            self.link_type
        );
        let pcap_err = |source| SliceError::Pcap {
            slice: name.clone(),
            source,
        };
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::from(self.link_type),
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
        };
        let capacity = usize::try_from(self.size).unwrap_or(0);
        let mut writer =
            PcapWriter::with_header(Vec::with_capacity(capacity), header).map_err(pcap_err)?;
        let mut bytes = 0u64;
        for (n, (p, stream)) in self.packets.iter().enumerate() {
            let ts = Duration::from_nanos(u64::try_from(p.timestamp_ns).unwrap_or(0));
            let data = &p.data[..p.data.len().min(SNAPLEN as usize)];
            let orig_len = p
                .original_len
                .max(u32::try_from(data.len()).unwrap_or(u32::MAX));
            writer
                .write_packet(&PcapPacket {
                    timestamp: ts,
                    orig_len,
                    data: Cow::Borrowed(data),
                })
                .map_err(pcap_err)?;
            bytes += u64::from(p.original_len);
            self.streams[*stream].frames.push(n as u64 + 1);
        }
        let ips: BTreeSet<IpAddr> = self
            .streams
            .iter()
            .flat_map(|s| [s.client.ip, s.server.ip])
            .collect();
        let pod_history = ips
            .into_iter()
            .flat_map(|ip| pods.history(ip, first_ns, last_ns))
            .collect();
        let node = common_node(&self.streams);
        let index = SliceIndex {
            format: INDEX_FORMAT,
            slice: name.clone(),
            link_type: self.link_type,
            node,
            first_ns,
            last_ns,
            packets: self.packets.len() as u64,
            bytes,
            queries: queries.to_vec(),
            streams: self.streams,
            pods: pod_history,
        };
        Ok(FinishedSlice {
            name,
            pcap: writer.into_writer(),
            index,
        })
    }
}

/// The node all streams share, if they do.
fn common_node(streams: &[StreamRecord]) -> Option<NodeRef> {
    let first = streams.first()?.node.clone()?;
    streams
        .iter()
        .all(|s| s.node.as_ref().is_some_and(|n| n.name == first.name))
        .then_some(first)
}
