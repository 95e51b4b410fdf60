//! Syslog transports: UDP (RFC 5426, one datagram per message, best effort),
//! TCP (RFC 6587: octet counting or LF framing) and TLS (RFC 5425, rustls);
//! and, for the all-in-one mode and debugging, a file or standard output
//! (one message per line).
//!
//! A TCP, TLS, file or standard output send returns only after every byte was
//! written and flushed; on any error the connection (or file) is dropped and
//! the error returned, so the consumer loop retries the batch with backoff
//! and the next send reconnects (reopens). Before writing, a connection the
//! receiver has closed (it stopped, or restarted) is noticed and replaced, so
//! messages are not written into a dead socket.
//!
//! Files and standard output are written on tokio's blocking pool: the
//! workspace's tokio has neither the `fs` nor the `io-std` feature.

use std::fmt;
use std::io::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{CefConfig, Framing};

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `udp://HOST:PORT`
    Udp(String),
    /// `tcp://HOST:PORT`
    Tcp(String),
    /// `tls://HOST:PORT`
    Tls(String),
    /// `file:///ABS/PATH` or `file:REL/PATH`: appended to, one message per
    /// line.
    File(PathBuf),
    /// `-` or `stdout`: one message per line.
    Stdout,
}

/// The accepted spellings, for error messages.
const TARGET_FORMS: &str = "udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT, \
    file:///ABS/PATH, file:REL/PATH, - or stdout";

impl Target {
    /// Parses `udp://`, `tcp://` or `tls://` followed by `HOST:PORT`;
    /// `file:///ABS/PATH` (no host) or `file:PATH` (relative to the working
    /// directory, or absolute as `file:/ABS/PATH`), taken literally (no
    /// percent-decoding); `-` or `stdout`.
    pub fn parse(s: &str) -> Result<Target, String> {
        if s == "-" || s == "stdout" {
            return Ok(Target::Stdout);
        }
        if let Some(rest) = s.strip_prefix("file:") {
            let path = match rest.strip_prefix("//") {
                Some(path) if path.starts_with('/') => path,
                Some(_) => {
                    return Err(format!(
                        "{s:?} names a host or no absolute path: use file:///ABS/PATH \
                         (three slashes) or file:REL/PATH"
                    ));
                }
                None => rest,
            };
            if path.is_empty() {
                return Err(format!(
                    "{s:?} names no file: use file:///ABS/PATH or file:REL/PATH"
                ));
            }
            return Ok(Target::File(PathBuf::from(path)));
        }
        let (scheme, address) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?} is not {TARGET_FORMS}"))?;
        let port_ok = address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(format!("{address:?} in {s:?} is not HOST:PORT"));
        }
        let address = address.to_owned();
        match scheme {
            "udp" => Ok(Target::Udp(address)),
            "tcp" => Ok(Target::Tcp(address)),
            "tls" => Ok(Target::Tls(address)),
            other => Err(format!(
                "unknown scheme {other:?} in {s:?}: use {TARGET_FORMS}"
            )),
        }
    }

    /// The host of a network target; empty for a file or standard output.
    fn host(&self) -> &str {
        let address = match self {
            Target::Udp(a) | Target::Tcp(a) | Target::Tls(a) => a.as_str(),
            Target::File(_) | Target::Stdout => "",
        };
        let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The error for a failed connect (network) or open (file).
    fn connect_error(&self, source: io::Error) -> TransportError {
        match self {
            Target::File(path) => TransportError::File {
                path: path.clone(),
                source,
            },
            Target::Stdout => TransportError::Stdout(source),
            _ => TransportError::Connect {
                target: self.to_string(),
                source,
            },
        }
    }

    /// The error for a failed write.
    fn write_error(&self, source: io::Error) -> TransportError {
        match self {
            Target::File(path) => TransportError::File {
                path: path.clone(),
                source,
            },
            Target::Stdout => TransportError::Stdout(source),
            _ => TransportError::Write {
                target: self.to_string(),
                source,
            },
        }
    }
}

/// `HOST:PORT`, the file's path, or `standard output`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Udp(a) | Target::Tcp(a) | Target::Tls(a) => f.write_str(a),
            Target::File(path) => write!(f, "{}", path.display()),
            Target::Stdout => f.write_str("standard output"),
        }
    }
}

