//! Contract tests: every record round-trips, the wire format is the Avro
//! single-object encoding as other implementations write it, the Rust types
//! match the schemas field for field, bad input is a clear error, and older
//! writer schemas still decode.

use std::net::{IpAddr, Ipv4Addr};

use apache_avro::types::Value;
use proptest::prelude::*;
use tapwire_schemas::codec::{self, HEADER_LEN, MAGIC};
use tapwire_schemas::registry::registry;
use tapwire_schemas::*;

fn hdr(seq: u64) -> EventHeader {
    samples::header(
        "node-a",
        "sensor-1",
        seq,
        1_700_000_000_000_000_000 + seq as i64,
    )
}

fn enriched() -> EnrichedEvent {
    let mut src = PeerContext::of_kind(PeerKind::Pod);
    src.pod = Some("web-1".into());
    src.namespace = Some("shop".into());
    src.labels.insert("app".into(), "web".into());
    let mut dst = PeerContext::of_kind(PeerKind::External);
    dst.dns_name = Some("example.com".into());
    EnrichedEvent {
        body: EventBody::L4(samples::l4_flow(hdr(1), 1)),
        src,
        dst,
    }
}

fn every_record() -> Vec<AnyEvent> {
    vec![
        AnyEvent::L4Event(samples::l4_flow(hdr(1), 1)),
        AnyEvent::L4Event(samples::l4_flow(hdr(8), 8)),
        AnyEvent::DnsEvent(samples::dns_resolution(hdr(2))),
        AnyEvent::RuntimeEvent(samples::file_rename(hdr(3))),
        AnyEvent::PacketRecord(PacketRecord {
            header: hdr(4),
            link_type: 1,
            captured_len: 3,
            original_len: 60,
            data: vec![1, 2, 3],
            flow_hash: u64::MAX - 7,
            interface: Some("eth0".into()),
        }),
        AnyEvent::InventorySnapshot(InventorySnapshot {
            header: hdr(5),
            tcp_connections: vec![Socket {
                local: Endpoint {
                    ip: "10.0.0.1".parse().expect("ip"),
                    port: 443,
                },
                remote: Some(Endpoint {
                    ip: "::1".parse().expect("ip"),
                    port: 50000,
                }),
                state: "ESTABLISHED".into(),
                inode: 12345,
                pid: None,
                binary: None,
                binary_path: Some("/usr/sbin/nginx".into()),
                duration_ns: None,
            }],
            tcp_listeners: vec![],
            udp_listeners: vec![],
        }),
        AnyEvent::PodMetadata(samples::pod(
            hdr(6),
            "web-1",
            "shop",
            IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7)),
        )),
        AnyEvent::EnrichedEvent(enriched()),
        AnyEvent::Verdict(Verdict {
            event: enriched(),
            mode: Mode::Enforce,
            policy: Some("shop/deny-egress".into()),
            rule: Some("no-external".into()),
            signature_id: "FNT-004".into(),
            severity: 7,
            outcome: Outcome::Blocked,
            sides: vec![SideDecision {
                side: Side::Ingress,
                mode: Mode::Audit,
                outcome: Outcome::Audited,
                policy: Some("shop/audit".into()),
                rule: None,
            }],
        }),
        AnyEvent::LossRecord(LossRecord {
            header: hdr(9),
            source: "ringbuf".into(),
            lost: 17,
        }),
        AnyEvent::AgentHeartbeat(samples::heartbeat(hdr(10), 1_700_000_000, 3, 42)),
        AnyEvent::AgentHeartbeat(AgentHeartbeat {
            sources: vec![],
            losses: vec![],
            stopping: true,
            ..samples::heartbeat(hdr(11), 1_700_000_000, 4, 0)
        }),
        AnyEvent::ApiRequest(samples::api_request(hdr(30), "soc", "/api/v1/pod", 200)),
        AnyEvent::ApiRequest(samples::api_request(hdr(31), "", "/api/v1/events", 401)),
    ]
}

fn encode_any(event: &AnyEvent) -> Vec<u8> {
    let mut out = Vec::new();
    event.encode_into(&mut out).expect("encodes");
    out
}

