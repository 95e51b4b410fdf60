//! Offline investigation (`tapwire investigate`): find recorded streams
//! again by KFL and time, without a cluster or Kafka, and merge their
//! packets into one PCAP.
//!
//! The indexes carry everything a query sees ([`crate::entry`]), so only
//! the `.json` objects are read to filter; a slice's PCAP is fetched only
//! when `--write` needs its frames. Where the recordings are:
//!
//! - `s3://BUCKET/PREFIX`: a bucket (endpoint, region and path style from
//!   the `[record]` section or the flags);
//! - a directory written by a directory store (or a copy of a bucket);
//! - a single `.pcap` file without an index: the recorder's reassembly and
//!   dissectors run over it first ([`index_pcap_file`]), into slices and
//!   indexes in a temporary directory that is then searched like any other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use serde::Serialize;
use tapwire_kfl::Filter;
use tapwire_packet::capture_file::CaptureFile;

use crate::index::{IndexError, SliceIndex, StreamRecord};
use crate::store::{Store, StoreError};

/// Investigation failures.
#[derive(Debug, thiserror::Error)]
pub enum InvestigateError {
    /// The location argument is neither `s3://...`, a directory nor a file.
    #[error("{0}")]
    Location(String),
    /// A `--since`/`--until` value that is not a time.
    #[error("{0}")]
    Time(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A slice PCAP could not be read.
    #[error("{key}: not a readable PCAP: {reason}")]
    Pcap {
        /// The object.
        key: String,
        /// Why.
        reason: String,
    },
    /// The merged PCAP could not be written.
    #[error("{path}: {reason}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A pcap file could not be turned into slices.
    #[error("{path}: {reason}")]
    Offline {
        /// The input file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Where recordings are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A bucket and a key prefix.
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix (may be empty).
        prefix: String,
    },
    /// A directory of slices and indexes.
    Dir(PathBuf),
    /// One PCAP file, without index.
    File(PathBuf),
}

impl Location {
    /// Reads `s3://BUCKET[/PREFIX]`, a directory or a file.
    pub fn parse(arg: &str) -> Result<Location, InvestigateError> {
        if let Some(rest) = arg.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(InvestigateError::Location(format!(
                    "{arg:?}: no bucket; write s3://BUCKET/PREFIX"
                )));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        let path = PathBuf::from(arg);
        if path.is_dir() {
            Ok(Location::Dir(path))
        } else if path.is_file() {
            Ok(Location::File(path))
        } else {
            Err(InvestigateError::Location(format!(
                "{arg:?} is not s3://BUCKET/PREFIX, an existing directory or a pcap file"
            )))
        }
    }
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    /// Only streams (or exchanges) this query matches; `None`: all.
    pub filter: Option<Filter>,
    /// Only streams active at or after this time, ns since the epoch.
    pub since_ns: Option<i64>,
    /// Only streams active before this time, ns since the epoch.
    pub until_ns: Option<i64>,
}

impl Criteria {
    fn overlaps(&self, first_ns: i64, last_ns: i64) -> bool {
        self.since_ns.is_none_or(|s| last_ns >= s) && self.until_ns.is_none_or(|u| first_ns < u)
    }

    fn matches(&self, stream: &StreamRecord, now_ms: i64) -> bool {
        self.overlaps(stream.first_ns, stream.last_ns)
            && self
                .filter
                .as_ref()
                .is_none_or(|f| crate::entry::stream_matches(f, stream, now_ms))
    }
}

/// One matching stream.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    /// First packet, ns since the epoch.
    pub time_ns: i64,
    /// `ip:port` of the client, with its pod when known.
    pub source: String,
    /// `ip:port` of the server, with its pod when known.
    pub destination: String,
    /// `HTTP`, `DNS`, else the transport (`TCP`, `UDP`).
    pub protocol: String,
    /// `GET /x 200`, `A example.com NOERROR`, ... (every exchange, `; `-joined).
    pub summary: String,
    /// Packets of the stream.
    pub packets: u64,
    /// The slice PCAP that holds them.
    pub slice: String,
    /// The node that captured them, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The stream as indexed.
    #[serde(skip)]
    pub stream: StreamRecord,
    /// Link type of the slice.
    #[serde(skip)]
    pub link_type: u32,
}