/// Transport failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TLS material or settings are unusable.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Connecting failed.
    #[error("connecting to {target}: {source}")]
    Connect {
        /// The target.
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing failed; the connection was dropped.
    #[error("sending to {target}: {source}")]
    Write {
        /// The target.
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Opening or writing the target file failed; it is reopened on the
    /// next send.
    #[error("appending to {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing standard output failed.
    #[error("writing to standard output: {0}")]
    Stdout(#[source] io::Error),
}

/// What a send did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    /// Messages handed to the network (UDP) or written and flushed (TCP,
    /// TLS, file, standard output).
    pub sent: u64,
    /// UDP datagrams the socket refused (too large, no receiver); counted,
    /// not retried: UDP is best effort.
    pub dropped: u64,
}

enum Conn {
    Udp(UdpSocket),
    Tcp(BufWriter<TcpStream>),
    Tls(Box<BufWriter<TlsStream<TcpStream>>>),
    /// Opened for appending; shared with the blocking task that writes it
    /// (`&File` is `Write`).
    File(Arc<std::fs::File>),
    Stdout,
}

/// A sender with at most one live connection.
pub struct Sender {
    target: Target,
    framing: Framing,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: Option<Conn>,
}

impl Sender {
    /// Builds the sender; reads TLS files now so that mistakes show at start.
    pub fn new(config: &CefConfig) -> Result<Sender, TransportError> {
        let target = Target::parse(&config.target).map_err(TransportError::Tls)?;
        let tls = match &target {
            Target::Tls(_) => {
                let name = config
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| target.host().to_owned());
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|e| TransportError::Tls(format!("server name {name:?}: {e}")))?;
                Some((
                    TlsConnector::from(Arc::new(tls_config(config)?)),
                    server_name,
                ))
            }
            _ => None,
        };
        Ok(Sender {
            target,
            framing: config.framing,
            tls,
            conn: None,
        })
    }

    /// Sends `messages` (ranges of `buf`). TCP, TLS, file and standard
    /// output: returns once all are written and flushed; on error nothing is
    /// known to be delivered and the caller retries. A file or standard
    /// output gets each message and `\n`, whatever `framing` says.
    pub async fn send(
        &mut self,
        buf: &[u8],
        messages: &[Range<usize>],
    ) -> Result<SendReport, TransportError> {
        if let Some(conn) = &mut self.conn
            && !still_open(conn)
        {
            tracing::info!(
                target = %self.target,
                "receiver closed the connection; reconnecting"
            );
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let result = match self.conn.as_mut() {
            Some(Conn::Udp(socket)) => Ok(send_udp(socket, buf, messages).await),
            Some(Conn::Tcp(stream)) => write_framed(stream, self.framing, buf, messages).await,
            Some(Conn::Tls(stream)) => {
                write_framed(stream.as_mut(), self.framing, buf, messages).await
            }
            Some(Conn::File(file)) => {
                let file = Arc::clone(file);
                write_lines(buf, messages, move |lines| {
                    let mut file = &*file;
                    file.write_all(lines)?;
                    file.flush()
                })
                .await
            }
            Some(Conn::Stdout) => {
                write_lines(buf, messages, |lines| {
                    let mut out = io::stdout().lock();
                    out.write_all(lines)?;
                    out.flush()
                })
                .await
            }
            None => Ok(SendReport::default()),
        };
        result.map_err(|source| {
            self.conn = None;
            self.target.write_error(source)
        })
    }

    async fn connect(&self) -> Result<Conn, TransportError> {
        let connect_error = |source| self.target.connect_error(source);
        match &self.target {
            Target::Udp(address) => {
                let remote = tokio::net::lookup_host(address)
                    .await
                    .map_err(connect_error)?
                    .next()
                    .ok_or_else(|| connect_error(io::Error::other("no address")))?;
                let local = if remote.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local).await.map_err(connect_error)?;
                socket.connect(remote).await.map_err(connect_error)?;
                Ok(Conn::Udp(socket))
            }
            Target::Tcp(address) => {
                let stream = TcpStream::connect(address).await.map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                Ok(Conn::Tcp(BufWriter::with_capacity(1 << 16, stream)))
            }
            Target::Tls(address) => {
                let Some((connector, name)) = &self.tls else {
                    return Err(TransportError::Tls("no TLS configuration".into()));
                };
                let stream = TcpStream::connect(address).await.map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                let tls = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(connect_error)?;
                Ok(Conn::Tls(Box::new(BufWriter::with_capacity(1 << 16, tls))))
            }
            Target::File(path) => {
                let path = path.clone();
                let file = blocking(move || {
                    std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(path)
                })
                .await
                .map_err(connect_error)?;
                Ok(Conn::File(Arc::new(file)))
            }
            Target::Stdout => Ok(Conn::Stdout),
        }
    }
}

