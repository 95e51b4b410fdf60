//! Secret detection in raw bytes: [`Detectors`] finds credentials, keys,
//! tokens and card numbers in reassembled payloads and file contents, and
//! reports each one as a [`SecretHit`] holding its byte range and a redacted
//! excerpt (never the secret itself).
//!
//! All patterns are compiled once. A [`RegexSet`] of cheap necessary
//! conditions runs over the data first, so data without any candidate is
//! scanned exactly once; only the detectors whose condition matched then run
//! their own regex and validation (base64 decoding, JSON check, Luhn, brand).
//! Every search loop only moves forward and each validation is bounded, so a
//! scan is linear in the size of the data.

use regex::bytes::{Regex, RegexSet};

/// Bytes of context kept on each side of a secret in an excerpt.
const CONTEXT: usize = 24;
/// How far a private key body may run when no END line follows.
const MAX_PEM: usize = 8 * 1024;
/// Shortest bearer token reported (shorter ones are placeholders).
const MIN_BEARER: usize = 8;

const BASIC: usize = 0;
const BEARER: usize = 1;
const URL: usize = 2;
const AWS_ACCESS: usize = 3;
const AWS_SECRET: usize = 4;
const PEM: usize = 5;
const JWT: usize = 6;
const GITHUB: usize = 7;
const SLACK: usize = 8;
const GCP: usize = 9;
const CARD: usize = 10;

static NAMES: [&str; 11] = [
    "http-basic-auth",
    "bearer-token",
    "url-credentials",
    "aws-access-key",
    "aws-secret-key",
    "private-key",
    "jwt",
    "github-token",
    "slack-token",
    "gcp-api-key",
    "card-number",
];

/// Per detector, in the order of [`NAMES`]: the prefilter pattern (a
/// necessary condition for the detector to find anything) and the
/// detector's own pattern (group 1, when present, is the secret).
const PATTERNS: [(&str, &str); 11] = [
    (
        r"(?i-u)authorization[ \t]*:[ \t]*basic[ \t]+[A-Za-z0-9+/]",
        r"(?i-u)authorization[ \t]*:[ \t]*basic[ \t]+([A-Za-z0-9+/]+={0,2})",
    ),
    (
        r"(?i-u)authorization[ \t]*:[ \t]*bearer[ \t]+[A-Za-z0-9._~+/-]",
        r"(?i-u)authorization[ \t]*:[ \t]*bearer[ \t]+([A-Za-z0-9._~+/-]+=*)",
    ),
    (
        r#"(?-u)://[^\s:/?#@"'<>]*:[^\s/?#@"'<>]+@"#,
        r#"(?-u)[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s:/?#@"'<>]*:([^\s/?#@"'<>]+)@[A-Za-z0-9\[]"#,
    ),
    (
        r"(?-u)AKIA|ASIA|ABIA|ACCA",
        r"(?-u)\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
    ),
    (
        r"(?i-u)aws_secret_access_key",
        r#"(?i-u)aws_secret_access_key["']?[ \t]*[:=][ \t]*["']?([A-Za-z0-9/+]{40})"#,
    ),
    (
        r"(?-u)-----BEGIN (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----",
        r"(?-u)-----BEGIN (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----",
    ),
    (
        r"(?-u)eyJ[A-Za-z0-9_-]+\.eyJ",
        r"(?-u)eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
    ),
    (r"(?-u)gh[pousr]_", r"(?-u)\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    (r"(?-u)xox[baprs]-", r"(?-u)\bxox[baprs]-[A-Za-z0-9-]{10,}"),
    (r"(?-u)AIza", r"(?-u)AIza[0-9A-Za-z_-]{35}"),
    (
        // The leading non-digit keeps the engine from using a digit prefilter
        // (which thrashes on text like "1 2 3 4") and makes a long run of
        // digits match once rather than at every byte.
        r"(?-u)(?:^|[^0-9])[0-9](?:[ -]?[0-9]){12}",
        r"(?-u)(?:^|[^0-9])[0-9]{4}[0-9]*(?:[ -][0-9]+)*",
    ),
];

/// A raw hit before redaction: start, end, detector index.
type Raw = (usize, usize, usize);

/// One secret found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHit {
    /// Detector name (kebab-case, stable, e.g. "http-basic-auth").
    pub detector: &'static str,
    /// Start of the secret's byte range in the scanned data.
    pub start: usize,
    /// End (exclusive) of the secret's byte range in the scanned data.
    pub end: usize,
    /// A redacted excerpt: some context around the secret with the secret
    /// masked; never contains the secret's value.
    pub excerpt: String,
}

