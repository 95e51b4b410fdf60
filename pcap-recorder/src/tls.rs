//! The TLS ClientHello that opens a TCP stream: whether the stream is TLS,
//! and the server name (SNI) and ALPN protocols the client asked for.
//!
//! [`client_hello`] reads the client's reassembled bytes, so a ClientHello
//! split over several TCP segments (or over several TLS records) reads as
//! one. It recognises TLS by content, on any port: the bytes start with a
//! handshake record (content type 22, version 3.x) whose first handshake
//! message is a ClientHello (type 1). Everything after that is read by its
//! length prefix and as far as the bytes go: a cut or malformed hello still
//! makes a TLS stream, with the fields read before the fault. It never
//! panics, whatever the bytes.

/// Content type of a handshake record.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension `server_name` (RFC 6066).
const EXT_SERVER_NAME: u16 = 0;
/// Extension `application_layer_protocol_negotiation` (RFC 7301).
const EXT_ALPN: u16 = 16;
/// `NameType` `host_name` in a `server_name` list.
const HOST_NAME: u8 = 0;
/// The largest record a peer may send: 2^14 plaintext plus the expansion
/// RFC 5246 allows for compressed/protected records.
const MAX_RECORD: usize = (1 << 14) + 2048;

/// What a ClientHello asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The first `host_name` of the `server_name` extension (bytes that are
    /// not UTF-8 replaced), if there is one.
    pub sni: Option<String>,
    /// The protocol names of the ALPN extension, in order.
    pub alpn: Vec<String>,
}

/// The ClientHello at the start of `bytes`, or `None` when they do not start
/// with one (not TLS, or too few bytes to tell).
pub fn client_hello(bytes: &[u8]) -> Option<ClientHello> {
    let message = handshake_message(bytes)?;
    // The first handshake message, after its type and 24-bit length.
    let mut r = Reader(&message);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    let mut hello = ClientHello::default();
    let body = r.vec24_lenient().unwrap_or_default();
    read_body(body, &mut hello);
    Some(hello)
}

