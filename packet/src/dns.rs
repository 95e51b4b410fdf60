//! DNS messages (RFC 1035 section 4) as text fields, and the two-byte length
//! prefix DNS uses over TCP (RFC 1035 section 4.2.2, RFC 7766).
//!
//! Names are written without the trailing dot (`example.com`), types by their
//! mnemonic (`A`, `AAAA`, or `TYPE65280` for types without one), and answer
//! data in presentation form (`93.184.216.34`, `10 mail.example.com`).

use std::net::{Ipv4Addr, Ipv6Addr};

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
    /// The header parsed but the question or answer section did not.
    #[error("malformed DNS message at byte {offset}: {reason}")]
    Malformed {
        /// Where in the message.
        offset: usize,
        /// What is wrong there.
        reason: &'static str,
    },
}

/// Decodes one DNS message (the UDP payload, or one TCP message without its
/// length prefix).
///
/// Every record is walked by its length, whatever its type (SSHFP, RRSIG,
/// URI, types without a mnemonic, EDNS options and cookies included); the
/// data of the common types is shown in presentation form, the others by
/// type only. The questions and answers must be whole; authority and
/// additional records are read when they are (for the EDNS extended
/// response code, e.g. `BADCOOKIE`) and a cut there is tolerated, as tshark
/// tolerates it.
///
/// # Errors
///
/// [`DnsError`] when the bytes are not a DNS message. No input panics.
pub fn parse(data: &[u8]) -> Result<Message, DnsError> {
    if data.len() < 12 {
        return Err(DnsError::TooShort(data.len()));
    }
    let count = |at: usize| u16::from_be_bytes([data[at], data[at + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut r = Reader { data, at: 12 };
    let mut questions = Vec::with_capacity(usize::from(qd.min(16)));
    for _ in 0..qd {
        let name = r.name()?;
        let qtype = r.u16()?;
        r.u16()?; // class
        questions.push(Question {
            name,
            qtype: type_name(qtype),
        });
    }
    let mut answers = Vec::with_capacity(usize::from(an.min(64)));
    for _ in 0..an {
        let rr = r.record()?;
        answers.push(Record {
            name: rr.name,
            rtype: type_name(rr.rtype),
            data: rdata_text(data, rr.rtype, rr.rdata_at, rr.rdata),
            ttl: rr.ttl,
        });
    }
    let mut rcode = data[3] & 0x0f;
    for _ in 0..u32::from(ns) + u32::from(ar) {
        let Ok(rr) = r.record() else { break };
        if rr.rtype == 41 {
            // OPT: the upper 8 bits of the extended response code.
            let upper = (rr.ttl >> 24) as u8;
            rcode = upper.checked_mul(16).map_or(u8::MAX, |u| u | rcode);
        }
    }
    Ok(Message {
        id: count(0),
        is_response: data[2] & 0x80 != 0,
        rcode,
        questions,
        answers,
    })
}

/// A record as read off the wire.
struct WireRecord<'a> {
    name: String,
    rtype: u16,
    ttl: u32,
    rdata_at: usize,
    rdata: &'a [u8],
}

/// A cursor over a message.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self, reason: &'static str) -> DnsError {
        DnsError::Malformed {
            offset: self.at,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let bytes = self
            .data
            .get(self.at..self.at + n)
            .ok_or_else(|| self.malformed("a record runs past the end of the message"))?;
        self.at += n;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DnsError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self) -> Result<String, DnsError> {
        let (name, end) = read_name(self.data, self.at)?;
        self.at = end;
        Ok(name)
    }

    fn record(&mut self) -> Result<WireRecord<'a>, DnsError> {
        let name = self.name()?;
        let rtype = self.u16()?;
        self.u16()?; // class (or the UDP payload size of OPT)
        let ttl = self.u32()?;
        let len = usize::from(self.u16()?);
        let rdata_at = self.at;
        let rdata = self.take(len)?;
        Ok(WireRecord {
            name,
            rtype,
            ttl,
            rdata_at,
            rdata,
        })
    }
}

