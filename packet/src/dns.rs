//! DNS messages (RFC 1035 section 4) as text fields, and the two-byte length
//! prefix DNS uses over TCP (RFC 1035 section 4.2.2, RFC 7766).
//!
//! Names are written without the trailing dot (`example.com`), types by their
//! mnemonic (`A`, `AAAA`, or `TYPE65280` for types without one), and answer
//! data in presentation form (`93.184.216.34`, `10 mail.example.com`).

use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::{Name, QTYPE};

/// A decoded DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id; a response carries its query's id.
    pub id: u16,
    /// The QR bit: `true` for a response.
    pub is_response: bool,
    /// The 4-bit response code of the header (0 NOERROR, 3 NXDOMAIN, ...).
    pub rcode: u8,
    /// The question section.
    pub questions: Vec<Question>,
    /// The answer section.
    pub answers: Vec<Record>,
}

impl Message {
    /// The response code's mnemonic (`NOERROR`, `NXDOMAIN`, ...).
    pub fn rcode_name(&self) -> &'static str {
        rcode_name(self.rcode)
    }
}

/// One question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name asked for, without the trailing dot.
    pub name: String,
    /// The type asked for (`A`, `AAAA`, `ANY`, ...).
    pub qtype: String,
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, without the trailing dot.
    pub name: String,
    /// Record type (`A`, `CNAME`, ...).
    pub rtype: String,
    /// The data in presentation form; empty for types shown by type only.
    pub data: String,
    /// Time to live, seconds.
    pub ttl: u32,
}

/// A DNS message that did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Shorter than the 12-byte header.
    #[error("DNS message of {0} bytes is shorter than its 12-byte header")]
    TooShort(usize),
    /// The header parsed but a section did not.
    #[error("malformed DNS message: {0}")]
    Malformed(#[source] simple_dns::SimpleDnsError),
}

/// Decodes one DNS message (the UDP payload, or one TCP message without its
/// length prefix).
///
/// # Errors
///
/// [`DnsError`] when the bytes are not a DNS message. No input panics.
pub fn parse(data: &[u8]) -> Result<Message, DnsError> {
    if data.len() < 12 {
        return Err(DnsError::TooShort(data.len()));
    }
    let packet = simple_dns::Packet::parse(data).map_err(DnsError::Malformed)?;
    // The header fields are read from the bytes so that codes the decoder has
    // no name for keep their number.
    let questions = packet
        .questions
        .iter()
        .map(|q| Question {
            name: name_text(&q.qname),
            qtype: qtype_name(q.qtype),
        })
        .collect();
    let answers = packet
        .answers
        .iter()
        .map(|rr| {
            let code = u16::from(rr.rdata.type_code());
            Record {
                name: name_text(&rr.name),
                rtype: type_name(code),
                data: rdata_text(&rr.rdata),
                ttl: rr.ttl,
            }
        })
        .collect();
    Ok(Message {
        id: u16::from_be_bytes([data[0], data[1]]),
        is_response: data[2] & 0x80 != 0,
        rcode: data[3] & 0x0f,
        questions,
        answers,
    })
}

fn name_text(name: &Name<'_>) -> String {
    name.to_string()
}

fn qtype_name(qtype: QTYPE) -> String {
    match qtype {
        QTYPE::TYPE(t) => type_name(u16::from(t)),
        QTYPE::IXFR => "IXFR".to_owned(),
        QTYPE::AXFR => "AXFR".to_owned(),
        QTYPE::MAILB => "MAILB".to_owned(),
        QTYPE::MAILA => "MAILA".to_owned(),
        QTYPE::ANY => "ANY".to_owned(),
    }
}

/// The mnemonic of a record type (RFC 1035, RFC 3596, RFC 9460, ...), or
/// `TYPE<n>` (RFC 3597) for the others.
pub fn type_name(code: u16) -> String {
    let name = match code {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        other => return format!("TYPE{other}"),
    };
    name.to_owned()
}

/// The mnemonic of a header response code (RFC 1035, RFC 2136).
pub fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => "RESERVED",
    }
}

fn rdata_text(rdata: &RData<'_>) -> String {
    match rdata {
        RData::A(a) => Ipv4Addr::from(a.address).to_string(),
        RData::AAAA(a) => Ipv6Addr::from(a.address).to_string(),
        RData::CNAME(n) => name_text(&n.0),
        RData::NS(n) => name_text(&n.0),
        RData::PTR(n) => name_text(&n.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            name_text(&srv.target)
        ),
        RData::TXT(txt) => match String::try_from(txt.clone()) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        },
        _ => String::new(),
    }
}

/// DNS messages in a TCP byte stream, each after its two-byte big-endian
/// length. Iterates over complete messages; [`TcpFrames::rest`] is what is
/// left (an incomplete message, to be completed by later bytes).
#[derive(Debug, Clone)]
pub struct TcpFrames<'a> {
    rest: &'a [u8],
}

