//! What a KFL query sees of a stream: [`StreamEntry`], one per application
//! exchange (or one for a stream without any), [`entries`], and [`compile`],
//! which compiles queries for them.
//!
//! The recorder evaluates its queries on these when a stream ends, and
//! `investigate` on the same records read back from an index, so a query
//! selects the same streams live and offline.
//!
//! | path | value |
//! |---|---|
//! | `src.ip`, `src.port` (`dst.`) | client (server) address and port |
//! | `src.name`, `src.namespace`, `src.pod.name`, `src.pod.namespace` (`dst.`) | the pod holding the address then; missing when unresolved |
//! | `node.name`, `node.ip` | the capturing node |
//! | `transport` | `tcp` / `udp` (macros `tcp`, `udp`) |
//! | `protocol.name`, `protocol.abbr` | `http`/`HTTP`, `dns`/`DNS`, `tls`/`TLS`, `http2`/`HTTP/2` (a cleartext stream that sent the HTTP/2 preface, macro `http2`), else `tcp`/`TCP` or `udp`/`UDP` |
//! | `timestamp` | the exchange's (else the stream's) first packet, epoch ms |
//! | `request.method`, `.path`, `.url` (target), `.httpVersion`, `.host`, `.bodySize` | HTTP request |
//! | `request.headers["Name"]` (case-insensitive), `request.queryString["k"]` | HTTP request |
//! | `response.status`, `.statusText`, `.httpVersion`, `.bodySize`, `.headers["Name"]` | HTTP response |
//! | `request.questions[i].name`, `.type`; `request.id` | DNS query |
//! | `response.code` (`NOERROR`, ...), `response.answers[i].name`, `.type`, `.data`, `.ttl`, `response.questions[i]...` | DNS response |
//! | `tls` | `true` for a stream opened by a TLS ClientHello (macro `tls`); missing otherwise |
//! | `tls.sni`, `tls.alpn[i]` | the server name (SNI; `nil` when the client sent none) and ALPN protocols the ClientHello asked for |
//! | `summary`, `end`, `stream.id`, `stream.packets`, `stream.bytes` | the stream |
//!
//! Lists and header maps take `[i]`, `["key"]` and the wildcard `.*`.

use std::sync::LazyLock;

use tapwire_kfl::{Entry, Filter, Lookup, Path, Segment, Value};

use crate::index::{
    DnsAnswerRecord, DnsQuestionRecord, DnsRecordMessage, EndpointRecord, Exchange, HttpExchange,
    StreamRecord, TlsHello, header,
};

/// A stream, or one exchange of it, as KFL sees it.
#[derive(Debug, Clone, Copy)]
pub struct StreamEntry<'a> {
    /// The stream.
    pub stream: &'a StreamRecord,
    /// The exchange this entry stands for, `None` for the stream as a whole.
    pub exchange: Option<&'a Exchange>,
}

/// The entries of a stream: one per exchange, or the stream alone when it
/// has no exchange.
pub fn entries(stream: &StreamRecord) -> impl Iterator<Item = StreamEntry<'_>> {
    let whole = stream.exchanges.is_empty().then_some(StreamEntry {
        stream,
        exchange: None,
    });
    stream
        .exchanges
        .iter()
        .map(move |e| StreamEntry {
            stream,
            exchange: Some(e),
        })
        .chain(whole)
}

/// The protocol macros a stream entry can satisfy: tapwire's common ones
/// ([`tapwire_kfl::DISSECTED`]) and those only recorded streams carry
/// ([`tapwire_kfl::RECORDED_ONLY`]: `tls`).
pub static PROTOCOLS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| [tapwire_kfl::DISSECTED, tapwire_kfl::RECORDED_ONLY].concat());

/// Compiles a query for stream entries (recording queries, `investigate`),
/// refusing a protocol macro outside [`PROTOCOLS`] with a caret under it.
///
/// # Errors
///
/// As [`tapwire_kfl::compile_supported`].
pub fn compile(query: &str) -> Result<Filter, tapwire_kfl::Error> {
    tapwire_kfl::compile_supported(query, &PROTOCOLS)
}

/// Whether any entry of `stream` matches `filter` (`now_ms` for the time
/// helpers, see [`Filter::matches`]).
pub fn stream_matches(filter: &Filter, stream: &StreamRecord, now_ms: i64) -> bool {
    entries(stream).any(|e| filter.matches(&e, now_ms))
}