/// The event as apache-avro's serde writes it, brought to what its
/// schema-aware encoding means: apache-avro's `to_value` writes a newtype
/// variant (an [`EventBody`]) as a record `{type, value}`, the Avro datum is
/// the union branch.
fn apache_value(event: &impl serde::Serialize) -> Value {
    fn unions(value: Value) -> Value {
        match value {
            Value::Record(fields) => match &fields[..] {
                [(t, Value::Enum(i, _)), (v, Value::Union(j, _))]
                    if t == "type" && v == "value" && i == j =>
                {
                    let Some((_, Value::Union(j, inner))) = fields.into_iter().nth(1) else {
                        unreachable!("matched above")
                    };
                    Value::Union(j, Box::new(unions(*inner)))
                }
                _ => Value::Record(fields.into_iter().map(|(n, v)| (n, unions(v))).collect()),
            },
            Value::Union(i, inner) => Value::Union(i, Box::new(unions(*inner))),
            Value::Array(items) => Value::Array(items.into_iter().map(unions).collect()),
            Value::Map(items) => {
                Value::Map(items.into_iter().map(|(k, v)| (k, unions(v))).collect())
            }
            other => other,
        }
    }
    unions(apache_avro::to_value(event).expect("serde to apache-avro Value"))
}

#[test]
fn every_record_round_trips() {
    for event in every_record() {
        let bytes = encode_any(&event);
        assert_eq!(bytes[..2], MAGIC);
        let back = decode_any(&bytes).unwrap_or_else(|e| panic!("{:?}: {e}", event.kind()));
        assert_eq!(back, event);
    }
}

#[test]
fn bytes_equal_what_apache_avro_writes_for_the_same_schema() {
    // An independent implementation of the same spec must produce the same
    // bytes: header (magic + Rabin fingerprint, little-endian) and datum.
    for event in every_record() {
        let entry = registry().current(event.kind());
        let value = apache_value(&event)
            .resolve(&entry.apache)
            .unwrap_or_else(|e| panic!("{:?}: value does not fit schema: {e}", event.kind()));
        let mut expected = Vec::new();
        apache_avro::GenericSingleObjectWriter::new_with_capacity(&entry.apache, 1024)
            .expect("writer")
            .write_value(value, &mut expected)
            .expect("apache-avro writes");
        assert_eq!(encode_any(&event), expected, "{:?}", event.kind());
    }
}

/// Field names of a record, in order, from the schema.
fn schema_fields(schema: &apache_avro::Schema) -> Option<Vec<String>> {
    match schema {
        apache_avro::Schema::Record(r) => Some(r.fields.iter().map(|f| f.name.clone()).collect()),
        _ => None,
    }
}

#[test]
fn rust_types_have_the_schema_fields_in_schema_order() {
    for event in every_record() {
        let entry = registry().current(event.kind());
        let Value::Record(fields) = apache_value(&event) else {
            panic!("{:?} does not serialize as a record", event.kind());
        };
        let rust: Vec<String> = fields.into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            Some(rust),
            schema_fields(&entry.apache),
            "{:?}",
            event.kind()
        );
    }
}

#[test]
fn garbage_is_rejected_with_a_reason() {
    assert!(matches!(
        decode_any(b"hello"),
        Err(DecodeError::TooShort { len: 5 })
    ));
    assert!(matches!(
        decode_any(b"{\"json\": true}"),
        Err(DecodeError::BadMagic { .. })
    ));

    let mut unknown = encode_any(&every_record()[0]);
    unknown[2..HEADER_LEN].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1]);
    let err = decode_any(&unknown).expect_err("unknown fingerprint");
    assert_eq!(err.label(), "unknown_fingerprint");
    assert!(err.to_string().contains("deadbeef00000001"), "{err}");

    let mut trailing = encode_any(&every_record()[0]);
    trailing.extend_from_slice(b"junk");
    let err = decode_any(&trailing).expect_err("trailing bytes");
    assert!(err.to_string().contains("4 bytes after the end"), "{err}");

    let full = encode_any(&every_record()[0]);
    let err = decode_any(&full[..full.len() - 5]).expect_err("truncated");
    assert_eq!(err.label(), "bad_body");
    let current = format!(
        "io.tapwire.L4Event v{}",
        registry().current(SchemaKind::L4Event).version
    );
    assert!(err.to_string().contains(&current), "{err}");
}

#[test]
fn a_spliced_enriched_event_equals_the_encoded_one() {
    let AnyEvent::EnrichedEvent(event) = &every_record()[7] else {
        panic!("fixture order")
    };
    let EventBody::L4(l4) = &event.body else {
        panic!("fixture holds an L4 event")
    };
    let l4 = encode(l4).expect("l4 bytes");
    let (mut src, mut dst) = (Vec::new(), Vec::new());
    codec::peer_context_datum(&event.src, &mut src).expect("src");
    codec::peer_context_datum(&event.dst, &mut dst).expect("dst");
    let mut spliced = Vec::new();
    assert!(codec::write_enriched_l4(&l4, &src, &dst, &mut spliced));
    assert_eq!(spliced, encode(event).expect("encode"));
    let dns = encode(&samples::dns_resolution(hdr(1))).expect("dns");
    assert!(
        !codec::write_enriched_l4(&dns, &src, &dst, &mut Vec::new()),
        "only a current L4Event is spliced"
    );
}