/// All detectors, compiled once: a prefilter [`RegexSet`] plus one regex per
/// detector. Cheap to clone (the regexes are shared).
#[derive(Debug, Clone)]
pub struct Detectors {
    set: RegexSet,
    res: Vec<Regex>,
    pem_end: Regex,
}

impl Default for Detectors {
    fn default() -> Detectors {
        Detectors::new()
    }
}

impl Detectors {
    /// Compiles every detector.
    pub fn new() -> Detectors {
        let set = RegexSet::new(PATTERNS.iter().map(|p| p.0)).expect("prefilter patterns");
        let res = PATTERNS
            .iter()
            .map(|p| Regex::new(p.1).expect("detector pattern"))
            .collect();
        let pem_end = Regex::new(r"(?-u)-----END [A-Z ]{0,24}PRIVATE KEY-----|-----BEGIN ")
            .expect("pem end pattern");
        Detectors { set, res, pem_end }
    }

    /// Names of every detector.
    pub fn names(&self) -> &'static [&'static str] {
        &NAMES
    }

    /// Appends every hit in `data` to `out`, in order of start offset; hits
    /// of one detector never overlap.
    pub fn scan(&self, data: &[u8], out: &mut Vec<SecretHit>) {
        let matched = self.set.matches(data);
        if !matched.matched_any() {
            return;
        }
        let mut hits: Vec<Raw> = Vec::new();
        let mut buf = Vec::new();
        for det in matched.iter() {
            match det {
                BASIC | BEARER | URL | AWS_SECRET => self.captured(det, data, &mut buf, &mut hits),
                PEM => self.pem(data, &mut hits),
                JWT => self.jwt(data, &mut buf, &mut hits),
                CARD => self.cards(data, &mut hits),
                _ => self.tokens(det, data, &mut hits),
            }
        }
        hits.sort_unstable();
        redact(data, &hits, out);
    }

    /// Detectors whose secret is capture group 1 of their regex.
    fn captured(&self, det: usize, data: &[u8], buf: &mut Vec<u8>, hits: &mut Vec<Raw>) {
        let re = &self.res[det];
        let mut locs = re.capture_locations();
        let mut pos = 0;
        while let Some(m) = re.captures_read_at(&mut locs, data, pos) {
            pos = m.end();
            let Some((s, e)) = locs.get(1) else { continue };
            let secret = &data[s..e];
            let ok = match det {
                BASIC => is_basic(secret, buf),
                BEARER => secret.len() >= MIN_BEARER && !self.starts_with_jwt(secret, buf),
                AWS_SECRET => !data.get(e).is_some_and(|&b| is_b64(b)),
                _ => true,
            };
            if ok {
                hits.push((s, e, det));
            }
        }
    }

    /// Fixed-shape tokens: the whole match is the secret.
    fn tokens(&self, det: usize, data: &[u8], hits: &mut Vec<Raw>) {
        let mut pos = 0;
        while let Some(m) = self.res[det].find_at(data, pos) {
            pos = m.end();
            // The GCP alphabet has '-', so `\b` cannot bound it: check by hand.
            let bounded = det != GCP
                || !(m.start() > 0 && is_b64url(data[m.start() - 1])
                    || data.get(m.end()).is_some_and(|&b| is_b64url(b)));
            if bounded {
                hits.push((m.start(), m.end(), det));
            }
        }
    }

    /// PEM private keys: the body between the BEGIN and END lines.
    fn pem(&self, data: &[u8], hits: &mut Vec<Raw>) {
        let mut pos = 0;
        while let Some(m) = self.res[PEM].find_at(data, pos) {
            let body = m.end();
            let window = &data[body..data.len().min(body + MAX_PEM)];
            let (end, next) = match self.pem_end.find(window) {
                Some(e) if e.as_bytes().starts_with(b"-----END") => (e.start(), e.end()),
                Some(e) => (e.start(), e.start()),
                None => (window.len(), window.len()),
            };
            let raw = &data[body..body + end];
            let (s, e) = (
                end - raw.trim_ascii_start().len(),
                raw.trim_ascii_end().len(),
            );
            if s < e {
                hits.push((body + s, body + e, PEM));
            }
            pos = body + next;
        }
    }

    /// JWTs whose header and payload decode to JSON objects.
    fn jwt(&self, data: &[u8], buf: &mut Vec<u8>, hits: &mut Vec<Raw>) {
        let mut pos = 0;
        while let Some(m) = self.res[JWT].find_at(data, pos) {
            if is_jwt(m.as_bytes(), buf) {
                hits.push((m.start(), m.end(), JWT));
                pos = m.end();
            } else {
                // A real token may start at the second segment.
                let dot = m.as_bytes().iter().position(|&b| b == b'.').unwrap_or(0);
                pos = m.start() + dot + 1;
            }
        }
    }

    /// Whether `token` starts with a JWT the `jwt` detector reports.
    fn starts_with_jwt(&self, token: &[u8], buf: &mut Vec<u8>) -> bool {
        self.res[JWT]
            .find(token)
            .is_some_and(|m| m.start() == 0 && is_jwt(m.as_bytes(), buf))
    }

    /// Card numbers: runs of digit groups, tried as every window of groups
    /// with one separator; the longest valid window from a group wins.
    fn cards(&self, data: &[u8], hits: &mut Vec<Raw>) {
        let mut groups: Vec<(usize, usize)> = Vec::new();
        for run in self.res[CARD].find_iter(data) {
            groups.clear();
            let first = run.start() + usize::from(!run.as_bytes()[0].is_ascii_digit());
            let mut s = first;
            for (i, &b) in data[first..run.end()].iter().enumerate() {
                if !b.is_ascii_digit() {
                    groups.push((s, first + i));
                    s = first + i + 1;
                }
            }
            groups.push((s, run.end()));
            let mut i = 0;
            while i < groups.len() {
                let (mut best, mut digits) = (None, 0);
                for j in i..groups.len() {
                    if j > i && data[groups[j].0 - 1] != data[groups[i + 1].0 - 1] {
                        break;
                    }
                    digits += groups[j].1 - groups[j].0;
                    if digits > 19 {
                        break;
                    }
                    if is_card(data, &groups[i..=j], digits) {
                        best = Some(j);
                    }
                }
                match best {
                    Some(j) => {
                        hits.push((groups[i].0, groups[j].1, CARD));
                        i = j + 1;
                    }
                    None => i += 1,
                }
            }
        }
    }
}