fn key(segments: &[Segment], i: usize) -> Option<&str> {
    match segments.get(i) {
        Some(Segment::Key(k)) => Some(k),
        _ => None,
    }
}

fn s(v: &str) -> Lookup<'_> {
    Lookup::One(Value::Str(v))
}

fn int(v: impl Into<i64>) -> Lookup<'static> {
    Lookup::One(Value::Int(v.into()))
}

fn opt_str(v: Option<&str>) -> Lookup<'_> {
    v.map_or(Lookup::Missing, s)
}

/// The object itself (present, but no scalar) or a missing path.
fn object<'a>(rest: &[Segment]) -> Lookup<'a> {
    if rest.is_empty() {
        Lookup::Many(Vec::new())
    } else {
        Lookup::Missing
    }
}

fn endpoint<'a>(ep: &'a EndpointRecord, rest: &[Segment]) -> Lookup<'a> {
    let pod = ep.pod.as_ref();
    match (key(rest, 0), key(rest, 1), rest.len()) {
        (Some("ip"), _, 1) => Lookup::One(Value::Ip(ep.ip)),
        (Some("port"), _, 1) => int(ep.port),
        (Some("name"), _, 1) => opt_str(pod.map(|p| p.name.as_str())),
        (Some("namespace"), _, 1) => opt_str(pod.map(|p| p.namespace.as_str())),
        (Some("pod"), Some("name"), 2) => opt_str(pod.map(|p| p.name.as_str())),
        (Some("pod"), Some("namespace"), 2) => opt_str(pod.map(|p| p.namespace.as_str())),
        (Some("pod"), None, 1) if pod.is_some() => Lookup::Many(Vec::new()),
        (None, _, 0) => Lookup::Many(Vec::new()),
        _ => Lookup::Missing,
    }
}

/// `[i]`, `["key"]` or `.*` over a list of items, then `field` on the rest.
fn list<'a, T>(
    items: &'a [T],
    rest: &[Segment],
    field: impl Fn(&'a T, &[Segment]) -> Lookup<'a>,
) -> Lookup<'a> {
    match rest.first() {
        None => Lookup::Many(Vec::new()),
        Some(Segment::Index(i)) => usize::try_from(*i)
            .ok()
            .and_then(|i| items.get(i))
            .map_or(Lookup::Missing, |item| field(item, &rest[1..])),
        Some(Segment::Wildcard) => {
            let mut out = Vec::new();
            for item in items {
                out.extend_from_slice(field(item, &rest[1..]).values());
            }
            Lookup::Many(out)
        }
        Some(Segment::Key(_)) => Lookup::Missing,
    }
}

/// `["Name"]` (ASCII case-insensitive) or `.*` over name/value pairs.
fn pairs<'a>(items: &'a [(String, String)], rest: &[Segment]) -> Lookup<'a> {
    match rest {
        [] => Lookup::Many(Vec::new()),
        [Segment::Key(k)] => opt_str(header(items, k)),
        [Segment::Wildcard] => Lookup::Many(items.iter().map(|(_, v)| Value::Str(v)).collect()),
        _ => Lookup::Missing,
    }
}

fn question<'a>(q: &'a DnsQuestionRecord, rest: &[Segment]) -> Lookup<'a> {
    match rest {
        [Segment::Key(k)] if &**k == "name" => s(&q.name),
        [Segment::Key(k)] if &**k == "type" => s(&q.qtype),
        [] => Lookup::Many(Vec::new()),
        _ => Lookup::Missing,
    }
}

fn answer<'a>(a: &'a DnsAnswerRecord, rest: &[Segment]) -> Lookup<'a> {
    match rest {
        [Segment::Key(k)] => match &**k {
            "name" => s(&a.name),
            "type" => s(&a.rtype),
            "data" => s(&a.data),
            "ttl" => int(a.ttl),
            _ => Lookup::Missing,
        },
        [] => Lookup::Many(Vec::new()),
        _ => Lookup::Missing,
    }
}

fn dns_message<'a>(m: &'a DnsRecordMessage, rest: &[Segment], response: bool) -> Lookup<'a> {
    match key(rest, 0) {
        Some("questions") => list(&m.questions, &rest[1..], question),
        Some("answers") if response => list(&m.answers, &rest[1..], answer),
        Some("code") if response && rest.len() == 1 => s(&m.rcode),
        Some("id") if rest.len() == 1 => int(m.id),
        None if rest.is_empty() => Lookup::Many(Vec::new()),
        _ => Lookup::Missing,
    }
}