/// What a search found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Matching streams, by time.
    pub matches: Vec<Match>,
    /// Indexes read.
    pub indexes: usize,
    /// Streams looked at.
    pub streams: u64,
    /// Objects that were skipped, with why (unreadable indexes).
    pub skipped: Vec<(String, String)>,
}

fn endpoint(e: &crate::index::EndpointRecord) -> String {
    let addr = match e.ip {
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", e.port),
        ip => format!("{ip}:{}", e.port),
    };
    match &e.pod {
        Some(p) => format!("{addr} ({}/{})", p.namespace, p.name),
        None => addr,
    }
}

fn to_match(stream: &StreamRecord, index: &SliceIndex, slice: String) -> Match {
    let protocol = stream
        .protocol
        .clone()
        .unwrap_or_else(|| stream.transport.as_str().to_ascii_uppercase());
    let summary = if stream.exchanges.is_empty() {
        stream.summary.clone()
    } else {
        stream
            .exchanges
            .iter()
            .map(|e| e.summary())
            .collect::<Vec<_>>()
            .join("; ")
    };
    Match {
        time_ns: stream.first_ns,
        source: endpoint(&stream.client),
        destination: endpoint(&stream.server),
        protocol,
        summary,
        packets: stream.packets,
        slice,
        node: stream
            .node
            .as_ref()
            .or(index.node.as_ref())
            .map(|n| n.name.clone()),
        stream: stream.clone(),
        link_type: index.link_type,
    }
}

/// The key of the PCAP an index at `index_key` describes.
fn slice_key(index_key: &str, index: &SliceIndex) -> String {
    match index_key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{}", index.slice),
        None => index.slice.clone(),
    }
}