/// Standard or URL-safe base64 alphabet (without padding).
fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// The URL-safe base64 alphabet.
fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Decodes standard or URL-safe base64 (padding optional) into `out`.
fn b64_decode(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let body = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    if body.len() % 4 == 1 || (body.len() != input.len() && !input.len().is_multiple_of(4)) {
        return false;
    }
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return false,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    true
}

/// A Basic token: base64 of printable `user:password`, password non-empty.
fn is_basic(token: &[u8], buf: &mut Vec<u8>) -> bool {
    if !b64_decode(token, buf) || buf.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return false;
    }
    buf.iter()
        .position(|&b| b == b':')
        .is_some_and(|colon| colon + 1 < buf.len())
}

/// Header and payload of `token` decode to JSON objects.
fn is_jwt(token: &[u8], buf: &mut Vec<u8>) -> bool {
    token.split(|&b| b == b'.').take(2).all(|part| {
        b64_decode(part, buf) && buf.first() == Some(&b'{') && buf.trim_ascii_end().ends_with(b"}")
    })
}

/// A window of digit groups that is a plausible card number.
fn is_card(data: &[u8], groups: &[(usize, usize)], digits: usize) -> bool {
    let (start, end) = (groups[0].0, groups[groups.len() - 1].1);
    let grouped_ok = groups.len() == 1
        || (groups[0].1 - groups[0].0 == 4
            && groups.iter().all(|g| (3..=6).contains(&(g.1 - g.0))));
    if digits < 13
        || !grouped_ok
        || (start > 0 && data[start - 1].is_ascii_alphanumeric())
        || data.get(end).is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return false;
    }
    let mut d = [0u8; 19];
    let mut n = 0;
    for &b in &data[start..end] {
        if b.is_ascii_digit() {
            d[n] = b - b'0';
            n += 1;
        }
    }
    let d = &d[..n];
    let prefix = |k: usize| d[..k].iter().fold(0u32, |a, &c| a * 10 + u32::from(c));
    let brand = match d[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => (51..=55).contains(&prefix(2)) && n == 16,
        2 => (2221..=2720).contains(&prefix(4)) && n == 16,
        3 => matches!(prefix(2), 34 | 37) && n == 15,
        6 => (prefix(4) == 6011 || prefix(2) == 65) && n >= 16,
        _ => false,
    };
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x) * if i % 2 == 1 { 2 } else { 1 };
            if x > 9 { x - 9 } else { x }
        })
        .sum();
    brand && sum.is_multiple_of(10)
}