#[test]
fn the_borrowed_l4_view_reads_the_same_fields() {
    let event = samples::l4_flow(hdr(8), 8);
    let bytes = encode(&event).expect("encode");
    let view = codec::decode_l4_view(&bytes).expect("view");
    assert_eq!(view.header.id, event.header.id);
    assert_eq!(view.header.node, event.header.node);
    assert_eq!(view.header.node_ip, event.header.node_ip);
    assert_eq!(
        (view.src, view.dst, view.direction),
        (event.src, event.dst, event.direction)
    );
    assert_eq!(view.container_id, event.container_id.as_deref());
    assert_eq!(
        (view.binary, view.final_state),
        (event.binary.as_str(), event.final_state)
    );
    let v1 = std::fs::read(V1_FIXTURE).expect("fixture");
    assert!(
        codec::decode_l4_view(&v1).is_err(),
        "older versions go through `decode`"
    );
}

#[test]
fn decoding_as_the_wrong_type_says_what_the_message_is() {
    let bytes = encode_any(&every_record()[2]);
    let err = decode::<L4Event>(&bytes).expect_err("a DNS event is not an L4 event");
    assert!(matches!(
        err,
        DecodeError::WrongSchema {
            expected: SchemaKind::L4Event,
            found: SchemaKind::DnsEvent
        }
    ));
}

const V1_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/l4_event_v1.bin"
);

/// The v1 fixture's content, written by apache-avro with the v1 schema.
fn v1_value() -> Value {
    let ip = |b: [u8; 4]| Value::Bytes(b.to_vec());
    Value::Record(vec![
        (
            "header".into(),
            Value::Record(vec![
                ("id".into(), Value::Fixed(16, (1..=16).collect())),
                (
                    "timestamp_ns".into(),
                    Value::Long(1_600_000_000_000_000_123),
                ),
                ("node".into(), Value::String("node-old".into())),
                ("sensor_id".into(), Value::String("sensor-v1".into())),
            ]),
        ),
        ("kind".into(), Value::Enum(3, "network_flow".into())),
        ("pid".into(), Value::Long(31337)),
        ("binary".into(), Value::String("wget".into())),
        (
            "container_id".into(),
            Value::Union(0, Box::new(Value::Null)),
        ),
        (
            "src".into(),
            Value::Record(vec![
                ("ip".into(), ip([10, 1, 0, 7])),
                ("port".into(), Value::Int(40000)),
            ]),
        ),
        (
            "dst".into(),
            Value::Record(vec![
                ("ip".into(), ip([10, 1, 0, 9])),
                ("port".into(), Value::Int(80)),
            ]),
        ),
        ("protocol".into(), Value::Enum(0, "tcp".into())),
        ("direction".into(), Value::Enum(0, "egress".into())),
        (
            "duration_ns".into(),
            Value::Union(1, Box::new(Value::Long(2_000_000))),
        ),
    ])
}

#[test]
fn a_message_written_with_the_previous_l4_schema_decodes() {
    let v1 = registry()
        .entries()
        .iter()
        .find(|e| e.kind == SchemaKind::L4Event && e.version == 1)
        .expect("v1 of L4Event is in the registry");
    if std::env::var_os("TAPWIRE_REGENERATE_FIXTURES").is_some() {
        let mut bytes = Vec::new();
        apache_avro::GenericSingleObjectWriter::new_with_capacity(&v1.apache, 1024)
            .expect("writer")
            .write_value(v1_value(), &mut bytes)
            .expect("write v1");
        std::fs::write(V1_FIXTURE, bytes).expect("write fixture");
    }
    let bytes = std::fs::read(V1_FIXTURE).expect("fixture present");
    assert_eq!(
        bytes[2..HEADER_LEN],
        v1.fingerprint,
        "fixture is written with v1"
    );
    assert_ne!(
        v1.fingerprint,
        registry().current(SchemaKind::L4Event).fingerprint
    );

    let event: L4Event = decode(&bytes).expect("v1 resolves against the current schema");
    assert_eq!(event.header.node, "node-old");
    assert_eq!(event.header.id.0.to_vec(), (1..=16).collect::<Vec<u8>>());
    assert_eq!(event.kind, L4Kind::NetworkFlow);
    assert_eq!(event.pid, 31337);
    assert_eq!(event.src.ip.to_string(), "10.1.0.7");
    assert_eq!(event.dst.port, 80);
    assert_eq!(event.duration_ns, Some(2_000_000));
    // Fields v1 did not have take their defaults.
    assert_eq!(
        (event.bytes_sent, event.bytes_received, event.final_state),
        (None, None, None)
    );
}

