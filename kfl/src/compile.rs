//! The compiled form: [`Filter`], built from a [`Query`] once, evaluated per
//! entry without the parser and, for scalar comparisons, without allocating.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use regex::Regex;

use crate::ast::{CmpOp, Expr, Helper, LitKind, Literal, Operand, Query, TimeFn};
use crate::entry::{Entry, Lookup, Value};
use crate::error::CompileError;
use crate::path::{FieldId, Path, Segment};

/// A compiled query: a predicate over [`Entry`]s.
///
/// Cheap to clone (the compiled tree is shared), `Send` and `Sync`.
///
/// ```
/// # #[cfg(feature = "json")] {
/// let filter = tapwire_kfl::compile(r#"http and request.method == "GET""#).unwrap();
/// let entry = serde_json::json!({
///     "protocol": {"name": "http", "abbr": "HTTP"},
///     "request": {"method": "GET", "path": "/"},
/// });
/// assert!(filter.matches(&entry, 0));
/// # }
/// ```
#[derive(Clone)]
pub struct Filter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: Option<Node>,
    limit: Option<u64>,
    text: String,
    uses_clock: bool,
    macros: Vec<&'static str>,
}

#[derive(Debug)]
enum Node {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Cmp {
        lhs: Side,
        op: CmpOp,
        rhs: Side,
    },
    /// `side == r"..."` (or `!=` when `negate`).
    Regex {
        side: Side,
        re: Regex,
        negate: bool,
    },
    In {
        side: Side,
        list: Box<[Item]>,
    },
    Helper {
        path: Path,
        helper: CompiledHelper,
    },
    /// True when any check is; a missing path only fails its own check.
    Macro(Box<[MacroCheck]>),
}

#[derive(Debug)]
struct MacroCheck {
    path: Path,
    /// Accepted names (ASCII case-insensitive); empty: the value must be
    /// `true`.
    names: &'static [&'static str],
}

#[derive(Debug)]
enum CompiledHelper {
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    Matches(Regex),
}

/// One side of a comparison.
#[derive(Debug)]
enum Side {
    Path(Path),
    Lit(Lit),
    /// `now()` plus this many milliseconds.
    Now(i64),
}

#[derive(Debug)]
struct Lit {
    value: LitValue,
    /// For strings: the address the string spells, parsed once.
    ip: Option<IpAddr>,
}

#[derive(Debug)]
enum LitValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
}

#[derive(Debug)]
enum Item {
    Lit(Lit),
    Regex(Regex),
}

impl Lit {
    fn new(value: LitValue) -> Lit {
        let ip = match &value {
            LitValue::Str(s) => s.parse().ok(),
            _ => None,
        };
        Lit { value, ip }
    }

    fn value(&self) -> Value<'_> {
        match &self.value {
            LitValue::Null => Value::Null,
            LitValue::Bool(b) => Value::Bool(*b),
            LitValue::Int(i) => Value::Int(*i),
            LitValue::Float(x) => Value::Float(*x),
            LitValue::Str(s) => Value::Str(s),
        }
    }
}

pub(crate) fn compile(
    query: &Query,
    resolver: &dyn Fn(&Path) -> Option<FieldId>,
) -> Result<Filter, CompileError> {
    let mut cx = Compiler {
        resolver,
        uses_clock: false,
        macros: Vec::new(),
    };
    let root = query.root.as_ref().map(|e| cx.expr(e)).transpose()?;
    Ok(Filter {
        inner: Arc::new(Inner {
            root,
            limit: query.limit,
            text: query.to_string(),
            uses_clock: cx.uses_clock,
            macros: cx.macros,
        }),
    })
}

struct Compiler<'r> {
    resolver: &'r dyn Fn(&Path) -> Option<FieldId>,
    uses_clock: bool,
    macros: Vec<&'static str>,
}

