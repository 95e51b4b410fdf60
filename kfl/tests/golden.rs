//! Golden tests.
//!
//! `tests/golden/queries.txt`: blocks separated by blank lines; `> QUERY`
//! (or a lone `>` for the empty query), then either `= CANONICAL` or the
//! rendered error, one `! ` line per line of the rendering.
//!
//! `tests/golden/matches.txt`: `> QUERY`, then the names of the entries of
//! `tests/golden/entries/*.json` that match (all others must not), or
//! `(none)`; evaluated at `NOW_MS`.
//!
//! `KFL_BLESS=1 cargo test -p tapwire-kfl --test golden` rewrites both files
//! from the current behaviour; review the diff.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The clock of `matches.txt`: 2023-11-14T23:13:20Z.
const NOW_MS: i64 = 1_700_003_600_000;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn bless() -> bool {
    std::env::var_os("KFL_BLESS").is_some()
}

/// Splits a golden file into (query, expectation lines) blocks; `#` lines
/// are comments.
fn blocks(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line == ">" {
            out.push((String::new(), Vec::new()));
        } else if let Some(query) = line.strip_prefix("> ") {
            out.push((query.to_owned(), Vec::new()));
        } else {
            let block = out
                .last_mut()
                .unwrap_or_else(|| panic!("expectation before any query: {line:?}"));
            block.1.push(line.to_owned());
        }
    }
    out
}

fn query_line(query: &str) -> String {
    if query.is_empty() {
        ">".to_owned()
    } else {
        format!("> {query}")
    }
}

/// What `queries.txt` expects for `query`.
fn describe(query: &str) -> Vec<String> {
    match tapwire_kfl::compile(query) {
        Ok(filter) => vec![format!("= {filter}")],
        Err(err) => err
            .render(query)
            .lines()
            .map(|l| format!("! {l}").trim_end().to_owned())
            .collect(),
    }
}

/// Keeps the comments of `text` and rewrites each block's expectations.
fn rewrite(text: &str, expect: impl Fn(&str) -> Vec<String>) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let is_query = line == ">" || line.starts_with("> ");
        if is_query {
            let query = line.strip_prefix("> ").unwrap_or("");
            out.push_str(line);
            out.push('\n');
            for e in expect(query) {
                out.push_str(&e);
                out.push('\n');
            }
            skipping = true;
        } else if line.starts_with('#') || line.trim().is_empty() {
            skipping = false;
            out.push_str(line);
            out.push('\n');
        } else if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn queries() {
    let file = golden_dir().join("queries.txt");
    let text = std::fs::read_to_string(&file).unwrap();
    if bless() {
        std::fs::write(&file, rewrite(&text, describe)).unwrap();
        return;
    }
    let mut failures = String::new();
    let all = blocks(&text);
    assert!(all.len() > 50, "queries.txt looks truncated");
    for (query, expected) in all {
        let expected: Vec<String> = expected.iter().map(|l| l.trim_end().to_owned()).collect();
        let actual = describe(&query);
        if actual != expected {
            let _ = writeln!(
                failures,
                "{}\n  expected:\n    {}\n  actual:\n    {}\n",
                query_line(&query),
                expected.join("\n    "),
                actual.join("\n    ")
            );
        }
        // The canonical form reads back to itself.
        if let Ok(q) = tapwire_kfl::parse(&query) {
            let canonical = q.to_string();
            let again = tapwire_kfl::parse(&canonical)
                .unwrap_or_else(|e| panic!("canonical {canonical:?} does not parse: {e}"));
            assert_eq!(again.to_string(), canonical, "round trip of {query:?}");
            // (The empty query prints as `true`, a different tree that
            // matches the same.)
            if !query.trim().is_empty() {
                assert_eq!(again, q, "round trip of {query:?} changes the query");
            }
        }
    }
    assert!(failures.is_empty(), "golden mismatches:\n{failures}");
}

fn entries() -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for item in std::fs::read_dir(golden_dir().join("entries")).unwrap() {
        let path = item.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(name, serde_json::from_str(&text).unwrap());
        }
    }
    assert!(out.len() >= 4, "expected the golden entries");
    out
}

fn matching(query: &str, entries: &BTreeMap<String, serde_json::Value>) -> Vec<String> {
    let filter = tapwire_kfl::compile(query)
        .unwrap_or_else(|e| panic!("{query:?} does not compile:\n{}", e.render(query)));
    let names: Vec<&str> = entries
        .iter()
        .filter(|(_, entry)| filter.matches(*entry, NOW_MS))
        .map(|(name, _)| name.as_str())
        .collect();
    if names.is_empty() {
        vec!["(none)".to_owned()]
    } else {
        vec![names.join(" ")]
    }
}

#[test]
fn matches() {
    let entries = entries();
    let file = golden_dir().join("matches.txt");
    let text = std::fs::read_to_string(&file).unwrap();
    if bless() {
        std::fs::write(&file, rewrite(&text, |q| matching(q, &entries))).unwrap();
        return;
    }
    let mut failures = String::new();
    let all = blocks(&text);
    assert!(all.len() > 40, "matches.txt looks truncated");
    for (query, expected) in all {
        let actual = matching(&query, &entries);
        let expected: Vec<String> = expected
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if actual != expected {
            let _ = writeln!(
                failures,
                "{}\n  expected: {}\n  actual:   {}",
                query_line(&query),
                expected.join(" | "),
                actual.join(" | ")
            );
        }
    }
    assert!(failures.is_empty(), "golden mismatches:\n{failures}");
}
