//! The parser: tokens to a [`Query`], with specific error messages.
//!
//! Grammar (lowest precedence first):
//!
//! ```text
//! query      := <empty> | or
//! or         := and (("or" | "||") and)*
//! and        := unary (("and" | "&&") unary)*
//! unary      := "!"* condition
//! condition  := "(" or ")" | macro | helper | "limit(" int ")" | "true" | "false"
//!             | value (cmp value | "in" list)
//! cmp        := "==" | "!=" | "<" | "<=" | ">" | ">="
//! value      := path | literal | "now()" | unit "(" number ")" | "datetime(" string ")"
//! unit       := "seconds" | "minutes" | "hours" | "days"
//! literal    := "-"* number | string | regex | "true" | "false" | "nil"
//! list       := "[" (literal ("," literal)* ","?)? "]"
//! path       := ident ("." ident | "." "*" | "[" int "]" | "[" string "]" | "[" "*" "]")*
//! helper     := path "." ("startsWith" | "endsWith" | "contains") "(" string ")"
//!             | path "." "matches" "(" (string | regex) ")"
//! ```

use crate::ast::{CmpOp, Expr, Helper, LitKind, Literal, Number, Operand, Query, TimeFn, TimeUnit};
use crate::error::ParseError;
use crate::lexer::{Lexer, Tok, Token};
use crate::macros::{self, Macro};
use crate::path::{Path, Segment};
use crate::time;

/// Parentheses and `!` may nest this deep; deeper queries are rejected so
/// that no input can exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Parses a whole query.
pub(crate) fn parse(src: &str) -> Result<Query, ParseError> {
    let mut p = Parser::new(src);
    if p.peek()?.tok == Tok::Eof {
        return Ok(Query::match_all());
    }
    let root = p.or()?;
    let t = p.next()?;
    match t.tok {
        Tok::Eof => Ok(Query {
            root: Some(root),
            limit: p.limit,
        }),
        Tok::RParen => Err(ParseError::new(t.offset, "unmatched `)`")),
        other => Err(ParseError::new(
            t.offset,
            format!("expected `and`, `or` or end of query, found {other}"),
        )),
    }
}

/// Parses a lone path (no helpers, no aliases).
pub(crate) fn parse_path(src: &str) -> Result<Path, ParseError> {
    let mut p = Parser::new(src);
    let t = p.next()?;
    let Tok::Ident(first) = t.tok else {
        return Err(ParseError::new(
            t.offset,
            format!("expected a path, found {}", t.tok),
        ));
    };
    let PathOrHelper::Path(path) = p.path_rest(first)? else {
        return Err(ParseError::new(
            t.offset,
            "expected a path, found a helper call",
        ));
    };
    let t = p.next()?;
    if t.tok != Tok::Eof {
        return Err(ParseError::new(
            t.offset,
            format!("expected end of path, found {}", t.tok),
        ));
    }
    Ok(path)
}

struct Parser<'q> {
    lexer: Lexer<'q>,
    peeked: Option<Token>,
    depth: usize,
    limit: Option<u64>,
}

/// What a primary turned out to be.
enum Primary {
    /// Already a condition (macro, helper, `limit`).
    Cond(Expr),
    /// A value that still needs a comparison, with its offset and how to name
    /// it in messages.
    Value(Operand, usize, String),
}

enum PathOrHelper {
    Path(Path),
    Helper(Expr),
}