impl Compiler<'_> {
    fn path(&self, path: &Path) -> Path {
        let mut path = path.clone();
        let id = (self.resolver)(&path);
        path.set_field_id(id);
        path
    }

    fn expr(&mut self, expr: &Expr) -> Result<Node, CompileError> {
        Ok(match expr {
            Expr::And(xs) => Node::And(xs.iter().map(|x| self.expr(x)).collect::<Result<_, _>>()?),
            Expr::Or(xs) => Node::Or(xs.iter().map(|x| self.expr(x)).collect::<Result<_, _>>()?),
            Expr::Not(x) => Node::Not(Box::new(self.expr(x)?)),
            Expr::Const(b) => Node::Const(*b),
            Expr::Limit(_) => Node::Const(true),
            Expr::Macro(m) => Node::Macro({
                if !self.macros.contains(&m.name()) {
                    self.macros.push(m.name());
                }
                m.checks()
                    .iter()
                    .map(|c| MacroCheck {
                        path: self.path(&Path::from_segments(
                            c.path.iter().map(|s| Segment::Key((*s).into())).collect(),
                        )),
                        names: c.names,
                    })
                    .collect()
            }),
            Expr::Compare { lhs, op, rhs } => {
                // Put a regex literal on the right; `==` and `!=` are symmetric.
                let (lhs, rhs) = if let Operand::Lit(Literal {
                    kind: LitKind::Regex(_),
                    ..
                }) = lhs
                {
                    (rhs, lhs)
                } else {
                    (lhs, rhs)
                };
                let op = *op;
                if let Operand::Lit(Literal {
                    kind: LitKind::Regex(pattern),
                    offset,
                }) = rhs
                {
                    Node::Regex {
                        side: self.side(lhs),
                        re: build_regex(pattern, *offset)?,
                        negate: op == CmpOp::Ne,
                    }
                } else {
                    Node::Cmp {
                        lhs: self.side(lhs),
                        op,
                        rhs: self.side(rhs),
                    }
                }
            }
            Expr::In { lhs, list } => Node::In {
                side: self.side(lhs),
                list: list
                    .iter()
                    .map(|lit| match &lit.kind {
                        LitKind::Regex(p) => build_regex(p, lit.offset).map(Item::Regex),
                        _ => Ok(Item::Lit(literal(lit))),
                    })
                    .collect::<Result<_, _>>()?,
            },
            Expr::Helper { path, helper, arg } => {
                let text = match &arg.kind {
                    LitKind::Str(s) | LitKind::Regex(s) => s.as_str(),
                    _ => "",
                };
                let helper = match helper {
                    Helper::StartsWith => CompiledHelper::StartsWith(text.into()),
                    Helper::EndsWith => CompiledHelper::EndsWith(text.into()),
                    Helper::Contains => CompiledHelper::Contains(text.into()),
                    Helper::Matches => CompiledHelper::Matches(build_regex(text, arg.offset)?),
                };
                Node::Helper {
                    path: self.path(path),
                    helper,
                }
            }
        })
    }

    fn side(&mut self, operand: &Operand) -> Side {
        match operand {
            Operand::Path(p) => Side::Path(self.path(p)),
            Operand::Lit(lit) => Side::Lit(literal(lit)),
            Operand::Time(TimeFn::Relative { offset_ms, .. }) => {
                self.uses_clock = true;
                Side::Now(*offset_ms)
            }
            Operand::Time(TimeFn::Datetime { epoch_ms, .. }) => {
                Side::Lit(Lit::new(LitValue::Int(*epoch_ms)))
            }
        }
    }
}

/// A non-regex literal (regexes are handled by the callers).
fn literal(lit: &Literal) -> Lit {
    Lit::new(match &lit.kind {
        LitKind::Null => LitValue::Null,
        LitKind::Bool(b) => LitValue::Bool(*b),
        LitKind::Int(i) => LitValue::Int(*i),
        LitKind::Float(x) => LitValue::Float(*x),
        LitKind::Str(s) | LitKind::Regex(s) => LitValue::Str(s.as_str().into()),
    })
}

fn build_regex(pattern: &str, offset: usize) -> Result<Regex, CompileError> {
    Regex::new(pattern).map_err(|source| CompileError::InvalidRegex {
        offset,
        pattern: pattern.to_owned(),
        source,
    })
}