/// The name at `at` (following compression pointers, RFC 1035 4.1.4) and
/// where the bytes after it start.
fn read_name(data: &[u8], at: usize) -> Result<(String, usize), DnsError> {
    let bad = |offset, reason| DnsError::Malformed { offset, reason };
    let mut name = String::new();
    let mut pos = at;
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *data.get(pos).ok_or(bad(pos, "a name runs past the end"))?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((name, end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = data
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or(bad(pos, "a label runs past the end"))?;
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                        name.push(char::from(b));
                    } else {
                        name.push_str(&format!("\\{b:03}"));
                    }
                }
                if name.len() > 1024 {
                    return Err(bad(pos, "a name is too long"));
                }
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *data
                    .get(pos + 1)
                    .ok_or(bad(pos, "a pointer runs past the end"))?;
                end.get_or_insert(pos + 2);
                jumps += 1;
                if jumps > 64 {
                    return Err(bad(pos, "compression pointers loop"));
                }
                pos = usize::from(u16::from_be_bytes([len & 0x3f, low]));
            }
            _ => return Err(bad(pos, "a label type that does not exist")),
        }
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
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        44 => "SSHFP",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        59 => "CDS",
        60 => "CDNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        other => return format!("TYPE{other}"),
    };
    name.to_owned()
}

/// The mnemonic of a response code, with the EDNS extended codes (RFC 1035,
/// RFC 2136, RFC 6891, RFC 7873).
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
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => "RESERVED",
    }
}

