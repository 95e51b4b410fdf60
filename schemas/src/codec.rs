//! Avro single-object encoding: `0xC3 0x01`, the writer schema's 8-byte
//! CRC-64-AVRO fingerprint (little-endian), then the Avro binary datum.
//!
//! Current-version messages are written and read with `serde_avro_fast`
//! (measured in `bench/`: an order of magnitude faster than apache-avro's
//! `Value` path). A message from an older writer schema is resolved with
//! apache-avro against the current schema, re-encoded, and then read the same
//! way; that path is slow and only taken while old producers are still around.
//!
//! Hot paths read current-version L4 events, enriched events and verdicts as
//! borrowed views (`decode_*_view`, read field by field by
//! `events/read.rs`), and write a verdict by splicing the enriched message
//! it judges ([`write_verdict`]).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::events::read::Reader;
use crate::events::{
    AgentHeartbeat, ApiRequest, DnsEvent, EnrichedEvent, EventHeader, InventorySnapshot, L4Event,
    LossRecord, NodeMetadata, PacketRecord, PodMetadata, RuntimeEvent, ServiceMetadata, Verdict,
};
use crate::events::{Mode, Outcome, Side, SideView};
use crate::registry::{SchemaEntry, SchemaKind, registry};

/// The two marker bytes that open a single-object encoded message.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
/// Magic plus fingerprint.
pub const HEADER_LEN: usize = 10;

/// A Rust type with an Avro schema in the registry.
pub trait Record: Serialize + DeserializeOwned {
    /// Which schema the type maps to.
    const KIND: SchemaKind;
}

macro_rules! records {
    ($($ty:ident => $file:literal),* $(,)?) => {
        $(impl Record for $ty { const KIND: SchemaKind = SchemaKind::$ty; })*

        /// Any message the bus carries, as decoded by [`decode_any`].
        /// Serializes as the event it holds (serde `untagged`).
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        #[allow(missing_docs)]
        pub enum AnyEvent { $($ty($ty)),* }

        /// Decodes a message whatever its schema.
        pub fn decode_any(bytes: &[u8]) -> Result<AnyEvent, DecodeError> {
            let entry = writer_schema(bytes)?;
            Ok(match entry.kind {
                $(SchemaKind::$ty => AnyEvent::$ty(decode_with(entry, bytes)?),)*
            })
        }

        impl AnyEvent {
            /// The schema of the event.
            pub fn kind(&self) -> SchemaKind {
                match self { $(AnyEvent::$ty(_) => SchemaKind::$ty,)* }
            }

            /// Appends the event in single-object encoding to `out`.
            pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
                match self { $(AnyEvent::$ty(e) => encode_into(e, out),)* }
            }
        }
    };
}

crate::for_each_schema_kind!(records);

impl AnyEvent {
    /// The common header (for enriched events and verdicts, the wrapped
    /// event's). Always `Some`: every record has a header since enriched
    /// events hold exactly one event by construction (EnrichedEvent v4).
    pub fn header(&self) -> Option<&EventHeader> {
        Some(match self {
            AnyEvent::L4Event(e) => &e.header,
            AnyEvent::DnsEvent(e) => &e.header,
            AnyEvent::RuntimeEvent(e) => &e.header,
            AnyEvent::PacketRecord(e) => &e.header,
            AnyEvent::InventorySnapshot(e) => &e.header,
            AnyEvent::PodMetadata(e) => &e.header,
            AnyEvent::EnrichedEvent(e) => e.header(),
            AnyEvent::Verdict(e) => e.event.header(),
            AnyEvent::LossRecord(e) => &e.header,
            AnyEvent::NodeMetadata(e) => &e.header,
            AnyEvent::ServiceMetadata(e) => &e.header,
            AnyEvent::AgentHeartbeat(e) => &e.header,
            AnyEvent::ApiRequest(e) => &e.header,
        })
    }
}

/// Why a message could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {kind}: {source}")]
pub struct EncodeError {
    kind: SchemaKind,
    #[source]
    source: serde_avro_fast::ser::SerError,
}