/// A progress bar over `len` objects on stderr, hidden when stderr is not a
/// terminal (or `show` is false).
pub fn progress(len: u64, show: bool) -> indicatif::ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {msg} [{bar:30}] {pos}/{len} objects ({eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Reads every index under `prefix` in `store` and keeps the streams
/// `criteria` selects. An unreadable index is skipped and reported in
/// [`Findings::skipped`], never fatal; a store failure is.
pub async fn search(
    store: &Store,
    prefix: &str,
    criteria: &Criteria,
    show_progress: bool,
) -> Result<Findings, InvestigateError> {
    let objects = store.list(prefix).await?;
    let index_keys: Vec<&str> = objects
        .iter()
        .map(|o| o.key.as_str())
        .filter(|k| k.ends_with(".json"))
        .collect();
    let bar = progress(index_keys.len() as u64, show_progress);
    bar.set_message("reading indexes");
    let now_ms = now_ms();
    let mut findings = Findings::default();
    for key in index_keys {
        bar.inc(1);
        let bytes = store.get(key).await?;
        let index = match SliceIndex::from_json(&bytes) {
            Ok(index) => index,
            Err(err) => {
                let reason = match &err {
                    IndexError::Json(e) => format!("{err}: {e}"),
                    IndexError::Format(_) => err.to_string(),
                };
                findings.skipped.push((key.to_owned(), reason));
                continue;
            }
        };
        findings.indexes += 1;
        findings.streams += index.streams.len() as u64;
        if !criteria.overlaps(index.first_ns, index.last_ns) {
            continue;
        }
        let slice = slice_key(key, &index);
        for stream in &index.streams {
            if criteria.matches(stream, now_ms) {
                findings
                    .matches
                    .push(to_match(stream, &index, slice.clone()));
            }
        }
    }
    bar.finish_and_clear();
    findings
        .matches
        .sort_by(|a, b| (a.time_ns, &a.slice).cmp(&(b.time_ns, &b.slice)));
    Ok(findings)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One packet of a merged PCAP.
struct Frame {
    timestamp: Duration,
    orig_len: u32,
    data: Vec<u8>,
}

/// Writes the packets of `matches` to `out` as one classic PCAP with
/// nanosecond timestamps, ordered by time (ties keep slice order). Each
/// slice is fetched once. Returns the number of packets written.
///
/// All matches must share one link type (classic PCAP has one per file);
/// mixed link types are an error that names them.
pub async fn write_pcap(
    store: &Store,
    matches: &[Match],
    out: &Path,
    show_progress: bool,
) -> Result<u64, InvestigateError> {
    let write_err = |reason: String| InvestigateError::Write {
        path: out.to_owned(),
        reason,
    };
    let link_types: HashSet<u32> = matches.iter().map(|m| m.link_type).collect();
    if link_types.len() > 1 {
        let mut lts: Vec<_> = link_types.into_iter().collect();
        lts.sort_unstable();
        return Err(write_err(format!(
            "the matches span link types {lts:?}; a classic PCAP holds one: narrow the query (e.g. by node) and write each separately"
        )));
    }
    let link_type = matches.first().map_or(1, |m| m.link_type);
    // Frames wanted per slice.
    let mut wanted: BTreeMap<&str, HashSet<u64>> = BTreeMap::new();
    for m in matches {
        wanted
            .entry(m.slice.as_str())
            .or_default()
            .extend(m.stream.frames.iter().copied());
    }
    let bar = progress(wanted.len() as u64, show_progress);
    bar.set_message("reading slices");
    let mut frames: Vec<Frame> = Vec::new();
    for (key, numbers) in &wanted {
        bar.inc(1);
        let bytes = store.get(key).await?;
        read_frames(key, &bytes, numbers, &mut frames)?;
    }
    bar.finish_and_clear();
    frames.sort_by_key(|f| f.timestamp);

    let file = std::fs::File::create(out).map_err(|e| write_err(e.to_string()))?;
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: 262_144,
        datalink: DataLink::from(link_type),
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::native(),
    };
    let mut writer = PcapWriter::with_header(std::io::BufWriter::new(file), header)
        .map_err(|e| write_err(e.to_string()))?;
    for f in &frames {
        writer
            .write_packet(&PcapPacket::new(f.timestamp, f.orig_len, &f.data))
            .map_err(|e| write_err(e.to_string()))?;
    }
    use std::io::Write;
    writer
        .into_writer()
        .flush()
        .map_err(|e| write_err(e.to_string()))?;
    Ok(frames.len() as u64)
}

fn read_frames(
    key: &str,
    bytes: &[u8],
    numbers: &HashSet<u64>,
    out: &mut Vec<Frame>,
) -> Result<(), InvestigateError> {
    let bad = |reason: String| InvestigateError::Pcap {
        key: key.to_owned(),
        reason,
    };
    let mut reader = PcapReader::new(bytes).map_err(|e| bad(e.to_string()))?;
    let mut number = 0u64;
    let mut found = 0usize;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(|e| bad(format!("record {}: {e}", number + 1)))?;
        number += 1;
        if numbers.contains(&number) {
            found += 1;
            out.push(Frame {
                timestamp: packet.timestamp,
                orig_len: packet.orig_len,
                data: packet.data.into_owned(),
            });
        }
    }
    if found != numbers.len() {
        return Err(bad(format!(
            "the index names {} frames but the slice has only {number} records",
            numbers.len()
        )));
    }
    Ok(())
}

/// Runs the recorder over a pcap or pcapng file (every stream recorded, with
/// the query `""` that matches everything) and writes the slices and their
/// indexes into `dir`. Returns the number of packets read.
pub fn index_pcap_file(path: &Path, dir: &Path) -> Result<u64, InvestigateError> {
    let bad = |reason: String| InvestigateError::Offline {
        path: path.to_owned(),
        reason,
    };
    // pcap or pcapng, several interfaces and link types: the reader the
    // capture agent replays with.
    let reader = CaptureFile::open(path).map_err(|e| bad(e.to_string()))?;
    let mut config = crate::recorder::RecorderConfig::default();
    // One slice for the whole file unless it is huge.
    config.slice.max_age_ns = i64::MAX;
    config.slice.max_bytes = 1 << 30;
    let mut recorder = crate::recorder::Recorder::new(
        config,
        vec![crate::index::NamedQuery {
            name: "all".to_owned(),
            query: String::new(),
        }],
    )
    .map_err(|e| bad(e.to_string()))?;
    let pods = crate::pods::NoPods;
    let mut packets = 0u64;
    let mut store_err = None;
    let mut write = |recorder: &mut crate::recorder::Recorder| {
        for slice in recorder.take_finished() {
            if let Err(e) = slice.write_to_dir(dir) {
                store_err.get_or_insert(e.to_string());
            }
        }
    };
    for frame in reader {
        let frame = frame.map_err(|e| bad(e.to_string()))?;
        packets += 1;
        let record = tapwire_schemas::events::PacketRecord {
            header: tapwire_schemas::events::EventHeader {
                timestamp_ns: frame.timestamp_ns,
                ..offline_header()
            },
            link_type: frame.link_type,
            captured_len: frame.data.len() as u32,
            original_len: frame.original_len,
            data: frame.data,
            flow_hash: 0,
            interface: frame.interface,
        };
        recorder
            .push(record, &pods)
            .map_err(|e| bad(e.to_string()))?;
        write(&mut recorder);
    }
    recorder.flush(&pods).map_err(|e| bad(e.to_string()))?;
    write(&mut recorder);
    match store_err {
        Some(e) => Err(bad(format!("writing slices to {}: {e}", dir.display()))),
        None => Ok(packets),
    }
}

/// The header of packets read from a file: no node, no sensor.
fn offline_header() -> tapwire_schemas::events::EventHeader {
    tapwire_schemas::events::EventHeader {
        id: tapwire_schemas::EventId::derive(&[b"investigate"]),
        timestamp_ns: 0,
        node: String::new(),
        sensor_id: "investigate".to_owned(),
        node_ip: None,
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line.
    Json,
}

/// Formats a time in ns as `YYYY-MM-DD HH:MM:SS.mmm` UTC.
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// civil-from-days algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Renders `matches` in `format`, one row per stream.
pub fn render(matches: &[Match], format: Format) -> String {
    match format {
        Format::Json => json_lines(matches.iter().map(|m| (m, m.time_ns))),
        Format::Table => table(
            &["TIME (UTC)", "SOURCE", "DESTINATION", "PROTOCOL", "SUMMARY"],
            matches
                .iter()
                .map(|m| {
                    vec![
                        format_time(m.time_ns),
                        m.source.clone(),
                        m.destination.clone(),
                        m.protocol.clone(),
                        m.summary.clone(),
                    ]
                })
                .collect(),
        ),
    }
}

/// One exchange of a matching stream: an HTTP request with its response, a
/// DNS query with its answer, or the stream itself when it has none.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeRow {
    /// When the exchange started (else the stream's first packet), ns.
    pub time_ns: i64,
    /// `ip:port` of the client, with its pod when known.
    pub source: String,
    /// `ip:port` of the server, with its pod when known.
    pub destination: String,
    /// `HTTP`, `DNS`, `TLS`, `TCP` or `UDP`.
    pub protocol: String,
    /// Method, path and status; or query type, name and response code.
    pub summary: String,
    /// The stream it belongs to (recorder-local id within its slice).
    pub stream: u64,
    /// The slice PCAP that holds it.
    pub slice: String,
    /// The node that captured it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The exchanges of `matches` that `filter` matches (all of them without
/// one), by time: what an analyst reads one line at a time.
pub fn exchanges(matches: &[Match], filter: Option<&Filter>) -> Vec<ExchangeRow> {
    let now = now_ms();
    let mut rows: Vec<ExchangeRow> = matches
        .iter()
        .flat_map(|m| {
            crate::entry::entries(&m.stream)
                .filter(move |e| filter.is_none_or(|f| f.matches(e, now)))
                .map(move |e| ExchangeRow {
                    time_ns: e.timestamp_ns(),
                    source: m.source.clone(),
                    destination: m.destination.clone(),
                    protocol: e.protocol().1.to_owned(),
                    summary: e
                        .exchange
                        .map_or_else(|| m.summary.clone(), |x| x.summary()),
                    stream: m.stream.id,
                    slice: m.slice.clone(),
                    node: m.node.clone(),
                })
        })
        .collect();
    rows.sort_by_key(|r| r.time_ns);
    rows
}

/// Renders exchange rows in `format`.
pub fn render_exchanges(rows: &[ExchangeRow], format: Format) -> String {
    match format {
        Format::Json => json_lines(rows.iter().map(|r| (r, r.time_ns))),
        Format::Table => table(
            &[
                "TIME (UTC)",
                "SOURCE",
                "DESTINATION",
                "PROTOCOL",
                "STREAM",
                "SUMMARY",
            ],
            rows.iter()
                .map(|r| {
                    vec![
                        format_time(r.time_ns),
                        r.source.clone(),
                        r.destination.clone(),
                        r.protocol.clone(),
                        r.stream.to_string(),
                        r.summary.clone(),
                    ]
                })
                .collect(),
        ),
    }
}

/// One JSON object per item, with `time` (RFC 3339) added.
fn json_lines<'a, T: Serialize + 'a>(items: impl Iterator<Item = (&'a T, i64)>) -> String {
    let mut out = String::new();
    for (item, time_ns) in items {
        let mut value = serde_json::to_value(item).unwrap_or_default();
        if let Some(obj) = value.as_object_mut() {
            obj.insert("time".into(), format_time(time_ns).into());
        }
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// Aligned columns under `head`; the last column is not padded.
fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = head.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&head).chain(&rows) {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

/// Reads a `--since`/`--until` value, relative to `now_ns`:
/// RFC 3339 (`2026-11-23T14:00:00Z`), a date (`2026-11-23`, UTC midnight),
/// epoch seconds/milliseconds/nanoseconds (by magnitude), or a duration ago
/// (`30s`, `15m`, `2h`, `7d`).
pub fn parse_time(text: &str, now_ns: i64) -> Result<i64, InvestigateError> {
    let t = text.trim();
    let bad = || {
        InvestigateError::Time(format!(
            "{text:?} is not a time: use RFC 3339 (2026-11-23T14:00:00Z), a date (2026-11-23), epoch seconds, or a duration ago (15m, 2h, 7d)"
        ))
    };
    if let Ok(n) = t.parse::<i64>() {
        return Ok(match n.unsigned_abs() {
            0..100_000_000_000 => n * 1_000_000_000,
            100_000_000_000..100_000_000_000_000 => n * 1_000_000,
            _ => n,
        });
    }
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let scale: i64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => 0,
        };
        if scale > 0
            && let Ok(n) = t[..t.len() - 1].trim_start_matches('-').parse::<i64>()
        {
            return Ok(now_ns - n * scale * 1_000_000_000);
        }
    }
    if t.len() == 10
        && let Ok(date) =
            time::Date::parse(t, time::macros::format_description!("[year]-[month]-[day]"))
    {
        return Ok(date.midnight().assume_utc().unix_timestamp_nanos() as i64);
    }
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|dt| dt.unix_timestamp_nanos() as i64)
        .map_err(|_| bad())
}

/// Counts of matches per slice, for the summary line.
pub fn slices_touched(matches: &[Match]) -> usize {
    matches
        .iter()
        .map(|m| m.slice.as_str())
        .collect::<HashSet<_>>()
        .len()
}

/// The frames each slice contributes (used by tests and `--write`).
pub fn frames_by_slice(matches: &[Match]) -> HashMap<&str, usize> {
    let mut out: HashMap<&str, usize> = HashMap::new();
    for m in matches {
        *out.entry(m.slice.as_str()).or_default() += m.stream.frames.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("s3://evidence/rec/node-a").expect("s3"),
            Location::S3 {
                bucket: "evidence".into(),
                prefix: "rec/node-a".into()
            }
        );
        assert_eq!(
            Location::parse("s3://evidence").expect("s3"),
            Location::S3 {
                bucket: "evidence".into(),
                prefix: String::new()
            }
        );
        assert!(Location::parse("s3:///x").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            Location::parse(dir.path().to_str().expect("utf8")).expect("dir"),
            Location::Dir(dir.path().to_owned())
        );
        assert!(Location::parse("/no/such/thing").is_err());
    }

    #[test]
    fn times() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now).expect("rfc3339"),
            now
        );
        assert_eq!(parse_time("1700000000", now).expect("s"), now);
        assert_eq!(parse_time("1700000000000", now).expect("ms"), now);
        assert_eq!(
            parse_time("15m", now).expect("ago"),
            now - 900 * 1_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14", now).expect("date"),
            1_699_920_000 * 1_000_000_000
        );
        assert!(parse_time("yesterday", now).is_err());
        assert_eq!(format_time(now + 5_000_000), "2023-11-14 22:13:20.005");
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000");
    }
}
