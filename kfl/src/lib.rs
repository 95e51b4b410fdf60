//! KFL, the Kubeshark Filter Language: parsed once, compiled into a
//! predicate, evaluated per entry without touching the parser.
//!
//! tapwire accepts KFL generation 1 (Basenine) and the generation 2 operator
//! spellings (`&&`, `||`, `in [...]`, `.matches()`, `status_code`). The
//! recorder (`RECORDING_KFL`), `tapwire investigate`, the policy engine and the
//! CEF filter all use this crate.
//!
//! ```
//! # #[cfg(feature = "json")] {
//! let query = tapwire_kfl::parse("dns or http and response.status == r\"4.*\"").unwrap();
//! assert_eq!(query.to_string(), r#"(dns or (http and (response.status == r"4.*")))"#);
//! let filter = query.compile().unwrap();
//! let entry = serde_json::json!({
//!     "protocol": {"name": "http", "abbr": "HTTP"},
//!     "response": {"status": 404},
//! });
//! assert!(filter.matches(&entry, 0));
//! # }
//! ```
//!
//! # Where things live
//!
//! - `lexer` (private): text to tokens, string/regex escapes, numbers.
//! - `parser` (private): tokens to a [`Query`], every error a [`ParseError`]
//!   with an offset; the grammar is in its module comment.
//! - `ast`: [`Query`] (the parsed form, canonical `Display`).
//! - `compile`: [`Filter`] (the compiled predicate) and the evaluator.
//! - `entry`: what the evaluator reads: [`Entry`], [`Lookup`], [`Value`].
//! - `path`: [`Path`], [`Segment`], [`FieldId`].
//! - `error`: [`ParseError`], [`CompileError`], [`Error`], [`render`].
//! - `macros` (private): the protocol macro table.
//! - `time` (private): `datetime("...")` parsing.
//! - `json` (feature `json`, default): [`Entry`] for `serde_json::Value`.
//!
//! # The language
//!
//! | syntax | meaning |
//! | --- | --- |
//! | `a or b`, `a \|\| b` | either (short-circuit) |
//! | `a and b`, `a && b` | both (short-circuit); binds tighter than `or` |
//! | `!a` | not (KFL has no `not` keyword) |
//! | `( ... )` | grouping |
//! | `==` `!=` `<` `<=` `>` `>=` | comparisons between paths, literals and time functions |
//! | `x in [80, 443]` | `x` equals one of the literals (a regex in the list matches as with `==`) |
//! | `42`, `-1.5e3` | numbers (64-bit integers, finite floats); unary `-` on numbers only |
//! | `"GET"` | string; escapes `\"` `\\` `\n` `\t` `\r` `\0` `\'` `\u{...}` |
//! | `r"4.*"` | regex (Rust `regex` syntax); `==` is an unanchored search, `!=` its negation; only `\"` is an escape, every other `\x` goes to the regex as is |
//! | `true`, `false`, `nil` | literals; `true`/`false` alone are conditions |
//! | `src.pod.name`, `request.headers["User-Agent"]`, `request.questions[0].name` | paths |
//! | `response.answers.*.name`, `response.answers[*].name` | wildcard: true if any element matches |
//! | `path.startsWith("x")`, `.endsWith("x")`, `.contains("x")` | string helpers (case-sensitive) |
//! | `path.matches("re")`, `path.matches(r"re")` | regex search (generation 2) |
//! | `now()`, `seconds(n)`, `minutes(n)`, `hours(n)`, `days(n)` | epoch ms relative to the `now_ms` given to [`Filter::matches`]: `hours(-5)` = now - 5 h; `n` may be a float |
//! | `datetime("1/2/2006, 3:04:05.000 PM")` | that instant (month/day/year, 12-hour clock) as UTC epoch ms |
//! | `limit(n)` | matches everything; `n` is reported by [`Query::limit`] |
//! | `status_code` | generation 2 spelling of `response.status` |
//! | empty query | matches everything |
//!
//! Not supported yet (clear parse errors): `.json()`, `.xml()`, `redact(...)`.
//!
//! Protocol macros are bare identifiers; string tests are ASCII
//! case-insensitive, and a macro whose field is missing is simply false:
//!
//! | macro | true when |
//! | --- | --- |
//! | `http` | `protocol.abbr` is `HTTP` |
//! | `http2` | `protocol.abbr` is `HTTP/2` or `HTTP2` |
//! | `grpc` | `protocol.abbr` is `gRPC` |
//! | `gql` | `protocol.abbr` is `GQL` or `GraphQL` |
//! | `dns` | `protocol.abbr` is `DNS` |
//! | `amqp`, `kafka`, `redis` | `protocol.name` is that name |
//! | `tcp`, `udp` | `transport` is that name (tapwire) |
//! | `tls` | `protocol.abbr` is `TLS`, or `tls` is `true` (tapwire) |
//!
//! tapwire dissects HTTP and DNS over TCP and UDP ([`DISSECTED`]): its
//! consumers compile with [`compile_dissected`], which refuses `http2`,
//! `grpc`, `gql`, `amqp`, `kafka`, `redis` and `tls` with a caret under the
//! name rather than accept a query that could never match. Recorded streams
//! also carry `tls` and `http2` ([`RECORDED_ONLY`]: the ClientHello's
//! `tls.sni`; the cleartext HTTP/2 connection preface), so the recorder and
//! `tapwire investigate` compile with [`compile_supported`] and their own
//! list (`grpc`, `gql`, `amqp`, `kafka`, `redis` stay refused).
//!
//! # Semantics
//!
//! - **Missing paths.** As in generation 1, a path the entry does not have
//!   makes the whole query false when a comparison, `in` test or helper that
//!   reads it is evaluated, whatever the surrounding `!`, `and` or `or`
//!   (`dst.name == r"cata.*" or src.name == r"cata.*"` is false for an entry
//!   without `dst.name`). Branches skipped by short-circuit are not read.
//!   Macros are exempt (see above). A JSON `null` is present: `x == nil`.
//! - **Types.** Numbers compare numerically across integers and floats;
//!   strings bytewise and case-sensitively; an address ([`Value::Ip`]) with an
//!   address or a string spelling one. Other pairs are unequal and unordered:
//!   `dst.port == "80"` is false, `dst.port != "80"` true, `dst.port < "80"`
//!   false. `!=` is always the negation of `==`.
//! - **Regexes and helpers** read the text of any scalar: `response.status ==
//!   r"4.*"` works on the integer 404; `nil` never matches.
//! - **Several values** (wildcards): `==`, `<`, ..., `in`, regex `==` and
//!   helpers are true if true for any value; `!=` (also regex `!=`) is true
//!   if no value is equal. An empty set is present but equal to nothing.
//! - **Time.** The clock is an argument of [`Filter::matches`], captured by
//!   the caller once per call; `datetime` is fixed at parse time.
//!
//! # Performance
//!
//! Paths are split and regexes compiled once. Evaluating comparisons of
//! scalar paths against literals does not allocate (numbers are formatted on
//! the stack for regexes and helpers); only an [`Entry`] returning
//! [`Lookup::Many`] allocates its vector.

