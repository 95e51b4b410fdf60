//! Application exchanges of a finished [`Stream`]: HTTP/1.x (with `httparse`)
//! and DNS (with `tapwire_packet::dns`), as the index's [`Exchange`]s; and
//! the TLS ClientHello of a TLS stream ([`crate::tls`]).
//!
//! - HTTP is recognised by content, on any port: the client's bytes start
//!   with a request head. Requests are read one after the other (pipelining
//!   included), each body by `Content-Length` or chunked framing; responses
//!   likewise (1xx interim responses skipped; no body after `HEAD`, 204 and
//!   304; otherwise to the end of the stream without a length) and paired
//!   with the requests in order. A gap in the bytes ends the parsing of that
//!   direction, unless a message starts right after it.
//! - DNS is read on port 53, 5353 (mDNS) and 5355 (LLMNR): every UDP
//!   datagram, or the length-prefixed messages of a TCP stream. Responses
//!   pair with the oldest unanswered query of the same id.
//! - TLS is recognised by content, on any port: a TCP stream whose client
//!   bytes (up to the first gap) start with a ClientHello; its server name
//!   and ALPN go to [`Dissection::tls`]. It has no exchanges.
//! - Cleartext HTTP/2 (h2c with prior knowledge, as gRPC clients speak it)
//!   is recognised by the client's connection preface
//!   (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) at the stream's start;
//!   [`Dissection::http2`]. Its frames (HPACK-compressed headers) are not
//!   read: no exchanges. A stream upgraded from HTTP/1.1 (`Upgrade: h2c`)
//!   stays HTTP: its upgrade request is its exchange.

use tapwire_packet::dns;

use crate::index::{
    DnsAnswerRecord, DnsExchange, DnsQuestionRecord, DnsRecordMessage, Exchange, HttpExchange,
    HttpRequest, HttpResponse, TlsHello,
};
use crate::reassembly::{Payload, Stream};

/// Ports DNS is read on.
pub const DNS_PORTS: [u16; 3] = [53, 5353, 5355];

const MAX_HEADERS: usize = 96;

/// What [`dissect`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dissection {
    /// The exchanges, in order.
    pub exchanges: Vec<Exchange>,
    /// Whether the stream's client and server are the other way round from
    /// what reassembly guessed (HTTP requests or the TLS ClientHello came
    /// from its "server").
    pub swapped: bool,
    /// The ClientHello, when the stream is TLS.
    pub tls: Option<TlsHello>,
    /// Whether the client sent the HTTP/2 connection preface.
    pub http2: bool,
}

/// What an HTTP/2 client sends first (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The exchanges of a stream.
pub fn dissect(stream: &Stream) -> Dissection {
    let is_dns =
        DNS_PORTS.contains(&stream.key.src_port) || DNS_PORTS.contains(&stream.key.dst_port);
    if !stream.datagrams.is_empty() {
        if !is_dns {
            return Dissection::default();
        }
        let messages = stream
            .datagrams
            .iter()
            .filter_map(|d| dns::parse(&d.payload).ok().map(|m| (m, d.timestamp_ns)));
        return Dissection {
            exchanges: pair_dns(messages),
            ..Dissection::default()
        };
    }
    if is_dns {
        let mut messages = Vec::new();
        for payload in [&stream.client_data, &stream.server_data] {
            let mut offset = 0;
            for m in dns::TcpFrames::new(&payload.bytes) {
                let ts = payload.time_at(offset).unwrap_or(stream.first_ns);
                offset += 2 + m.len();
                if let Ok(msg) = dns::parse(m) {
                    messages.push((msg, ts));
                }
            }
        }
        messages.sort_by_key(|(_, ts)| *ts);
        let exchanges = pair_dns(messages.into_iter());
        if !exchanges.is_empty() {
            return Dissection {
                exchanges,
                ..Dissection::default()
            };
        }
    }
    if let Some(d) = tls(stream) {
        return d;
    }
    let h2 = |p: &Payload| p.bytes.starts_with(H2_PREFACE);
    if h2(&stream.client_data) || h2(&stream.server_data) {
        return Dissection {
            swapped: !h2(&stream.client_data),
            http2: true,
            ..Dissection::default()
        };
    }
    let (requests, swapped) = if starts_with_request(&stream.client_data.bytes) {
        (&stream.client_data, false)
    } else if starts_with_request(&stream.server_data.bytes) {
        (&stream.server_data, true)
    } else {
        return Dissection::default();
    };
    let responses = if swapped {
        &stream.client_data
    } else {
        &stream.server_data
    };
    let reqs = http_requests(requests, stream.first_ns);
    let methods: Vec<&str> = reqs.iter().map(|r| r.method.as_str()).collect();
    let mut resps = http_responses(responses, &methods, stream.first_ns).into_iter();
    Dissection {
        exchanges: reqs
            .into_iter()
            .map(|request| {
                Exchange::Http(HttpExchange {
                    request,
                    response: resps.next(),
                })
            })
            .collect(),
        swapped,
        tls: None,
        http2: false,
    }
}

