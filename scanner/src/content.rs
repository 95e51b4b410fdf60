//! Bytes to hits: [`ContentScanner`] runs the secret detectors
//! ([`crate::detect`]) and the YARA rules ([`crate::rules`]) over one buffer
//! (a stream direction's payload, a datagram, a file) and returns [`Hit`]s
//! with offsets and excerpts that are safe to store.

use std::sync::Arc;
use std::time::Duration;

use crate::detect::{Detectors, SecretHit};
use crate::finding::{Kind, Severity};
use crate::rules::RuleSet;

/// One thing found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Sensitive data or malware.
    pub kind: Kind,
    /// The detector (`aws-access-key`, ...) or the YARA rule's name.
    pub rule: String,
    /// How bad.
    pub severity: Severity,
    /// Byte offset of the match in the buffer.
    pub offset: usize,
    /// Length of the match.
    pub len: usize,
    /// The redacted excerpt (secrets) or the printable match (YARA).
    pub excerpt: String,
}

/// What to scan with: detectors, rules and the YARA time-out. Cheap to
/// clone; [`ContentScanner::session`] makes the per-thread scanner.
#[derive(Clone)]
pub struct ContentScanner {
    detectors: Arc<Detectors>,
    rules: Arc<RuleSet>,
    timeout: Duration,
}

impl ContentScanner {
    /// A scanner with these detectors and rules; one YARA pass over a
    /// buffer gives up after `timeout`.
    pub fn new(detectors: Arc<Detectors>, rules: Arc<RuleSet>, timeout: Duration) -> Self {
        ContentScanner {
            detectors,
            rules,
            timeout,
        }
    }

    /// The built-in detectors and rules, 10 s per buffer.
    pub fn builtin() -> Self {
        ContentScanner::new(
            Arc::new(Detectors::new()),
            Arc::new(RuleSet::builtin()),
            Duration::from_secs(10),
        )
    }

    /// The rules in use.
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// The same detectors with other rules.
    pub fn with_rules(&self, rules: Arc<RuleSet>) -> ContentScanner {
        ContentScanner {
            rules,
            ..self.clone()
        }
    }

    /// A scanner for many buffers on this thread.
    pub fn session(&self) -> Session<'_> {
        let mut yara = yara_x::Scanner::new(self.rules.rules());
        yara.set_timeout(self.timeout);
        Session {
            detectors: &self.detectors,
            yara,
            secrets: Vec::new(),
        }
    }
}

/// Scans buffers one after the other.
pub struct Session<'a> {
    detectors: &'a Detectors,
    yara: yara_x::Scanner<'a>,
    secrets: Vec<SecretHit>,
}

impl Session<'_> {
    /// Appends the hits of `data` to `out`: secrets first (in order), then
    /// YARA rules (one hit per rule, at its first match).
    ///
    /// # Errors
    ///
    /// YARA's scan error (for example its time-out); the secrets found
    /// before are kept in `out`.
    pub fn scan(&mut self, data: &[u8], out: &mut Vec<Hit>) -> Result<(), String> {
        self.secrets.clear();
        self.detectors.scan(data, &mut self.secrets);
        out.extend(self.secrets.drain(..).map(|s| Hit {
            kind: Kind::SensitiveData,
            severity: secret_severity(s.detector),
            rule: s.detector.to_owned(),
            offset: s.start,
            len: s.end - s.start,
            excerpt: s.excerpt,
        }));
        let results = self.yara.scan(data).map_err(|e| e.to_string())?;
        for rule in results.matching_rules() {
            let first = rule
                .patterns()
                .flat_map(|p| p.matches())
                .map(|m| m.range())
                .min_by_key(|r| r.start);
            let (offset, len) = first.map_or((0, 0), |r| (r.start, r.len()));
            let severity = rule
                .metadata()
                .find_map(|(key, value)| match (key, value) {
                    ("severity", yara_x::MetaValue::String(s)) => Severity::parse(s),
                    _ => None,
                })
                .unwrap_or(Severity::High);
            out.push(Hit {
                kind: Kind::Malware,
                rule: rule.identifier().to_owned(),
                severity,
                offset,
                len,
                excerpt: printable(&data[offset..(offset + len).min(data.len())], 64),
            });
        }
        Ok(())
    }
}

/// Private keys and cloud secrets are critical; every other secret is high:
/// whoever saw the bytes can use it.
fn secret_severity(detector: &str) -> Severity {
    match detector {
        "private-key" | "aws-secret-key" => Severity::Critical,
        _ => Severity::High,
    }
}

/// `bytes` as text: printable ASCII kept, the rest as `.`, cut at `max`.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let mut text: String = bytes
        .iter()
        .take(max)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    if bytes.len() > max {
        text.push('…');
    }
    text
}