impl<'a> TcpFrames<'a> {
    /// Frames over `stream`, which starts at a length prefix.
    pub fn new(stream: &'a [u8]) -> TcpFrames<'a> {
        TcpFrames { rest: stream }
    }

    /// The bytes after the last complete message.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for TcpFrames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let [hi, lo, body @ ..] = self.rest else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let message = body.get(..len)?;
        self.rest = &body[len..];
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::{A, AAAA, CNAME, MX};
    use simple_dns::{CLASS, Packet, PacketFlag, ResourceRecord, TYPE};

    fn query(id: u16, name: &str, t: TYPE) -> Vec<u8> {
        let mut p = Packet::new_query(id);
        p.questions.push(simple_dns::Question::new(
            Name::new_unchecked(name),
            t.into(),
            CLASS::IN.into(),
            false,
        ));
        p.build_bytes_vec().unwrap()
    }

    #[test]
    fn query_and_response() {
        let q = parse(&query(0x1234, "example.com", TYPE::AAAA)).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(!q.is_response);
        assert_eq!(q.questions.len(), 1);
        assert_eq!(q.questions[0].name, "example.com");
        assert_eq!(q.questions[0].qtype, "AAAA");
        assert!(q.answers.is_empty());

        let mut r = Packet::new_reply(0x1234);
        r.set_flags(PacketFlag::RECURSION_AVAILABLE);
        let name = Name::new_unchecked("www.example.com");
        r.questions.push(simple_dns::Question::new(
            name.clone(),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
        let target = Name::new_unchecked("example.com");
        r.answers.push(ResourceRecord::new(
            name.clone(),
            CLASS::IN,
            300,
            RData::CNAME(CNAME(target.clone())),
        ));
        r.answers.push(ResourceRecord::new(
            target.clone(),
            CLASS::IN,
            60,
            RData::A(A {
                address: u32::from(Ipv4Addr::new(93, 184, 216, 34)),
            }),
        ));
        r.answers.push(ResourceRecord::new(
            target.clone(),
            CLASS::IN,
            60,
            RData::AAAA(AAAA {
                address: u128::from("2001:db8::1".parse::<Ipv6Addr>().unwrap()),
            }),
        ));
        r.answers.push(ResourceRecord::new(
            target.clone(),
            CLASS::IN,
            60,
            RData::MX(MX {
                preference: 10,
                exchange: Name::new_unchecked("mail.example.com"),
            }),
        ));
        let m = parse(&r.build_bytes_vec().unwrap()).unwrap();
        assert!(m.is_response);
        assert_eq!(m.rcode_name(), "NOERROR");
        let answers: Vec<(&str, &str, &str, u32)> = m
            .answers
            .iter()
            .map(|a| (&*a.name, &*a.rtype, &*a.data, a.ttl))
            .collect();
        assert_eq!(
            answers,
            [
                ("www.example.com", "CNAME", "example.com", 300),
                ("example.com", "A", "93.184.216.34", 60),
                ("example.com", "AAAA", "2001:db8::1", 60),
                ("example.com", "MX", "10 mail.example.com", 60),
            ]
        );
    }

    #[test]
    fn nxdomain_keeps_its_code() {
        let mut bytes = query(7, "nope.example", TYPE::A);
        bytes[2] |= 0x80;
        bytes[3] = (bytes[3] & 0xf0) | 3;
        let m = parse(&bytes).unwrap();
        assert!(m.is_response);
        assert_eq!(m.rcode, 3);
        assert_eq!(m.rcode_name(), "NXDOMAIN");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(parse(&[1, 2, 3]), Err(DnsError::TooShort(3))));
        // A header announcing one question, and no question.
        let header = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        assert!(matches!(parse(&header), Err(DnsError::Malformed(_))));
    }

    #[test]
    fn tcp_frames_split_on_length_prefixes() {
        let a = query(1, "a.example", TYPE::A);
        let b = query(2, "b.example", TYPE::A);
        let mut stream = Vec::new();
        for m in [&a, &b] {
            stream.extend_from_slice(&u16::try_from(m.len()).unwrap().to_be_bytes());
            stream.extend_from_slice(m);
        }
        // A third message cut after 5 bytes.
        stream.extend_from_slice(&[0, 40, 1, 2, 3]);
        let mut frames = TcpFrames::new(&stream);
        assert_eq!(frames.next(), Some(&a[..]));
        assert_eq!(frames.next(), Some(&b[..]));
        assert_eq!(frames.next(), None);
        assert_eq!(frames.rest(), &[0, 40, 1, 2, 3]);
        assert_eq!(
            parse(TcpFrames::new(&stream).nth(1).unwrap()).unwrap().id,
            2
        );
    }

    #[test]
    fn unknown_types_are_numbered() {
        assert_eq!(type_name(65280), "TYPE65280");
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(rcode_name(15), "RESERVED");
    }
}