/// The ClientHello of a TLS stream, from its client (else, when reassembly
/// guessed the sides wrong, its server).
fn tls(stream: &Stream) -> Option<Dissection> {
    [(&stream.client_data, false), (&stream.server_data, true)]
        .into_iter()
        .find_map(|(p, swapped)| {
            let hello = crate::tls::client_hello(contiguous(p))?;
            Some(Dissection {
                exchanges: Vec::new(),
                swapped,
                tls: Some(TlsHello {
                    timestamp_ns: p.time_at(0).unwrap_or(stream.first_ns),
                    sni: hello.sni,
                    alpn: hello.alpn,
                }),
                http2: false,
            })
        })
}

/// The bytes of `p` up to its first gap.
fn contiguous(p: &Payload) -> &[u8] {
    let end = p.gaps.first().copied().unwrap_or(p.bytes.len());
    &p.bytes[..end.min(p.bytes.len())]
}

fn record(m: &dns::Message, ts: i64) -> DnsRecordMessage {
    DnsRecordMessage {
        timestamp_ns: ts,
        id: m.id,
        rcode: m.rcode_name().to_owned(),
        questions: m
            .questions
            .iter()
            .map(|q| DnsQuestionRecord {
                name: q.name.clone(),
                qtype: q.qtype.clone(),
            })
            .collect(),
        answers: m
            .answers
            .iter()
            .map(|a| DnsAnswerRecord {
                name: a.name.clone(),
                rtype: a.rtype.clone(),
                data: a.data.clone(),
                ttl: a.ttl,
            })
            .collect(),
    }
}

fn pair_dns(messages: impl Iterator<Item = (dns::Message, i64)>) -> Vec<Exchange> {
    let mut out: Vec<DnsExchange> = Vec::new();
    for (m, ts) in messages {
        let r = record(&m, ts);
        if m.is_response {
            let open = out
                .iter_mut()
                .find(|x| x.response.is_none() && x.request.as_ref().is_some_and(|q| q.id == m.id));
            match open {
                Some(x) => x.response = Some(r),
                None => out.push(DnsExchange {
                    request: None,
                    response: Some(r),
                }),
            }
        } else {
            out.push(DnsExchange {
                request: Some(r),
                response: None,
            });
        }
    }
    out.into_iter().map(Exchange::Dns).collect()
}

fn starts_with_request(bytes: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => true,
        // A head still arriving: the method and a target must be there.
        Ok(httparse::Status::Partial) => req.method.is_some() && req.path.is_some(),
        Err(_) => false,
    }
}

fn version_text(v: Option<u8>) -> String {
    match v {
        Some(0) => "HTTP/1.0".to_owned(),
        _ => "HTTP/1.1".to_owned(),
    }
}

fn header_list(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    crate::index::header(headers, name)
}

/// How a body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn framing(headers: &[(String, String)], default: Framing) -> Framing {
    if find(headers, "transfer-encoding").is_some_and(|te| {
        te.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    }) {
        return Framing::Chunked;
    }
    match find(headers, "content-length").map(|v| v.trim().parse::<u64>()) {
        Some(Ok(n)) => Framing::Length(n),
        _ => default,
    }
}

/// Reads a body at the start of `buf`: `(bytes consumed, body bytes)`.
fn body(buf: &[u8], framing: Framing) -> (usize, u64) {
    match framing {
        Framing::None => (0, 0),
        Framing::Length(n) => {
            let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
            (take, take as u64)
        }
        Framing::UntilClose => (buf.len(), buf.len() as u64),
        Framing::Chunked => chunked(buf),
    }
}