/// Why a message could not be read. Each variant is a reason a consumer puts
/// on the dead-letter record.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the 10-byte header.
    #[error("message is {len} bytes, shorter than the 10-byte single-object header")]
    TooShort {
        /// Length seen.
        len: usize,
    },
    /// Not `C3 01`.
    #[error("not Avro single-object encoded: starts with {found:02x?} instead of c3 01")]
    BadMagic {
        /// The first two bytes.
        found: [u8; 2],
    },
    /// A fingerprint this build does not know.
    #[error("unknown writer schema fingerprint {fingerprint}")]
    UnknownFingerprint {
        /// Hex of the 8 bytes.
        fingerprint: String,
    },
    /// A known schema, but not the one the reader asked for.
    #[error("expected a {expected} but the message is a {found}")]
    WrongSchema {
        /// What the caller wanted.
        expected: SchemaKind,
        /// What the message is.
        found: SchemaKind,
    },
    /// The datum does not match its schema (truncated, corrupt).
    #[error("{kind} v{version} body does not decode: {reason}")]
    Body {
        /// Schema of the message.
        kind: SchemaKind,
        /// Its version.
        version: u32,
        /// The decoder's message.
        reason: String,
    },
}

impl DecodeError {
    /// A short, stable label for metrics (`too_short`, `bad_magic`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } => "too_short",
            DecodeError::BadMagic { .. } => "bad_magic",
            DecodeError::UnknownFingerprint { .. } => "unknown_fingerprint",
            DecodeError::WrongSchema { .. } => "wrong_schema",
            DecodeError::Body { .. } => "bad_body",
        }
    }
}

/// Appends `value` in single-object encoding to `out`.
pub fn encode_into<T: Record>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let entry = registry().current(T::KIND);
    let schema = entry
        .fast
        .as_ref()
        .unwrap_or_else(|| unreachable_fast(entry));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&entry.fingerprint);
    // One serializer configuration per schema and thread: its buffers are
    // reused instead of allocated per message.
    thread_local! {
        static CONFIGS: std::cell::RefCell<Vec<(SchemaKind, serde_avro_fast::ser::SerializerConfig<'static>)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    CONFIGS.with(|configs| {
        let mut configs = configs.borrow_mut();
        let at = match configs.iter().position(|(k, _)| *k == T::KIND) {
            Some(at) => at,
            None => {
                configs.push((T::KIND, serde_avro_fast::ser::SerializerConfig::new(schema)));
                configs.len() - 1
            }
        };
        serde_avro_fast::to_datum(value, &mut *out, &mut configs[at].1)
            .map(|_| ())
            .map_err(|source| EncodeError {
                kind: T::KIND,
                source,
            })
    })
}

/// Appends the Avro datum (no header) of a `PeerContext`, for
/// [`write_enriched_l4`].
pub fn peer_context_datum(
    peer: &crate::events::PeerContext,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut config = serde_avro_fast::ser::SerializerConfig::new(registry().peer_context());
    serde_avro_fast::to_datum(peer, &mut *out, &mut config)
        .map(|_| ())
        .map_err(|source| EncodeError {
            kind: SchemaKind::EnrichedEvent,
            source,
        })
}

/// Writes an `EnrichedEvent` holding an L4 event without decoding and
/// re-encoding that event: `l4_message` (a single-object encoded `L4Event` of
/// the current version) is copied as it is, followed by the two peer
/// contexts' data ([`peer_context_datum`]). The bytes equal
/// `encode(&EnrichedEvent { body: EventBody::L4(..), src, dst })`.
/// Returns `false`, writing nothing, when the message is not a current
/// `L4Event`.
pub fn write_enriched_l4(l4_message: &[u8], src: &[u8], dst: &[u8], out: &mut Vec<u8>) -> bool {
    let l4 = registry().current(SchemaKind::L4Event);
    if l4_message.len() < HEADER_LEN
        || l4_message[..2] != MAGIC
        || l4_message[2..HEADER_LEN] != l4.fingerprint
    {
        return false;
    }
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&registry().current(SchemaKind::EnrichedEvent).fingerprint);
    // Fields in schema order: body = union branch 0 (`L4Event`, zigzag 0)
    // + datum; then src and dst.
    out.push(L4_BRANCH);
    out.extend_from_slice(&l4_message[HEADER_LEN..]);
    out.extend_from_slice(src);
    out.extend_from_slice(dst);
    true
}

