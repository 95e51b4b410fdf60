//! Evaluation: the missing-path rule, types, regexes, wildcards, helpers,
//! time functions with a fixed clock, `limit`, and custom `Entry`
//! implementations (string dispatch, `FieldId` dispatch, addresses).

use std::net::IpAddr;

use serde_json::json;
use tapwire_kfl::{Entry, FieldId, Filter, Lookup, Path, Value, compile, parse};

const NOW: i64 = 1_700_003_600_000;

fn http_entry() -> serde_json::Value {
    json!({
        "timestamp": NOW - 3_600_000,
        "transport": "tcp",
        "src": {"ip": "10.0.0.5", "port": 51234, "name": "frontend", "namespace": "shop",
                "pod": {"name": "frontend-5c8d", "namespace": "shop"}},
        "dst": {"ip": "10.0.1.7", "port": 80, "name": "catalogue", "namespace": "shop"},
        "protocol": {"name": "http", "abbr": "HTTP"},
        "request": {"method": "GET", "path": "/catalogue/items",
                    "headers": {"User-Agent": "curl/8.5.0"}, "queryString": {"q": "socks"}},
        "response": {"status": 404, "statusText": "Not Found"},
        "latency": 12.5,
        "cached": false,
        "note": null,
        "tags": ["a", "b"]
    })
}

fn dns_entry() -> serde_json::Value {
    json!({
        "timestamp": NOW - 60_000,
        "transport": "udp",
        "protocol": {"name": "dns", "abbr": "DNS"},
        "request": {"questions": [{"name": "example.com", "type": "AAAA"}]},
        "response": {"code": "NOERROR", "answers": [
            {"name": "example.com", "type": "AAAA", "data": "2001:db8::1"},
            {"name": "example.com", "type": "AAAA", "data": "2001:db8::2"}
        ]}
    })
}

fn m(query: &str, entry: &serde_json::Value) -> bool {
    compile(query)
        .unwrap_or_else(|e| panic!("{}", e.render(query)))
        .matches(entry, NOW)
}

#[test]
fn missing_path_makes_the_whole_query_false() {
    let e = http_entry();
    // Alone, negated, or next to a true branch: all false.
    assert!(!m("nope == 1", &e));
    assert!(!m("nope != 1", &e));
    assert!(!m("!(nope == 1)", &e));
    assert!(!m("nope == 1 or http", &e));
    assert!(!m("http and nope == 1", &e));
    assert!(!m("(nope == 1 or true) and http", &e));
    assert!(!m("nope in [1]", &e));
    assert!(!m("nope.startsWith(\"x\")", &e));
    assert!(!m("!nope.startsWith(\"x\")", &e));
    assert!(!m("nope == r\"x\"", &e));
    assert!(!m("nope != r\"x\"", &e));
    assert!(!m("request.questions[0].name == \"x\" or http", &e));
    // Short-circuit: a branch that is not evaluated does not count.
    assert!(m("http or nope == 1", &e));
    assert!(!m("dns and nope == 1", &e));
    assert!(m("!(dns and nope == 1)", &e));
    // Macros are exempt: a missing protocol field is just "not that protocol".
    let raw = json!({"transport": "tcp"});
    assert!(m("!http", &raw));
    assert!(m("http or tcp", &raw));
    assert!(!m("grpc or tls", &raw));
    // `null` is present.
    assert!(m("note == nil", &e));
    assert!(!m("note != nil", &e));
}

#[test]
fn types_are_strict() {
    let e = http_entry();
    assert!(m("dst.port == 80", &e));
    assert!(m("dst.port == 80.0", &e));
    assert!(!m("dst.port == \"80\"", &e));
    assert!(m("dst.port != \"80\"", &e));
    assert!(!m("dst.port < \"90\"", &e));
    assert!(!m("dst.port > \"0\"", &e));
    assert!(m("latency > 12", &e));
    assert!(m("latency < 13", &e));
    assert!(m("latency == 12.5", &e));
    assert!(m("cached == false", &e));
    assert!(!m("cached == 0", &e));
    assert!(!m("cached < true", &e));
    assert!(m("request.method == \"GET\"", &e));
    assert!(!m("request.method == \"get\"", &e));
    assert!(m("request.method < \"POST\"", &e));
    assert!(m("request.method >= \"GET\"", &e));
    assert!(m("\"GET\" == request.method", &e));
    assert!(m("1 < 2", &e));
    assert!(!m("\"a\" == 1", &e));
    assert!(m("src.port > dst.port", &e));
    assert!(m("nil == nil", &e));
}

