//! Reading pcap and pcapng files frame by frame (with `pcap-file`'s
//! parsers over a buffer this module fills), so every error names the byte
//! offset in the file where the bad record starts.
//!
//! - Classic pcap: micro- and nanosecond magics, either byte order.
//! - pcapng: every section and interface; timestamps honour `if_tsresol`
//!   (the crate's own reader assumes nanoseconds), Simple Packet Blocks are
//!   cut to the interface's snap length (their padding is not packet data).
//! - Link types: Ethernet (1), raw IP (101, 228, 229), Linux SLL (113) and
//!   SLL2 (276); any other is an error at the header or interface block
//!   that declares it.
//! - A record longer than 262144 bytes (Wireshark's limit) or a block
//!   longer than 16 MiB is garbage, rejected before it is buffered.
//! - Tolerated as tshark tolerates them: a record whose original length is
//!   smaller than its captured length (read as the captured length).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{Endianness, PcapError, TsResolution};

/// Link types the agent can decode.
pub const SUPPORTED_LINK_TYPES: [u32; 6] = [1, 101, 113, 228, 229, 276];
/// Longest record Wireshark accepts.
pub const MAX_RECORD_BYTES: u32 = 262_144;
const MAX_BLOCK_BYTES: u32 = 16 << 20;
const READ_CHUNK: usize = 256 << 10;
const PCAPNG_SHB: u32 = 0x0A0D_0D0A;

/// Why a capture file cannot be read (further). Every variant past opening
/// names the file and the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file cannot be opened or read.
    #[error("{path}: offset {offset}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Where reading failed.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Neither pcap nor pcapng magic.
    #[error("{path}: offset 0: not a pcap or pcapng file (starts with {found:02x?})")]
    NotPcap {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        found: Vec<u8>,
    },
    /// The file ends inside a header, record or block.
    #[error("{path}: offset {offset}: truncated {what}: the file ends {available} bytes into it")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the incomplete part starts.
        offset: u64,
        /// File header, record or block.
        what: &'static str,
        /// Bytes of it present.
        available: usize,
    },
    /// A link type the agent does not decode.
    #[error(
        "{path}: offset {offset}: unknown link type {link_type} (supported: 1 Ethernet, 101/228/229 raw IP, 113 Linux SLL, 276 Linux SLL2)"
    )]
    UnknownLinkType {
        /// The file.
        path: PathBuf,
        /// The header or interface block declaring it.
        offset: u64,
        /// The value.
        link_type: u32,
    },
    /// A header, record or block that is not valid.
    #[error("{path}: offset {offset}: invalid {what}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where it starts.
        offset: u64,
        /// What it is.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ReplayError {
    /// The byte offset the error is about.
    pub fn offset(&self) -> u64 {
        match self {
            ReplayError::NotPcap { .. } => 0,
            ReplayError::Io { offset, .. }
            | ReplayError::Truncated { offset, .. }
            | ReplayError::UnknownLinkType { offset, .. }
            | ReplayError::Invalid { offset, .. } => *offset,
        }
    }
}

/// One frame of a capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// 0-based frame number (tshark's `frame.number` minus one).
    pub index: u64,
    /// Byte offset of its record or block in the file.
    pub offset: u64,
    /// Capture time, nanoseconds since the epoch.
    pub timestamp_ns: i64,
    /// PCAP link type.
    pub link_type: u32,
    /// Bytes on the wire.
    pub original_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
    /// Interface name (pcapng `if_name`), when the file says.
    pub interface: Option<String>,
}

enum Format {
    /// Before the header is read.
    Unknown,
    Pcap {
        parser: PcapParser,
        header: PcapHeader,
    },
    PcapNg {
        parser: PcapNgParser,
        /// Per interface of the current section: link type, snap length,
        /// ticks per second, name.
        interfaces: Vec<(u32, u32, u64, Option<String>)>,
    },
}

/// A capture file read as an iterator of frames; after an error it ends.
pub struct CaptureFile<R = File> {
    path: PathBuf,
    reader: R,
    buf: Vec<u8>,
    /// Consumed bytes at the front of `buf`.
    start: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    failed: bool,
    format: Format,
    next_index: u64,
}

impl CaptureFile<File> {
    /// Opens `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReplayError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| ReplayError::Io {
            path: path.to_owned(),
            offset: 0,
            source,
        })?;
        CaptureFile::new(path, file)
    }
}