/// The zigzag-encoded union index of `L4Event` in `EnrichedEvent.body`.
const L4_BRANCH: u8 = 0;

/// `value` in single-object encoding.
pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Reads a message that must be a `T` (any known version of it).
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, DecodeError> {
    let entry = writer_schema(bytes)?;
    if entry.kind != T::KIND {
        return Err(DecodeError::WrongSchema {
            expected: T::KIND,
            found: entry.kind,
        });
    }
    decode_with(entry, bytes)
}

/// Reads a current-version `L4Event` message without copying its strings.
/// Messages of older versions (or other kinds) are an error: read them with
/// [`decode`].
pub fn decode_l4_view(bytes: &[u8]) -> Result<crate::events::L4EventView<'_>, DecodeError> {
    read_view(bytes, SchemaKind::L4Event, Reader::l4)
}

/// Reads a current-version `EnrichedEvent` message as a borrowed view (see
/// [`crate::events::EnrichedEventView`]). Messages of older versions (or
/// other kinds) are an error: read them with [`decode`].
pub fn decode_enriched_view(
    bytes: &[u8],
) -> Result<crate::events::EnrichedEventView<'_>, DecodeError> {
    read_view(bytes, SchemaKind::EnrichedEvent, Reader::enriched)
}

/// Reads a current-version `Verdict` message as a borrowed view (see
/// [`crate::events::VerdictView`]). Messages of older versions (or other
/// kinds) are an error: read them with [`decode`].
pub fn decode_verdict_view(bytes: &[u8]) -> Result<crate::events::VerdictView<'_>, DecodeError> {
    read_view(bytes, SchemaKind::Verdict, Reader::verdict)
}

/// Whether `bytes` is a message of the current version of `kind` (so that
/// its view decodes and its datum can be spliced).
pub fn is_current(bytes: &[u8], kind: SchemaKind) -> bool {
    bytes.len() >= HEADER_LEN
        && bytes[..2] == MAGIC
        && bytes[2..HEADER_LEN] == registry().current(kind).fingerprint
}

fn read_view<'a, V>(
    bytes: &'a [u8],
    kind: SchemaKind,
    read: impl FnOnce(&mut Reader<'a>) -> Result<V, String>,
) -> Result<V, DecodeError> {
    let current = registry().current(kind);
    let entry = if is_current(bytes, kind) {
        current
    } else {
        writer_schema(bytes)?
    };
    if entry.kind != kind {
        return Err(DecodeError::WrongSchema {
            expected: kind,
            found: entry.kind,
        });
    }
    let body_error = |reason: String| DecodeError::Body {
        kind: entry.kind,
        version: entry.version,
        reason,
    };
    if entry.version != current.version {
        return Err(body_error(
            "an older version: decode it with `decode`".into(),
        ));
    }
    let mut reader = Reader::new(&bytes[HEADER_LEN..]);
    let view = read(&mut reader).map_err(body_error)?;
    reader.done().map_err(body_error)?;
    Ok(view)
}

/// The fields of a verdict that follow its event, for [`write_verdict`].
#[derive(Debug, Clone, Copy)]
pub struct VerdictTail<'a> {
    /// Audit, enforce or other.
    pub mode: Mode,
    /// namespace/name of the deciding policy.
    pub policy: Option<&'a str>,
    /// Name of the deciding rule.
    pub rule: Option<&'a str>,
    /// CEF signature id.
    pub signature_id: &'a str,
    /// 0-10.
    pub severity: i32,
    /// What the policy did.
    pub outcome: Outcome,
    /// Each side's decision.
    pub sides: &'a [SideView<'a>],
}