#[test]
fn every_current_schema_reads_its_previous_versions() {
    for old in registry().entries().iter().filter(|e| !e.current) {
        // The current version, or the last one before a change of layout
        // (`upgrade` converts from there).
        let reader = registry().resolves_against(old);
        apache_avro::schema_compatibility::SchemaCompatibility::can_read(
            &old.apache,
            &reader.apache,
        )
        .unwrap_or_else(|e| {
            panic!(
                "{} v{} cannot be read by v{}: {e}",
                old.kind, old.version, reader.version
            )
        });
    }
}

#[test]
fn every_change_of_layout_starts_from_a_kept_version() {
    for step in upgrade::UPGRADES {
        let last = registry()
            .version(step.kind, step.last)
            .unwrap_or_else(|| panic!("{} v{} is not in the history", step.kind, step.last));
        let current = registry().current(step.kind);
        assert!(!last.current && last.version < current.version);
        if step.last + 1 == current.version {
            // Otherwise the conversion would not be needed.
            assert!(
                apache_avro::schema_compatibility::SchemaCompatibility::can_read(
                    &last.apache,
                    &current.apache
                )
                .is_err(),
                "{} v{} resolves into v{} without a conversion",
                step.kind,
                step.last,
                current.version
            );
        }
    }
}

#[test]
fn the_kind_table_names_each_file_and_record() {
    assert_eq!(SchemaKind::ALL.len(), 13);
    for kind in SchemaKind::ALL {
        let entry = registry().current(kind);
        let schema: serde_json::Value = serde_json::from_str(&entry.json).expect("json");
        assert_eq!(
            schema["namespace"]
                .as_str()
                .map(|ns| format!("{ns}.{}", schema["name"].as_str().unwrap_or_default())),
            Some(kind.full_name().to_owned())
        );
        assert!(kind.file_name().ends_with(".avsc"), "{kind}");
    }
}

/// An enriched event in the layout of EnrichedEvent v1 to v3: three
/// optional fields `l4`, `dns`, `runtime`, exactly one set.
fn enriched_v3_value(e: &EnrichedEvent) -> Value {
    let none = || Value::Union(0, Box::new(Value::Null));
    let some = |v: Value| Value::Union(1, Box::new(v));
    let (l4, dns, runtime) = match &e.body {
        EventBody::L4(x) => (some(apache_value(x)), none(), none()),
        EventBody::Dns(x) => (none(), some(apache_value(x)), none()),
        EventBody::Runtime(x) => (none(), none(), some(apache_value(x))),
    };
    Value::Record(vec![
        ("l4".into(), l4),
        ("dns".into(), dns),
        ("runtime".into(), runtime),
        ("src".into(), apache_value(&e.src)),
        ("dst".into(), apache_value(&e.dst)),
    ])
}

/// `event` (an `EnrichedEvent` or a `Verdict`) in the layout of v3.
fn v3_value(event: &AnyEvent) -> Value {
    match event {
        AnyEvent::EnrichedEvent(e) => enriched_v3_value(e),
        AnyEvent::Verdict(v) => {
            let Value::Record(fields) = apache_value(v) else {
                panic!("a verdict is a record")
            };
            Value::Record(
                fields
                    .into_iter()
                    .map(|(name, value)| match name.as_str() {
                        "event" => (name, enriched_v3_value(&v.event)),
                        _ => (name, value),
                    })
                    .collect(),
            )
        }
        other => panic!("no v3 layout for {:?}", other.kind()),
    }
}

/// `event` without what verdicts up to v5 (and their enriched events up to
/// v4) cannot carry: the process fields of L4 events (L4Event v4) and the
/// client of DNS events (DnsEvent v3).
fn as_v3_carries(event: &AnyEvent) -> AnyEvent {
    let strip = |body: &mut EventBody| match body {
        EventBody::L4(l) => {
            (l.ppid, l.euid, l.egid) = (None, None, None);
            (l.binary_path, l.command_line) = (None, None);
        }
        EventBody::Dns(d) => (d.client, d.connection) = (None, None),
        EventBody::Runtime(_) => {}
    };
    let mut out = event.clone();
    match &mut out {
        AnyEvent::EnrichedEvent(e) => strip(&mut e.body),
        AnyEvent::Verdict(v) => strip(&mut v.event.body),
        _ => {}
    }
    out
}

