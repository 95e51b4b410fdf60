//! The parsed form: [`Query`] and its (private) syntax tree, and the canonical
//! printing (`Display`).

use std::fmt::{self, Write as _};
use std::str::FromStr;

use crate::compile::{self, Filter};
use crate::error::{CompileError, ParseError};
use crate::macros::Macro;
use crate::path::{FieldId, Path};

/// A parsed KFL query. Parse once with [`parse`](crate::parse), then
/// [`compile`](Query::compile) into a [`Filter`].
///
/// `Display` prints the canonical, fully parenthesized form, with the
/// generation 1 spellings (`and`, `or`, `!`): every `and`/`or` group, every
/// comparison and every `in` test is wrapped in parentheses; paths use
/// [`Path::as_str`]; strings are re-escaped. The empty query prints as `true`.
/// Parsing the canonical form gives the same query back.
///
/// ```
/// let q = tapwire_kfl::parse("http && request.method == \"GET\" || dns").unwrap();
/// assert_eq!(q.to_string(), r#"((http and (request.method == "GET")) or dns)"#);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub(crate) root: Option<Expr>,
    pub(crate) limit: Option<u64>,
}

/// A condition (something true or false).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// Two or more conditions, all true (short-circuit, left to right).
    And(Vec<Expr>),
    /// Two or more conditions, any true (short-circuit, left to right).
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        lhs: Operand,
        op: CmpOp,
        rhs: Operand,
    },
    In {
        lhs: Operand,
        list: Vec<Literal>,
    },
    Helper {
        path: Path,
        helper: Helper,
        arg: Literal,
    },
    Macro(Macro),
    /// `true` or `false` on its own.
    Const(bool),
    /// `limit(n)`: always true; the number is reported by [`Query::limit`].
    Limit(u64),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A string helper called as a method on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Helper {
    StartsWith,
    EndsWith,
    Contains,
    Matches,
}

impl Helper {
    pub fn name(self) -> &'static str {
        match self {
            Helper::StartsWith => "startsWith",
            Helper::EndsWith => "endsWith",
            Helper::Contains => "contains",
            Helper::Matches => "matches",
        }
    }
}

/// Something with a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Path(Path),
    Lit(Literal),
    Time(TimeFn),
}

/// A literal and where it starts in the query.
#[derive(Debug, Clone)]
pub(crate) struct Literal {
    pub kind: LitKind,
    pub offset: usize,
}

/// Literals are equal when their values are, wherever they were written.
impl PartialEq for Literal {
    fn eq(&self, other: &Literal) -> bool {
        self.kind == other.kind
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LitKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Regex(String),
}

/// A number as written in a function argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

/// The time unit of `seconds`, `minutes`, `hours`, `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeUnit {
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl TimeUnit {
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Minutes => "minutes",
            TimeUnit::Hours => "hours",
            TimeUnit::Days => "days",
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            TimeUnit::Seconds => 1_000,
            TimeUnit::Minutes => 60_000,
            TimeUnit::Hours => 3_600_000,
            TimeUnit::Days => 86_400_000,
        }
    }
}

/// A time function; its value is epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TimeFn {
    /// `now()`, or `unit(n)` = now + n units; `offset_ms` is precomputed.
    Relative {
        unit: Option<(TimeUnit, Number)>,
        offset_ms: i64,
    },
    /// `datetime("...")`, converted at parse time.
    Datetime { text: String, epoch_ms: i64 },
}

impl Query {
    /// The query that matches every entry (what the empty string parses to).
    pub fn match_all() -> Query {
        Query {
            root: None,
            limit: None,
        }
    }

    /// Whether this query matches every entry without looking at it (the
    /// empty query; `limit(n)` alone also qualifies).
    pub fn is_match_all(&self) -> bool {
        match &self.root {
            None | Some(Expr::Const(true)) | Some(Expr::Limit(_)) => true,
            Some(_) => false,
        }
    }

    /// The `n` of `limit(n)`: the smallest one when the query has several;
    /// `None` without. `limit` itself matches every entry; honouring the
    /// number (stop after `n` results) is up to the caller.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Every distinct path the query reads, in order of first appearance
    /// (protocol macros read `protocol.abbr`, `protocol.name`, `transport` or
    /// `tls`, and are not listed).
    pub fn paths(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        if let Some(root) = &self.root {
            collect_paths(root, &mut out);
        }
        out
    }