/// The data of the common types in presentation form; empty for the others
/// (and for data that does not fit its type).
fn rdata_text(message: &[u8], rtype: u16, at: usize, rdata: &[u8]) -> String {
    let name_at = |offset: usize| {
        read_name(message, at + offset)
            .map(|(n, _)| n)
            .unwrap_or_default()
    };
    match (rtype, rdata.len()) {
        (1, 4) => Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).to_string(),
        (28, 16) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(rdata);
            Ipv6Addr::from(octets).to_string()
        }
        (2 | 5 | 12 | 39, _) => name_at(0),
        (15, 3..) => format!(
            "{} {}",
            u16::from_be_bytes([rdata[0], rdata[1]]),
            name_at(2)
        ),
        (33, 7..) => format!(
            "{} {} {} {}",
            u16::from_be_bytes([rdata[0], rdata[1]]),
            u16::from_be_bytes([rdata[2], rdata[3]]),
            u16::from_be_bytes([rdata[4], rdata[5]]),
            name_at(6)
        ),
        (16, _) => {
            // Character strings, each after its length byte, joined.
            let mut text = Vec::new();
            let mut rest = rdata;
            while let [len, tail @ ..] = rest {
                let n = usize::from(*len).min(tail.len());
                text.extend_from_slice(&tail[..n]);
                rest = &tail[n..];
            }
            String::from_utf8_lossy(&text).into_owned()
        }
        (256, 4..) => {
            // URI: priority, weight, target.
            format!(
                "{} {} {}",
                u16::from_be_bytes([rdata[0], rdata[1]]),
                u16::from_be_bytes([rdata[2], rdata[3]]),
                String::from_utf8_lossy(&rdata[4..])
            )
        }
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
    use simple_dns::rdata::{A, AAAA, CNAME, MX, RData};
    use simple_dns::{CLASS, Name, Packet, PacketFlag, ResourceRecord, TYPE};

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
        assert!(matches!(parse(&header), Err(DnsError::Malformed { .. })));
    }

    /// A response to `name` (type `qtype`) with `answers` (type, ttl,
    /// rdata) and `additional` records, built byte by byte; answers name
    /// the question by a compression pointer.
    fn wire(
        name: &str,
        qtype: u16,
        answers: &[(u16, u32, Vec<u8>)],
        additional: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut m = vec![0xbe, 0xef, 0x81, 0x80, 0, 1];
        m.extend((answers.len() as u16).to_be_bytes());
        m.extend([0, 0]);
        m.extend((additional.len() as u16).to_be_bytes());
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend(qtype.to_be_bytes());
        m.extend([0, 1]);
        for (rtype, ttl, rdata) in answers {
            m.extend([0xc0, 12]);
            m.extend(rtype.to_be_bytes());
            m.extend([0, 1]);
            m.extend(ttl.to_be_bytes());
            m.extend((rdata.len() as u16).to_be_bytes());
            m.extend(rdata);
        }
        for record in additional {
            m.extend(record);
        }
        m
    }

    /// Issue 20: records of any type are walked by their length; the ones
    /// after them still decode.
    #[test]
    fn sshfp_rrsig_and_uri_answers_decode_with_the_records_around_them() {
        let sshfp = [vec![4, 2], vec![0xab; 32]].concat();
        let mut rrsig = vec![0, 44, 13, 2, 0, 0, 14, 16];
        rrsig.extend([0x65, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0x12, 0x34]);
        rrsig.extend([7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0]);
        rrsig.extend([0x5a; 64]);
        let uri = [vec![0, 10, 0, 1], b"https://example.com/".to_vec()].concat();
        let m = parse(&wire(
            "host.example",
            44,
            &[
                (44, 300, sshfp),
                (46, 300, rrsig),
                (256, 60, uri),
                (1, 60, vec![10, 0, 0, 9]),
                (0xff00, 5, vec![1, 2, 3]),
            ],
            &[],
        ))
        .expect("decodes");
        let got: Vec<(&str, &str, &str)> = m
            .answers
            .iter()
            .map(|a| (&*a.name, &*a.rtype, &*a.data))
            .collect();
        assert_eq!(
            got,
            [
                ("host.example", "SSHFP", ""),
                ("host.example", "RRSIG", ""),
                ("host.example", "URI", "10 1 https://example.com/"),
                ("host.example", "A", "10.0.0.9"),
                ("host.example", "TYPE65280", ""),
            ]
        );
        assert_eq!(m.questions[0].qtype, "SSHFP");
    }

    #[test]
    fn an_edns_badcookie_response_is_dns_with_its_extended_code() {
        // OPT with a cookie option; extended RCODE 1 (upper bits) with the
        // header's 7: 23, BADCOOKIE.
        let mut opt = vec![0, 0, 41, 0x04, 0xd0, 1, 0, 0, 0];
        let cookie = [vec![0, 10, 0, 24], vec![0x11; 24]].concat();
        opt.extend((cookie.len() as u16).to_be_bytes());
        opt.extend(cookie);
        let mut bytes = wire("example.org", 1, &[], &[opt]);
        bytes[3] = (bytes[3] & 0xf0) | 7;
        let m = parse(&bytes).expect("decodes");
        assert_eq!(m.rcode_name(), "BADCOOKIE");
        assert!(m.is_response);
    }

    #[test]
    fn a_cut_in_the_additional_records_is_tolerated_and_pointer_loops_are_errors() {
        let mut bytes = wire(
            "example.org",
            1,
            &[(1, 60, vec![1, 2, 3, 4])],
            &[vec![0, 0, 41, 0x04]],
        );
        let m = parse(&bytes).expect("questions and answers are whole");
        assert_eq!(m.answers[0].data, "1.2.3.4");
        // The question's name pointing at itself.
        bytes.truncate(12);
        bytes[4..6].copy_from_slice(&[0, 1]);
        bytes[6..8].copy_from_slice(&[0, 0]);
        bytes[10..12].copy_from_slice(&[0, 0]);
        bytes.extend([0xc0, 12, 0, 1, 0, 1]);
        let err = parse(&bytes).expect_err("a loop");
        assert!(err.to_string().contains("loop"), "{err}");
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
