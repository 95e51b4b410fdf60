//! CEF escaping and length limits (ArcSight CEF implementation standard).
//!
//! Header fields escape `\` and `|` only; extension values escape `\`, `=`,
//! CR (`\r`) and LF (`\n`) and leave `|` alone. Values are cut to a byte
//! maximum on a UTF-8 character boundary *before* escaping, so an escape
//! sequence is never split.

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary, and whether anything was cut.
pub fn cut(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// Appends a header field, escaped.
pub fn header_into(s: &str, out: &mut Vec<u8>) {
    if !s.bytes().any(|b| b == b'\\' || b == b'|') {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'|' => out.extend_from_slice(b"\\|"),
            _ => out.push(b),
        }
    }
}

/// Appends an extension value, escaped.
pub fn extension_into(s: &str, out: &mut Vec<u8>) {
    if !s.bytes().any(|b| matches!(b, b'\\' | b'=' | b'\r' | b'\n')) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'=' => out.extend_from_slice(b"\\="),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> String {
        let mut out = Vec::new();
        extension_into(s, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    fn hdr(s: &str) -> String {
        let mut out = Vec::new();
        header_into(s, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn header_and_extension_escape_differently() {
        assert_eq!(hdr(r"a|b\c=d"), r"a\|b\\c=d");
        assert_eq!(ext("a|b\\c=d\r\n"), r"a|b\\c\=d\r\n");
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        // "é" is two bytes: a cut in its middle backs off to before it.
        assert_eq!(cut("aé", 2), ("a", true));
        assert_eq!(cut("aé", 3), ("aé", false));
        assert_eq!(cut("☃☃", 4), ("☃", true));
        assert_eq!(cut("", 0), ("", false));
    }
}
