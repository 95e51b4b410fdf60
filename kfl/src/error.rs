//! Errors: [`ParseError`], [`CompileError`], the umbrella [`Error`], and the
//! caret rendering they share.

use thiserror::Error;

/// A query that is not valid KFL. `offset` is a byte offset into the query.
///
/// ```
/// let err = tapwire_kfl::parse(r#"http and request.method = "GET""#).unwrap_err();
/// assert_eq!(err.offset, 24);
/// assert_eq!(
///     err.render(r#"http and request.method = "GET""#),
///     "http and request.method = \"GET\"\n                        ^ expected `==`, found `=`",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} (at offset {offset})")]
#[non_exhaustive]
pub struct ParseError {
    /// Byte offset of the fault in the query.
    pub offset: usize,
    /// What is wrong, e.g. "expected `==`, found `=`".
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            offset,
            message: message.into(),
        }
    }

    /// The query line holding the fault and, under it, a caret and the
    /// message (see [`render`]).
    pub fn render(&self, query: &str) -> String {
        render(query, self.offset, &self.message)
    }
}

/// A parsed query that cannot be compiled into a [`Filter`](crate::Filter).
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum CompileError {
    /// A regex literal (`r"..."`, `.matches("...")`) that the `regex` crate
    /// rejects.
    #[error("invalid regex {pattern:?} at offset {offset}")]
    InvalidRegex {
        /// Byte offset of the literal in the query.
        offset: usize,
        /// The pattern as written (escapes resolved).
        pattern: String,
        /// Why the regex crate rejected it.
        #[source]
        source: regex::Error,
    },
    /// A protocol macro that the entries the query is for cannot satisfy:
    /// nothing dissects that protocol there, so the query would silently
    /// never match ([`crate::compile_dissected`], [`crate::compile_supported`]).
    #[error("`{name}` at offset {offset}: this protocol is not dissected here")]
    NotDissected {
        /// Byte offset of the macro in the query.
        offset: usize,
        /// The macro.
        name: &'static str,
        /// The macros that are supported there.
        supported: Vec<&'static str>,
    },
}

impl CompileError {
    /// Byte offset of the fault in the query.
    pub fn offset(&self) -> usize {
        match self {
            CompileError::InvalidRegex { offset, .. } => *offset,
            CompileError::NotDissected { offset, .. } => *offset,
        }
    }

    /// A one-line description without the offset, e.g. "invalid regex:
    /// unclosed group".
    pub fn message(&self) -> String {
        match self {
            CompileError::InvalidRegex { source, .. } => {
                format!("invalid regex: {}", regex_reason(source))
            }
            CompileError::NotDissected {
                name, supported, ..
            } if crate::RECORDED_ONLY.contains(name) => format!(
                "only recorded streams carry `{name}` (recording queries, `tapwire investigate \
                 --kfl`); pipeline events (CEF filters, policy conditions) carry {}, so this \
                 could never match there",
                supported.join(", ")
            ),
            CompileError::NotDissected {
                name, supported, ..
            } => format!(
                "tapwire does not dissect `{name}` yet, so this could never match; it dissects {}",
                supported.join(", ")
            ),
        }
    }

    /// The query line holding the fault and, under it, a caret and the
    /// message (see [`render`]).
    pub fn render(&self, query: &str) -> String {
        render(query, self.offset(), &self.message())
    }
}

/// The last line of a regex error ("error: unclosed group" -> "unclosed
/// group"); the regex crate's own rendering spans several lines.
fn regex_reason(err: &regex::Error) -> String {
    match err {
        regex::Error::Syntax(text) => {
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            let last = last.unwrap_or(text).trim();
            last.strip_prefix("error: ").unwrap_or(last).to_owned()
        }
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled regex exceeds the size limit of {limit} bytes")
        }
        other => other.to_string(),
    }
}

/// Either error of turning text into a [`Filter`](crate::Filter), for
/// [`compile`](crate::compile).
#[derive(Debug, Clone, Error)]
pub enum Error {
    /// The query does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The query parses but does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
}

impl Error {
    /// Byte offset of the fault in the query.
    pub fn offset(&self) -> usize {
        match self {
            Error::Parse(e) => e.offset,
            Error::Compile(e) => e.offset(),
        }
    }

    /// The query line holding the fault and, under it, a caret and the
    /// message (see [`render`]).
    pub fn render(&self, query: &str) -> String {
        match self {
            Error::Parse(e) => e.render(query),
            Error::Compile(e) => e.render(query),
        }
    }
}

/// Renders `message` under the line of `query` that holds byte `offset`, with
/// a caret under the faulty character:
///
/// ```text
/// http and request.method = "GET"
///                         ^ expected `==`, found `=`
/// ```
///
/// For a query of several lines the first line says which (`line 2, column
/// 5:`). Tabs before the fault are repeated in the caret line so the caret
/// stays aligned; other characters count one column each. An offset past the
/// end points just after the last character. Never panics.
pub fn render(query: &str, offset: usize, message: &str) -> String {
    let mut offset = offset.min(query.len());
    while !query.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = query[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = query[offset..]
        .find('\n')
        .map_or(query.len(), |i| offset + i);
    let line = query[line_start..line_end]
        .strip_suffix('\r')
        .unwrap_or(&query[line_start..line_end]);
    let prefix: String = query[line_start..offset]
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let mut out = String::new();
    if query.contains('\n') {
        let line_no = query[..line_start].matches('\n').count() + 1;
        let column = query[line_start..offset].chars().count() + 1;
        out.push_str(&format!("line {line_no}, column {column}:\n"));
    }
    out.push_str(line);
    out.push('\n');
    out.push_str(&prefix);
    out.push_str("^ ");
    out.push_str(message);
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn caret_under_fault() {
        assert_eq!(render("abc def", 4, "here"), "abc def\n    ^ here");
        assert_eq!(render("abc", 3, "end"), "abc\n   ^ end");
        assert_eq!(render("abc", 99, "end"), "abc\n   ^ end");
        assert_eq!(render("", 0, "empty"), "\n^ empty");
    }

    #[test]
    fn multiline_and_tabs_and_unicode() {
        assert_eq!(render("a\n\tbc", 3, "x"), "line 2, column 2:\n\tbc\n\t^ x");
        // "é" is two bytes but one column; offset 3 is inside nothing odd.
        assert_eq!(render("é x", 3, "x"), "é x\n  ^ x");
        // Offsets inside a character are moved back to its start.
        assert_eq!(render("é", 1, "x"), "é\n^ x");
    }
}