impl<'q> Parser<'q> {
    fn new(src: &'q str) -> Parser<'q> {
        Parser {
            lexer: Lexer::new(src),
            peeked: None,
            depth: 0,
            limit: None,
        }
    }

    fn peek(&mut self) -> Result<&Token, ParseError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    fn peek_is(&mut self, tok: &Tok) -> Result<bool, ParseError> {
        Ok(&self.peek()?.tok == tok)
    }

    fn peek_ident(&mut self, word: &str) -> Result<bool, ParseError> {
        Ok(matches!(&self.peek()?.tok, Tok::Ident(w) if w == word))
    }

    fn expect(&mut self, tok: Tok, context: &str) -> Result<Token, ParseError> {
        let t = self.next()?;
        if t.tok == tok {
            Ok(t)
        } else {
            Err(ParseError::new(
                t.offset,
                format!("expected {tok}{context}, found {}", t.tok),
            ))
        }
    }

    fn enter(&mut self, levels: usize, offset: usize) -> Result<(), ParseError> {
        self.depth += levels;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                offset,
                format!("query is nested too deeply (more than {MAX_DEPTH} levels of `(` and `!`)"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and()?];
        while self.peek_ident("or")? || self.peek_is(&Tok::OrOr)? {
            self.next()?;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.unary()?];
        while self.peek_ident("and")? || self.peek_is(&Tok::AndAnd)? {
            self.next()?;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let mut nots = 0;
        while self.peek_is(&Tok::Bang)? {
            let t = self.next()?;
            nots += 1;
            self.enter(1, t.offset)?;
        }
        let mut expr = self.condition()?;
        self.depth -= nots;
        for _ in 0..nots {
            expr = Expr::Not(Box::new(expr));
        }
        Ok(expr)
    }

    fn condition(&mut self) -> Result<Expr, ParseError> {
        if self.peek_is(&Tok::LParen)? {
            let open = self.next()?;
            self.enter(1, open.offset)?;
            let inner = self.or()?;
            self.depth -= 1;
            let t = self.next()?;
            match t.tok {
                Tok::RParen => {}
                other => {
                    return Err(ParseError::new(
                        t.offset,
                        format!("expected `)`, `and` or `or`, found {other} (unclosed `(`)"),
                    ));
                }
            }
            if let Some((op, at)) = self.peek_cmp()? {
                return Err(ParseError::new(
                    at,
                    format!(
                        "a condition in parentheses cannot be compared with `{}`",
                        op.as_str()
                    ),
                ));
            }
            return Ok(inner);
        }
        match self.primary("a condition")? {
            Primary::Cond(expr) => {
                if let Some((op, at)) = self.peek_cmp()? {
                    return Err(ParseError::new(
                        at,
                        format!(
                            "`{expr}` is a condition and cannot be compared with `{}`",
                            op.as_str()
                        ),
                    ));
                }
                Ok(expr)
            }
            Primary::Value(lhs, lhs_at, what) => self.comparison(lhs, lhs_at, what),
        }
    }

    /// The comparison operator ahead, if any.
    fn peek_cmp(&mut self) -> Result<Option<(CmpOp, usize)>, ParseError> {
        let t = self.peek()?;
        let op = match t.tok {
            Tok::EqEq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            _ => return Ok(None),
        };
        Ok(Some((op, t.offset)))
    }

    /// A value has been read; what follows must compare it.
    fn comparison(
        &mut self,
        lhs: Operand,
        lhs_at: usize,
        what: String,
    ) -> Result<Expr, ParseError> {
        if let Some((op, op_at)) = self.peek_cmp()? {
            self.next()?;
            let (rhs, rhs_at) = match self.primary("a value")? {
                Primary::Value(rhs, at, _) => (rhs, at),
                Primary::Cond(expr) => {
                    return Err(ParseError::new(
                        op_at,
                        format!("`{expr}` is a condition and cannot be compared"),
                    ));
                }
            };
            if let Some((_, at)) = self.peek_cmp()? {
                return Err(ParseError::new(
                    at,
                    "comparisons cannot be chained; combine them with `and`",
                ));
            }
            let is_regex = |o: &Operand| {
                matches!(
                    o,
                    Operand::Lit(Literal {
                        kind: LitKind::Regex(_),
                        ..
                    })
                )
            };
            if is_regex(&lhs) && is_regex(&rhs) {
                return Err(ParseError::new(
                    rhs_at,
                    "cannot compare a regex with a regex",
                ));
            }
            if (is_regex(&lhs) || is_regex(&rhs)) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(ParseError::new(
                    op_at,
                    format!(
                        "a regex can only be compared with `==` or `!=`, not `{}`",
                        op.as_str()
                    ),
                ));
            }
            return Ok(Expr::Compare { lhs, op, rhs });
        }
        if self.peek_ident("in")? {
            self.next()?;
            if let Operand::Lit(Literal {
                kind: LitKind::Regex(_),
                ..
            }) = lhs
            {
                return Err(ParseError::new(
                    lhs_at,
                    "a regex cannot be tested with `in`",
                ));
            }
            let list = self.list()?;
            return Ok(Expr::In { lhs, list });
        }
        if let Operand::Lit(Literal {
            kind: LitKind::Bool(b),
            ..
        }) = lhs
        {
            return Ok(Expr::Const(b));
        }
        let t = self.peek()?;
        let ends = matches!(&t.tok, Tok::Eof | Tok::RParen | Tok::AndAnd | Tok::OrOr)
            || matches!(&t.tok, Tok::Ident(w) if w == "and" || w == "or");
        if !ends {
            return Err(ParseError::new(
                t.offset,
                format!(
                    "expected a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=` or `in`) after {what}, found {}",
                    t.tok
                ),
            ));
        }
        let message = match &lhs {
            Operand::Path(p) if p.segments().len() == 1 => format!(
                "`{p}` is not a protocol macro ({}), and a path alone is not a condition: compare it, e.g. `{p} == \"...\"`",
                macros::names()
            ),
            Operand::Path(p) => {
                format!("a path alone is not a condition: compare it, e.g. `{p} == \"...\"`")
            }
            _ => format!("{what} is not a condition: compare it with something"),
        };
        Err(ParseError::new(lhs_at, message))
    }

    fn list(&mut self) -> Result<Vec<Literal>, ParseError> {
        self.expect(Tok::LBracket, " (a list of literals) after `in`")?;
        let mut items = Vec::new();
        loop {
            if self.peek_is(&Tok::RBracket)? {
                self.next()?;
                return Ok(items);
            }
            items.push(self.literal()?);
            let t = self.next()?;
            match t.tok {
                Tok::Comma => {}
                Tok::RBracket => return Ok(items),
                other => {
                    return Err(ParseError::new(
                        t.offset,
                        format!("expected `,` or `]` in the list, found {other}"),
                    ));
                }
            }
        }
    }

    /// A literal on its own (in `in` lists).
    fn literal(&mut self) -> Result<Literal, ParseError> {
        let t = self.peek()?.clone();
        let is_literal = matches!(
            t.tok,
            Tok::Minus | Tok::Int(_) | Tok::Float(_) | Tok::Str(_) | Tok::Regex(_)
        ) || matches!(&t.tok, Tok::Ident(w) if w == "true" || w == "false" || w == "nil");
        if is_literal && let Primary::Value(Operand::Lit(lit), _, _) = self.primary("a literal")? {
            return Ok(lit);
        }
        Err(ParseError::new(
            t.offset,
            format!(
                "expected a literal (number, string, regex, `true`, `false` or `nil`) in the list, found {}",
                t.tok
            ),
        ))
    }

    /// A path, a literal, a function call, a macro or a helper call.
    fn primary(&mut self, expected: &str) -> Result<Primary, ParseError> {
        let t = self.next()?;
        let at = t.offset;
        let lit = |kind: LitKind, what: &str| {
            Ok(Primary::Value(
                Operand::Lit(Literal { kind, offset: at }),
                at,
                what.to_owned(),
            ))
        };
        match t.tok {
            Tok::Minus | Tok::Int(_) | Tok::Float(_) => {
                let n = self.number_from(t)?;
                match n {
                    Number::Int(i) => lit(LitKind::Int(i), "a number"),
                    Number::Float(x) => lit(LitKind::Float(x), "a number"),
                }
            }
            Tok::Str(s) => lit(LitKind::Str(s), "a string"),
            Tok::Regex(r) => lit(LitKind::Regex(r), "a regex"),
            Tok::Dot if matches!(self.peek()?.tok, Tok::Int(_) | Tok::Float(_)) => {
                Err(ParseError::new(
                    at,
                    "invalid number: write a digit before the `.`, e.g. `0.5`",
                ))
            }
            Tok::Ident(w) => match w.as_str() {
                "true" => lit(LitKind::Bool(true), "`true`"),
                "false" => lit(LitKind::Bool(false), "`false`"),
                "nil" => lit(LitKind::Null, "`nil`"),
                "and" | "or" | "in" => Err(ParseError::new(
                    at,
                    format!("expected {expected}, found `{w}`"),
                )),
                _ if self.peek_is(&Tok::LParen)? => self.function(w, at),
                _ => self.path_or_macro(w, at),
            },
            other => Err(ParseError::new(
                at,
                format!("expected {expected}, found {other}"),
            )),
        }
    }

    /// A number whose first token (`-` or the number) is `first`.
    fn number_from(&mut self, first: Token) -> Result<Number, ParseError> {
        let mut negative = false;
        let mut t = first;
        let start = t.offset;
        while t.tok == Tok::Minus {
            negative = !negative;
            t = self.next()?;
        }
        match t.tok {
            Tok::Int(u) => {
                let value = match i64::try_from(u) {
                    Ok(i) if negative => Some(-i),
                    Ok(i) => Some(i),
                    Err(_) if negative && u == i64::MIN.unsigned_abs() => Some(i64::MIN),
                    Err(_) => None,
                };
                value.map(Number::Int).ok_or_else(|| {
                    ParseError::new(
                        start,
                        format!("integer `{u}` is out of range for a 64-bit integer"),
                    )
                })
            }
            Tok::Float(x) => Ok(Number::Float(if negative { -x } else { x })),
            other => Err(ParseError::new(
                t.offset,
                format!("expected a number after `-`, found {other}"),
            )),
        }
    }

    fn path_or_macro(&mut self, first: String, at: usize) -> Result<Primary, ParseError> {
        let path = match self.path_rest(first)? {
            PathOrHelper::Helper(expr) => return Ok(Primary::Cond(expr)),
            PathOrHelper::Path(path) => path,
        };
        if let [Segment::Key(name)] = path.segments() {
            // A macro name that is compared is a plain path (`tls == true`).
            let compared = self.peek_cmp()?.is_some() || self.peek_ident("in")?;
            if let Some(m) = Macro::from_name(name).filter(|_| !compared) {
                return Ok(Primary::Cond(Expr::Macro(m)));
            }
            if &**name == "not" && !compared {
                return Err(ParseError::new(
                    at,
                    "KFL has no `not`: negate with `!`, e.g. `!http`",
                ));
            }
            if &**name == "status_code" {
                // Generation 2 spelling of the HTTP status.
                let alias = Path::from_segments(vec![
                    Segment::Key("response".into()),
                    Segment::Key("status".into()),
                ]);
                return Ok(Primary::Value(
                    Operand::Path(alias),
                    at,
                    "`status_code`".to_owned(),
                ));
            }
        }
        let what = format!("`{path}`");
        Ok(Primary::Value(Operand::Path(path), at, what))
    }

    /// The segments after the first identifier, and a trailing helper call.
    fn path_rest(&mut self, first: String) -> Result<PathOrHelper, ParseError> {
        let mut segments = vec![Segment::Key(first.into())];
        loop {
            match self.peek()?.tok {
                Tok::Dot => {
                    self.next()?;
                    let t = self.next()?;
                    match t.tok {
                        Tok::Ident(name) if self.peek_is(&Tok::LParen)? => {
                            let path = Path::from_segments(segments);
                            return self.helper(path, name, t.offset).map(PathOrHelper::Helper);
                        }
                        Tok::Ident(name) => segments.push(Segment::Key(name.into())),
                        Tok::Star => segments.push(Segment::Wildcard),
                        Tok::Int(_) | Tok::Float(_) => {
                            return Err(ParseError::new(
                                t.offset,
                                "expected a field name or `*` after `.`, found a number (write an index as `[1]`)",
                            ));
                        }
                        other => {
                            return Err(ParseError::new(
                                t.offset,
                                format!("expected a field name or `*` after `.`, found {other}"),
                            ));
                        }
                    }
                }
                Tok::LBracket => {
                    self.next()?;
                    let t = self.next()?;
                    match t.tok {
                        Tok::Int(i) => segments.push(Segment::Index(i)),
                        Tok::Str(key) => segments.push(Segment::Key(key.into())),
                        Tok::Star => segments.push(Segment::Wildcard),
                        other => {
                            return Err(ParseError::new(
                                t.offset,
                                format!(
                                    "expected an index, a quoted key or `*` inside `[...]`, found {other}"
                                ),
                            ));
                        }
                    }
                    self.expect(Tok::RBracket, "")?;
                }
                _ => return Ok(PathOrHelper::Path(Path::from_segments(segments))),
            }
        }
    }

    /// `path.name(arg)`; the `(` is next.
    fn helper(&mut self, path: Path, name: String, at: usize) -> Result<Expr, ParseError> {
        let helper = match name.as_str() {
            "startsWith" => Helper::StartsWith,
            "endsWith" => Helper::EndsWith,
            "contains" => Helper::Contains,
            "matches" => Helper::Matches,
            "json" | "xml" => {
                return Err(ParseError::new(
                    at,
                    format!("`.{name}()` is not supported yet"),
                ));
            }
            _ => {
                return Err(ParseError::new(
                    at,
                    format!(
                        "unknown helper `.{name}()`; KFL has startsWith, endsWith, contains and matches"
                    ),
                ));
            }
        };
        let usage = match helper {
            Helper::Matches => format!(
                "`.matches()` takes one regex or string, e.g. `{path}.matches(r\"^/api/\")`"
            ),
            _ => format!("`.{name}()` takes one string, e.g. `{path}.{name}(\"/api\")`"),
        };
        self.next()?; // (
        let t = self.next()?;
        let arg = match t.tok {
            Tok::Str(s) => Literal {
                kind: LitKind::Str(s),
                offset: t.offset,
            },
            Tok::Regex(r) if helper == Helper::Matches => Literal {
                kind: LitKind::Regex(r),
                offset: t.offset,
            },
            _ => return Err(ParseError::new(t.offset, usage)),
        };
        let close = self.next()?;
        if close.tok != Tok::RParen {
            return Err(ParseError::new(close.offset, usage));
        }
        Ok(Expr::Helper { path, helper, arg })
    }

    /// `name(...)`; the `(` is next.
    fn function(&mut self, name: String, at: usize) -> Result<Primary, ParseError> {
        self.next()?; // (
        let unit = match name.as_str() {
            "now" => {
                let t = self.next()?;
                if t.tok != Tok::RParen {
                    return Err(ParseError::new(t.offset, "`now()` takes no argument"));
                }
                return Ok(Primary::Value(
                    Operand::Time(TimeFn::Relative {
                        unit: None,
                        offset_ms: 0,
                    }),
                    at,
                    "`now()`".to_owned(),
                ));
            }
            "seconds" => TimeUnit::Seconds,
            "minutes" => TimeUnit::Minutes,
            "hours" => TimeUnit::Hours,
            "days" => TimeUnit::Days,
            "datetime" => {
                let usage = format!(
                    "`datetime()` takes one string in the layout \"{}\", e.g. `datetime(\"1/2/2006, 3:04:05.000 PM\")`",
                    time::LAYOUT
                );
                let t = self.next()?;
                let Tok::Str(text) = t.tok else {
                    return Err(ParseError::new(t.offset, usage));
                };
                let epoch_ms =
                    time::parse_datetime(&text).map_err(|m| ParseError::new(t.offset, m))?;
                let close = self.next()?;
                if close.tok != Tok::RParen {
                    return Err(ParseError::new(close.offset, usage));
                }
                return Ok(Primary::Value(
                    Operand::Time(TimeFn::Datetime { text, epoch_ms }),
                    at,
                    "`datetime()`".to_owned(),
                ));
            }
            "limit" => {
                let usage = "`limit()` takes one non-negative integer, e.g. `limit(100)`";
                let t = self.next()?;
                let Tok::Int(n) = t.tok else {
                    return Err(ParseError::new(t.offset, usage));
                };
                let close = self.next()?;
                if close.tok != Tok::RParen {
                    return Err(ParseError::new(close.offset, usage));
                }
                self.limit = Some(self.limit.map_or(n, |l| l.min(n)));
                return Ok(Primary::Cond(Expr::Limit(n)));
            }
            "redact" | "json" | "xml" => {
                return Err(ParseError::new(
                    at,
                    format!("`{name}()` is not supported yet"),
                ));
            }
            _ => {
                return Err(ParseError::new(
                    at,
                    format!(
                        "unknown function `{name}()`; KFL has now, seconds, minutes, hours, days, datetime and limit"
                    ),
                ));
            }
        };
        let usage = format!("`{0}()` takes one number, e.g. `{0}(-5)`", unit.name());
        let t = self.next()?;
        let arg_at = t.offset;
        if !matches!(t.tok, Tok::Minus | Tok::Int(_) | Tok::Float(_)) {
            return Err(ParseError::new(t.offset, usage));
        }
        let n = self.number_from(t)?;
        let close = self.next()?;
        if close.tok != Tok::RParen {
            return Err(ParseError::new(close.offset, usage));
        }
        let offset_ms = match n {
            Number::Int(i) => i.checked_mul(unit.millis()),
            Number::Float(x) => {
                let ms = (x * unit.millis() as f64).round();
                // i64::MAX as f64 rounds up to 2^63, itself out of range.
                (ms.abs() < 9.2e18).then_some(ms as i64)
            }
        }
        .ok_or_else(|| {
            ParseError::new(arg_at, format!("`{}({n})` is out of range", unit.name()))
        })?;
        Ok(Primary::Value(
            Operand::Time(TimeFn::Relative {
                unit: Some((unit, n)),
                offset_ms,
            }),
            at,
            format!("`{}()`", unit.name()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(q: &str) -> String {
        parse(q).unwrap_or_else(|e| panic!("{q}: {e}")).to_string()
    }

    fn err(q: &str) -> (usize, String) {
        let e = parse(q).unwrap_err();
        (e.offset, e.message)
    }

    #[test]
    fn precedence() {
        assert_eq!(
            canon("a == 1 or b == 2 and c == 3"),
            "((a == 1) or ((b == 2) and (c == 3)))"
        );
        assert_eq!(canon("!http or dns"), "(!http or dns)");
        assert_eq!(canon("!(http or dns)"), "!(http or dns)");
        assert_eq!(canon("http and dns and tcp"), "(http and dns and tcp)");
        assert_eq!(canon("http || dns && tcp"), "(http or (dns and tcp))");
    }

    #[test]
    fn and_or_are_flat() {
        let q = parse("http and dns and tcp").unwrap();
        assert!(matches!(&q.root, Some(Expr::And(xs)) if xs.len() == 3));
        let q = parse("http or (dns or tcp)").unwrap();
        assert!(matches!(&q.root, Some(Expr::Or(xs)) if xs.len() == 2));
    }

    #[test]
    fn empty_and_whitespace_match_all() {
        for q in ["", "  ", "\n\t"] {
            let q = parse(q).unwrap();
            assert!(q.is_match_all());
            assert_eq!(q.to_string(), "true");
        }
        assert!(!parse("http").unwrap().is_match_all());
    }

    #[test]
    fn macros_and_paths() {
        assert!(matches!(
            parse("http").unwrap().root,
            Some(Expr::Macro(Macro::Http))
        ));
        // Compared, a macro name is a path.
        assert!(matches!(
            parse("tls == true").unwrap().root,
            Some(Expr::Compare {
                lhs: Operand::Path(_),
                ..
            })
        ));
        // Macros are case-sensitive identifiers.
        assert!(parse("HTTP").is_err());
        assert_eq!(canon("http.x == 1"), "(http.x == 1)");
    }

    #[test]
    fn aliases_and_limits() {
        assert_eq!(canon("status_code == 404"), "(response.status == 404)");
        assert_eq!(canon("a.status_code == 1"), "(a.status_code == 1)");
        let q = parse("limit(10) and http and limit(3)").unwrap();
        assert_eq!(q.limit(), Some(3));
        assert_eq!(parse("http").unwrap().limit(), None);
        assert!(parse("limit(7)").unwrap().is_match_all());
    }

    #[test]
    fn numbers_and_minus() {
        assert_eq!(canon("a == ---5"), "(a == -5)");
        assert_eq!(
            canon("a == -9223372036854775808"),
            "(a == -9223372036854775808)"
        );
        assert_eq!(err("a == 9223372036854775808").0, 5);
        assert_eq!(canon("a < 1e16"), "(a < 1e16)");
        assert_eq!(canon("a < -0.0"), "(a < -0.0)");
    }

    #[test]
    fn time_functions() {
        let q = parse("timestamp >= hours(-5)").unwrap();
        let Some(Expr::Compare {
            rhs: Operand::Time(TimeFn::Relative { offset_ms, .. }),
            ..
        }) = q.root
        else {
            panic!("{q:?}");
        };
        assert_eq!(offset_ms, -5 * 3_600_000);
        let q = parse("timestamp >= minutes(-1.5)").unwrap();
        let Some(Expr::Compare {
            rhs: Operand::Time(TimeFn::Relative { offset_ms, .. }),
            ..
        }) = q.root
        else {
            panic!("{q:?}");
        };
        assert_eq!(offset_ms, -90_000);
        assert!(err("a > days(999999999999999)").1.contains("out of range"));
        assert!(err("a > seconds(1e300)").1.contains("out of range"));
    }

    #[test]
    fn specific_errors() {
        assert_eq!(
            err(r#"http and request.method = "GET""#),
            (24, "expected `==`, found `=`".into())
        );
        assert_eq!(
            err("http and").1,
            "expected a condition, found end of query"
        );
        assert_eq!(
            err("(http").1,
            "expected `)`, `and` or `or`, found end of query (unclosed `(`)"
        );
        assert_eq!(
            err("not http").1,
            "KFL has no `not`: negate with `!`, e.g. `!http`"
        );
        assert_eq!(
            err("foo(1)").1.split(';').next(),
            Some("unknown function `foo()`")
        );
        assert_eq!(err("x.json()").1, "`.json()` is not supported yet");
        assert_eq!(err("xml()").1, "`xml()` is not supported yet");
        assert_eq!(err("redact(\"a\")").1, "`redact()` is not supported yet");
        assert_eq!(err("a.b.nope(\"x\")").0, 4);
        assert!(
            err("a < r\"x\"")
                .1
                .starts_with("a regex can only be compared")
        );
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}http{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!(
            "{}http{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(err(&deep).0, MAX_DEPTH);
        let nots = format!("{}http", "!".repeat(MAX_DEPTH + 1));
        assert!(err(&nots).1.contains("nested too deeply"));
        // Long flat chains are fine: they do not nest.
        let long = vec!["http"; 10_000].join(" or ");
        assert!(parse(&long).is_ok());
        let minus = format!("a == {}1", "-".repeat(10_000));
        assert_eq!(parse(&minus).unwrap().to_string(), "(a == 1)");
    }

    #[test]
    fn paths_are_listed_once() {
        let q = parse(r#"http and a.b == 1 or a.b != c["d"] and e.startsWith("x") and f in [1]"#)
            .unwrap();
        let paths: Vec<&str> = q.paths().iter().map(|p| p.as_str()).collect();
        assert_eq!(paths, ["a.b", "c.d", "e", "f"]);
    }
}