fn tls<'a>(hello: &'a TlsHello, rest: &[Segment]) -> Lookup<'a> {
    match (key(rest, 0), rest.len()) {
        (None, 0) => Lookup::One(Value::Bool(true)),
        (Some("sni"), 1) => hello.sni.as_deref().map_or(Lookup::One(Value::Null), s),
        (Some("alpn"), _) => list(&hello.alpn, &rest[1..], |p, rest| {
            if rest.is_empty() {
                s(p)
            } else {
                Lookup::Missing
            }
        }),
        _ => Lookup::Missing,
    }
}

fn http_request<'a>(h: &'a HttpExchange, rest: &[Segment]) -> Lookup<'a> {
    let r = &h.request;
    match (key(rest, 0), rest.len()) {
        (Some("method"), 1) => s(&r.method),
        (Some("path"), 1) => s(&r.path),
        (Some("url" | "target"), 1) => s(&r.target),
        (Some("httpVersion" | "version"), 1) => s(&r.version),
        (Some("host"), 1) => opt_str(r.host()),
        (Some("bodySize"), 1) => int(i64::try_from(r.body_bytes).unwrap_or(i64::MAX)),
        (Some("headers"), _) => pairs(&r.headers, &rest[1..]),
        (Some("queryString"), _) => pairs(&r.query, &rest[1..]),
        (None, 0) => Lookup::Many(Vec::new()),
        _ => Lookup::Missing,
    }
}

fn http_response<'a>(h: &'a HttpExchange, rest: &[Segment]) -> Lookup<'a> {
    let Some(r) = &h.response else {
        return Lookup::Missing;
    };
    match (key(rest, 0), rest.len()) {
        (Some("status"), 1) => int(r.status),
        (Some("statusText"), 1) => s(&r.reason),
        (Some("httpVersion" | "version"), 1) => s(&r.version),
        (Some("bodySize"), 1) => int(i64::try_from(r.body_bytes).unwrap_or(i64::MAX)),
        (Some("headers"), _) => pairs(&r.headers, &rest[1..]),
        (None, 0) => Lookup::Many(Vec::new()),
        _ => Lookup::Missing,
    }
}

/// `protocol.abbr` of a stream that sent the HTTP/2 connection preface
/// (what the `http2` macro tests).
pub const HTTP2_ABBR: &str = "HTTP/2";

impl StreamEntry<'_> {
    /// `(protocol.name, protocol.abbr)`.
    pub fn protocol(&self) -> (&'static str, &'static str) {
        let http2 = self.stream.protocol.as_deref() == Some(HTTP2_ABBR);
        match (self.exchange, self.stream.transport) {
            (Some(Exchange::Http(_)), _) => ("http", "HTTP"),
            (Some(Exchange::Dns(_)), _) => ("dns", "DNS"),
            (None, _) if self.stream.tls.is_some() => ("tls", "TLS"),
            (None, _) if http2 => ("http2", HTTP2_ABBR),
            (None, crate::index::TransportName::Tcp) => ("tcp", "TCP"),
            (None, crate::index::TransportName::Udp) => ("udp", "UDP"),
        }
    }

    /// The entry's time, ns: its exchange's, else the stream's first packet.
    pub fn timestamp_ns(&self) -> i64 {
        self.exchange
            .and_then(Exchange::timestamp_ns)
            .unwrap_or(self.stream.first_ns)
    }
}