mod ast;
mod compile;
mod entry;
mod error;
#[cfg(feature = "json")]
mod json;
mod lexer;
mod macros;
mod parser;
mod path;
mod time;

pub use ast::Query;
pub use compile::Filter;
pub use entry::{Entry, Lookup, Value};
pub use error::{CompileError, Error, ParseError, render};
pub use path::{FieldId, Path, Segment};

/// Parses a query. The empty query (or only whitespace) matches everything.
///
/// # Errors
///
/// A [`ParseError`] with the byte offset of the fault and a specific message;
/// [`ParseError::render`] shows it under the query.
pub fn parse(query: &str) -> Result<Query, ParseError> {
    parser::parse(query)
}

/// Parses and compiles a query in one step.
///
/// # Errors
///
/// [`Error::Parse`] or [`Error::Compile`]; [`Error::render`] shows either
/// under the query.
pub fn compile(query: &str) -> Result<Filter, Error> {
    Ok(parse(query)?.compile()?)
}

/// The protocol macros all of tapwire's entries can satisfy (recorded
/// streams and pipeline events): the others parse, but nothing dissects
/// their protocol everywhere.
pub const DISSECTED: &[&str] = &["http", "dns", "tcp", "udp"];

/// The protocol macros only recorded streams satisfy (the recorder's
/// queries and `tapwire investigate --kfl`), on top of [`DISSECTED`]: `tls`,
/// from the ClientHello that opens a TLS stream, and `http2`, from the
/// connection preface of a cleartext HTTP/2 stream. Pipeline events (CEF
/// filters, policy conditions) do not carry them.
pub const RECORDED_ONLY: &[&str] = &["tls", "http2"];

/// [`compile`], refusing a protocol macro outside [`DISSECTED`] (a query
/// using one would silently never match), with a caret under it. What
/// tapwire's consumers of pipeline events (CEF filters, policy conditions)
/// and `tapwire kfl check` compile with.
///
/// # Errors
///
/// As [`compile_supported`].
pub fn compile_dissected(query: &str) -> Result<Filter, Error> {
    compile_supported(query, DISSECTED)
}

/// [`compile`], refusing a protocol macro outside `supported` (the macros
/// the caller's entries can satisfy) with a caret under it.
///
/// # Errors
///
/// [`Error::Parse`], [`Error::Compile`] for an invalid regex, or
/// [`CompileError::NotDissected`] naming the first unsupported macro.
pub fn compile_supported(query: &str, supported: &[&'static str]) -> Result<Filter, Error> {
    let filter = compile(query)?;
    match filter
        .protocol_macros()
        .iter()
        .find(|m| !supported.contains(m))
    {
        None => Ok(filter),
        Some(name) => {
            let offset = word_offset(query, name).unwrap_or(0);
            Err(CompileError::NotDissected {
                offset,
                name,
                supported: supported.to_vec(),
            }
            .into())
        }
    }
}

/// Where `word` first stands alone in `text`.
fn word_offset(text: &str, word: &str) -> Option<usize> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    text.match_indices(word).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back().is_none_or(|c| !is_word(c));
        let after = text[at + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_word(c));
        before && after
    })
}