/// Builds the excerpts. Context stops at any other hit, so one secret never
/// shows up in the context of another (e.g. the same key twice in a row).
fn redact(data: &[u8], hits: &[Raw], out: &mut Vec<SecretHit>) {
    out.reserve(hits.len());
    // Largest end among hits starting strictly before the current one.
    let (mut max_end, mut k) = (0, 0);
    for (i, &(start, end, det)) in hits.iter().enumerate() {
        while hits[k].0 < start {
            max_end = max_end.max(hits[k].1);
            k += 1;
        }
        let from = start.saturating_sub(CONTEXT).max(max_end.min(start));
        let mut to = (end + CONTEXT).min(data.len());
        // A key cut at MAX_PEM would go on with key material: no context.
        let cut = det == PEM && !data[end..to].trim_ascii_start().starts_with(b"-----");
        if max_end > end || cut {
            to = end;
        }
        for (n, o) in hits[i + 1..].iter().enumerate() {
            if o.0 >= to {
                break;
            }
            if n >= 64 {
                to = end;
                break;
            }
            if o.1 > end {
                to = to.min(o.0.max(end));
                break;
            }
        }
        let mut excerpt = String::with_capacity(2 * CONTEXT + 32);
        push_clean(&mut excerpt, &data[from..start]);
        mask(det, &data[start..end], &mut excerpt);
        push_clean(&mut excerpt, &data[end..to]);
        out.push(SecretHit {
            detector: NAMES[det],
            start,
            end,
            excerpt,
        });
    }
}

/// Appends `bytes` as lossy UTF-8 with control characters shown as '.'.
fn push_clean(s: &mut String, bytes: &[u8]) {
    s.extend(
        String::from_utf8_lossy(bytes)
            .chars()
            .map(|c| if c.is_control() { '.' } else { c }),
    );
}