/// `event` written as an old producer writes it: in the v3 layout, then
/// resolved down to `version` (which drops what that version lacks).
fn encode_old(event: &AnyEvent, version: u32) -> Vec<u8> {
    let kind = event.kind();
    let v3 = registry().version(kind, 3).expect("v3 kept");
    let old = registry().version(kind, version).expect("old version kept");
    let mut value = v3_value(event)
        .resolve(&v3.apache)
        .unwrap_or_else(|e| panic!("{kind}: not a v3 value: {e}"));
    if version != 3 {
        let datum = apache_avro::to_avro_datum(&v3.apache, value).expect("v3 datum");
        value = apache_avro::from_avro_datum(&v3.apache, &mut &datum[..], Some(&old.apache))
            .expect("v3 resolves down");
    }
    let mut bytes = Vec::new();
    apache_avro::GenericSingleObjectWriter::new_with_capacity(&old.apache, 1024)
        .expect("writer")
        .write_value(value, &mut bytes)
        .expect("apache-avro writes the old version");
    assert_eq!(bytes[2..HEADER_LEN], old.fingerprint);
    bytes
}

/// One enriched event per family; node and peer kinds every version knows.
fn enriched_of_every_family() -> Vec<EnrichedEvent> {
    let bodies = [
        EventBody::L4(samples::l4_flow(hdr(11), 11)),
        EventBody::Dns(samples::dns_resolution(hdr(12))),
        EventBody::Runtime(samples::file_rename(hdr(13))),
    ];
    bodies
        .into_iter()
        .map(|body| EnrichedEvent { body, ..enriched() })
        .collect()
}

/// Issue 13: EnrichedEvent v4 and Verdict v4 carry the event as a union;
/// messages of v1 to v3 (three optional fields) still on the topics during an
/// upgrade decode into the new types.
#[test]
fn enriched_events_and_verdicts_of_the_old_layout_decode() {
    for event in enriched_of_every_family() {
        let verdict = samples::verdict(event.clone(), Mode::Audit, Outcome::Audited);
        for record in [
            AnyEvent::EnrichedEvent(event.clone()),
            AnyEvent::Verdict(verdict),
        ] {
            let kind = record.kind();
            assert!(registry().current(kind).version >= 4, "{kind}");
            let v3 = encode_old(&record, 3);
            assert_eq!(
                decode_any(&v3).unwrap_or_else(|e| panic!("{kind} v3: {e}")),
                as_v3_carries(&record),
                "v3 carries every field it has"
            );
            for version in 1..3 {
                let old = encode_old(&record, version);
                let back = decode_any(&old).unwrap_or_else(|e| panic!("{kind} v{version}: {e}"));
                assert_eq!(back.kind(), kind);
                // Nothing the old message said is lost: written again in its
                // version, the decoded event is the same message.
                assert_eq!(encode_old(&back, version), old, "{kind} v{version}");
            }
        }
    }
}

#[test]
fn an_old_enriched_event_without_exactly_one_event_is_an_error() {
    let v3 = registry()
        .version(SchemaKind::EnrichedEvent, 3)
        .expect("v3");
    let Value::Record(mut fields) = enriched_v3_value(&enriched()) else {
        unreachable!()
    };
    let write = |fields: Vec<(String, Value)>| {
        let value = Value::Record(fields).resolve(&v3.apache).expect("v3 value");
        let mut bytes = Vec::new();
        apache_avro::GenericSingleObjectWriter::new_with_capacity(&v3.apache, 1024)
            .expect("writer")
            .write_value(value, &mut bytes)
            .expect("write");
        decode::<EnrichedEvent>(&bytes).expect_err("not exactly one event")
    };
    let dns = apache_value(&samples::dns_resolution(hdr(2)));
    fields[1].1 = Value::Union(1, Box::new(dns));
    let err = write(fields.clone());
    assert_eq!(err.label(), "bad_body");
    assert!(err.to_string().contains("more than one"), "{err}");
    fields[0].1 = Value::Union(0, Box::new(Value::Null));
    fields[1].1 = Value::Union(0, Box::new(Value::Null));
    let err = write(fields);
    assert!(err.to_string().contains("none of"), "{err}");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_any(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        kind in 0..SchemaKind::ALL.len(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&registry().current(SchemaKind::ALL[kind]).fingerprint);
        bytes.extend_from_slice(&body);
        let _ = decode_any(&bytes);
    }

    /// Any enriched event round-trips through the codec, through JSON, and
    /// from the old (v3) layout, whatever its family.
    #[test]
    fn enriched_events_round_trip(
        family in 0..3u8,
        seq in 0..1_000_000u64,
        binary in "[a-z/]{0,12}",
        container_id in proptest::option::of("[0-9a-f]{0,16}"),
        pod in proptest::option::of("[a-z0-9-]{1,10}"),
    ) {
        let header = hdr(seq);
        let body = match family {
            0 => {
                let mut e = samples::l4_flow(header, seq);
                (e.binary, e.container_id) = (binary, container_id);
                EventBody::L4(e)
            }
            1 => {
                let mut e = samples::dns_resolution(header);
                (e.binary, e.container_id) = (binary, container_id);
                EventBody::Dns(e)
            }
            _ => {
                let mut e = samples::file_rename(header);
                (e.binary, e.container_id) = (binary, container_id);
                EventBody::Runtime(e)
            }
        };
        let mut src = enriched().src;
        src.pod = pod;
        let event = EnrichedEvent { body, src, ..enriched() };
        let any = AnyEvent::EnrichedEvent(event.clone());
        let bytes = encode_any(&any);
        prop_assert_eq!(decode::<EnrichedEvent>(&bytes).expect("decodes"), event.clone());
        let json = serde_json::to_string(&event).expect("json");
        prop_assert_eq!(serde_json::from_str::<EnrichedEvent>(&json).expect("from json"), event.clone());
        prop_assert_eq!(decode_any(&encode_old(&any, 3)).expect("v3 decodes"), as_v3_carries(&any));
    }

    #[test]
    fn every_truncation_is_an_error(cut in 0usize..100) {
        let full = encode_any(&every_record()[6]);
        let cut = cut.min(full.len() - 1);
        prop_assert!(decode_any(&full[..cut]).is_err());
    }
}