#[test]
fn regexes_are_unanchored_searches_over_text() {
    let e = http_entry();
    assert!(m("response.status == r\"4.*\"", &e));
    assert!(m("response.status == r\"0\"", &e));
    assert!(!m("response.status == r\"^0\"", &e));
    assert!(m("response.status != r\"^5\"", &e));
    assert!(m("request.path == r\"items$\"", &e));
    assert!(m("r\"^/cat\" == request.path", &e));
    assert!(m("r\"^/cat\" != request.method", &e));
    assert!(m("latency == r\"^12\\.5$\"", &e));
    assert!(m("cached == r\"^false$\"", &e));
    assert!(!m("note == r\".*\"", &e));
    assert!(m("note != r\".*\"", &e));
    assert!(m("request.path.matches(\"/c.t\")", &e));
    assert!(m("request.path.matches(r\"(?i)/CATALOGUE\")", &e));
    assert!(m("request.method in [r\"^G\", \"POST\"]", &e));
}

#[test]
fn helpers() {
    let e = http_entry();
    assert!(m("request.path.startsWith(\"/catalogue\")", &e));
    assert!(!m("request.path.startsWith(\"/Catalogue\")", &e));
    assert!(m("request.path.endsWith(\"items\")", &e));
    assert!(m("request.path.contains(\"logue/it\")", &e));
    assert!(m(
        "request.headers[\"User-Agent\"].startsWith(\"curl/\")",
        &e
    ));
    assert!(m("response.status.startsWith(\"4\")", &e));
    assert!(!m("note.contains(\"\")", &e));
    assert!(m("request.path.contains(\"\")", &e));
}

#[test]
fn wildcards_and_arrays() {
    let e = dns_entry();
    assert!(m("response.answers.*.data == \"2001:db8::2\"", &e));
    assert!(m("response.answers[*].data == r\"::1$\"", &e));
    assert!(m("response.answers[*].type != \"A\"", &e));
    assert!(!m("response.answers[*].type != \"AAAA\"", &e));
    assert!(m(
        "response.answers[*].data in [\"x\", \"2001:db8::1\"]",
        &e
    ));
    assert!(m("response.answers[*].name.endsWith(\".com\")", &e));
    assert!(m("request.questions[0].type == \"AAAA\"", &e));
    assert!(!m("request.questions[1].type == \"AAAA\"", &e));
    // An empty wildcard set is present and equal to nothing.
    let empty = json!({"response": {"answers": []}});
    assert!(!m("response.answers[*].data == \"x\"", &empty));
    assert!(m("response.answers[*].data != \"x\"", &empty));
    // An array or object at the end of a path is present, equal to nothing.
    let h = http_entry();
    assert!(!m("tags == \"a\"", &h));
    assert!(m("tags != \"a\"", &h));
    assert!(m("tags.* == \"a\"", &h));
    assert!(m("src.* == \"shop\"", &h));
}

#[test]
fn time_functions_use_the_given_clock() {
    let e = http_entry(); // an hour old
    assert!(m("timestamp >= hours(-5)", &e));
    assert!(m("timestamp >= hours(-1)", &e));
    assert!(!m("timestamp > hours(-1)", &e));
    assert!(m("timestamp == minutes(-60)", &e));
    assert!(m("timestamp == seconds(-3600)", &e));
    assert!(m("timestamp >= days(-1)", &e));
    assert!(m("timestamp < now()", &e));
    assert!(m("timestamp < hours(-0.5)", &e));
    let f = compile("timestamp >= hours(-5)").unwrap();
    assert!(f.uses_clock());
    // The same filter, later: the entry is now too old.
    assert!(!f.matches(&e, NOW + 5 * 3_600_000));
    // Extreme clocks saturate instead of overflowing.
    assert!(f.matches(&e, i64::MIN));
    assert!(!f.matches(&e, i64::MAX));
    // datetime is absolute: 2023-11-14T22:13:20Z = NOW - 1 h.
    let d = compile("timestamp == datetime(\"11/14/2023, 10:13:20.000 PM\")").unwrap();
    assert!(!d.uses_clock());
    assert!(d.matches(&e, 0));
}

#[test]
fn limit_matches_everything_and_is_reported() {
    let q = parse("limit(25)").unwrap();
    assert_eq!(q.limit(), Some(25));
    let f = q.compile().unwrap();
    assert_eq!(f.limit(), Some(25));
    assert!(f.is_match_all());
    assert!(f.matches(&json!({}), NOW));
    let f = compile("dns and limit(2)").unwrap();
    assert_eq!(f.limit(), Some(2));
    assert!(f.matches(&dns_entry(), NOW));
    assert!(!f.matches(&http_entry(), NOW));
}

#[test]
fn empty_query_matches_everything() {
    for q in ["", "   ", "\n"] {
        let f = compile(q).unwrap();
        assert!(f.is_match_all());
        assert!(f.matches(&json!(null), NOW));
        assert_eq!(f.to_string(), "true");
    }
    assert!(Filter::default().matches(&json!({}), NOW));
}

/// A typed record, as a tapwire stage would have: dispatch on the path text.
struct Stream {
    src_ip: IpAddr,
    dst_ip: IpAddr,
    dst_port: u16,
    protocol: &'static str,
    sni: Option<String>,
}