/// Appends the mask standing for `secret`.
fn mask(det: usize, secret: &[u8], s: &mut String) {
    if det == CARD {
        let digits: Vec<u8> = secret.iter().copied().filter(u8::is_ascii_digit).collect();
        let (hidden, last) = digits.split_at(digits.len().saturating_sub(4));
        s.extend(hidden.iter().map(|_| '*'));
        s.extend(last.iter().map(|&b| char::from(b)));
        return;
    }
    // Only public, fixed prefixes are kept.
    let keep = match det {
        AWS_ACCESS | GITHUB | SLACK | GCP => 4,
        JWT => 3,
        _ => 0,
    };
    s.extend(secret[..keep].iter().map(|&b| char::from(b)));
    s.push_str(&format!("********({} bytes)", secret.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT_IO: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    const GH: &str = "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const GCP_KEY: &str = "AIzaSyDUMMY-KEY_0123456789abcdefghijklm";
    const AWS_SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const PEM_BODY: &str = "MIIBOgIBAAJBAFAKEFAKEFAKEFAKEFAKEFAKEFAKE\nFAKEFAKEFAKEFAKEFAKE+/==";
    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\n";

    fn scan(data: &[u8]) -> Vec<SecretHit> {
        let mut out = Vec::new();
        Detectors::new().scan(data, &mut out);
        out
    }

    /// (data, detector, secret, start of the secret): exactly one hit each.
    #[rustfmt::skip]
    fn positives() -> Vec<(String, &'static str, &'static str, usize)> {
        let basic = "GET / HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNzd29yZA==\r\n\r\n";
        let pem = format!("key:\n{PEM}{PEM_BODY}\n-----END RSA PRIVATE KEY-----\n");
        vec![
            (basic.into(), "http-basic-auth", "dXNlcjpwYXNzd29yZA==", 37),
            ("Proxy-AUTHORIZATION:basic dXNlcjpwYXNzd29yZA".into(), "http-basic-auth", "dXNlcjpwYXNzd29yZA", 26),
            ("Authorization: Bearer abcdef0123456789.xyz~\n".into(), "bearer-token", "abcdef0123456789.xyz~", 22),
            (format!("authorization: bearer {JWT_IO}\r\n"), "jwt", JWT_IO, 22),
            ("dsn=postgres://admin:s3cr3t-pw@db.internal:5432/app".into(), "url-credentials", "s3cr3t-pw", 21),
            ("redis://:hunter2@cache".into(), "url-credentials", "hunter2", 9),
            ("key=AKIAIOSFODNN7EXAMPLE;".into(), "aws-access-key", "AKIAIOSFODNN7EXAMPLE", 4),
            (format!("AWS_SECRET_ACCESS_KEY={AWS_SK}\n"), "aws-secret-key", AWS_SK, 22),
            (format!("{{\"aws_secret_access_key\": \"{AWS_SK}\"}}"), "aws-secret-key", AWS_SK, 27),
            (pem, "private-key", PEM_BODY, 37),
            (format!("token={JWT_IO}&x=1"), "jwt", JWT_IO, 6),
            // A real JWT right after a JWT-looking prefix is still found.
            (format!("eyJfoo.{JWT_IO}"), "jwt", JWT_IO, 7),
            (format!("token: {GH}\n"), "github-token", GH, 7),
            ("SLACK=xoxb-0000000000-FAKEFAKEFAKE ok".into(), "slack-token", "xoxb-0000000000-FAKEFAKEFAKE", 6),
            (format!("key={GCP_KEY}&q=1"), "gcp-api-key", GCP_KEY, 4),
            ("card 4111 1111 1111 1111 exp".into(), "card-number", "4111 1111 1111 1111", 5),
            ("n=5555-5555-5555-4444;".into(), "card-number", "5555-5555-5555-4444", 2),
            ("amex 3782 822463 10005.".into(), "card-number", "3782 822463 10005", 5),
            ("(6011111111111117)".into(), "card-number", "6011111111111117", 1),
            ("4111 1111 1111 1111 123".into(), "card-number", "4111 1111 1111 1111", 0),
        ]
    }

    #[test]
    fn positive_per_detector() {
        for (data, det, secret, start) in positives() {
            let hits = scan(data.as_bytes());
            let want = (det, start, start + secret.len());
            assert_eq!(hits.len(), 1, "{data:?}: {hits:?}");
            let h = &hits[0];
            assert_eq!((h.detector, h.start, h.end), want, "{data:?}");
            assert_eq!(&data[start..start + secret.len()], secret);
        }
        let ex = |data: &str| scan(data.as_bytes()).remove(0).excerpt;
        let all = positives();
        assert_eq!(
            ex(&all[0].0),
            "1..Authorization: Basic ********(20 bytes)...."
        );
        assert_eq!(
            ex(&all[4].0),
            "dsn=postgres://admin:********(9 bytes)@db.internal:5432/app"
        );
        assert_eq!(ex(&all[6].0), "key=AKIA********(20 bytes);");
        assert_eq!(
            ex(&all[9].0),
            "IN RSA PRIVATE KEY-----.********(66 bytes).-----END RSA PRIVATE KE"
        );
        assert_eq!(ex(&all[10].0), "token=eyJ********(155 bytes)&x=1");
        assert_eq!(ex(&all[12].0), "token: ghp_********(40 bytes).");
        assert_eq!(ex(&all[15].0), "card ************1111 exp");
        // Binary around the secret: matched bytewise, shown lossily.
        let hits = scan(b"\xff4111111111111111\x00");
        assert_eq!((hits[0].start, hits[0].end), (1, 17));
        assert_eq!(hits[0].excerpt, "\u{fffd}************1111.");
        // No END line: the body stops after 8 KB.
        let h = scan(format!("{PEM}{}", "Q".repeat(20_000)).as_bytes());
        let want = "IN RSA PRIVATE KEY-----.********(8191 bytes)";
        assert_eq!(
            (h.len(), h[0].start, h[0].end),
            (1, PEM.len(), PEM.len() - 1 + MAX_PEM)
        );
        assert_eq!(h[0].excerpt, want);
    }

    #[test]
    fn negatives() {
        for data in [
            "card 4111 1111 1111 1112",                  // Luhn fails
            "id 1111111111111117 and 9111111111111110",  // Luhn ok, no brand
            "4111-1111 1111-1111",                       // mixed separators
            "x4111111111111111 41111111111111111",       // next to a letter; 17 digits
            "Authorization: Basic !!!notbase64",         // not base64
            "Authorization: Basic dXNlcm5hbWU=",         // "username": no colon
            "Authorization: Basic dXNlcjo=",             // "user:": no password
            "Authorization: Basic abcde",                // bad length
            "Authorization: Bearer short",               // placeholder
            "eyJhbGciOiJIUzI1NiJ9x.eyJzdWIiOiIxIn0.sig", // header does not decode
            "eyJfoo.eyJbar.baz",                         // decodes, but not JSON
            "http://host/path@x http://host:8080/p@x",   // no password
            "xAKIAIOSFODNN7EXAMPLE AIzaSyDUMMY-KEY_0123456789abcdefghijklm-",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYX",
            "-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----",
        ] {
            assert_eq!(scan(data.as_bytes()), [], "{data}");
        }
    }

    #[test]
    fn multiple_hits_in_order() {
        let data = format!(
            "AKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLE https://u:pw123@h {GH} 4111111111111111 {JWT_IO}"
        );
        let hits = scan(data.as_bytes());
        let dets: Vec<_> = hits.iter().map(|h| h.detector).collect();
        let want = "aws-access-key aws-access-key url-credentials github-token card-number jwt";
        assert_eq!(dets.join(" "), want);
        assert!(hits.windows(2).all(|w| w[0].end <= w[1].start));
        // Context stops at the neighbouring secret.
        assert_eq!(hits[0].excerpt, "AKIA********(20 bytes) ");
        assert_eq!(hits[1].excerpt, " AKIA********(20 bytes) https://u:");
    }

    #[test]
    fn never_leaks() {
        let mut data: String = positives().into_iter().map(|p| p.0 + "\n").collect();
        data += &format!("{GH} {GH} 4111-1111-1111-1111 4111-1111-1111-1111");
        let d = Detectors::new();
        let mut hits = Vec::new();
        d.scan(data.as_bytes(), &mut hits);
        for name in d.names() {
            assert!(hits.iter().any(|h| h.detector == *name), "{name}: {hits:?}");
        }
        for h in &hits {
            let secret = &data[h.start..h.end];
            let digits: String = secret.chars().filter(char::is_ascii_digit).collect();
            let leak = h.excerpt.contains(secret)
                || (h.detector == "card-number" && h.excerpt.contains(&digits));
            // Nor the decoded Basic credentials ("user:password").
            assert!(!leak && !h.excerpt.contains("password"), "{h:?}");
        }
        assert_eq!(hits.len(), positives().len() + 4);
    }

    #[test]
    fn large_inputs_are_linear() {
        assert!(scan(&vec![b'4'; 4 << 20]).is_empty());
        assert!(scan(&vec![b'A'; 4 << 20]).is_empty());
        let hits = scan("4111 1111 1111 1111 ".repeat(50_000).as_bytes());
        assert_eq!(hits.len(), 50_000);
        assert_eq!(hits[1].excerpt, " ************1111 ");
        // Dense near-candidates.
        for junk in "eyJa.|AIza|xoxb-|a://b:c|Authorization: Basic a "
            .split('|')
            .chain([PEM])
        {
            assert!(scan(junk.repeat(200_000).as_bytes()).len() <= 1, "{junk}");
        }
    }
}