/// `false` when the receiver closed the connection or reset it. Receivers
/// never send application data, so anything readable is a close (or TLS
/// housekeeping, which the TLS layer consumes).
fn still_open(conn: &mut Conn) -> bool {
    fn probe<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).now_or_never() {
            None => true,          // nothing to read: open
            Some(Ok(0)) => false,  // orderly close
            Some(Ok(_)) => true,   // unexpected data: ignore it
            Some(Err(_)) => false, // reset
        }
    }
    match conn {
        Conn::Udp(_) | Conn::File(_) | Conn::Stdout => true,
        Conn::Tcp(stream) => probe(stream),
        Conn::Tls(stream) => probe(stream.as_mut()),
    }
}

async fn write_framed<S: AsyncWrite + Unpin>(
    stream: &mut S,
    framing: Framing,
    buf: &[u8],
    messages: &[Range<usize>],
) -> io::Result<SendReport> {
    for range in messages {
        let message = &buf[range.clone()];
        match framing {
            Framing::OctetCounting => {
                stream
                    .write_all(itoa::Buffer::new().format(message.len()).as_bytes())
                    .await?;
                stream.write_all(b" ").await?;
                stream.write_all(message).await?;
            }
            Framing::Lf => {
                stream.write_all(message).await?;
                stream.write_all(b"\n").await?;
            }
        }
    }
    stream.flush().await?;
    Ok(SendReport {
        sent: messages.len() as u64,
        dropped: 0,
    })
}

/// Writes every message followed by `\n` (the formatter escapes CR and LF
/// inside values, so a message is one line) with `write`, which must also
/// flush, on tokio's blocking pool.
async fn write_lines(
    buf: &[u8],
    messages: &[Range<usize>],
    write: impl FnOnce(&[u8]) -> io::Result<()> + Send + 'static,
) -> io::Result<SendReport> {
    if messages.is_empty() {
        return Ok(SendReport::default());
    }
    let mut lines = Vec::with_capacity(messages.iter().map(|r| r.len() + 1).sum());
    for range in messages {
        lines.extend_from_slice(&buf[range.clone()]);
        lines.push(b'\n');
    }
    blocking(move || write(&lines)).await?;
    Ok(SendReport {
        sent: messages.len() as u64,
        dropped: 0,
    })
}

/// Runs blocking I/O on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)))
}

async fn send_udp(socket: &UdpSocket, buf: &[u8], messages: &[Range<usize>]) -> SendReport {
    let mut report = SendReport::default();
    for range in messages {
        match socket.send(&buf[range.clone()]).await {
            Ok(_) => report.sent += 1,
            Err(err) => {
                report.dropped += 1;
                tracing::debug!(error = %err, "UDP datagram not sent");
            }
        }
    }
    report
}