impl Filter {
    /// The filter that matches every entry (the empty query).
    pub fn match_all() -> Filter {
        Filter {
            inner: Arc::new(Inner {
                root: None,
                macros: Vec::new(),
                limit: None,
                text: "true".to_owned(),
                uses_clock: false,
            }),
        }
    }

    /// Whether `entry` matches.
    ///
    /// `now_ms` (epoch milliseconds) is the clock for `now()`, `seconds(n)`,
    /// `minutes(n)`, `hours(n)` and `days(n)`: the caller captures it once per
    /// call (or once per batch) and nothing inside reads the system clock.
    /// Filters without those functions ignore it ([`Filter::uses_clock`]).
    ///
    /// `and` and `or` short-circuit left to right. Following KFL generation
    /// 1, a path the entry lacks ([`Lookup::Missing`]) in any comparison,
    /// `in` test or helper that is evaluated makes the whole query false, even
    /// under `!` or inside an `or` that another branch would satisfy. Protocol
    /// macros are the exception: a macro whose field is missing is just false.
    pub fn matches<E: Entry + ?Sized>(&self, entry: &E, now_ms: i64) -> bool {
        match &self.inner.root {
            None => true,
            Some(node) => eval(node, entry, now_ms).unwrap_or(false),
        }
    }

    /// The protocol macros the query uses (`http`, `dns`, ...), each once,
    /// so a consumer can refuse those its entries never satisfy.
    pub fn protocol_macros(&self) -> &[&'static str] {
        &self.inner.macros
    }

    /// The `n` of `limit(n)` ([`Query::limit`]).
    pub fn limit(&self) -> Option<u64> {
        self.inner.limit
    }

    /// Whether the filter reads the clock (`now()` and the relative time
    /// functions), i.e. whether [`Filter::matches`]'s `now_ms` matters.
    pub fn uses_clock(&self) -> bool {
        self.inner.uses_clock
    }

    /// Whether the filter matches every entry without looking at it.
    pub fn is_match_all(&self) -> bool {
        matches!(self.inner.root, None | Some(Node::Const(true)))
    }

    /// The canonical text of the query (as [`Query`]'s `Display`).
    pub fn as_str(&self) -> &str {
        &self.inner.text
    }
}

impl Default for Filter {
    fn default() -> Filter {
        Filter::match_all()
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.text)
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("query", &self.inner.text)
            .field("limit", &self.inner.limit)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Evaluation

/// A path was missing: the whole query is false.
struct Missing;

type Eval = Result<bool, Missing>;

/// What is known of a string's address form: literals parse once at compile
/// time; values from the entry are parsed only if compared with an address.
#[derive(Clone, Copy)]
enum IpHint {
    Unknown,
    Known(Option<IpAddr>),
}

/// The values of one side, borrowed from the entry or the filter.
enum Resolved<'a> {
    Lookup(Lookup<'a>),
    One(Value<'a>, IpHint),
}

impl<'a> Resolved<'a> {
    fn values(&self) -> (&[Value<'a>], IpHint) {
        match self {
            Resolved::Lookup(l) => (l.values(), IpHint::Unknown),
            Resolved::One(v, hint) => (std::slice::from_ref(v), *hint),
        }
    }
}

fn resolve<'a, E: Entry + ?Sized>(
    side: &'a Side,
    entry: &'a E,
    now: i64,
) -> Result<Resolved<'a>, Missing> {
    Ok(match side {
        Side::Path(p) => match entry.get(p) {
            Lookup::Missing => return Err(Missing),
            found => Resolved::Lookup(found),
        },
        Side::Lit(lit) => Resolved::One(lit.value(), IpHint::Known(lit.ip)),
        Side::Now(offset) => {
            Resolved::One(Value::Int(now.saturating_add(*offset)), IpHint::Known(None))
        }
    })
}

fn lookup<'a, E: Entry + ?Sized>(path: &Path, entry: &'a E) -> Result<Lookup<'a>, Missing> {
    match entry.get(path) {
        Lookup::Missing => Err(Missing),
        found => Ok(found),
    }
}