/// Before a schema change: `TAPWIRE_SNAPSHOT_SCHEMAS=1 cargo test -p
/// tapwire-schemas --test contracts snapshot` writes every current schema,
/// self-contained, to `avro/history/` under its version, so readers keep
/// resolving what this version wrote.
#[test]
fn snapshot_current_schemas_into_history() {
    if std::env::var_os("TAPWIRE_SNAPSHOT_SCHEMAS").is_none() {
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/avro/history");
    for kind in SchemaKind::ALL {
        let entry = registry().current(kind);
        let name = kind.full_name().trim_start_matches("io.tapwire.");
        let value: serde_json::Value = serde_json::from_str(&entry.json).expect("json");
        let text = serde_json::to_string_pretty(&value).expect("pretty");
        std::fs::write(format!("{dir}/{name}.v{}.avsc", entry.version), text + "\n")
            .expect("write");
    }
}

/// Verdict v5 added the connection's side decisions (default: none): a v4
/// verdict on the topic during an upgrade decodes with no sides.
#[test]
fn a_verdict_of_v4_decodes_without_side_decisions() {
    let mut verdict = samples::flow_verdict(hdr(21), 21);
    verdict.sides.clear();
    let current = registry().current(SchemaKind::Verdict);
    assert!(current.version >= 5);
    let v4 = registry().version(SchemaKind::Verdict, 4).expect("v4 kept");
    let bytes = encode(&verdict).expect("encode");
    let value =
        apache_avro::from_avro_datum(&current.apache, &mut &bytes[HEADER_LEN..], Some(&v4.apache))
            .expect("v5 resolves down to v4");
    let mut old = Vec::new();
    apache_avro::GenericSingleObjectWriter::new_with_capacity(&v4.apache, 1024)
        .expect("writer")
        .write_value(value, &mut old)
        .expect("apache-avro writes v4");
    assert_eq!(old[2..HEADER_LEN], v4.fingerprint);
    assert_eq!(
        decode_any(&old).expect("a v4 verdict decodes"),
        as_v3_carries(&AnyEvent::Verdict(verdict))
    );
}

/// Issue 15: the heartbeat is a top-level record on its own topic, keyed by
/// sensor id; v2 (issue 16) added `enforcing` (default false).
#[test]
fn the_heartbeat_is_on_its_own_topic() {
    let entry = registry().current(SchemaKind::AgentHeartbeat);
    assert_eq!(entry.version, 2);
    assert!(
        topics::ALL
            .iter()
            .any(|t| t.name == topics::AGENTS && !t.compacted)
    );
    let hb = samples::heartbeat(hdr(12), 5, 0, 7);
    assert_eq!(hb.lost(), 7);
    assert_eq!(hb.silent_at_ns(), hb.header.timestamp_ns + 20_000_000_000);
}

/// A v1 heartbeat (before enforcement) decodes as an agent that does not
/// enforce: nothing is claimed for a node whose agent never said so.
#[test]
fn a_heartbeat_of_v1_decodes_as_not_enforcing() {
    let mut hb = samples::heartbeat(hdr(13), 2, 0, 0);
    hb.enforcing = true;
    let current = registry().current(SchemaKind::AgentHeartbeat);
    let v1 = registry()
        .version(SchemaKind::AgentHeartbeat, 1)
        .expect("v1 kept");
    let bytes = encode(&hb).expect("encode");
    let value =
        apache_avro::from_avro_datum(&current.apache, &mut &bytes[HEADER_LEN..], Some(&v1.apache))
            .expect("v2 resolves down to v1");
    let mut old = Vec::new();
    apache_avro::GenericSingleObjectWriter::new_with_capacity(&v1.apache, 1024)
        .expect("writer")
        .write_value(value, &mut old)
        .expect("apache-avro writes v1");
    assert_eq!(old[2..HEADER_LEN], v1.fingerprint);
    match decode_any(&old).expect("a v1 heartbeat decodes") {
        AnyEvent::AgentHeartbeat(decoded) => {
            assert!(!decoded.enforcing);
            assert_eq!(decoded.sources, hb.sources);
        }
        other => panic!("decoded as {other:?}"),
    }
}

/// Issue 18: PodMetadata v3 carries the spec's security settings; a v2
/// record (older watcher) decodes with none, so the misconfiguration
/// scanner can say the record does not tell rather than "all clear".
#[test]
fn a_pod_record_of_v2_decodes_without_security_settings() {
    let pod = samples::pod(
        hdr(14),
        "web-1",
        "shop",
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 4)),
    );
    assert!(pod.security.is_some());
    let current = registry().current(SchemaKind::PodMetadata);
    assert_eq!(current.version, 3);
    let v2 = registry()
        .version(SchemaKind::PodMetadata, 2)
        .expect("v2 kept");
    let bytes = encode(&pod).expect("encode");
    let value =
        apache_avro::from_avro_datum(&current.apache, &mut &bytes[HEADER_LEN..], Some(&v2.apache))
            .expect("v3 resolves down to v2");
    let mut old = Vec::new();
    apache_avro::GenericSingleObjectWriter::new_with_capacity(&v2.apache, 1024)
        .expect("writer")
        .write_value(value, &mut old)
        .expect("apache-avro writes v2");
    match decode_any(&old).expect("a v2 pod record decodes") {
        AnyEvent::PodMetadata(decoded) => {
            assert_eq!(decoded.security, None);
            assert_eq!(decoded.name, pod.name);
        }
        other => panic!("decoded as {other:?}"),
    }
}