impl Entry for StreamEntry<'_> {
    fn get(&self, path: &Path) -> Lookup<'_> {
        let segments = path.segments();
        let rest = &segments[1.min(segments.len())..];
        let st = self.stream;
        let leaf = rest.is_empty();
        match key(segments, 0) {
            Some("src") => endpoint(&st.client, rest),
            Some("dst") => endpoint(&st.server, rest),
            Some("node") => match (&st.node, key(rest, 0), rest.len()) {
                (Some(n), Some("name"), 1) => s(&n.name),
                (Some(n), Some("ip"), 1) => {
                    n.ip.map_or(Lookup::Missing, |ip| Lookup::One(Value::Ip(ip)))
                }
                (Some(_), None, 0) => Lookup::Many(Vec::new()),
                _ => Lookup::Missing,
            },
            Some("transport") if leaf => s(st.transport.as_str()),
            Some("protocol") => match (key(rest, 0), rest.len()) {
                (Some("name"), 1) => s(self.protocol().0),
                (Some("abbr"), 1) => s(self.protocol().1),
                _ => object(rest),
            },
            Some("timestamp") if leaf => int(self.timestamp_ns().div_euclid(1_000_000)),
            Some("tls") => st.tls.as_ref().map_or(Lookup::Missing, |t| tls(t, rest)),
            Some("summary") if leaf => s(&st.summary),
            Some("end") if leaf => s(st.end.as_str()),
            Some("stream") => match (key(rest, 0), rest.len()) {
                (Some("id"), 1) => int(i64::try_from(st.id).unwrap_or(i64::MAX)),
                (Some("packets"), 1) => int(i64::try_from(st.packets).unwrap_or(i64::MAX)),
                (Some("bytes"), 1) => int(i64::try_from(st.bytes).unwrap_or(i64::MAX)),
                _ => object(rest),
            },
            Some("request") => match self.exchange {
                Some(Exchange::Http(h)) => http_request(h, rest),
                Some(Exchange::Dns(d)) => d
                    .request
                    .as_ref()
                    .map_or(Lookup::Missing, |m| dns_message(m, rest, false)),
                None => Lookup::Missing,
            },
            Some("response") => match self.exchange {
                Some(Exchange::Http(h)) => http_response(h, rest),
                Some(Exchange::Dns(d)) => d
                    .response
                    .as_ref()
                    .map_or(Lookup::Missing, |m| dns_message(m, rest, true)),
                None => Lookup::Missing,
            },
            _ => Lookup::Missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{
        DnsExchange, EndReason, HttpRequest, HttpResponse, NodeRef, ReassemblyStats, TransportName,
    };
    use crate::pods::PodRef;

    fn stream(transport: TransportName, exchanges: Vec<Exchange>) -> StreamRecord {
        StreamRecord {
            id: 3,
            transport,
            client: EndpointRecord {
                ip: "10.0.0.1".parse().unwrap(),
                port: 40000,
                pod: Some(PodRef {
                    name: "web-1".into(),
                    namespace: "shop".into(),
                    uid: None,
                }),
            },
            server: EndpointRecord {
                ip: "10.0.0.2".parse().unwrap(),
                port: 80,
                pod: None,
            },
            first_ns: 5_000_000_000,
            last_ns: 6_000_000_000,
            packets: 10,
            bytes: 1000,
            end: EndReason::Fin,
            protocol: None,
            summary: String::new(),
            matched: vec![],
            frames: vec![],
            exchanges,
            tls: None,
            reassembly: ReassemblyStats::default(),
            node: Some(NodeRef {
                name: "node-a".into(),
                ip: None,
            }),
        }
    }

    fn http(method: &str, path: &str, status: Option<u16>) -> Exchange {
        Exchange::Http(HttpExchange {
            request: HttpRequest {
                timestamp_ns: 5_500_000_000,
                method: method.into(),
                target: format!("{path}?q=1"),
                path: path.into(),
                version: "HTTP/1.1".into(),
                headers: vec![
                    ("Host".into(), "example.com".into()),
                    ("User-Agent".into(), "curl/8".into()),
                ],
                query: vec![("q".into(), "1".into())],
                body_bytes: 0,
            },
            response: status.map(|status| HttpResponse {
                timestamp_ns: 5_600_000_000,
                status,
                reason: "Whatever".into(),
                version: "HTTP/1.1".into(),
                headers: vec![("Content-Length".into(), "3".into())],
                body_bytes: 3,
            }),
        })
    }

    fn matches(q: &str, st: &StreamRecord) -> bool {
        stream_matches(&tapwire_kfl::compile(q).expect(q), st, 0)
    }

    #[test]
    fn http_fields() {
        let st = stream(
            TransportName::Tcp,
            vec![http("POST", "/a", Some(200)), http("GET", "/b", Some(404))],
        );
        for q in [
            "http",
            "tcp and http",
            r#"http and request.method == "GET""#,
            "response.status == 404",
            r#"response.status == r"4.*""#,
            r#"request.method == "GET" and response.status == 404"#,
            r#"src.ip == "10.0.0.1" and dst.port == 80"#,
            r#"src.pod.name == "web-1" and src.namespace == "shop""#,
            r#"request.headers["user-agent"] == "curl/8""#,
            r#"request.headers.*.contains("curl")"#,
            r#"request.queryString["q"] == "1" and request.path == "/b""#,
            r#"request.host == "example.com""#,
            r#"node.name == "node-a""#,
            "timestamp == 5500",
            "status_code >= 400",
        ] {
            assert!(matches(q, &st), "{q}");
        }
        for q in [
            "dns",
            "udp",
            r#"request.method == "GET" and response.status == 200"#,
            r#"dst.pod.name == "x""#,
            r#"request.questions[0].name == "example.com""#,
        ] {
            assert!(!matches(q, &st), "{q}");
        }
    }

    #[test]
    fn dns_fields_and_plain_streams() {
        let q = DnsRecordMessage {
            timestamp_ns: 7_000_000,
            id: 9,
            rcode: "NOERROR".into(),
            questions: vec![DnsQuestionRecord {
                name: "example.com".into(),
                qtype: "A".into(),
            }],
            answers: vec![],
        };
        let mut r = q.clone();
        r.answers.push(DnsAnswerRecord {
            name: "example.com".into(),
            rtype: "A".into(),
            data: "93.184.216.34".into(),
            ttl: 60,
        });
        let st = stream(
            TransportName::Udp,
            vec![Exchange::Dns(DnsExchange {
                request: Some(q),
                response: Some(r),
            })],
        );
        for q in [
            "dns",
            "udp and dns",
            r#"request.questions[0].name == "example.com""#,
            r#"request.questions[0].type == "A""#,
            r#"response.code == "NOERROR""#,
            r#"response.answers.*.data == "93.184.216.34""#,
            r#"response.answers[0].ttl == 60"#,
        ] {
            assert!(matches(q, &st), "{q}");
        }
        assert!(!matches("http", &st));
        assert!(!matches(r#"response.answers[1].data == "x""#, &st));

        let plain = stream(TransportName::Tcp, vec![]);
        assert_eq!(entries(&plain).count(), 1);
        assert!(matches("tcp", &plain));
        assert!(matches(r#"protocol.abbr == "TCP""#, &plain));
        assert!(!matches("http or dns", &plain));
        assert!(matches("", &plain), "the empty query matches everything");
        assert!(matches("timestamp == 5000", &plain));
    }

    #[test]
    fn tls_fields() {
        let mut st = stream(TransportName::Tcp, vec![]);
        st.server.port = 443;
        st.tls = Some(TlsHello {
            timestamp_ns: 5_100_000_000,
            sni: Some("api.example.com".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
        });
        for q in [
            "tls",
            "tcp and tls",
            "tls == true",
            r#"tls.sni == "api.example.com""#,
            r#"tls.sni.endsWith(".example.com")"#,
            r#"tls.sni == r"^api\.""#,
            r#"tls.alpn[0] == "h2""#,
            r#"tls.alpn.*.contains("http/1")"#,
            r#"protocol.name == "tls" and protocol.abbr == "TLS""#,
            "!http and !dns",
        ] {
            assert!(matches(q, &st), "{q}");
        }
        for q in [
            "!tls",
            "http",
            r#"tls.sni == "example.com""#,
            r#"tls.alpn[2] == "h2""#,
            r#"protocol.abbr == "TCP""#,
        ] {
            assert!(!matches(q, &st), "{q}");
        }

        // Without a server name, the stream is TLS and `tls.sni` is nil.
        st.tls.as_mut().unwrap().sni = None;
        assert!(matches("tls", &st));
        assert!(matches("tls.sni == nil", &st));
        assert!(matches(r#"tls.sni != "example.com""#, &st));
        assert!(!matches(r#"tls.sni.endsWith("example.com")"#, &st));

        // Not TLS: the macro is false and the fields are missing.
        let plain = stream(TransportName::Tcp, vec![http("GET", "/", Some(200))]);
        assert!(matches("!tls and http", &plain));
        assert!(!matches(r#"tls.sni != "x""#, &plain));
    }

    #[test]
    fn queries_compile_with_tls_but_not_other_undissected_protocols() {
        compile(r#"tls and tls.sni == "example.com" or http or dns or tcp or udp"#).unwrap();
        let err = compile("tls or grpc").unwrap_err();
        assert!(err.render("tls or grpc").contains("`grpc`"));
        // Pipeline consumers (CEF, policy) still refuse `tls`, saying where
        // it works.
        let err = tapwire_kfl::compile_dissected("tls").unwrap_err();
        assert!(err.render("tls").contains("recorded streams"), "{err}");
    }
}