fn eval<E: Entry + ?Sized>(node: &Node, entry: &E, now: i64) -> Eval {
    match node {
        Node::Const(b) => Ok(*b),
        Node::And(xs) => {
            for x in xs {
                if !eval(x, entry, now)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Node::Or(xs) => {
            for x in xs {
                if eval(x, entry, now)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Node::Not(x) => Ok(!eval(x, entry, now)?),
        Node::Cmp { lhs, op, rhs } => {
            let l = resolve(lhs, entry, now)?;
            let r = resolve(rhs, entry, now)?;
            let (a, ah) = l.values();
            let (b, bh) = r.values();
            let any = |test: &dyn Fn(&Value<'_>, &Value<'_>) -> bool| {
                a.iter().any(|x| b.iter().any(|y| test(x, y)))
            };
            Ok(match op {
                CmpOp::Eq => any(&|x, y| equal(x, ah, y, bh)),
                CmpOp::Ne => !any(&|x, y| equal(x, ah, y, bh)),
                CmpOp::Lt => any(&|x, y| order(x, ah, y, bh) == Some(Ordering::Less)),
                CmpOp::Le => any(&|x, y| {
                    matches!(order(x, ah, y, bh), Some(Ordering::Less | Ordering::Equal))
                }),
                CmpOp::Gt => any(&|x, y| order(x, ah, y, bh) == Some(Ordering::Greater)),
                CmpOp::Ge => any(&|x, y| {
                    matches!(
                        order(x, ah, y, bh),
                        Some(Ordering::Greater | Ordering::Equal)
                    )
                }),
            })
        }
        Node::Regex { side, re, negate } => {
            let found = resolve(side, entry, now)?;
            let hit = found
                .values()
                .0
                .iter()
                .any(|v| with_text(v, |s| re.is_match(s)).unwrap_or(false));
            Ok(hit != *negate)
        }
        Node::In { side, list } => {
            let found = resolve(side, entry, now)?;
            let (values, hint) = found.values();
            Ok(values.iter().any(|v| {
                list.iter().any(|item| match item {
                    Item::Lit(lit) => equal(v, hint, &lit.value(), IpHint::Known(lit.ip)),
                    Item::Regex(re) => with_text(v, |s| re.is_match(s)).unwrap_or(false),
                })
            }))
        }
        Node::Helper { path, helper } => {
            let found = lookup(path, entry)?;
            Ok(found.values().iter().any(|v| {
                with_text(v, |s| match helper {
                    CompiledHelper::StartsWith(p) => s.starts_with(&**p),
                    CompiledHelper::EndsWith(p) => s.ends_with(&**p),
                    CompiledHelper::Contains(p) => s.contains(&**p),
                    CompiledHelper::Matches(re) => re.is_match(s),
                })
                .unwrap_or(false)
            }))
        }
        Node::Macro(checks) => Ok(checks.iter().any(|check| {
            entry.get(&check.path).values().iter().any(|v| match v {
                Value::Str(s) if !check.names.is_empty() => {
                    check.names.iter().any(|n| n.eq_ignore_ascii_case(s))
                }
                Value::Bool(true) => check.names.is_empty(),
                _ => false,
            })
        })),
    }
}

fn ip_of(s: &str, hint: IpHint) -> Option<IpAddr> {
    match hint {
        IpHint::Known(ip) => ip,
        IpHint::Unknown => s.parse().ok(),
    }
    .map(|ip| ip.to_canonical())
}

/// `==` between two values (see [`Value`] for the rules).
fn equal(a: &Value<'_>, ah: IpHint, b: &Value<'_>, bh: IpHint) -> bool {
    match (*a, *b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Ip(x), Value::Ip(y)) => x.to_canonical() == y.to_canonical(),
        (Value::Ip(x), Value::Str(s)) => ip_of(s, bh) == Some(x.to_canonical()),
        (Value::Str(s), Value::Ip(y)) => ip_of(s, ah) == Some(y.to_canonical()),
        _ => order(a, ah, b, bh) == Some(Ordering::Equal),
    }
}

/// The order of two values, `None` when they are not comparable.
fn order(a: &Value<'_>, ah: IpHint, b: &Value<'_>, bh: IpHint) -> Option<Ordering> {
    match (*a, *b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(&y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(&y),
        (Value::Int(i), Value::Float(f)) => cmp_int_float(i, f),
        (Value::Float(f), Value::Int(i)) => cmp_int_float(i, f).map(Ordering::reverse),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Ip(x), Value::Ip(y)) => Some(x.to_canonical().cmp(&y.to_canonical())),
        (Value::Ip(x), Value::Str(s)) => ip_of(s, bh).map(|y| x.to_canonical().cmp(&y)),
        (Value::Str(s), Value::Ip(y)) => ip_of(s, ah).map(|x| x.cmp(&y.to_canonical())),
        _ => None,
    }
}

/// Exact comparison of an integer with a float (no rounding through `as`).
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // Exact: |whole| < 2^63, or whole == -2^63.
    let whole_int = whole as i64;
    match i.cmp(&whole_int) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(f - whole)),
        other => Some(other),
    }
}

