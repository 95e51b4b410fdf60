//! The schema registry compiled into every binary: the `.avsc` files of
//! `schemas/avro/` (current versions) and `schemas/avro/history/` (earlier
//! versions that readers still resolve), composed into standalone schemas and
//! indexed by their CRC-64-AVRO (Rabin) fingerprint.
//!
//! Files name shared types (`io.tapwire.EventHeader`, ...) instead of
//! repeating them; [`compose`] inlines each named type at its first use, as
//! Avro's own multi-file parsers do, so a composed schema is self-contained
//! and its fingerprint covers everything a reader needs.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde_json::Value;

/// The one table of top-level record types: each row is the Rust type (and
/// Avro name, in namespace `io.tapwire`) and its `.avsc` file in `avro/`.
/// Calls `$callback! { Kind => "file.avsc", ... }`; [`SchemaKind`], the
/// embedded files, [`AnyEvent`](crate::AnyEvent) and its decode dispatch are
/// all generated from it, so a new top-level record is one row here (plus its
/// type and file).
#[macro_export]
macro_rules! for_each_schema_kind {
    ($callback:ident) => {
        $callback! {
            L4Event => "l4_event.avsc",
            DnsEvent => "dns_event.avsc",
            RuntimeEvent => "runtime_event.avsc",
            PacketRecord => "packet_record.avsc",
            InventorySnapshot => "inventory_snapshot.avsc",
            PodMetadata => "pod_metadata.avsc",
            EnrichedEvent => "enriched_event.avsc",
            Verdict => "verdict.avsc",
            LossRecord => "loss_record.avsc",
            NodeMetadata => "node_metadata.avsc",
            ServiceMetadata => "service_metadata.avsc",
            AgentHeartbeat => "agent_heartbeat.avsc",
            ApiRequest => "api_request.avsc",
        }
    };
}

macro_rules! schema_kinds {
    ($($kind:ident => $file:literal),* $(,)?) => {
        /// The top-level record types; each message on the bus is one of these.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum SchemaKind {
            $(
                #[doc = concat!("`io.tapwire.", stringify!($kind), "`")]
                $kind,
            )*
        }

        impl SchemaKind {
            /// Every kind, in a fixed order.
            pub const ALL: [SchemaKind; [$(stringify!($kind)),*].len()] = [$(SchemaKind::$kind),*];

            /// The Avro full name.
            pub fn full_name(self) -> &'static str {
                match self {
                    $(SchemaKind::$kind => concat!("io.tapwire.", stringify!($kind)),)*
                }
            }

            /// The file in `schemas/avro/` that defines the current version.
            pub fn file_name(self) -> &'static str {
                match self {
                    $(SchemaKind::$kind => $file,)*
                }
            }
        }

        /// The current `.avsc` file of every top-level record.
        const TOP_LEVEL_FILES: &[(&str, &str)] = &[
            $(($file, include_str!(concat!("../avro/", $file))),)*
        ];
    };
}

for_each_schema_kind!(schema_kinds);

impl std::fmt::Display for SchemaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.full_name())
    }
}

/// The current `.avsc` files of shared named types, which are not messages
/// on their own ([`compose`] inlines them).
const SHARED_FILES: &[(&str, &str)] = &[
    (
        "event_header.avsc",
        include_str!("../avro/event_header.avsc"),
    ),
    ("endpoint.avsc", include_str!("../avro/endpoint.avsc")),
    ("workload.avsc", include_str!("../avro/workload.avsc")),
    (
        "peer_context.avsc",
        include_str!("../avro/peer_context.avsc"),
    ),
];