impl<R: Read> CaptureFile<R> {
    /// Reads the header of a capture from `reader`; `path` names it in errors.
    pub fn new(path: impl AsRef<Path>, reader: R) -> Result<Self, ReplayError> {
        let mut file = CaptureFile {
            path: path.as_ref().to_owned(),
            reader,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            base: 0,
            eof: false,
            failed: false,
            format: Format::Unknown,
            next_index: 0,
        };
        while file.buf.len() < 28 && !file.eof {
            file.fill()?;
        }
        let magic = file.buf.get(..4).map(|m| [m[0], m[1], m[2], m[3]]);
        match magic {
            Some([0xA1, 0xB2, 0xC3, 0xD4])
            | Some([0xD4, 0xC3, 0xB2, 0xA1])
            | Some([0xA1, 0xB2, 0x3C, 0x4D])
            | Some([0x4D, 0x3C, 0xB2, 0xA1]) => {
                let (rem, parser) = match PcapParser::new(&file.buf) {
                    Ok(ok) => ok,
                    Err(PcapError::IncompleteBuffer) => {
                        return Err(file.truncated(0, "pcap file header"));
                    }
                    Err(e) => return Err(file.invalid(0, "pcap file header", e)),
                };
                let consumed = file.buf.len() - rem.len();
                let header = parser.header();
                let link_type = u32::from(header.datalink);
                if !SUPPORTED_LINK_TYPES.contains(&link_type) {
                    return Err(ReplayError::UnknownLinkType {
                        path: file.path.clone(),
                        offset: 20,
                        link_type,
                    });
                }
                file.start = consumed;
                file.format = Format::Pcap { parser, header };
            }
            Some([0x0A, 0x0D, 0x0D, 0x0A]) => {
                file.ensure_block()?;
                let (rem, parser) = match PcapNgParser::new(&file.buf) {
                    Ok(ok) => ok,
                    Err(PcapError::IncompleteBuffer) => {
                        return Err(file.truncated(0, "pcapng section header block"));
                    }
                    Err(e) => return Err(file.invalid(0, "pcapng section header block", e)),
                };
                file.start = file.buf.len() - rem.len();
                file.format = Format::PcapNg {
                    parser,
                    interfaces: Vec::new(),
                };
            }
            _ => {
                return Err(ReplayError::NotPcap {
                    path: file.path.clone(),
                    found: file.buf.iter().take(4).copied().collect(),
                });
            }
        }
        Ok(file)
    }

    /// The link type of a classic pcap file (pcapng: per interface).
    pub fn link_type(&self) -> Option<u32> {
        match &self.format {
            Format::Pcap { header, .. } => Some(u32::from(header.datalink)),
            Format::PcapNg { .. } | Format::Unknown => None,
        }
    }

    fn offset_of(&self, pos: usize) -> u64 {
        self.base + pos as u64
    }

    fn truncated(&self, pos: usize, what: &'static str) -> ReplayError {
        ReplayError::Truncated {
            path: self.path.clone(),
            offset: self.offset_of(pos),
            what,
            available: self.buf.len() - pos,
        }
    }

    fn invalid(&self, pos: usize, what: &'static str, err: impl ToString) -> ReplayError {
        ReplayError::Invalid {
            path: self.path.clone(),
            offset: self.offset_of(pos),
            what,
            reason: err.to_string(),
        }
    }

