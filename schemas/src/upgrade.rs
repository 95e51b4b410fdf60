//! Changes of layout that Avro schema resolution cannot express, as
//! conversions of a resolved value.
//!
//! Resolution adds and drops fields, widens numbers and fills defaults, but
//! it cannot turn three optional fields into one union. For such a change,
//! a message of an older version is first resolved against the last version
//! before the change (kept in `avro/history/`), then converted by the
//! [`Upgrade`]'s function into the next layout, and finally resolved against
//! the current version. [`Registry::resolves_against`] names the schema of
//! the first step; `codec` runs the steps.
//!
//! [`Registry::resolves_against`]: crate::registry::Registry::resolves_against

use apache_avro::types::Value;

use crate::registry::{SchemaKind, registry};

/// One change of layout of a record.
pub struct Upgrade {
    /// The record that changed.
    pub kind: SchemaKind,
    /// The last version of the old layout: older messages are resolved
    /// against it before [`Upgrade::apply`].
    pub last: u32,
    /// Converts a value of version `last` into the layout of version
    /// `last + 1`.
    pub apply: fn(Value) -> Result<Value, String>,
}

/// Every change of layout, in version order per kind.
pub const UPGRADES: &[Upgrade] = &[
    Upgrade {
        kind: SchemaKind::EnrichedEvent,
        last: 3,
        apply: enriched_event_v4,
    },
    Upgrade {
        kind: SchemaKind::Verdict,
        last: 3,
        apply: verdict_v4,
    },
];

/// The first change of layout of `kind` that a message of `version` must go
/// through, if any.
pub fn first_after(kind: SchemaKind, version: u32) -> Option<&'static Upgrade> {
    UPGRADES
        .iter()
        .find(|u| u.kind == kind && u.last >= version)
}

/// Reads the datum `body`, written with `writer` (version `version` of
/// `kind`), as a value of the current version of `kind`.
pub(crate) fn to_current(
    kind: SchemaKind,
    version: u32,
    writer: &apache_avro::Schema,
    mut body: &[u8],
) -> Result<Value, String> {
    let registry = registry();
    let current = registry.current(kind);
    let mut steps = UPGRADES
        .iter()
        .filter(|u| u.kind == kind && u.last >= version)
        .peekable();
    let Some(first) = steps.peek() else {
        return apache_avro::from_avro_datum(writer, &mut body, Some(&current.apache))
            .map_err(|e| e.to_string());
    };
    let reader = registry
        .version(kind, first.last)
        .ok_or_else(|| format!("{kind} v{} is not in the history", first.last))?;
    let mut value = apache_avro::from_avro_datum(writer, &mut body, Some(&reader.apache))
        .map_err(|e| e.to_string())?;
    let mut at = first.last;
    for step in steps {
        if step.last != at {
            let reader = registry
                .version(kind, step.last)
                .ok_or_else(|| format!("{kind} v{} is not in the history", step.last))?;
            value = value.resolve(&reader.apache).map_err(|e| e.to_string())?;
        }
        value = (step.apply)(value)?;
        at = step.last + 1;
    }
    value.resolve(&current.apache).map_err(|e| e.to_string())
}

/// `EnrichedEvent` v3 to v4: the optional fields `l4`, `dns` and `runtime`,
/// of which exactly one is set, become the union `body` (branches in that
/// order). A message with none or several set is an error.
fn enriched_event_v4(value: Value) -> Result<Value, String> {
    let Value::Record(fields) = value else {
        return Err(format!("EnrichedEvent v3 is not a record: {value:?}"));
    };
    let mut body = None;
    let mut rest = Vec::with_capacity(fields.len());
    for (name, field) in fields {
        let branch = match name.as_str() {
            "l4" => 0,
            "dns" => 1,
            "runtime" => 2,
            _ => {
                rest.push((name, field));
                continue;
            }
        };
        let inner = match field {
            Value::Union(_, inner) => *inner,
            other => other,
        };
        if inner == Value::Null {
            continue;
        }
        if body
            .replace(Value::Union(branch, Box::new(inner)))
            .is_some()
        {
            return Err("EnrichedEvent v3 has more than one of l4, dns, runtime set".into());
        }
    }
    let body = body.ok_or("EnrichedEvent v3 has none of l4, dns, runtime set")?;
    let mut out = Vec::with_capacity(rest.len() + 1);
    out.push(("body".to_owned(), body));
    out.extend(rest);
    Ok(Value::Record(out))
}

/// `Verdict` v3 to v4: the embedded event as in [`enriched_event_v4`].
fn verdict_v4(value: Value) -> Result<Value, String> {
    let Value::Record(fields) = value else {
        return Err(format!("Verdict v3 is not a record: {value:?}"));
    };
    fields
        .into_iter()
        .map(|(name, field)| {
            if name == "event" {
                enriched_event_v4(field).map(|event| (name, event))
            } else {
                Ok((name, field))
            }
        })
        .collect::<Result<_, _>>()
        .map(Value::Record)
}
