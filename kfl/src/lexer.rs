//! The lexer: query text to [`Token`]s with byte offsets.

use std::fmt;

use crate::error::ParseError;

/// A token kind. Keywords (`and`, `or`, `in`, `true`, `false`, `nil`) arrive
/// as [`Tok::Ident`]; the parser decides by position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    /// An unsigned integer literal (the parser applies unary minus).
    Int(u64),
    /// A finite floating-point literal.
    Float(f64),
    /// A double-quoted string, escapes resolved.
    Str(String),
    /// `r"..."`: the pattern, with `\"` turned into `"` and every other
    /// backslash pair kept for the regex engine.
    Regex(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Star,
    Bang,
    Minus,
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Eof,
}

impl fmt::Display for Tok {
    /// How error messages name a token ("found ...").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Int(_) | Tok::Float(_) => f.write_str("a number"),
            Tok::Str(_) => f.write_str("a string"),
            Tok::Regex(_) => f.write_str("a regex"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Dot => f.write_str("`.`"),
            Tok::Star => f.write_str("`*`"),
            Tok::Bang => f.write_str("`!`"),
            Tok::Minus => f.write_str("`-`"),
            Tok::EqEq => f.write_str("`==`"),
            Tok::Ne => f.write_str("`!=`"),
            Tok::Lt => f.write_str("`<`"),
            Tok::Le => f.write_str("`<=`"),
            Tok::Gt => f.write_str("`>`"),
            Tok::Ge => f.write_str("`>=`"),
            Tok::AndAnd => f.write_str("`&&`"),
            Tok::OrOr => f.write_str("`||`"),
            Tok::Eof => f.write_str("end of query"),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub offset: usize,
}

/// Splits a query into tokens on demand.
pub(crate) struct Lexer<'q> {
    src: &'q str,
    pos: usize,
}

impl<'q> Lexer<'q> {
    pub fn new(src: &'q str) -> Lexer<'q> {
        Lexer { src, pos: 0 }
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_char_at(&self, skip: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(skip)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// The next token, or the lexical error at the current position.
    pub fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.peek_char().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok(Token {
                tok: Tok::Eof,
                offset: start,
            });
        };
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            '*' => Tok::Star,
            '-' => Tok::Minus,
            '!' if self.eat('=') => Tok::Ne,
            '!' => Tok::Bang,
            '=' if self.eat('=') => Tok::EqEq,
            '=' => return Err(ParseError::new(start, "expected `==`, found `=`")),
            '<' if self.eat('=') => Tok::Le,
            '<' => Tok::Lt,
            '>' if self.eat('=') => Tok::Ge,
            '>' => Tok::Gt,
            '&' if self.eat('&') => Tok::AndAnd,
            '&' => return Err(ParseError::new(start, "expected `&&`, found `&`")),
            '|' if self.eat('|') => Tok::OrOr,
            '|' => return Err(ParseError::new(start, "expected `||`, found `|`")),
            '"' => Tok::Str(self.string(start)?),
            '\'' => {
                return Err(ParseError::new(
                    start,
                    "strings are written in double quotes (`\"...\"`)",
                ));
            }
            'r' if self.peek_char() == Some('"') => {
                self.bump();
                Tok::Regex(self.regex(start)?)
            }
            c if c.is_ascii_digit() => self.number(start)?,
            c if c.is_ascii_alphabetic() || c == '_' => {
                while self
                    .peek_char()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.bump();
                }
                Tok::Ident(self.src[start..self.pos].to_owned())
            }
            c => {
                return Err(ParseError::new(
                    start,
                    format!("unexpected character {}", describe_char(c)),
                ));
            }
        };
        Ok(Token { tok, offset: start })
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek_char() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// The body of a `"..."` string; the opening quote is consumed.
    fn string(&mut self, start: usize) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return Err(ParseError::new(start, "unterminated string")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('0') => out.push('\0'),
                    Some('\'') => out.push('\''),
                    Some('u') => out.push(self.unicode_escape(at)?),
                    Some(c) => {
                        return Err(ParseError::new(
                            at,
                            format!(
                                "unknown escape `\\{c}` in string (known: \\\" \\\\ \\n \\t \\r \\0 \\' \\u{{...}})"
                            ),
                        ));
                    }
                    None => return Err(ParseError::new(start, "unterminated string")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// `\u{XXXX}` after the `\u`.
    fn unicode_escape(&mut self, at: usize) -> Result<char, ParseError> {
        let bad = || {
            ParseError::new(
                at,
                "invalid unicode escape: expected `\\u{...}` with 1 to 6 hex digits of a valid code point",
            )
        };
        if !self.eat('{') {
            return Err(bad());
        }
        let digits_start = self.pos;
        while self.peek_char().is_some_and(|c| c.is_ascii_hexdigit()) {
            self.bump();
        }
        let digits = &self.src[digits_start..self.pos];
        if digits.is_empty() || digits.len() > 6 || !self.eat('}') {
            return Err(bad());
        }
        u32::from_str_radix(digits, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(bad)
    }

    /// The body of a `r"..."` regex; `r"` is consumed.
    fn regex(&mut self, start: usize) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(ParseError::new(start, "unterminated regex")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => return Err(ParseError::new(start, "unterminated regex")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// A number starting at `start` (its first digit is consumed).
    fn number(&mut self, start: usize) -> Result<Tok, ParseError> {
        let digits = |lx: &mut Lexer<'_>| {
            while lx.peek_char().is_some_and(|c| c.is_ascii_digit()) {
                lx.bump();
            }
        };
        digits(self);
        let mut float = false;
        if self.peek_char() == Some('.') && self.peek_char_at(1).is_some_and(|c| c.is_ascii_digit())
        {
            float = true;
            self.bump();
            digits(self);
        }
        if matches!(self.peek_char(), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek_char_at(1), Some('+' | '-')));
            if self
                .peek_char_at(1 + sign)
                .is_some_and(|c| c.is_ascii_digit())
            {
                float = true;
                self.bump();
                if sign == 1 {
                    self.bump();
                }
                digits(self);
            }
        }
        let text = &self.src[start..self.pos];
        // Nothing valid puts a letter or a `.` right after a number.
        if self
            .peek_char()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            let mut end = self.pos;
            while self.src[end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                end += 1;
            }
            return Err(ParseError::new(
                start,
                format!("invalid number `{}`", &self.src[start..end]),
            ));
        }
        if float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Tok::Float(f)),
                _ => Err(ParseError::new(
                    start,
                    format!("number `{text}` is out of range"),
                )),
            }
        } else {
            text.parse::<u64>()
                .map(Tok::Int)
                .map_err(|_| ParseError::new(start, format!("integer `{text}` is too large")))
        }
    }
}

fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("`{c}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(src: &str) -> Result<Vec<Tok>, ParseError> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token()?;
            if t.tok == Tok::Eof {
                return Ok(out);
            }
            out.push(t.tok);
        }
    }

    #[test]
    fn operators() {
        assert_eq!(
            lex("== != < <= > >= && || ! - ( ) [ ] , . *").unwrap(),
            vec![
                Tok::EqEq,
                Tok::Ne,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::AndAnd,
                Tok::OrOr,
                Tok::Bang,
                Tok::Minus,
                Tok::LParen,
                Tok::RParen,
                Tok::LBracket,
                Tok::RBracket,
                Tok::Comma,
                Tok::Dot,
                Tok::Star
            ]
        );
        assert_eq!(lex("a!=b").unwrap().len(), 3);
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            lex(r#""a\"b\\c\nd\te\u{e9}""#).unwrap(),
            vec![Tok::Str("a\"b\\c\nd\te\u{e9}".into())]
        );
        assert_eq!(lex(r#""""#).unwrap(), vec![Tok::Str(String::new())]);
        let e = lex(r#"x == "abc"#).unwrap_err();
        assert_eq!((e.offset, e.message.as_str()), (5, "unterminated string"));
        let e = lex(r#""a\qb""#).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.starts_with("unknown escape `\\q`"));
        assert!(lex(r#""\u{110000}""#).is_err());
        assert!(lex(r#""\u{}""#).is_err());
        assert!(lex(r#""\u12""#).is_err());
    }

    #[test]
    fn regexes() {
        assert_eq!(
            lex(r#"r"4.*" r"a\d\"b\\""#).unwrap(),
            vec![Tok::Regex("4.*".into()), Tok::Regex(r#"a\d"b\\"#.into())]
        );
        assert_eq!(lex("r").unwrap(), vec![Tok::Ident("r".into())]);
        assert_eq!(lex(r#"r"abc"#).unwrap_err().message, "unterminated regex");
    }

    #[test]
    fn numbers() {
        assert_eq!(
            lex("0 80 1.5 2e3 1E-2 18446744073709551615").unwrap(),
            vec![
                Tok::Int(0),
                Tok::Int(80),
                Tok::Float(1.5),
                Tok::Float(2000.0),
                Tok::Float(0.01),
                Tok::Int(u64::MAX)
            ]
        );
        assert_eq!(
            lex("18446744073709551616").unwrap_err().message,
            "integer `18446744073709551616` is too large"
        );
        assert_eq!(lex("12ab").unwrap_err().message, "invalid number `12ab`");
        assert_eq!(
            lex("1e999").unwrap_err().message,
            "number `1e999` is out of range"
        );
        assert_eq!(lex(".5").unwrap(), vec![Tok::Dot, Tok::Int(5)]);
        assert_eq!(lex("1.").unwrap_err().message, "invalid number `1.`");
        assert_eq!(lex("1.2.3").unwrap_err().message, "invalid number `1.2.3`");
    }

    #[test]
    fn bad_characters() {
        assert_eq!(lex("a = b").unwrap_err().offset, 2);
        assert_eq!(lex("a @").unwrap_err().message, "unexpected character `@`");
        assert_eq!(
            lex("a & b").unwrap_err().message,
            "expected `&&`, found `&`"
        );
        assert_eq!(
            lex("a | b").unwrap_err().message,
            "expected `||`, found `|`"
        );
        assert_eq!(
            lex("\u{1}").unwrap_err().message,
            "unexpected character U+0001"
        );
    }
}