/// Runs `f` on the text form of a scalar (numbers, booleans and addresses
/// are formatted on the stack); `None` for `nil`.
fn with_text<R>(v: &Value<'_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    use std::fmt::Write as _;
    let mut buf = StackText::new();
    match v {
        Value::Str(s) => return Some(f(s)),
        Value::Null => return None,
        Value::Bool(b) => return Some(f(if *b { "true" } else { "false" })),
        Value::Int(i) => write!(buf, "{i}").ok()?,
        Value::Float(x) => write!(buf, "{x}").ok()?,
        Value::Ip(ip) => write!(buf, "{ip}").ok()?,
    }
    Some(f(buf.as_str()?))
}

/// A fixed buffer for formatting scalars without allocating. Long enough for
/// any `f64` written with `{}` (at most 330 bytes or so).
struct StackText {
    buf: [u8; 512],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            buf: [0; 512],
            len: 0,
        }
    }

    fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.buf[..self.len]).ok()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dest = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_float_order() {
        assert_eq!(cmp_int_float(80, 80.0), Some(Ordering::Equal));
        assert_eq!(cmp_int_float(80, 80.5), Some(Ordering::Less));
        assert_eq!(cmp_int_float(-80, -80.5), Some(Ordering::Greater));
        assert_eq!(cmp_int_float(i64::MAX, 9.3e18), Some(Ordering::Less));
        assert_eq!(cmp_int_float(i64::MIN, -9.3e18), Some(Ordering::Greater));
        assert_eq!(
            cmp_int_float(i64::MIN, -9_223_372_036_854_775_808.0),
            Some(Ordering::Equal)
        );
        // 2^53 + 1 is not representable: the float is 2^53.
        assert_eq!(
            cmp_int_float((1 << 53) + 1, (1u64 << 53) as f64),
            Some(Ordering::Greater)
        );
        assert_eq!(cmp_int_float(0, f64::NAN), None);
    }

    #[test]
    fn text_forms() {
        assert_eq!(with_text(&Value::Int(-404), str::to_owned).unwrap(), "-404");
        assert_eq!(with_text(&Value::Float(1.5), str::to_owned).unwrap(), "1.5");
        assert_eq!(with_text(&Value::Float(f64::MAX), str::len).unwrap(), 309);
        assert!(with_text(&Value::Float(f64::MIN_POSITIVE / 4.0), str::len).is_some());
        assert_eq!(
            with_text(&Value::Bool(true), str::to_owned).unwrap(),
            "true"
        );
        assert_eq!(
            with_text(&Value::Ip("::1".parse().unwrap()), str::to_owned).unwrap(),
            "::1"
        );
        assert_eq!(with_text(&Value::Null, str::to_owned), None);
    }

    #[test]
    fn filter_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Filter>();
    }
}
