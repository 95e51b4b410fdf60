//! Selectors: [`Path`], its [`Segment`]s and the optional [`FieldId`].

use std::fmt;

use crate::error::ParseError;

/// One step of a [`Path`].
///
/// `a.b` and `a["b"]` are the same step ([`Segment::Key`]): both select the
/// child named `b`. The canonical text writes a key as `.b` when it is a plain
/// identifier and as `["b"]` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// The child with this name (`.name` or `["name"]`).
    Key(Box<str>),
    /// The element at this position of an array (`[3]`).
    Index(u64),
    /// Every element of an array or every child of an object (`.*` or `[*]`).
    Wildcard,
}

/// A selector over an entry, such as `request.headers["User-Agent"]` or
/// `response.answers.*.name`, split into [`Segment`]s once, when the query is
/// parsed.
///
/// [`Path::as_str`] is the canonical text (handy as a map key when an
/// [`Entry`](crate::Entry) dispatches on paths); [`Path::field_id`] is the id a
/// resolver handed out at [`Query::compile_with`](crate::Query::compile_with),
/// for implementations that prefer a `match` on integers.
#[derive(Debug, Clone)]
pub struct Path {
    segments: Box<[Segment]>,
    text: Box<str>,
    wildcard: bool,
    id: Option<FieldId>,
}

/// An integer a caller assigns to a [`Path`] when compiling (see
/// [`Query::compile_with`](crate::Query::compile_with)), so that its
/// [`Entry`](crate::Entry) can switch on it instead of comparing strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub u32);

impl Path {
    /// Builds a path from segments. The first segment should be a
    /// [`Segment::Key`] for the path to have a KFL spelling; any sequence is
    /// accepted.
    pub fn from_segments(segments: Vec<Segment>) -> Path {
        let mut text = String::new();
        for (i, segment) in segments.iter().enumerate() {
            write_segment(&mut text, segment, i == 0);
        }
        let wildcard = segments.iter().any(|s| matches!(s, Segment::Wildcard));
        Path {
            segments: segments.into_boxed_slice(),
            text: text.into_boxed_str(),
            wildcard,
            id: None,
        }
    }

    /// Parses a path on its own, e.g. `request.questions[0].name`.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] when `text` is not exactly one KFL selector.
    pub fn parse(text: &str) -> Result<Path, ParseError> {
        crate::parser::parse_path(text)
    }

    /// The segments, first to last.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The canonical text, e.g. `request.headers["User-Agent"]`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a segment is [`Segment::Wildcard`] (the lookup may then yield
    /// several values).
    pub fn has_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The id a resolver gave this path at compile time, if any.
    pub fn field_id(&self) -> Option<FieldId> {
        self.id
    }

    pub(crate) fn set_field_id(&mut self, id: Option<FieldId>) {
        self.id = id;
    }
}

/// Paths are equal when their segments are; the [`FieldId`] is ignored.
impl PartialEq for Path {
    fn eq(&self, other: &Path) -> bool {
        self.segments == other.segments
    }
}

impl Eq for Path {}

impl std::hash::Hash for Path {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.segments.hash(state);
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether `s` can be written as a bare identifier (`[A-Za-z_][A-Za-z0-9_]*`).
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn write_segment(out: &mut String, segment: &Segment, first: bool) {
    use std::fmt::Write as _;
    match segment {
        Segment::Key(key) if is_identifier(key) => {
            if !first {
                out.push('.');
            }
            out.push_str(key);
        }
        Segment::Key(key) => {
            out.push('[');
            crate::ast::write_quoted(out, key);
            out.push(']');
        }
        Segment::Index(i) => {
            let _ = write!(out, "[{i}]");
        }
        Segment::Wildcard => out.push_str(if first { "*" } else { ".*" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Segment {
        Segment::Key(s.into())
    }

    #[test]
    fn canonical_text() {
        let p = Path::from_segments(vec![key("request"), key("headers"), key("User-Agent")]);
        assert_eq!(p.as_str(), r#"request.headers["User-Agent"]"#);
        let p = Path::from_segments(vec![
            key("response"),
            key("answers"),
            Segment::Wildcard,
            key("name"),
        ]);
        assert_eq!(p.as_str(), "response.answers.*.name");
        assert!(p.has_wildcard());
        let p = Path::from_segments(vec![key("q"), Segment::Index(0), key("a\"b")]);
        assert_eq!(p.as_str(), r#"q[0]["a\"b"]"#);
    }

    #[test]
    fn parse_normalizes_keys() {
        let a = Path::parse(r#"request.headers["Host"]"#).unwrap();
        let b = Path::parse("request.headers.Host").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "request.headers.Host");
        assert_eq!(
            Path::parse("answers[*].name").unwrap().as_str(),
            "answers.*.name"
        );
        assert!(Path::parse("a ==").is_err());
        assert!(Path::parse("").is_err());
    }
}