/// Earlier versions of top-level records, oldest first. A reader decodes
/// these by Avro schema resolution against the current version, or, across
/// a change of layout that resolution cannot express, against the last
/// version before it and then a conversion ([`crate::upgrade`]). Each file is
/// self-contained (shared types inlined as they were), because the shared
/// files in `avro/` move on; `TAPWIRE_SNAPSHOT_SCHEMAS=1 cargo test -p
/// tapwire-schemas --test contracts snapshot` writes them before a change.
const HISTORY_FILES: &[(SchemaKind, u32, &str)] = &[
    (
        SchemaKind::L4Event,
        1,
        include_str!("../avro/history/L4Event.v1.avsc"),
    ),
    (
        SchemaKind::L4Event,
        2,
        include_str!("../avro/history/L4Event.v2.avsc"),
    ),
    (
        SchemaKind::DnsEvent,
        1,
        include_str!("../avro/history/DnsEvent.v1.avsc"),
    ),
    (
        SchemaKind::RuntimeEvent,
        1,
        include_str!("../avro/history/RuntimeEvent.v1.avsc"),
    ),
    (
        SchemaKind::PacketRecord,
        1,
        include_str!("../avro/history/PacketRecord.v1.avsc"),
    ),
    (
        SchemaKind::InventorySnapshot,
        1,
        include_str!("../avro/history/InventorySnapshot.v1.avsc"),
    ),
    (
        SchemaKind::InventorySnapshot,
        2,
        include_str!("../avro/history/InventorySnapshot.v2.avsc"),
    ),
    (
        SchemaKind::PodMetadata,
        1,
        include_str!("../avro/history/PodMetadata.v1.avsc"),
    ),
    (
        SchemaKind::PodMetadata,
        2,
        include_str!("../avro/history/PodMetadata.v2.avsc"),
    ),
    (
        SchemaKind::EnrichedEvent,
        1,
        include_str!("../avro/history/EnrichedEvent.v1.avsc"),
    ),
    (
        SchemaKind::Verdict,
        1,
        include_str!("../avro/history/Verdict.v1.avsc"),
    ),
    (
        SchemaKind::LossRecord,
        1,
        include_str!("../avro/history/LossRecord.v1.avsc"),
    ),
    (
        SchemaKind::EnrichedEvent,
        2,
        include_str!("../avro/history/EnrichedEvent.v2.avsc"),
    ),
    (
        SchemaKind::Verdict,
        2,
        include_str!("../avro/history/Verdict.v2.avsc"),
    ),
    (
        SchemaKind::EnrichedEvent,
        3,
        include_str!("../avro/history/EnrichedEvent.v3.avsc"),
    ),
    (
        SchemaKind::Verdict,
        3,
        include_str!("../avro/history/Verdict.v3.avsc"),
    ),
    (
        SchemaKind::Verdict,
        4,
        include_str!("../avro/history/Verdict.v4.avsc"),
    ),
    (
        SchemaKind::L4Event,
        3,
        include_str!("../avro/history/L4Event.v3.avsc"),
    ),
    (
        SchemaKind::DnsEvent,
        2,
        include_str!("../avro/history/DnsEvent.v2.avsc"),
    ),
    (
        SchemaKind::EnrichedEvent,
        4,
        include_str!("../avro/history/EnrichedEvent.v4.avsc"),
    ),
    (
        SchemaKind::Verdict,
        5,
        include_str!("../avro/history/Verdict.v5.avsc"),
    ),
    (
        SchemaKind::L4Event,
        4,
        include_str!("../avro/history/L4Event.v4.avsc"),
    ),
    (
        SchemaKind::RuntimeEvent,
        2,
        include_str!("../avro/history/RuntimeEvent.v2.avsc"),
    ),
    (
        SchemaKind::EnrichedEvent,
        5,
        include_str!("../avro/history/EnrichedEvent.v5.avsc"),
    ),
    (
        SchemaKind::Verdict,
        6,
        include_str!("../avro/history/Verdict.v6.avsc"),
    ),
    (
        SchemaKind::AgentHeartbeat,
        1,
        include_str!("../avro/history/AgentHeartbeat.v1.avsc"),
    ),
];