fn chunked(buf: &[u8]) -> (usize, u64) {
    let mut at = 0;
    let mut total = 0u64;
    loop {
        let Ok(httparse::Status::Complete((head, size))) = httparse::parse_chunk_size(&buf[at..])
        else {
            return (buf.len(), total);
        };
        at += head;
        if size == 0 {
            // Trailer fields, then an empty line.
            while at < buf.len() {
                let line_end = buf[at..].windows(2).position(|w| w == b"\r\n");
                match line_end {
                    Some(0) => return (at + 2, total),
                    Some(n) => at += n + 2,
                    None => return (buf.len(), total),
                }
            }
            return (buf.len(), total);
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let available = buf.len() - at;
        if size > available {
            return (buf.len(), total + available as u64);
        }
        total += size as u64;
        at += size;
        // CRLF after the chunk data.
        at = (at + 2).min(buf.len());
    }
}

/// Where parsing may resume after `offset`: the next gap, if any.
fn next_gap(p: &Payload, offset: usize) -> Option<usize> {
    p.gaps.iter().copied().find(|&g| g > offset)
}

fn http_requests(p: &Payload, default_ts: i64) -> Vec<HttpRequest> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < p.bytes.len() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(&p.bytes[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => match next_gap(p, at) {
                Some(g) => {
                    at = g;
                    continue;
                }
                None => break,
            },
        };
        let target = req.path.unwrap_or_default().to_owned();
        let (path, query) = split_target(&target);
        let headers = header_list(req.headers);
        let method = req.method.unwrap_or_default().to_owned();
        let end = next_gap(p, at + head).unwrap_or(p.bytes.len());
        let (used, body_bytes) = body(&p.bytes[at + head..end], framing(&headers, Framing::None));
        out.push(HttpRequest {
            timestamp_ns: p.time_at(at).unwrap_or(default_ts),
            method,
            path,
            query,
            target,
            version: version_text(req.version),
            headers,
            body_bytes,
        });
        at += head + used;
    }
    out
}

fn http_responses(p: &Payload, methods: &[&str], default_ts: i64) -> Vec<HttpResponse> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < p.bytes.len() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&p.bytes[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => match next_gap(p, at) {
                Some(g) => {
                    at = g;
                    continue;
                }
                None => break,
            },
        };
        let status = resp.code.unwrap_or_default();
        let headers = header_list(resp.headers);
        if (100..200).contains(&status) {
            at += head;
            continue;
        }
        let method = methods.get(out.len()).copied().unwrap_or("GET");
        let default = if method == "HEAD" || status == 204 || status == 304 {
            Framing::None
        } else {
            Framing::UntilClose
        };
        let framing = match default {
            Framing::None => Framing::None,
            other => framing(&headers, other),
        };
        let end = next_gap(p, at + head).unwrap_or(p.bytes.len());
        let (used, body_bytes) = body(&p.bytes[at + head..end], framing);
        out.push(HttpResponse {
            timestamp_ns: p.time_at(at).unwrap_or(default_ts),
            status,
            reason: resp.reason.unwrap_or_default().to_owned(),
            version: version_text(resp.version),
            headers,
            body_bytes,
        });
        at += head + used;
    }
    out
}

fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let Some((path, query)) = target.split_once('?') else {
        return (target.to_owned(), Vec::new());
    };
    let pairs = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect();
    (path.to_owned(), pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{EndReason, ReassemblyStats};
    use crate::reassembly::Datagram;
    use tapwire_packet::{FlowKey, Transport};

    fn payload(pieces: &[(&[u8], i64)]) -> Payload {
        let mut p = Payload::default();
        for (bytes, ts) in pieces {
            p.marks.push((p.bytes.len(), *ts));
            p.bytes.extend_from_slice(bytes);
        }
        p
    }

    fn stream(protocol: Transport, dst_port: u16, client: Payload, server: Payload) -> Stream {
        Stream {
            id: 1,
            key: FlowKey {
                protocol,
                src_ip: "10.0.0.1".parse().unwrap(),
                src_port: 40000,
                dst_ip: "10.0.0.2".parse().unwrap(),
                dst_port,
            },
            packets: vec![],
            first_ns: 1,
            last_ns: 2,
            end: EndReason::Fin,
            client_data: client,
            server_data: server,
            datagrams: vec![],
            stats: ReassemblyStats::default(),
        }
    }

    fn http(e: &Exchange) -> &HttpExchange {
        match e {
            Exchange::Http(h) => h,
            Exchange::Dns(_) => panic!("not HTTP"),
        }
    }

    #[test]
    fn pipelined_requests_pair_with_responses_in_order() {
        let client = payload(&[
            (b"GET /a?x=1&y HTTP/1.1\r\nHost: example.com\r\n\r\n", 10),
            (
                b"POST /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
                20,
            ),
            (b"HEAD /c HTTP/1.0\r\n\r\n", 30),
        ]);
        let server = payload(&[
            (b"HTTP/1.1 100 Continue\r\n\r\n", 15),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nRust\r\n3\r\nabc\r\n0\r\n\r\n", 16),
            (b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", 25),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n", 35),
        ]);
        let d = dissect(&stream(Transport::Tcp, 8080, client, server));
        assert!(!d.swapped);
        assert_eq!(d.exchanges.len(), 3);
        let a = http(&d.exchanges[0]);
        assert_eq!(
            (a.request.method.as_str(), a.request.path.as_str()),
            ("GET", "/a")
        );
        assert_eq!(a.request.target, "/a?x=1&y");
        assert_eq!(
            a.request.query,
            vec![("x".into(), "1".into()), ("y".into(), String::new())]
        );
        assert_eq!(a.request.host(), Some("example.com"));
        assert_eq!(a.request.timestamp_ns, 10);
        let r = a.response.as_ref().unwrap();
        assert_eq!((r.status, r.body_bytes, r.timestamp_ns), (200, 7, 16));
        let b = http(&d.exchanges[1]);
        assert_eq!(b.request.body_bytes, 5);
        assert_eq!(b.response.as_ref().unwrap().status, 404);
        assert_eq!(b.response.as_ref().unwrap().reason, "Not Found");
        let c = http(&d.exchanges[2]);
        assert_eq!(c.request.version, "HTTP/1.0");
        let r = c.response.as_ref().unwrap();
        assert_eq!((r.status, r.body_bytes), (200, 0), "no body after HEAD");
        assert_eq!(d.exchanges[0].summary(), "GET /a 200");
    }

    #[test]
    fn a_cleartext_http2_stream_is_known_by_its_preface() {
        let preface_and_settings: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
        let settings: &[u8] = b"\0\0\0\x04\0\0\0\0\0";
        let d = dissect(&stream(
            Transport::Tcp,
            50051,
            payload(&[(preface_and_settings, 1)]),
            payload(&[(settings, 2)]),
        ));
        assert!(d.http2 && !d.swapped && d.exchanges.is_empty(), "{d:?}");
        // Sides guessed the other way round.
        let d = dissect(&stream(
            Transport::Tcp,
            50051,
            payload(&[(settings, 2)]),
            payload(&[(preface_and_settings, 1)]),
        ));
        assert!(d.http2 && d.swapped, "{d:?}");
        // HTTP/1.1 is not HTTP/2, even when it asks to upgrade.
        let d = dissect(&stream(
            Transport::Tcp,
            80,
            payload(&[(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", 1)]),
            payload(&[(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2)]),
        ));
        assert!(!d.http2 && d.exchanges.len() == 1, "{d:?}");
    }

    #[test]
    fn requests_from_the_guessed_server_swap_sides() {
        let d = dissect(&stream(
            Transport::Tcp,
            80,
            payload(&[(b"HTTP/1.1 204 No Content\r\n\r\n", 2)]),
            payload(&[(b"DELETE /x HTTP/1.1\r\n\r\n", 1)]),
        ));
        assert!(d.swapped);
        assert_eq!(d.exchanges.len(), 1);
        assert_eq!(http(&d.exchanges[0]).response.as_ref().unwrap().status, 204);
    }

    #[test]
    fn a_request_after_a_gap_is_still_found() {
        let mut client = payload(&[
            (b"GET /1 HTTP/1.1\r\nContent-Length: 10\r\n\r\nab", 1),
            (b"GET /2 HTTP/1.1\r\n\r\n", 2),
        ]);
        client.gaps.push(client.marks[1].0);
        let d = dissect(&stream(Transport::Tcp, 80, client, Payload::default()));
        // The first body claims 10 bytes but ends at the gap (bytes were
        // lost there); parsing resumes after it.
        let paths: Vec<&str> = d
            .exchanges
            .iter()
            .map(|e| http(e).request.path.as_str())
            .collect();
        assert_eq!(paths, ["/1", "/2"]);
    }

    #[test]
    fn non_http_bytes_give_nothing() {
        let d = dissect(&stream(
            Transport::Tcp,
            22,
            payload(&[(b"SSH-2.0-OpenSSH_9.2\r\n", 1)]),
            payload(&[(b"SSH-2.0-OpenSSH_9.6\r\n", 2)]),
        ));
        assert_eq!(d, Dissection::default());
    }

    #[test]
    fn a_client_hello_over_several_segments_makes_a_tls_stream() {
        let hello = crate::tls::build::hello(Some("example.com"));
        let pieces: Vec<(&[u8], i64)> = hello.chunks(7).zip(10..).collect();
        let d = dissect(&stream(
            Transport::Tcp,
            8443,
            payload(&pieces),
            payload(&[(&[22, 3, 3, 0, 2, 2, 0], 50)]),
        ));
        assert!(d.exchanges.is_empty());
        assert!(!d.swapped);
        let tls = d.tls.unwrap();
        assert_eq!(tls.sni.as_deref(), Some("example.com"));
        assert_eq!(tls.alpn, ["http/1.1"]);
        assert_eq!(tls.timestamp_ns, 10, "the hello's first segment");
        assert_eq!(tls.summary(), "TLS example.com");

        // The hello came from reassembly's "server": sides swap.
        let d = dissect(&stream(
            Transport::Tcp,
            443,
            Payload::default(),
            payload(&[(&crate::tls::build::hello(None), 3)]),
        ));
        assert!(d.swapped);
        assert_eq!(d.tls.unwrap().summary(), "TLS");

        // Bytes after a gap are not read as the rest of the hello.
        let mut cut = payload(&[(&hello[..60], 1), (&hello[60..], 2)]);
        cut.gaps.push(60);
        let d = dissect(&stream(Transport::Tcp, 443, cut, Payload::default()));
        assert_eq!(d.tls.unwrap().sni, None);
    }

    fn dns_query(id: u16, response: bool) -> Vec<u8> {
        // Header, then one question: example.com A IN.
        let mut m = vec![
            (id >> 8) as u8,
            id as u8,
            if response { 0x81 } else { 1 },
            0x80 * u8::from(response),
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        m.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        m
    }

    #[test]
    fn dns_over_udp_and_tcp_pairs_by_id() {
        let mut udp = stream(Transport::Udp, 53, Payload::default(), Payload::default());
        for (from_client, id, ts) in [(true, 7, 1), (true, 8, 2), (false, 8, 3), (false, 7, 4)] {
            udp.datagrams.push(Datagram {
                from_client,
                timestamp_ns: ts,
                payload: dns_query(id, !from_client),
            });
        }
        let d = dissect(&udp);
        assert_eq!(d.exchanges.len(), 2);
        for e in &d.exchanges {
            let Exchange::Dns(x) = e else { panic!() };
            assert_eq!(
                x.request.as_ref().unwrap().id,
                x.response.as_ref().unwrap().id
            );
            assert_eq!(x.request.as_ref().unwrap().questions[0].name, "example.com");
        }
        assert_eq!(d.exchanges[0].summary(), "A example.com NOERROR");

        let framed = |m: Vec<u8>| {
            let mut out = (m.len() as u16).to_be_bytes().to_vec();
            out.extend(m);
            out
        };
        let tcp = stream(
            Transport::Tcp,
            53,
            payload(&[(&framed(dns_query(9, false)), 1)]),
            payload(&[(&framed(dns_query(9, true)), 2)]),
        );
        let d = dissect(&tcp);
        assert_eq!(d.exchanges.len(), 1);
        let Exchange::Dns(x) = &d.exchanges[0] else {
            panic!()
        };
        assert_eq!(x.response.as_ref().unwrap().timestamp_ns, 2);

        // Not a DNS port: UDP payloads are left alone.
        udp.key.dst_port = 9999;
        assert!(dissect(&udp).exchanges.is_empty());
    }
}