/// An enriched event of `family` (0 L4, 1 DNS, 2 runtime) between two pods
/// with labels and workloads.
fn any_family(family: u8, seq: u64, blocked_by: Option<String>) -> EnrichedEvent {
    let header = hdr(seq);
    let body = match family {
        0 => {
            let mut e = samples::l4_flow(header, seq);
            e.blocked_by = blocked_by;
            EventBody::L4(e)
        }
        1 => EventBody::Dns(samples::dns_resolution(header)),
        _ => {
            let mut e = samples::file_rename(header);
            e.blocked_by = blocked_by;
            EventBody::Runtime(e)
        }
    };
    let mut src = samples::pod_peer("web-1", "shop");
    src.labels.insert("tier".into(), "front".into());
    EnrichedEvent {
        body,
        src,
        dst: samples::pod_peer("db-0", "data"),
    }
}

fn arb_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Audit), Just(Mode::Enforce), Just(Mode::Other)]
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Allowed),
        Just(Outcome::Audited),
        Just(Outcome::Blocked),
        Just(Outcome::NotPrevented)
    ]
}

fn arb_side() -> impl Strategy<Value = SideDecision> {
    (
        any::<bool>(),
        arb_mode(),
        arb_outcome(),
        proptest::option::of("[a-z/]{0,20}"),
        proptest::option::of("[a-z0-9-]{0,70}"),
    )
        .prop_map(|(ingress, mode, outcome, policy, rule)| SideDecision {
            side: if ingress { Side::Ingress } else { Side::Egress },
            mode,
            outcome,
            policy,
            rule,
        })
}