    /// Compiles the query into a [`Filter`]: regexes are built here.
    ///
    /// # Errors
    ///
    /// [`CompileError::InvalidRegex`] for a regex the `regex` crate rejects.
    pub fn compile(&self) -> Result<Filter, CompileError> {
        compile::compile(self, &|_| None)
    }

    /// Like [`compile`](Query::compile), and gives every path in the filter
    /// (including the ones protocol macros read) the [`FieldId`] `resolver`
    /// returns for it, which an [`Entry`](crate::Entry) can then read back
    /// with [`Path::field_id`].
    ///
    /// # Errors
    ///
    /// As [`compile`](Query::compile).
    pub fn compile_with(
        &self,
        resolver: &dyn Fn(&Path) -> Option<FieldId>,
    ) -> Result<Filter, CompileError> {
        compile::compile(self, resolver)
    }
}

fn collect_paths<'q>(expr: &'q Expr, out: &mut Vec<&'q Path>) {
    let mut push = |p: &'q Path| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    match expr {
        Expr::And(xs) | Expr::Or(xs) => xs.iter().for_each(|x| collect_paths(x, out)),
        Expr::Not(x) => collect_paths(x, out),
        Expr::Compare { lhs, rhs, .. } => {
            for side in [lhs, rhs] {
                if let Operand::Path(p) = side {
                    push(p);
                }
            }
        }
        Expr::In {
            lhs: Operand::Path(p),
            ..
        }
        | Expr::Helper { path: p, .. } => push(p),
        Expr::In { .. } | Expr::Macro(_) | Expr::Const(_) | Expr::Limit(_) => {}
    }
}

impl FromStr for Query {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Query, ParseError> {
        crate::parse(s)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.root {
            None => f.write_str("true"),
            Some(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(xs) | Expr::Or(xs) => {
                let sep = if matches!(self, Expr::And(_)) {
                    " and "
                } else {
                    " or "
                };
                f.write_char('(')?;
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_char(')')
            }
            Expr::Not(x) => write!(f, "!{x}"),
            Expr::Compare { lhs, op, rhs } => write!(f, "({lhs} {} {rhs})", op.as_str()),
            Expr::In { lhs, list } => {
                write!(f, "({lhs} in [")?;
                for (i, lit) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{lit}")?;
                }
                f.write_str("])")
            }
            Expr::Helper { path, helper, arg } => write!(f, "{path}.{}({arg})", helper.name()),
            Expr::Macro(m) => f.write_str(m.name()),
            Expr::Const(b) => write!(f, "{b}"),
            Expr::Limit(n) => write!(f, "limit({n})"),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Path(p) => f.write_str(p.as_str()),
            Operand::Lit(l) => write!(f, "{l}"),
            Operand::Time(TimeFn::Relative { unit: None, .. }) => f.write_str("now()"),
            Operand::Time(TimeFn::Relative {
                unit: Some((unit, n)),
                ..
            }) => write!(f, "{}({n})", unit.name()),
            Operand::Time(TimeFn::Datetime { text, .. }) => {
                f.write_str("datetime(")?;
                let mut s = String::new();
                write_quoted(&mut s, text);
                f.write_str(&s)?;
                f.write_char(')')
            }
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x:?}"),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            LitKind::Null => f.write_str("nil"),
            LitKind::Bool(b) => write!(f, "{b}"),
            LitKind::Int(i) => write!(f, "{i}"),
            // `{:?}` is the shortest text that reads back to the same f64,
            // and always has a `.` or an exponent.
            LitKind::Float(x) => write!(f, "{x:?}"),
            LitKind::Str(s) => {
                let mut out = String::new();
                write_quoted(&mut out, s);
                f.write_str(&out)
            }
            LitKind::Regex(re) => {
                f.write_str("r\"")?;
                for c in re.chars() {
                    if c == '"' {
                        f.write_str("\\\"")?;
                    } else {
                        f.write_char(c)?;
                    }
                }
                f.write_char('"')
            }
        }
    }
}

/// Appends `s` as a KFL string literal (double quotes, escapes).
pub(crate) fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
