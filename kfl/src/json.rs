//! [`Entry`] for [`serde_json::Value`] (feature `json`, on by default).

use serde_json::Value as Json;

use crate::entry::{Entry, Lookup, Value};
use crate::path::{Path, Segment};

/// Paths walk the JSON document: [`Segment::Key`] selects an object member,
/// [`Segment::Index`] an array element, [`Segment::Wildcard`] every element
/// of an array or every member of an object.
///
/// - A path without wildcard gives [`Lookup::One`] for a scalar, and
///   [`Lookup::Many`] with no values for an object or an array (present, but
///   equal to nothing).
/// - A path with wildcards gives [`Lookup::Many`] with every scalar reached;
///   elements lacking the rest of the path are skipped. It is
///   [`Lookup::Missing`] only when the part before the first wildcard is.
/// - Numbers that fit an `i64` become [`Value::Int`], others [`Value::Float`].
impl Entry for Json {
    fn get(&self, path: &Path) -> Lookup<'_> {
        let segments = path.segments();
        let split = segments
            .iter()
            .position(|s| matches!(s, Segment::Wildcard))
            .unwrap_or(segments.len());
        let Some(node) = walk(self, &segments[..split]) else {
            return Lookup::Missing;
        };
        if split == segments.len() {
            return match scalar(node) {
                Some(v) => Lookup::One(v),
                None => Lookup::Many(Vec::new()),
            };
        }
        let mut out = Vec::new();
        collect(node, &segments[split..], &mut out);
        Lookup::Many(out)
    }
}

fn step<'a>(node: &'a Json, segment: &Segment) -> Option<&'a Json> {
    match (segment, node) {
        (Segment::Key(k), Json::Object(map)) => map.get(&**k),
        (Segment::Index(i), Json::Array(items)) => items.get(usize::try_from(*i).ok()?),
        _ => None,
    }
}

fn walk<'a>(mut node: &'a Json, segments: &[Segment]) -> Option<&'a Json> {
    for segment in segments {
        node = step(node, segment)?;
    }
    Some(node)
}

/// Every scalar under `node` along `segments` (which may hold wildcards).
fn collect<'a>(node: &'a Json, segments: &[Segment], out: &mut Vec<Value<'a>>) {
    let Some((first, rest)) = segments.split_first() else {
        if let Some(v) = scalar(node) {
            out.push(v);
        }
        return;
    };
    match (first, node) {
        (Segment::Wildcard, Json::Array(items)) => {
            items.iter().for_each(|item| collect(item, rest, out));
        }
        (Segment::Wildcard, Json::Object(map)) => {
            map.values().for_each(|item| collect(item, rest, out));
        }
        (Segment::Wildcard, _) => {}
        (segment, node) => {
            if let Some(next) = step(node, segment) {
                collect(next, rest, out);
            }
        }
    }
}

fn scalar(node: &Json) -> Option<Value<'_>> {
    Some(match node {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        Json::String(s) => Value::Str(s),
        Json::Array(_) | Json::Object(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get<'a>(doc: &'a Json, path: &str) -> Lookup<'a> {
        Entry::get(doc, &Path::parse(path).unwrap())
    }

    #[test]
    fn lookups() {
        let doc = json!({
            "a": {"b": 1, "c": [ {"d": "x"}, {"d": "y"}, {"e": 2} ], "f": 1.5, "g": null},
            "h": {"User-Agent": "curl"},
            "big": 18446744073709551615u64,
        });
        assert_eq!(get(&doc, "a.b"), Lookup::One(Value::Int(1)));
        assert_eq!(get(&doc, "a.f"), Lookup::One(Value::Float(1.5)));
        assert_eq!(get(&doc, "a.g"), Lookup::One(Value::Null));
        assert_eq!(get(&doc, "a.c[1].d"), Lookup::One(Value::Str("y")));
        assert_eq!(
            get(&doc, r#"h["User-Agent"]"#),
            Lookup::One(Value::Str("curl"))
        );
        assert_eq!(
            get(&doc, "big"),
            Lookup::One(Value::Float(1.8446744073709552e19))
        );
        assert_eq!(get(&doc, "a.c[3].d"), Lookup::Missing);
        assert_eq!(get(&doc, "a.x"), Lookup::Missing);
        assert_eq!(get(&doc, "a.b.c"), Lookup::Missing);
        assert_eq!(get(&doc, "a.c"), Lookup::Many(vec![]));
        assert_eq!(
            get(&doc, "a.c.*.d"),
            Lookup::Many(vec![Value::Str("x"), Value::Str("y")])
        );
        assert_eq!(get(&doc, "a.*").values().len(), 3);
        assert_eq!(get(&doc, "x.*"), Lookup::Missing);
        assert_eq!(get(&doc, "a.b.*"), Lookup::Many(vec![]));
    }
}