proptest! {
    /// The borrowed views read what the owned decoding reads, and a verdict
    /// spliced from the enriched message is byte for byte the encoded
    /// verdict, whatever its fields.
    #[test]
    fn views_and_spliced_verdicts_match_the_owned_codec(
        family in 0..3u8,
        seq in 0..1_000_000u64,
        blocked_by in proptest::option::of("[a-z/-]{0,30}"),
        mode in arb_mode(),
        outcome in arb_outcome(),
        policy in proptest::option::of("[a-z/]{0,200}"),
        rule in proptest::option::of("[a-z0-9]{0,10}"),
        severity in -1000..1000i32,
        sides in proptest::collection::vec(arb_side(), 0..3),
    ) {
        let event = any_family(family, seq, blocked_by);
        let enriched = encode(&event).expect("encode");
        prop_assert_eq!(codec::decode_enriched_view(&enriched).expect("view"), event.view());
        let verdict = Verdict {
            event,
            mode,
            policy,
            rule,
            signature_id: "NT-001".into(),
            severity,
            outcome,
            sides,
        };
        let owned = encode(&verdict).expect("encode");
        let view = verdict.view();
        let tail = codec::VerdictTail {
            mode,
            policy: view.policy,
            rule: view.rule,
            signature_id: view.signature_id,
            severity,
            outcome,
            sides: &view.sides,
        };
        let mut spliced = Vec::new();
        prop_assert!(codec::write_verdict(&enriched, &tail, &mut spliced));
        prop_assert_eq!(&spliced, &owned);
        prop_assert_eq!(codec::decode_verdict_view(&owned).expect("view"), view);
    }
}

#[test]
fn views_refuse_other_kinds_and_old_versions() {
    let verdict = encode(&samples::flow_verdict(hdr(3), 3)).expect("encode");
    let err = codec::decode_enriched_view(&verdict).expect_err("a verdict is no enriched event");
    assert_eq!(err.label(), "wrong_schema");
    let mut spliced = Vec::new();
    let tail = codec::VerdictTail {
        mode: Mode::Other,
        policy: None,
        rule: None,
        signature_id: "NT-001",
        severity: 3,
        outcome: Outcome::Allowed,
        sides: &[],
    };
    assert!(!codec::write_verdict(&verdict, &tail, &mut spliced));
    assert!(
        spliced.is_empty(),
        "nothing written for a message it cannot splice"
    );
    let old = encode_old(&AnyEvent::EnrichedEvent(enriched()), 3);
    let err = codec::decode_enriched_view(&old).expect_err("v3 needs the owned decoder");
    assert!(err.to_string().contains("older version"), "{err}");
    assert!(!codec::write_verdict(&old, &tail, &mut spliced));
}

proptest! {
    /// The hand-written view reader reads what the serde codec reads, for
    /// raw L4 events with every optional field set or not.
    #[test]
    fn l4_views_match_the_owned_codec(
        seq in 0..1_000_000u64,
        optional in any::<bool>(),
        v6 in any::<bool>(),
        port in any::<u16>(),
    ) {
        let mut e = samples::l4_flow(hdr(seq), seq);
        e.dst.port = port;
        if v6 {
            e.src.ip = Ip("fd00::1".parse().expect("v6"));
        }
        if optional {
            e.ppid = Some(7);
            e.euid = Some(1000);
            e.egid = Some(1000);
            e.binary_path = Some("/usr/bin/curl".into());
            e.command_line = Some("curl -s http://x".into());
            e.blocked_by = Some("shop/p/r".into());
            e.header.node_ip = Some(Ip("10.0.0.1".parse().expect("v4")));
        } else {
            (e.duration_ns, e.bytes_sent, e.bytes_received, e.final_state) = (None, None, None, None);
            e.container_id = None;
        }
        let bytes = encode(&e).expect("encode");
        prop_assert_eq!(codec::decode_l4_view(&bytes).expect("view"), e.view());
    }

    /// No input makes the view readers panic.
    #[test]
    fn arbitrary_view_bodies_never_panic(
        kind in 0..3usize,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let kind = [SchemaKind::L4Event, SchemaKind::EnrichedEvent, SchemaKind::Verdict][kind];
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&registry().current(kind).fingerprint);
        bytes.extend_from_slice(&body);
        let _ = codec::decode_l4_view(&bytes);
        let _ = codec::decode_enriched_view(&bytes);
        let _ = codec::decode_verdict_view(&bytes);
    }

    /// Every cut of a valid verdict is an error for the view reader.
    #[test]
    fn truncated_views_are_errors(family in 0..3u8, cut in 0usize..2000) {
        let verdict = samples::verdict(any_family(family, 9, None), Mode::Audit, Outcome::Audited);
        let full = encode(&verdict).expect("encode");
        let enriched = encode(&verdict.event).expect("encode");
        prop_assert!(codec::decode_verdict_view(&full[..cut.min(full.len() - 1)]).is_err());
        prop_assert!(codec::decode_enriched_view(&enriched[..cut.min(enriched.len() - 1)]).is_err());
        let mut longer = full.clone();
        longer.push(0);
        prop_assert!(codec::decode_verdict_view(&longer).is_err(), "trailing bytes");
    }
}