impl Entry for Stream {
    fn get(&self, path: &Path) -> Lookup<'_> {
        match path.as_str() {
            "src.ip" => Value::Ip(self.src_ip).into(),
            "dst.ip" => Value::Ip(self.dst_ip).into(),
            "dst.port" => Value::Int(self.dst_port.into()).into(),
            "transport" => Value::Str("tcp").into(),
            "protocol.abbr" => Value::Str(self.protocol).into(),
            "tls.sni" => self.sni.as_deref().map(Value::Str).into(),
            _ => Lookup::Missing,
        }
    }
}

fn stream() -> Stream {
    Stream {
        src_ip: "10.0.0.5".parse().unwrap(),
        dst_ip: "2001:db8::7".parse().unwrap(),
        dst_port: 443,
        protocol: "TLS",
        sni: Some("api.example.com".into()),
    }
}

#[test]
fn custom_entry_with_addresses() {
    let s = stream();
    let f = |q: &str| compile(q).unwrap().matches(&s, NOW);
    assert!(f("src.ip == \"10.0.0.5\""));
    assert!(f("src.ip == \"::ffff:10.0.0.5\""));
    assert!(!f("src.ip == \"10.0.0.6\""));
    assert!(f("src.ip != \"10.0.0.6\""));
    assert!(f("dst.ip == \"2001:0db8:0:0::7\""));
    assert!(f("src.ip in [\"10.0.0.1\", \"10.0.0.5\"]"));
    assert!(f("src.ip.startsWith(\"10.0.\")"));
    assert!(f("src.ip == r\"^10\\.\""));
    assert!(f("src.ip > \"10.0.0.4\" and src.ip < \"10.0.1.0\""));
    assert!(!f("src.ip == \"not an ip\""));
    assert!(f("tls and tcp and dst.port == 443"));
    assert!(f("tls.sni.endsWith(\".example.com\")"));
    let no_sni = Stream {
        sni: None,
        ..stream()
    };
    assert!(
        !compile("tls.sni == \"x\" or tls")
            .unwrap()
            .matches(&no_sni, NOW)
    );
    // Through references and boxes.
    let boxed: Box<dyn Entry> = Box::new(stream());
    assert!(compile("tcp").unwrap().matches(&boxed, NOW));
    assert!(compile("tcp").unwrap().matches(&&s, NOW));
}

/// Dispatch on field ids handed out at compile time.
struct ById {
    port: i64,
}

const PORT: FieldId = FieldId(1);

impl Entry for ById {
    fn get(&self, path: &Path) -> Lookup<'_> {
        match path.field_id() {
            Some(PORT) => Value::Int(self.port).into(),
            Some(FieldId(_)) | None => Lookup::Missing,
        }
    }
}

#[test]
fn field_ids_from_a_resolver() {
    let resolver = |p: &Path| match p.as_str() {
        "dst.port" => Some(PORT),
        "protocol.abbr" => Some(FieldId(2)),
        _ => None,
    };
    let q = parse("dst.port in [80, 8080] or dns").unwrap();
    let f = q.compile_with(&resolver).unwrap();
    assert!(f.matches(&ById { port: 8080 }, NOW));
    assert!(!f.matches(&ById { port: 22 }, NOW));
    // Without the resolver the ids are absent and the path is missing.
    assert!(!q.compile().unwrap().matches(&ById { port: 80 }, NOW));
}

#[test]
fn filters_are_shared_across_threads() {
    let f = compile("http and response.status == r\"^4\"").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || f.matches(&http_entry(), NOW))
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}

#[test]
fn compile_errors_point_at_the_regex() {
    let q = "http and request.path == r\"(\"";
    let err = compile(q).unwrap_err();
    assert_eq!(err.offset(), 25);
    assert_eq!(
        err.render(q),
        "http and request.path == r\"(\"\n                         ^ invalid regex: unclosed group"
    );
    assert!(matches!(err, tapwire_kfl::Error::Compile(_)));
    assert!(std::error::Error::source(&err).is_some() || err.to_string().contains("regex"));
}

/// Issue 20: a protocol nothing in tapwire dissects is refused where tapwire
/// compiles queries, with a caret under it, instead of never matching.
#[test]
fn protocols_tapwire_does_not_dissect_are_refused_with_a_caret() {
    for (query, name) in [
        ("http2", "http2"),
        ("dns or grpc", "grpc"),
        ("tcp and (redis or kafka)", "redis"),
        ("!tls and http", "tls"),
    ] {
        let err = tapwire_kfl::compile_dissected(query).expect_err(query);
        let rendered = err.render(query);
        assert!(rendered.contains(&format!("`{name}`")), "{rendered}");
        assert!(rendered.contains("http, dns, tcp, udp"), "{rendered}");
        let caret = rendered.lines().last().expect("caret line");
        assert_eq!(caret.find('^'), query.find(name), "{rendered}");
    }
    for query in [
        "http or dns",
        "tcp and dst.port == 443",
        "tls.sni == \"x\"",
        "",
    ] {
        tapwire_kfl::compile_dissected(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    }
}