/// The handshake bytes carried by the leading run of handshake records,
/// concatenated (a message may be fragmented over records). `None` unless
/// `bytes` start with a plausible handshake record header and at least one
/// byte of its payload.
fn handshake_message(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader(bytes);
    let mut out = Vec::new();
    while let Some(header) = r.take(5) {
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let plausible = header[0] == HANDSHAKE
            && header[1] == 3
            && header[2] <= 4
            && (1..=MAX_RECORD).contains(&length);
        if !plausible {
            break;
        }
        let fragment = r.take_lenient(length);
        out.extend_from_slice(fragment);
        // Enough for the first message (type, 24-bit length, body)?
        let whole = match out.get(1..4) {
            Some(l) => {
                out.len()
                    >= 4 + (usize::from(l[0]) << 16 | usize::from(l[1]) << 8 | usize::from(l[2]))
            }
            None => false,
        };
        if fragment.len() < length || whole {
            break;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Reads a ClientHello body (after the handshake header) into `hello`, as
/// far as it goes.
fn read_body(body: &[u8], hello: &mut ClientHello) -> Option<()> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    // Extensions are absent in some old hellos; a cut list keeps those read.
    let mut extensions = Reader(r.vec16_lenient()?);
    while let Some(kind) = extensions.u16() {
        let Some(data) = extensions.vec16_lenient() else {
            break;
        };
        match kind {
            EXT_SERVER_NAME if hello.sni.is_none() => hello.sni = server_name(data),
            EXT_ALPN if hello.alpn.is_empty() => hello.alpn = alpn(data),
            _ => {}
        }
    }
    Some(())
}

/// The first non-empty `host_name` of a `server_name` extension.
fn server_name(data: &[u8]) -> Option<String> {
    let mut list = Reader(Reader(data).vec16_lenient()?);
    while let Some(kind) = list.u8() {
        let name = list.vec16()?;
        if kind == HOST_NAME && !name.is_empty() {
            return Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    None
}

/// The protocol names of an ALPN extension, in order.
fn alpn(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(list) = Reader(data).vec16_lenient() {
        let mut list = Reader(list);
        while let Some(name) = list.vec8() {
            out.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    out
}

/// A cursor over bytes; every read is bounds-checked and `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// Takes `n` bytes, or all that are left when fewer are.
    fn take_lenient(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length prefix, cut short when the bytes end
    /// first; `None` only without a whole prefix.
    fn vec16_lenient(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        Some(self.take_lenient(usize::from(n)))
    }

    /// A vector with a three-byte length prefix, cut short when the bytes
    /// end first; `None` only without a whole prefix.
    fn vec24_lenient(&mut self) -> Option<&'a [u8]> {
        let b = self.take(3)?;
        let n = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        Some(self.take_lenient(n))
    }
}

/// ClientHello bytes for tests.
#[cfg(test)]
pub(crate) mod build {
    use super::{CLIENT_HELLO, EXT_ALPN, EXT_SERVER_NAME, HANDSHAKE, HOST_NAME, MAX_RECORD};

    pub fn vec16(body: &[u8]) -> Vec<u8> {
        let mut out = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    pub fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend(vec16(data));
        out
    }

    pub fn sni_extension(names: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (kind, name) in names {
            list.push(*kind);
            list.extend(vec16(name));
        }
        extension(EXT_SERVER_NAME, &vec16(&list))
    }

    pub fn alpn_extension(names: &[&str]) -> Vec<u8> {
        let mut list = Vec::new();
        for name in names {
            list.push(u8::try_from(name.len()).unwrap());
            list.extend_from_slice(name.as_bytes());
        }
        extension(EXT_ALPN, &vec16(&list))
    }

    /// A ClientHello handshake message (type, length, body).
    pub fn hello_message(extensions: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.extend([32]);
        body.extend([1; 32]);
        body.extend(vec16(&[0x13, 0x01, 0x13, 0x02]));
        body.extend([1, 0]);
        body.extend(vec16(&extensions.concat()));
        let mut out = vec![CLIENT_HELLO];
        out.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        out.extend(body);
        out
    }

    /// `message` in handshake records of at most `max` bytes each.
    pub fn records(message: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in message.chunks(max) {
            out.extend([HANDSHAKE, 3, 1]);
            out.extend(vec16(piece));
        }
        out
    }

    pub fn example() -> Vec<u8> {
        records(
            &hello_message(&[
                extension(0x0a0a, &[]),
                sni_extension(&[(HOST_NAME, b"example.com")]),
                extension(11, &[1, 0]),
                alpn_extension(&["h2", "http/1.1"]),
            ]),
            MAX_RECORD,
        )
    }

    /// A ClientHello record for `sni` (none: no `server_name` extension).
    pub fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut extensions = vec![extension(0x0a0a, &[]), alpn_extension(&["http/1.1"])];
        extensions.extend(sni.map(|n| sni_extension(&[(HOST_NAME, n.as_bytes())])));
        records(&hello_message(&extensions), MAX_RECORD)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_server_name_and_alpn() {
        let hello = client_hello(&example()).unwrap();
        assert_eq!(hello.sni.as_deref(), Some("example.com"));
        assert_eq!(hello.alpn, ["h2", "http/1.1"]);
        // Whatever follows the hello (application data, the next flight).
        let mut more = example();
        more.extend([23, 3, 3, 0, 2, 1, 2]);
        assert_eq!(client_hello(&more), Some(hello));
    }

    #[test]
    fn a_hello_fragmented_over_records_reads_as_one() {
        let message = hello_message(&[sni_extension(&[(HOST_NAME, b"api.example.com")])]);
        for max in [1, 3, 4, 5, 40, 100] {
            let hello = client_hello(&records(&message, max)).unwrap();
            assert_eq!(hello.sni.as_deref(), Some("api.example.com"), "{max}");
        }
    }

    #[test]
    fn no_server_name_other_name_types_and_old_hellos() {
        let none = records(&hello_message(&[alpn_extension(&["h2"])]), MAX_RECORD);
        assert_eq!(client_hello(&none).unwrap().sni, None);
        let other = records(
            &hello_message(&[sni_extension(&[
                (7, b"x"),
                (HOST_NAME, b""),
                (HOST_NAME, b"b.example"),
            ])]),
            MAX_RECORD,
        );
        assert_eq!(
            client_hello(&other).unwrap().sni.as_deref(),
            Some("b.example")
        );
        // A hello without an extensions block (SSL 3.0 / early TLS 1.0).
        let mut message = hello_message(&[]);
        message.truncate(message.len() - 2);
        message[3] -= 2;
        assert_eq!(
            client_hello(&records(&message, MAX_RECORD)),
            Some(ClientHello::default())
        );
    }

    #[test]
    fn not_tls() {
        for bytes in [
            &b""[..],
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            &[HANDSHAKE, 3, 3, 0],       // a header cut short
            &[HANDSHAKE, 3, 3, 0, 10],   // no handshake byte yet
            &[HANDSHAKE, 3, 3, 0, 0, 1], // an empty record
            &[HANDSHAKE, 2, 0, 0, 1, 1], // not version 3.x
            &[HANDSHAKE, 3, 9, 0, 1, 1], // not a known minor version
            &[23, 3, 3, 0, 1, 1],        // application data
            &[HANDSHAKE, 3, 3, 0, 1, 2], // a ServerHello
        ] {
            assert_eq!(client_hello(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn a_cut_hello_is_tls_with_what_was_read() {
        let bytes = example();
        let full = client_hello(&bytes).unwrap();
        for n in 6..bytes.len() {
            let hello = client_hello(&bytes[..n]).expect("still a ClientHello");
            assert!(hello.sni.is_none() || hello.sni == full.sni, "{n}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = client_hello(&bytes);
        }

        /// Random bytes behind a valid record and handshake header, so the
        /// body parser (not only the record check) sees them.
        #[test]
        fn random_bodies_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            claimed in 1..=MAX_RECORD as u16,
        ) {
            let mut bytes = vec![HANDSHAKE, 3, 3];
            bytes.extend(claimed.to_be_bytes());
            bytes.extend([CLIENT_HELLO, 0]);
            bytes.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
            bytes.extend(&body);
            prop_assert!(client_hello(&bytes).is_some());
        }

        /// A valid hello with bytes flipped anywhere never panics.
        #[test]
        fn corrupted_hellos_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = example();
            for (at, value) in flips {
                let n = bytes.len();
                bytes[at % n] = value;
            }
            let _ = client_hello(&bytes);
        }

        #[test]
        fn any_server_name_reads_back(name in "[a-z0-9.-]{1,200}", max in 1usize..300) {
            let message = hello_message(&[
                alpn_extension(&["h2"]),
                sni_extension(&[(HOST_NAME, name.as_bytes())]),
            ]);
            let hello = client_hello(&records(&message, max)).unwrap();
            prop_assert_eq!(hello.sni, Some(name));
        }
    }
}
