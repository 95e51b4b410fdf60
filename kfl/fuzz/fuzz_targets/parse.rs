//! Fuzz target: no query may panic the parser, the error rendering, the
//! canonical printing, the compiler or the evaluator.
//!
//! Run from `kfl/`: `cargo +nightly fuzz run parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match tapwire_kfl::parse(query) {
        Ok(parsed) => parsed,
        Err(err) => {
            assert!(err.offset <= query.len());
            let _ = err.render(query);
            return;
        }
    };
    // The canonical form reads back to itself.
    let canonical = parsed.to_string();
    let again = tapwire_kfl::parse(&canonical).expect("canonical form parses");
    assert_eq!(again.to_string(), canonical);
    let filter = match parsed.compile() {
        Ok(filter) => filter,
        Err(err) => {
            let _ = err.render(query);
            return;
        }
    };
    let entries = [
        json!({
            "timestamp": 1_700_000_000_000_i64,
            "transport": "tcp",
            "src": {"ip": "10.0.0.5", "port": 51234, "name": "a", "pod": {"namespace": "x"}},
            "protocol": {"name": "http", "abbr": "HTTP"},
            "request": {"method": "GET", "path": "/x", "headers": {"User-Agent": "curl"}},
            "response": {"status": 404, "answers": [{"data": "1.2.3.4"}, {"data": 5}]},
            "a": [1, 2.5, "x", null, true, {"b": 1}],
        }),
        json!(null),
    ];
    for entry in &entries {
        let _ = filter.matches(entry, 1_700_000_000_000);
        let _ = filter.matches(entry, i64::MIN);
        let _ = filter.matches(entry, i64::MAX);
    }
});