/// Writes a `Verdict` about the event of `enriched_message` (a
/// single-object encoded `EnrichedEvent` of the current version) without
/// decoding and re-encoding that event: its datum is copied as it is, then
/// `tail` is written. The bytes equal `encode(&Verdict { event, .. })`.
/// Returns `false`, writing nothing, when the message is not a current
/// `EnrichedEvent`.
pub fn write_verdict(enriched_message: &[u8], tail: &VerdictTail<'_>, out: &mut Vec<u8>) -> bool {
    if !is_current(enriched_message, SchemaKind::EnrichedEvent) {
        return false;
    }
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&registry().current(SchemaKind::Verdict).fingerprint);
    out.extend_from_slice(&enriched_message[HEADER_LEN..]);
    // Fields in `verdict.avsc` order; enums are their symbol's index, the
    // optional strings `["null", "string"]` unions.
    avro_long(out, mode_index(tail.mode));
    avro_optional_str(out, tail.policy);
    avro_optional_str(out, tail.rule);
    avro_str(out, tail.signature_id);
    avro_long(out, i64::from(tail.severity));
    avro_long(out, outcome_index(tail.outcome));
    if !tail.sides.is_empty() {
        avro_long(out, tail.sides.len() as i64);
        for side in tail.sides {
            avro_long(out, i64::from(side.side == Side::Ingress));
            avro_long(out, mode_index(side.mode));
            avro_long(out, outcome_index(side.outcome));
            avro_optional_str(out, side.policy);
            avro_optional_str(out, side.rule);
        }
    }
    avro_long(out, 0);
    true
}

/// The symbol index of `mode` in `verdict.avsc`'s `Mode`.
fn mode_index(mode: Mode) -> i64 {
    match mode {
        Mode::Audit => 0,
        Mode::Enforce => 1,
        Mode::Other => 2,
    }
}

/// The symbol index of `outcome` in `verdict.avsc`'s `Outcome`.
fn outcome_index(outcome: Outcome) -> i64 {
    match outcome {
        Outcome::Allowed => 0,
        Outcome::Audited => 1,
        Outcome::Blocked => 2,
        Outcome::NotPrevented => 3,
    }
}

/// An Avro `int`/`long`: zigzag, then 7 bits per byte, low bits first.
fn avro_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn avro_str(out: &mut Vec<u8>, s: &str) {
    avro_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn avro_optional_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => avro_long(out, 0),
        Some(s) => {
            avro_long(out, 1);
            avro_str(out, s);
        }
    }
}

/// The writer schema a message names in its header.
pub fn writer_schema(bytes: &[u8]) -> Result<&'static SchemaEntry, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: bytes.len() });
    }
    if bytes[..2] != MAGIC {
        return Err(DecodeError::BadMagic {
            found: [bytes[0], bytes[1]],
        });
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&bytes[2..HEADER_LEN]);
    registry()
        .by_fingerprint(&fingerprint)
        .ok_or_else(|| DecodeError::UnknownFingerprint {
            fingerprint: fingerprint.iter().map(|b| format!("{b:02x}")).collect(),
        })
}

fn decode_with<T: Record>(entry: &SchemaEntry, bytes: &[u8]) -> Result<T, DecodeError> {
    let body = &bytes[HEADER_LEN..];
    let body_error = |reason: String| DecodeError::Body {
        kind: entry.kind,
        version: entry.version,
        reason,
    };
    match &entry.fast {
        Some(schema) => strict_datum(body, schema).map_err(body_error),
        None => {
            let current = registry().current(entry.kind);
            let value = crate::upgrade::to_current(entry.kind, entry.version, &entry.apache, body)
                .map_err(body_error)?;
            let datum = apache_avro::to_avro_datum(&current.apache, value).map_err(|e| {
                body_error(format!(
                    "resolved value does not fit v{}: {e}",
                    current.version
                ))
            })?;
            let schema = current
                .fast
                .as_ref()
                .unwrap_or_else(|| unreachable_fast(current));
            serde_avro_fast::from_datum_slice(&datum, schema).map_err(|e| body_error(e.to_string()))
        }
    }
}

/// Reads one datum that must fill `body` exactly: trailing bytes are an
/// error, not ignored (a spliced copy of the body must be exactly the datum).
fn strict_datum<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
    schema: &serde_avro_fast::Schema,
) -> Result<T, String> {
    let mut state = serde_avro_fast::de::DeserializerState::from_slice(body, schema);
    let value = T::deserialize(state.deserializer()).map_err(|e| e.to_string())?;
    let mut rest = state.into_reader();
    let left = std::io::BufRead::fill_buf(&mut rest).map_or(0, <[u8]>::len);
    if left > 0 {
        return Err(format!("{left} bytes after the end of the datum"));
    }
    Ok(value)
}

fn unreachable_fast(entry: &SchemaEntry) -> ! {
    panic!(
        "registry invariant broken: current {} has no fast schema",
        entry.kind
    )
}
