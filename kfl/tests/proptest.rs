//! No input panics: arbitrary strings, token soups and generated queries go
//! through parse, render, Display (which must read back to itself), compile
//! and evaluation.

use proptest::prelude::*;
use serde_json::json;

const TOKENS: &[&str] = &[
    "http",
    "dns",
    "tcp",
    "tls",
    "and",
    "or",
    "&&",
    "||",
    "!",
    "-",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "*",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "&",
    "|",
    "in",
    "true",
    "false",
    "nil",
    "not",
    "a",
    "b",
    "r",
    "request",
    "response.status",
    "src.ip",
    "dst.port",
    "response.answers[*].data",
    "\"x\"",
    "\"\\\"\"",
    "\"\\u{e9}\"",
    "\"\\q\"",
    "r\"4.*\"",
    "r\"(\"",
    "r\"\\\"\"",
    "1",
    "-5",
    "1.5",
    "1e3",
    "1e999",
    ".5",
    "1.",
    "9223372036854775808",
    "18446744073709551616",
    "now()",
    "now",
    "hours(",
    "hours(-5)",
    "days(1.5)",
    "datetime(\"1/2/2006, 3:04:05.000 PM\")",
    "datetime(\"x\")",
    "limit(3)",
    "limit(",
    ".startsWith(\"a\")",
    ".matches(\"[\")",
    ".matches(r\"x\")",
    ".contains(",
    ".json()",
    "redact(",
    "status_code",
    "[0]",
    "[*]",
    "[\"k\"]",
    "[-1]",
    "\"",
    "r\"",
    "\\",
    "\u{e9}",
    "\t",
    "\n",
    "@",
    "'",
    "\u{0}",
];

fn entries() -> Vec<serde_json::Value> {
    vec![
        json!({
            "timestamp": 1_700_000_000_000_i64,
            "transport": "tcp",
            "src": {"ip": "10.0.0.5", "port": 51234, "name": "a"},
            "dst": {"ip": "10.0.1.7", "port": 80},
            "protocol": {"name": "http", "abbr": "HTTP"},
            "request": {"method": "GET", "path": "/x", "headers": {"k": "v"}},
            "response": {"status": 404},
            "a": [1, 2.5, "x", null, true, {"b": 1}],
            "b": {"k": "x"},
            "r": 1e300,
        }),
        json!({
            "protocol": {"name": "dns", "abbr": "DNS"},
            "response": {"answers": [{"data": "10.0.0.1"}, {"data": 1}]},
        }),
        json!(null),
        json!([1, 2, 3]),
    ]
}

/// Everything a caller could do with `query`; only panics count.
fn exercise(query: &str, now: i64) {
    match tapwire_kfl::parse(query) {
        Err(err) => {
            assert!(err.offset <= query.len(), "offset past the end: {err:?}");
            let _ = err.render(query);
        }
        Ok(parsed) => {
            let canonical = parsed.to_string();
            let again = tapwire_kfl::parse(&canonical).unwrap_or_else(|e| {
                panic!("canonical form of {query:?} does not parse: {canonical:?}: {e}")
            });
            assert_eq!(again.to_string(), canonical, "round trip of {query:?}");
            let _ = parsed.paths();
            match parsed.compile() {
                Err(err) => {
                    assert!(err.offset() <= query.len());
                    let _ = err.render(query);
                }
                Ok(filter) => {
                    let _ = filter.limit();
                    for entry in entries() {
                        let _ = filter.matches(&entry, now);
                    }
                }
            }
        }
    }
}

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(TOKENS), any::<bool>()), 0..40).prop_map(|parts| {
        let mut s = String::new();
        for (token, space) in parts {
            s.push_str(token);
            if space {
                s.push(' ');
            }
        }
        s
    })
}

/// Syntactically valid queries built from the grammar.
fn valid_query() -> impl Strategy<Value = String> {
    let path = prop::sample::select(vec![
        "src.ip",
        "dst.port",
        "request.method",
        "request.headers[\"User-Agent\"]",
        "response.answers[*].data",
        "a.*",
        "a[0]",
        "status_code",
        "timestamp",
        "tls",
    ]);
    let literal = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        "[a-z\"\\\\\n\t é]{0,8}".prop_map(|s| format!("{s:?}")),
        Just("true".to_owned()),
        Just("nil".to_owned()),
    ];
    let value = prop_oneof![
        4 => literal.clone(),
        1 => Just("hours(-5)".to_owned()),
        1 => Just("now()".to_owned()),
        1 => Just("datetime(\"1/2/2006, 3:04:05.000 PM\")".to_owned()),
    ];
    let op = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
    let leaf = prop_oneof![
        prop::sample::select(vec![
            "http", "dns", "tcp", "udp", "tls", "true", "false", "limit(5)"
        ])
        .prop_map(str::to_owned),
        (path.clone(), op, value).prop_map(|(p, o, l)| format!("{p} {o} {l}")),
        (
            path.clone(),
            prop::sample::select(vec!["==", "!="]),
            "[a-z.*^$0-9]{0,6}"
        )
            .prop_map(|(p, o, re)| format!("{p} {o} r\"{re}\"")),
        (path.clone(), prop::collection::vec(literal, 0..4))
            .prop_map(|(p, ls)| format!("{p} in [{}]", ls.join(", "))),
        (
            path,
            prop::sample::select(vec!["startsWith", "endsWith", "contains", "matches"]),
            "[a-z/]{0,4}"
        )
            .prop_map(|(p, h, s)| format!("{p}.{h}(\"{s}\")")),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} || {b}")),
            inner.clone().prop_map(|a| format!("!({a})")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

proptest! {
    // PROPTEST_CASES overrides the number of cases (e.g. for a long run).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_strings_do_not_panic(query in any::<String>(), now in any::<i64>()) {
        exercise(&query, now);
    }

    #[test]
    fn printable_strings_do_not_panic(query in "\\PC{0,60}", now in any::<i64>()) {
        exercise(&query, now);
    }

    #[test]
    fn token_soups_do_not_panic(query in soup(), now in any::<i64>()) {
        exercise(&query, now);
    }

    #[test]
    fn generated_queries_parse_and_round_trip(query in valid_query(), now in any::<i64>()) {
        let parsed = tapwire_kfl::parse(&query);
        prop_assert!(parsed.is_ok(), "{:?}: {:?}", query, parsed);
        exercise(&query, now);
    }
}