/// One known writer schema.
pub struct SchemaEntry {
    /// Which record this is a version of.
    pub kind: SchemaKind,
    /// 1 for the first version; the current one has the highest number.
    pub version: u32,
    /// Whether this is the version this build writes.
    pub current: bool,
    /// The composed, self-contained schema JSON.
    pub json: String,
    /// CRC-64-AVRO fingerprint of the canonical form, little-endian, as in
    /// the single-object header.
    pub fingerprint: [u8; 8],
    /// The schema for apache-avro (resolution of older writers).
    pub apache: apache_avro::Schema,
    /// The schema for the fast serde codec (current versions only).
    pub fast: Option<serde_avro_fast::Schema>,
}

/// All schemas this build knows.
pub struct Registry {
    entries: Vec<SchemaEntry>,
    /// Named types written on their own by splicing encoders (no header).
    peer_context: serde_avro_fast::Schema,
    by_fingerprint: HashMap<[u8; 8], usize>,
    /// Index of each kind's current entry, by `kind as usize`.
    current: Vec<usize>,
}

impl Registry {
    /// The entry written under `fingerprint`, if known.
    pub fn by_fingerprint(&self, fingerprint: &[u8; 8]) -> Option<&SchemaEntry> {
        self.by_fingerprint
            .get(fingerprint)
            .map(|&i| &self.entries[i])
    }

    /// The version this build writes.
    pub fn current(&self, kind: SchemaKind) -> &SchemaEntry {
        // Every kind has a current entry: `build` fails otherwise.
        &self.entries[self.current[kind as usize]]
    }

    /// Version `version` of `kind`, current or historical.
    pub fn version(&self, kind: SchemaKind, version: u32) -> Option<&SchemaEntry> {
        self.entries
            .iter()
            .find(|e| e.kind == kind && e.version == version)
    }

    /// The schema messages of `entry` are resolved against: the current
    /// version, or the last version before a change of layout that comes
    /// after `entry` ([`crate::upgrade`] then converts them).
    pub fn resolves_against(&self, entry: &SchemaEntry) -> &SchemaEntry {
        crate::upgrade::first_after(entry.kind, entry.version)
            .and_then(|step| self.version(entry.kind, step.last))
            .unwrap_or_else(|| self.current(entry.kind))
    }

    /// Every entry, current and historical.
    pub fn entries(&self) -> &[SchemaEntry] {
        &self.entries
    }

    /// The current `io.tapwire.PeerContext`, for writing it on its own.
    pub fn peer_context(&self) -> &serde_avro_fast::Schema {
        &self.peer_context
    }
}

/// The registry, built once from the embedded files.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| match build() {
        Ok(registry) => registry,
        // The files are compiled in and checked by this crate's tests, so this
        // is a build defect, not a runtime condition.
        Err(err) => panic!("embedded Avro schemas are invalid: {err}"),
    });
    &REGISTRY
}

fn build() -> Result<Registry, String> {
    let mut library = HashMap::new();
    for (file, text) in SHARED_FILES.iter().chain(TOP_LEVEL_FILES) {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let name = full_name(&json, "").ok_or_else(|| format!("{file}: no name"))?;
        library.insert(name, json);
    }
    let mut entries = Vec::new();
    let mut current = Vec::new();
    for (i, kind) in SchemaKind::ALL.into_iter().enumerate() {
        if kind as usize != i {
            return Err(format!("{kind} is not at its place in SchemaKind::ALL"));
        }
        let root = library
            .get(kind.full_name())
            .ok_or_else(|| format!("no file defines {kind}"))?;
        let previous = HISTORY_FILES.iter().filter(|(k, ..)| *k == kind).count() as u32;
        current.push(entries.len());
        entries.push(entry(kind, previous + 1, true, root, &library)?);
    }
    for (kind, version, text) in HISTORY_FILES {
        let root: Value =
            serde_json::from_str(text).map_err(|e| format!("{kind} v{version}: {e}"))?;
        entries.push(entry(*kind, *version, false, &root, &library)?);
    }
    let mut by_fingerprint = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if by_fingerprint.insert(e.fingerprint, i).is_some() {
            return Err(format!("{} v{}: fingerprint collision", e.kind, e.version));
        }
    }
    let peer_root = library
        .get("io.tapwire.PeerContext")
        .ok_or_else(|| "no file defines io.tapwire.PeerContext".to_owned())?;
    let peer_context = compose(peer_root, &library)?
        .to_string()
        .parse::<serde_avro_fast::Schema>()
        .map_err(|e| format!("io.tapwire.PeerContext: {e}"))?;
    Ok(Registry {
        entries,
        peer_context,
        by_fingerprint,
        current,
    })
}