    /// Reads more bytes, dropping the consumed front of the buffer.
    fn fill(&mut self) -> Result<(), ReplayError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.buf.truncate(old);
                    return Err(ReplayError::Io {
                        path: self.path.clone(),
                        offset: self.base + old as u64,
                        source,
                    });
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Makes sure the block starting at `start` is fully buffered (or the
    /// file ended), after checking its declared length is sane.
    fn ensure_block(&mut self) -> Result<(), ReplayError> {
        loop {
            let avail = &self.buf[self.start..];
            if avail.len() >= 8 {
                let ty = [avail[0], avail[1], avail[2], avail[3]];
                let len_bytes = [avail[4], avail[5], avail[6], avail[7]];
                let little = match &self.format {
                    Format::PcapNg { parser, .. } => {
                        parser.section().endianness == Endianness::Little
                    }
                    // Before the first section: judge from the SHB magic.
                    Format::Pcap { .. } | Format::Unknown => {
                        avail.get(8..12) == Some(&[0x4D, 0x3C, 0x2B, 0x1A])
                    }
                };
                let len = if u32::from_be_bytes(ty) == PCAPNG_SHB {
                    // A new section may switch byte order.
                    u32::from_le_bytes(len_bytes).min(u32::from_be_bytes(len_bytes))
                } else if little {
                    u32::from_le_bytes(len_bytes)
                } else {
                    u32::from_be_bytes(len_bytes)
                };
                if len > MAX_BLOCK_BYTES {
                    return Err(self.invalid(
                        self.start,
                        "pcapng block",
                        format!("block length {len} exceeds {MAX_BLOCK_BYTES}"),
                    ));
                }
                if avail.len() >= len as usize || self.eof {
                    return Ok(());
                }
            } else if self.eof {
                return Ok(());
            }
            self.fill()?;
        }
    }

    fn next_pcap(&mut self) -> Result<Option<Frame>, ReplayError> {
        loop {
            let Format::Pcap { parser, header } = &self.format else {
                unreachable!("pcap reader on pcapng");
            };
            let avail = &self.buf[self.start..];
            if avail.is_empty() && self.eof {
                return Ok(None);
            }
            if avail.len() >= 16 {
                let len_bytes = [avail[8], avail[9], avail[10], avail[11]];
                let incl = match header.endianness {
                    Endianness::Big => u32::from_be_bytes(len_bytes),
                    Endianness::Little => u32::from_le_bytes(len_bytes),
                };
                if incl > MAX_RECORD_BYTES {
                    return Err(self.invalid(
                        self.start,
                        "pcap record",
                        format!("captured length {incl} exceeds {MAX_RECORD_BYTES}"),
                    ));
                }
            }
            match parser.next_raw_packet(avail) {
                Ok((rem, raw)) => {
                    let consumed = avail.len() - rem.len();
                    let frac_ns = match header.ts_resolution {
                        TsResolution::MicroSecond => i64::from(raw.ts_frac) * 1_000,
                        TsResolution::NanoSecond => i64::from(raw.ts_frac),
                    };
                    let frame = Frame {
                        index: self.next_index,
                        offset: self.offset_of(self.start),
                        timestamp_ns: i64::from(raw.ts_sec) * 1_000_000_000 + frac_ns,
                        link_type: u32::from(header.datalink),
                        // A record claiming fewer bytes on the wire than it
                        // holds (some tools write that): the frame was at
                        // least as long as what was captured, as tshark reads it.
                        original_len: raw.orig_len.max(raw.data.len() as u32),
                        data: raw.data.into_owned(),
                        interface: None,
                    };
                    self.start += consumed;
                    self.next_index += 1;
                    return Ok(Some(frame));
                }
                Err(PcapError::IncompleteBuffer) if self.eof => {
                    return Err(self.truncated(self.start, "pcap record"));
                }
                Err(PcapError::IncompleteBuffer) => self.fill()?,
                Err(e) => return Err(self.invalid(self.start, "pcap record", e)),
            }
        }
    }

    fn next_pcapng(&mut self) -> Result<Option<Frame>, ReplayError> {
        loop {
            self.ensure_block()?;
            let block_pos = self.start;
            let offset = self.offset_of(block_pos);
            let path = self.path.clone();
            let Format::PcapNg { parser, interfaces } = &mut self.format else {
                unreachable!("pcapng reader on pcap");
            };
            let avail = &self.buf[self.start..];
            if avail.is_empty() && self.eof {
                return Ok(None);
            }
            let (rem, block) = match parser.next_block(avail) {
                Ok(ok) => ok,
                Err(PcapError::IncompleteBuffer) => {
                    return Err(self.truncated(block_pos, "pcapng block"));
                }
                Err(e) => return Err(self.invalid(block_pos, "pcapng block", e)),
            };
            let consumed = avail.len() - rem.len();
            let frame = match block {
                Block::SectionHeader(_) => {
                    interfaces.clear();
                    None
                }
                Block::InterfaceDescription(idb) => {
                    let link_type = u32::from(idb.linktype);
                    if !SUPPORTED_LINK_TYPES.contains(&link_type) {
                        return Err(ReplayError::UnknownLinkType {
                            path,
                            offset,
                            link_type,
                        });
                    }
                    let mut ticks = 1_000_000u64;
                    let mut name = None;
                    for opt in &idb.options {
                        match opt {
                            InterfaceDescriptionOption::IfTsResol(r) => {
                                ticks = if r & 0x80 == 0 {
                                    10u64.checked_pow(u32::from(*r)).unwrap_or(0)
                                } else {
                                    1u64.checked_shl(u32::from(r & 0x7f)).unwrap_or(0)
                                };
                            }
                            InterfaceDescriptionOption::IfName(n) => name = Some(n.to_string()),
                            _ => {}
                        }
                    }
                    if ticks == 0 {
                        return Err(ReplayError::Invalid {
                            path,
                            offset,
                            what: "pcapng interface block",
                            reason: "if_tsresol out of range".to_owned(),
                        });
                    }
                    interfaces.push((link_type, idb.snaplen, ticks, name));
                    None
                }
                Block::EnhancedPacket(epb) => Some((
                    epb.interface_id,
                    Some(epb.timestamp.as_nanos()),
                    epb.original_len,
                    epb.data,
                )),
                Block::Packet(pb) => Some((
                    u32::from(pb.interface_id),
                    // Read as one u64 in file order: the words are swapped
                    // in little-endian files.
                    Some(u128::from(
                        if parser.section().endianness == Endianness::Little {
                            pb.timestamp.rotate_left(32)
                        } else {
                            pb.timestamp
                        },
                    )),
                    pb.original_len,
                    pb.data,
                )),
                Block::SimplePacket(spb) => Some((0, None, spb.original_len, spb.data)),
                _ => None,
            };
            let Some((iface, raw_ts, original_len, data)) = frame else {
                self.start += consumed;
                continue;
            };
            let Some((link_type, snaplen, ticks, name)) = interfaces.get(iface as usize).cloned()
            else {
                return Err(ReplayError::Invalid {
                    path,
                    offset,
                    what: "pcapng packet block",
                    reason: format!("interface {iface} is not described before it"),
                });
            };
            let mut data: Vec<u8> = match data {
                Cow::Borrowed(b) => b.to_vec(),
                Cow::Owned(v) => v,
            };
            if raw_ts.is_none() {
                // Simple Packet Block: the body is padded to 32 bits.
                let keep = if snaplen == 0 {
                    original_len
                } else {
                    original_len.min(snaplen)
                };
                data.truncate(keep as usize);
            }
            if data.len() > MAX_RECORD_BYTES as usize {
                return Err(ReplayError::Invalid {
                    path,
                    offset,
                    what: "pcapng packet block",
                    reason: format!("captured length {} exceeds {MAX_RECORD_BYTES}", data.len()),
                });
            }
            // pcap-file read the raw tick count as nanoseconds.
            let timestamp_ns = raw_ts
                .map(|ticks_count| ticks_count * 1_000_000_000 / u128::from(ticks))
                .unwrap_or(0)
                .min(i64::MAX as u128) as i64;
            self.start += consumed;
            let frame = Frame {
                index: self.next_index,
                offset,
                timestamp_ns,
                link_type,
                original_len: original_len.max(data.len() as u32),
                data,
                interface: name,
            };
            self.next_index += 1;
            return Ok(Some(frame));
        }
    }
}

impl<R: Read> Iterator for CaptureFile<R> {
    type Item = Result<Frame, ReplayError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::PcapNg { .. } => self.next_pcapng(),
            Format::Unknown => Ok(None),
        };
        match next {
            Ok(frame) => frame.map(Ok),
            Err(err) => {
                self.failed = true;
                Some(Err(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] = include_bytes!("../../capture/tests/fixtures/loopback.pcap");
    const FIXTURE_NG: &[u8] = include_bytes!("../../capture/tests/fixtures/loopback.pcapng");

    fn read_all(bytes: &[u8]) -> (Vec<Frame>, Option<ReplayError>) {
        let mut frames = Vec::new();
        let file = match CaptureFile::new("mem.pcap", bytes) {
            Ok(f) => f,
            Err(e) => return (frames, Some(e)),
        };
        for item in file {
            match item {
                Ok(f) => frames.push(f),
                Err(e) => return (frames, Some(e)),
            }
        }
        (frames, None)
    }

    #[test]
    fn pcap_and_pcapng_of_one_capture_give_the_same_frames() {
        let (classic, err) = read_all(FIXTURE);
        assert!(err.is_none(), "{err:?}");
        let (ng, err) = read_all(FIXTURE_NG);
        assert!(err.is_none(), "{err:?}");
        assert!(!classic.is_empty());
        assert_eq!(classic.len(), ng.len());
        for (a, b) in classic.iter().zip(&ng) {
            assert_eq!(a.data, b.data);
            assert_eq!(a.timestamp_ns, b.timestamp_ns, "frame {}", a.index);
            assert_eq!(a.original_len, b.original_len);
            assert_eq!(a.link_type, 1);
        }
        // Offsets walk the classic file record by record.
        let mut offset = 24u64;
        for f in &classic {
            assert_eq!(f.offset, offset);
            offset += 16 + f.data.len() as u64;
        }
        assert_eq!(offset, FIXTURE.len() as u64);
    }

    #[test]
    fn a_cut_file_names_the_offset_of_the_incomplete_record_and_never_panics() {
        let (frames, _) = read_all(FIXTURE);
        // Every cut in the headers and first records, then a stride.
        let cuts = (0..600).chain((600..FIXTURE.len()).step_by(11));
        for cut in cuts {
            let (got, err) = read_all(&FIXTURE[..cut]);
            let complete = frames
                .iter()
                .filter(|f| f.offset + 16 + f.data.len() as u64 <= cut as u64)
                .count();
            assert_eq!(got.len(), complete, "cut at {cut}");
            let expect_err =
                cut < 24 || frames.get(complete).is_some_and(|f| f.offset < cut as u64);
            match err {
                Some(ReplayError::Truncated { offset, .. }) => {
                    assert!(expect_err, "cut at {cut}");
                    let start = if cut < 24 { 0 } else { frames[complete].offset };
                    assert_eq!(offset, start, "cut at {cut}");
                }
                Some(ReplayError::NotPcap { .. }) => assert!(cut < 4, "cut at {cut}"),
                Some(other) => panic!("cut at {cut}: {other}"),
                None => assert!(!expect_err, "cut at {cut}: no error"),
            }
        }
    }

    #[test]
    fn cut_pcapng_files_and_flipped_bytes_give_errors_not_panics() {
        let (frames, _) = read_all(FIXTURE_NG);
        let last = frames.last().expect("frames").offset as usize;
        for cut in (1..FIXTURE_NG.len()).step_by(7) {
            let (_, err) = read_all(&FIXTURE_NG[..cut]);
            match err {
                Some(err) => assert!(err.to_string().contains("offset"), "{err}"),
                // Only a cut between two blocks reads cleanly.
                None => assert!(
                    cut > last || frames.iter().any(|f| f.offset as usize == cut),
                    "cut at {cut}: no error"
                ),
            }
        }
        // Corrupt one byte at a time (a cheap fuzz): any outcome but a panic.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..400 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for src in [FIXTURE, FIXTURE_NG] {
                let mut bytes = src.to_vec();
                let at = (state as usize) % bytes.len();
                bytes[at] = (state >> 32) as u8;
                let _ = read_all(&bytes);
            }
        }
    }

    #[test]
    fn garbage_and_oversized_records_are_rejected_with_offsets() {
        let (_, err) = read_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let err = err.expect("error");
        assert!(matches!(err, ReplayError::NotPcap { .. }));
        assert!(
            err.to_string()
                .starts_with("mem.pcap: offset 0: not a pcap"),
            "{err}"
        );

        let mut big = FIXTURE[..24].to_vec();
        big.extend_from_slice(&[0; 8]);
        big.extend_from_slice(&(MAX_RECORD_BYTES + 1).to_le_bytes());
        big.extend_from_slice(&(MAX_RECORD_BYTES + 1).to_le_bytes());
        let (_, err) = read_all(&big);
        let err = err.expect("error");
        assert_eq!(err.offset(), 24);
        assert!(err.to_string().contains("exceeds 262144"), "{err}");
    }

    #[test]
    fn unknown_link_types_are_named_with_their_header_offset() {
        let mut bytes = FIXTURE.to_vec();
        bytes[20..24].copy_from_slice(&147u32.to_le_bytes()); // USER0
        let (_, err) = read_all(&bytes);
        let err = err.expect("error");
        assert!(
            matches!(
                err,
                ReplayError::UnknownLinkType {
                    link_type: 147,
                    offset: 20,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("unknown link type 147"), "{err}");
    }

    #[test]
    fn pcapng_timestamps_follow_if_tsresol() {
        use pcap_file::DataLink;
        use pcap_file::pcapng::PcapNgWriter;
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        let (frames, _) = read_all(FIXTURE);
        let data = &frames[0].data;
        let mut out = Vec::new();
        let mut writer = PcapNgWriter::new(&mut out).expect("writer");
        for resol in [9u8, 3, 0x80 | 10] {
            let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535);
            idb.options
                .push(InterfaceDescriptionOption::IfTsResol(resol));
            writer.write_pcapng_block(idb).expect("idb");
        }
        // 1.5 s on each interface, in its own ticks.
        for (iface, ticks) in [(0u32, 1_500_000_000u64), (1, 1_500), (2, 1536)] {
            let epb = EnhancedPacketBlock {
                interface_id: iface,
                timestamp: std::time::Duration::from_nanos(ticks),
                original_len: data.len() as u32,
                data: Cow::Borrowed(data),
                options: vec![],
            };
            writer.write_pcapng_block(epb).expect("epb");
        }
        drop(writer);
        let (got, err) = read_all(&out);
        assert!(err.is_none(), "{err:?}");
        let ts: Vec<i64> = got.iter().map(|f| f.timestamp_ns).collect();
        assert_eq!(ts, [1_500_000_000; 3]);
        assert!(got.iter().all(|f| &f.data == data));
    }
}