fn tls_config(config: &CefConfig) -> Result<rustls::ClientConfig, TransportError> {
    let tls = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        TransportError::Tls(format!("{what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| tls("CA file", path, &e))? {
                let cert = cert.map_err(|e| tls("CA file", path, &e))?;
                roots.add(cert).map_err(|e| tls("CA file", path, &e))?;
            }
            if roots.is_empty() {
                return Err(tls("CA file", path, &"no certificate in it"));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(TransportError::Tls(
                    "no system CA certificates found; set cef.ca_file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let certs = CertificateDer::pem_file_iter(cert_path)
                .map_err(|e| tls("client certificate", cert_path, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls("client certificate", cert_path, &e))?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| tls("client key", key_path, &e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TransportError::Tls(format!("client certificate: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_clear_errors() {
        assert_eq!(
            Target::parse("tcp://10.0.0.1:601"),
            Ok(Target::Tcp("10.0.0.1:601".into()))
        );
        assert_eq!(
            Target::parse("tls://[::1]:6514").map(|t| t.host().to_owned()),
            Ok("::1".into())
        );
        assert!(Target::parse("syslog.example:514").is_err_and(|e| e.contains("udp://")));
        assert!(Target::parse("http://x:1").is_err_and(|e| e.contains("unknown scheme")));
        assert!(Target::parse("udp://x").is_err_and(|e| e.contains("HOST:PORT")));
    }

    #[test]
    fn files_and_standard_output_parse_with_clear_errors() {
        let file = |p: &str| Ok(Target::File(PathBuf::from(p)));
        assert_eq!(Target::parse("-"), Ok(Target::Stdout));
        assert_eq!(Target::parse("stdout"), Ok(Target::Stdout));
        assert_eq!(
            Target::parse("file:///var/log/cef.log"),
            file("/var/log/cef.log")
        );
        assert_eq!(Target::parse("file:cef/out.log"), file("cef/out.log"));
        assert_eq!(
            Target::parse("file:/var/log/cef.log"),
            file("/var/log/cef.log")
        );
        for bad in ["file://host/cef.log", "file://", "file:"] {
            assert!(
                Target::parse(bad)
                    .is_err_and(|e| e.contains("file:///ABS/PATH") && e.contains("file:REL/PATH")),
                "{bad}"
            );
        }
        for bad in ["cef.log", "stderr", "ftp://x:1"] {
            assert!(
                Target::parse(bad).is_err_and(|e| e.contains("file:///ABS/PATH")
                    && e.contains("file:REL/PATH")
                    && e.contains("stdout")),
                "{bad}"
            );
        }
    }

    fn file_sender(path: &Path) -> Sender {
        let config = CefConfig {
            target: format!("file://{}", path.display()),
            ..CefConfig::default() // octet counting: a file ignores it
        };
        Sender::new(&config).expect("sender")
    }

    #[tokio::test]
    async fn a_file_gets_one_line_per_message_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cef.log");
        std::fs::write(&path, "before\n").expect("seed the file");
        let mut sender = file_sender(&path);
        let buf = b"first second third";
        let report = sender.send(buf, &[0..5, 6..12]).await.expect("send");
        assert_eq!(
            report,
            SendReport {
                sent: 2,
                dropped: 0
            }
        );
        let report = sender
            .send(buf, std::slice::from_ref(&(13..18)))
            .await
            .expect("send");
        assert_eq!(report.sent, 1);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "before\nfirst\nsecond\nthird\n"
        );

        // A second sender (a restart) appends too.
        let mut sender = file_sender(&path);
        sender
            .send(buf, std::slice::from_ref(&(0..5)))
            .await
            .expect("send");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "before\nfirst\nsecond\nthird\nfirst\n"
        );
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing").join("cef.log");
        let mut sender = file_sender(&path);
        let err = sender
            .send(b"x", std::slice::from_ref(&(0..1)))
            .await
            .expect_err("no directory");
        assert!(matches!(err, TransportError::File { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );

        // The next send retries the open: once the directory exists, it works.
        std::fs::create_dir(dir.path().join("missing")).expect("mkdir");
        sender
            .send(b"x", std::slice::from_ref(&(0..1)))
            .await
            .expect("send after mkdir");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "x\n");
    }

    #[tokio::test]
    async fn octet_counted_frames_reach_a_tcp_peer_and_a_closed_peer_is_noticed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr");
        let config = CefConfig {
            target: format!("tcp://{address}"),
            ..CefConfig::default()
        };
        let mut sender = Sender::new(&config).expect("sender");
        let buf = b"hello world";
        let messages = [0..5, 6..11];
        let accept = tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.expect("accept");
            let mut got = vec![0u8; "5 hello5 world".len()];
            peer.read_exact(&mut got).await.expect("read");
            drop(peer); // the receiver goes away
            (listener, got)
        });
        let report = sender.send(buf, &messages).await.expect("send");
        assert_eq!(report.sent, 2);
        let (listener, got) = accept.await.expect("join");
        assert_eq!(got, b"5 hello5 world");

        // The next send notices the close and reconnects instead of writing
        // into the dead connection.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let accept = tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.expect("accept again");
            let mut got = vec![0u8; "5 hello".len()];
            peer.read_exact(&mut got).await.expect("read");
            got
        });
        sender
            .send(buf, std::slice::from_ref(&(0..5)))
            .await
            .expect("send after reconnect");
        assert_eq!(accept.await.expect("join"), b"5 hello");
    }
}