fn entry(
    kind: SchemaKind,
    version: u32,
    current: bool,
    root: &Value,
    library: &HashMap<String, Value>,
) -> Result<SchemaEntry, String> {
    let composed = compose(root, library)?;
    let json = composed.to_string();
    let apache =
        apache_avro::Schema::parse_str(&json).map_err(|e| format!("{kind} v{version}: {e}"))?;
    let fingerprint: [u8; 8] = apache
        .fingerprint::<apache_avro::rabin::Rabin>()
        .bytes
        .try_into()
        .map_err(|_| format!("{kind}: Rabin fingerprint is not 8 bytes"))?;
    let fast = if current {
        Some(
            json.parse::<serde_avro_fast::Schema>()
                .map_err(|e| format!("{kind} v{version}: {e}"))?,
        )
    } else {
        None
    };
    Ok(SchemaEntry {
        kind,
        version,
        current,
        json,
        fingerprint,
        apache,
        fast,
    })
}

/// Inlines every named type that `root` references from `library`, at its
/// first use, so the result stands alone.
pub fn compose(root: &Value, library: &HashMap<String, Value>) -> Result<Value, String> {
    let mut defined = HashSet::new();
    inline(root, "", library, &mut defined)
}

fn full_name(schema: &Value, enclosing_namespace: &str) -> Option<String> {
    let name = schema.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_owned());
    }
    let namespace = schema
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(enclosing_namespace);
    Some(if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    })
}

fn inline(
    node: &Value,
    namespace: &str,
    library: &HashMap<String, Value>,
    defined: &mut HashSet<String>,
) -> Result<Value, String> {
    match node {
        Value::String(name) => match library.get(name) {
            Some(definition) if defined.insert(name.clone()) => {
                inline(definition, namespace, library, defined)
            }
            _ => Ok(node.clone()),
        },
        Value::Array(members) => members
            .iter()
            .map(|m| inline(m, namespace, library, defined))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = map.clone();
            let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
            let mut inner_namespace = namespace.to_owned();
            if matches!(kind, "record" | "enum" | "fixed") {
                let name = full_name(node, namespace)
                    .ok_or_else(|| format!("a {kind} without a name in {node}"))?;
                if let Some((ns, _)) = name.rsplit_once('.') {
                    inner_namespace = ns.to_owned();
                }
                defined.insert(name);
            }
            match kind {
                "record" => {
                    let fields = map
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or_else(|| format!("record without fields: {node}"))?;
                    let mut new_fields = Vec::with_capacity(fields.len());
                    for field in fields {
                        let mut field = field.clone();
                        if let Some(t) = field.get("type") {
                            let t = inline(t, &inner_namespace, library, defined)?;
                            field["type"] = t;
                        }
                        new_fields.push(field);
                    }
                    out.insert("fields".into(), Value::Array(new_fields));
                }
                "array" => {
                    if let Some(items) = map.get("items") {
                        out.insert("items".into(), inline(items, namespace, library, defined)?);
                    }
                }
                "map" => {
                    if let Some(values) = map.get("values") {
                        out.insert(
                            "values".into(),
                            inline(values, namespace, library, defined)?,
                        );
                    }
                }
                "enum" | "fixed" => {}
                _ => {
                    if let Some(t) = map.get("type") {
                        out.insert("type".into(), inline(t, namespace, library, defined)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        _ => Ok(node.clone()),
    }
}
