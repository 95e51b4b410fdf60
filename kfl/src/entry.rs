//! What the evaluator reads: the [`Entry`] trait, [`Lookup`] and [`Value`].

use std::net::IpAddr;

use crate::path::Path;

/// A record a [`Filter`](crate::Filter) can be evaluated against.
///
/// The caller maps KFL paths to its own data. The paths tapwire queries use
/// (see the crate documentation for the full list) are `src.ip`, `src.port`,
/// `src.name`, `src.namespace`, `src.pod.name`, `src.pod.namespace`, the same
/// under `dst`, `node.name`, `node.ip`, `protocol.name`, `protocol.abbr`,
/// `transport`, `tls`, `timestamp` (epoch milliseconds), the HTTP fields under
/// `request`/`response` and the DNS fields `request.questions[i].name|type`,
/// `response.code`, `response.answers[i].name|type|data`.
///
/// A path the entry does not have is [`Lookup::Missing`]; under KFL's rules a
/// missing path in an evaluated comparison makes the whole query false (see
/// [`Filter::matches`](crate::Filter::matches)).
///
/// Dispatch on [`Path::as_str`], on [`Path::segments`], or on
/// [`Path::field_id`] when the filter was compiled with a resolver.
pub trait Entry {
    /// The value(s) at `path`.
    fn get(&self, path: &Path) -> Lookup<'_>;
}

impl<T: Entry + ?Sized> Entry for &T {
    fn get(&self, path: &Path) -> Lookup<'_> {
        (**self).get(path)
    }
}

impl<T: Entry + ?Sized> Entry for Box<T> {
    fn get(&self, path: &Path) -> Lookup<'_> {
        (**self).get(path)
    }
}

/// The result of looking a [`Path`] up in an [`Entry`].
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<'a> {
    /// The entry has nothing at this path.
    Missing,
    /// One value (the common case; no allocation).
    One(Value<'a>),
    /// Several values, for wildcard paths (`answers.*.name`), or none at all
    /// for a path that exists but holds no scalar (an object or an array, or
    /// a wildcard over an empty array). A comparison is true when it is true
    /// for any of the values (`!=` is true when no value is equal).
    Many(Vec<Value<'a>>),
}

impl<'a> Lookup<'a> {
    /// The values found, as a slice (empty for [`Lookup::Missing`]).
    pub fn values(&self) -> &[Value<'a>] {
        match self {
            Lookup::Missing => &[],
            Lookup::One(v) => std::slice::from_ref(v),
            Lookup::Many(vs) => vs,
        }
    }
}

impl<'a> From<Value<'a>> for Lookup<'a> {
    fn from(value: Value<'a>) -> Lookup<'a> {
        Lookup::One(value)
    }
}

impl<'a> From<Option<Value<'a>>> for Lookup<'a> {
    fn from(value: Option<Value<'a>>) -> Lookup<'a> {
        value.map_or(Lookup::Missing, Lookup::One)
    }
}

/// A scalar an [`Entry`] hands to the evaluator. Borrowed, `Copy`, and cheap.
///
/// Comparison rules (see the crate documentation for the full table):
/// numbers compare numerically across `Int` and `Float`; strings compare
/// bytewise and case-sensitively; `Ip` compares with `Ip` and with strings that
/// parse as an address; any other pair of different types is unequal and
/// unordered (`dst.port == "80"` is false, `dst.port != "80"` is true,
/// `dst.port < "80"` is false).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// JSON `null`, KFL `nil`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer (ports, status codes, timestamps in milliseconds).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(&'a str),
    /// An IP address, for entries that keep addresses unformatted. It equals
    /// a string that parses to the same address (`src.ip == "10.0.0.1"`);
    /// regexes and string helpers see its usual text form.
    Ip(IpAddr),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Value<'a> {
        Value::Str(s)
    }
}

impl From<i64> for Value<'_> {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value<'_> {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<IpAddr> for Value<'_> {
    fn from(ip: IpAddr) -> Self {
        Value::Ip(ip)
    }
}
