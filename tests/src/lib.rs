//! The test bed shared by tapwire's integration tests (`tests/tests/`).
//!
//! - [`require`]: finds a real service or tool; without it a test prints why it
//!   skips, except under `CI=true`, where a missing service fails the test
//!   (CI starts every service, so a skip there would hide a failure).
//! - [`Broker`]: a private Tansu broker per test, on its own port and data
//!   directory, that a test can kill and restart.
//! - [`clickhouse::ClickHouse`]: a private ClickHouse server a test can stop
//!   and restart; [`clickhouse::shared`] finds the test bed's.
//! - [`tapwire`] and [`Lines`]: run the `tapwire` binary and collect what it
//!   prints, line by line, while it runs.
//!
//! Services started by `scripts/services.sh` are found through environment
//! variables (`TAPWIRE_KAFKA_BROKERS`, `TAPWIRE_CLICKHOUSE_URL`, ...) with
//! loopback defaults.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether a missing service must fail rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `Some(value)` when available; otherwise prints why the test skips and
/// returns `None`, or panics under CI.
pub fn require<T>(what: &str, found: Option<T>, how_to_get_it: &str) -> Option<T> {
    if found.is_some() {
        return found;
    }
    if in_ci() {
        panic!("{what} is missing under CI=true; {how_to_get_it}");
    }
    eprintln!("SKIPPED: {what} is missing; {how_to_get_it}");
    None
}

/// `$name`, or `default` when unset.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The address of a shared service from `scripts/services.sh` when something
/// listens there; otherwise skips (or fails under CI) with how to start it.
pub fn shared_service(what: &str, address: &str) -> Option<String> {
    let up = TcpStream::connect_timeout(&address.parse().ok()?, Duration::from_secs(2)).is_ok();
    require(
        &format!("{what} at {address}"),
        up.then(|| address.to_owned()),
        "start the test bed with `scripts/services.sh start`",
    )
}

/// AWS settings for the test bed's SeaweedFS on `cmd`: its credentials and
/// region, no instance metadata, and none of the caller's `RECORDING_KFL` or
/// `S3_BUCKET`.
pub fn s3_env(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", "tapwire")
        .env("AWS_SECRET_ACCESS_KEY", "tapwire-secret")
        .env("AWS_REGION", env_or("TAPWIRE_S3_REGION", "us-east-1"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("RECORDING_KFL")
        .env_remove("S3_BUCKET")
}

/// Creates `bucket` at the S3 `endpoint` (SeaweedFS takes anonymous bucket
/// creation on loopback).
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let created = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .arg(format!("{endpoint}/{bucket}"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&created.stdout),
        "200",
        "create bucket {bucket}"
    );
}

/// `tshark`, found on `PATH` and answering `--version`, or `None` with the
/// reason printed (a failure under `CI=true`).
pub fn tshark() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("tshark"))
                .find(|p| p.is_file())
        })
        .filter(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    require(
        "tshark",
        found,
        "install it with `scripts/services.sh install`",
    )
}

/// A consumer assigned every partition of `topic` from its first offset
/// (no group membership, nothing committed).
pub fn from_the_start(broker: &str, topic: &str) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", "tapwire-tests-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Every event of `topic` from its start (all partitions), decoded. Returns
/// when nothing arrived for `idle`, when the topic is quiet and
/// `done(events)` holds, or after 30 s.
pub fn read_topic(
    broker: &str,
    topic: &str,
    idle: Duration,
    done: impl Fn(&[tapwire_schemas::AnyEvent]) -> bool,
) -> Vec<tapwire_schemas::AnyEvent> {
    use rdkafka::Message;

    let consumer = from_the_start(broker, topic);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut idle_since = Instant::now();
    while Instant::now() < deadline && idle_since.elapsed() < idle {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let payload = m.payload().expect("payload");
                out.push(tapwire_schemas::decode_any(payload).expect("decodes"));
                idle_since = Instant::now();
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None if done(&out) => break,
            None => {}
        }
    }
    out
}

/// The `tansu` binary: `$TANSU_BIN`, `PATH`, or `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home_bin = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(home_bin)
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Polls `done` every 50 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// How a [`Broker`] stores data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory: fast, gone when the broker stops.
    Memory,
    /// SQLite in the broker's data directory: survives restarts.
    Sqlite,
}

/// A Tansu broker owned by one test.
pub struct Broker {
    binary: PathBuf,
    port: u16,
    storage: Storage,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker, or `None` (with the reason printed) when Tansu is not
    /// installed and this is not CI.
    pub fn start(storage: Storage) -> Option<Broker> {
        let binary = require(
            "the tansu binary",
            tansu_binary(),
            "install it with `scripts/services.sh install`",
        )?;
        let mut broker = Broker {
            binary,
            port: free_port(),
            storage,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        broker.spawn();
        Some(broker)
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let storage = match self.storage {
            Storage::Memory => "memory://tansu/".to_owned(),
            Storage::Sqlite => "sqlite://tansu.db".to_owned(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let child = Command::new(&self.binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &storage])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let address = self.address();
        assert!(
            wait_until(Duration::from_secs(30), || TcpStream::connect(&address)
                .is_ok()),
            "tansu did not listen on {address} within 30 s; log:\n{}",
            self.log()
        );
    }

    /// Kills the broker with SIGKILL (a crash, no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A syslog-ng receiver owned by one test, built from the committed
/// `tests/syslog-ng/syslog-ng.conf` with its own ports and directory, so a
/// test can stop and restart it. TLS material is copied from the shared test
/// bed (`$TAPWIRE_SYSLOG_DIR/tls`).
pub struct SyslogNg {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// TCP port, octet-counted framing.
    pub tcp_port: u16,
    /// TLS port, octet-counted framing.
    pub tls_port: u16,
    /// UDP port.
    pub udp_port: u16,
    child: Option<Child>,
}

impl SyslogNg {
    /// Starts a private receiver, or `None` (reason printed; fails under CI)
    /// when syslog-ng or the shared TLS material is missing.
    pub fn start() -> Option<SyslogNg> {
        let binary = ["/usr/sbin/syslog-ng", "/usr/bin/syslog-ng"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        require(
            "syslog-ng",
            binary,
            "install it with `scripts/services.sh install`",
        )?;
        let shared = PathBuf::from(env_or(
            "TAPWIRE_SYSLOG_DIR",
            &format!("{}/.cache/tapwire-services", env_or("HOME", "/root")),
        ));
        let tls_source = shared.join("tls");
        let tls_source = require(
            "the test bed's TLS material",
            tls_source
                .join("server.pem")
                .is_file()
                .then_some(tls_source),
            "create it with `scripts/services.sh start`",
        )?;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tls")).expect("tls dir");
        for file in ["ca.pem", "server.pem", "server.key"] {
            std::fs::copy(tls_source.join(file), dir.path().join("tls").join(file))
                .expect("copy TLS material");
        }
        let (udp_port, tcp_port, tls_port) = (free_port(), free_port(), free_port());
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("syslog-ng/syslog-ng.conf");
        let text = std::fs::read_to_string(committed)
            .expect("tests/syslog-ng/syslog-ng.conf")
            .replace("port(5514)", &format!("port({udp_port})"))
            .replace("port(5601)", &format!("port({tcp_port})"))
            .replace("port(5602)", &format!("port({})", free_port()))
            .replace("port(6514)", &format!("port({tls_port})"))
            .replace("port(6515)", &format!("port({})", free_port()));
        let config = dir.path().join("syslog-ng.conf");
        std::fs::write(&config, text).expect("write config");
        let mut receiver = SyslogNg {
            dir,
            config,
            tcp_port,
            tls_port,
            udp_port,
            child: None,
        };
        receiver.spawn();
        Some(receiver)
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("syslog-ng.out"))
            .expect("log");
        let child = Command::new("syslog-ng")
            .arg("-F")
            .arg("-f")
            .arg(&self.config)
            .arg(format!("--persist-file={}", d.join("persist").display()))
            .arg(format!("--pidfile={}", d.join("pid").display()))
            .arg(format!("--control={}", d.join("ctl").display()))
            .env("TAPWIRE_SYSLOG_DIR", d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn syslog-ng");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.tcp_port);
        assert!(
            wait_until(Duration::from_secs(20), || TcpStream::connect(&address)
                .is_ok()),
            "syslog-ng did not listen on {address}:\n{}",
            std::fs::read_to_string(d.join("syslog-ng.out")).unwrap_or_default()
        );
    }

    /// Stops it with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same ports and files.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Lines received so far on `transport` (`udp`, `tcp`, `tls`).
    pub fn received(&self, transport: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(format!("{transport}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The CA that signed the receiver's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }
}

impl Drop for SyslogNg {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `tapwire` binary built with the workspace (tapwire's own integration
/// tests make `cargo test --workspace` build it).
pub fn tapwire_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/tapwire
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("tapwire"))
        .expect("target dir");
    assert!(
        bin.is_file(),
        "{} not found: run the tests with `cargo test --workspace` (or `cargo build -p tapwire` first)",
        bin.display()
    );
    bin
}

/// A `tapwire` command talking to `brokers`.
pub fn tapwire(brokers: &str) -> Command {
    let mut cmd = Command::new(tapwire_binary());
    cmd.arg("--brokers").arg(brokers);
    cmd.env_remove("TAPWIRE_CONFIG");
    cmd
}

/// Runs `cmd` to completion and returns its stdout; panics with its output
/// if it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tapwire");
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running process whose stdout lines are collected as they come.
pub struct Lines {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    /// Spawns `cmd` with stdout and stderr piped.
    pub fn spawn(cmd: &mut Command) -> Lines {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            // Whole lines only: a process killed mid-write leaves a piece
            // of a line without its end, which is not a line it printed.
            let mut out = BufReader::new(out);
            let mut buf = Vec::new();
            while matches!(out.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    sink.lock().expect("lines").push(line);
                }
                buf.clear();
            }
        });
        let err = child.stderr.take().expect("stderr");
        let err_sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                err_sink.lock().expect("stderr").push(line);
            }
        });
        Lines {
            child,
            lines,
            reader: Some(reader),
            stderr,
        }
    }

    /// Lines so far.
    pub fn count(&self) -> usize {
        self.lines.lock().expect("lines").len()
    }

    /// A copy of the lines so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").join("\n")
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then every line it managed to write.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish()
    }

    /// SIGTERM (graceful), waits up to `timeout`, then returns the exit
    /// success and every line.
    pub fn terminate(mut self, timeout: Duration) -> (bool, Vec<String>) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => break None,
            }
        };
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let ok = status.is_some_and(|s| s.success());
        (ok, self.finish())
    }

    /// Waits for the process to exit on its own; returns success and lines.
    pub fn wait(mut self) -> (bool, Vec<String>) {
        let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
        (ok, self.finish())
    }

    fn finish(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.snapshot()
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on an HTTP/1.1 server at `addr` (such as `tapwire serve`):
/// the status and the JSON body.
pub fn http_get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    http_get_json_as(addr, path, Some(API_TOKEN))
}

/// The admin token the tests give `tapwire serve` ([`api_auth`]).
pub const API_TOKEN: &str = "test-admin-token-0123456789";
/// The viewer token the tests give `tapwire serve` ([`api_auth`]).
pub const API_VIEWER_TOKEN: &str = "test-viewer-token-0123456789";

/// The API's sign-in for tests: an admin ([`API_TOKEN`]) and a viewer
/// ([`API_VIEWER_TOKEN`]).
pub fn api_auth() -> tapwire_aggregator::console::Auth {
    use tapwire_aggregator::console::{ApiToken, Auth, Role};
    Auth::new(vec![
        ApiToken {
            name: "test-admin".into(),
            role: Role::Admin,
            token: API_TOKEN.into(),
        },
        ApiToken {
            name: "test-viewer".into(),
            role: Role::Viewer,
            token: API_VIEWER_TOKEN.into(),
        },
    ])
    .expect("test tokens")
}

/// `GET path` with `token` as the bearer (none: no Authorization header):
/// (status, body as JSON).
pub fn http_get_json_as(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let (status, body) = http_get(addr, path, token);
    // A body that is not JSON (`/healthz`'s "ok", an empty 404) is null.
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// `GET path` with `token` as the bearer (none: no Authorization header):
/// the status and the body (de-chunked).
pub fn http_get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response");
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response headers");
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    let status = head[9..12].parse().expect("status");
    let body = &raw[at + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (status, body.to_vec());
    }
    let (mut out, mut rest) = (Vec::new(), body);
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|h| usize::from_str_radix(h.trim(), 16).ok())
            .expect("chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
    (status, out)
}

/// The frames of the classic pcap file `path` as the capture agent's packet
/// records of `node` (interface `lo`), numbered from 0, read with
/// `pcap-file` (not tapwire's own reader).
pub fn packet_records(path: &str, node: &str) -> Vec<tapwire_schemas::events::PacketRecord> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap");
    let link_type = u32::from(reader.header().datalink);
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.expect("packet");
        let data = p.data.into_owned();
        out.push(tapwire_schemas::events::PacketRecord {
            header: tapwire_schemas::samples::header(
                node,
                "capture",
                out.len() as u64,
                p.timestamp.as_nanos() as i64,
            ),
            link_type,
            captured_len: data.len() as u32,
            original_len: p.orig_len,
            data,
            flow_hash: 0,
            interface: Some("lo".into()),
        });
    }
    out
}

/// `Some(())` when `tool` is on `PATH`.
pub fn on_path(tool: &str) -> Option<()> {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| ())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A broker and an agent running only the eBPF source with `config`
/// (TOML) and `extra` arguments, once its programs are attached; `None`
/// (reason printed) without root or Tansu.
pub fn ebpf_agent(config: &str, extra: &[&str]) -> Option<(Broker, Lines, tempfile::TempDir)> {
    require(
        "root (eBPF needs it)",
        is_root().then_some(()),
        "run the tests as root, as CI does",
    )?;
    let broker = Broker::start(Storage::Memory)?;
    run_ok(tapwire(&broker.address()).args(["topics", "create", "--partitions", "1"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tapwire.toml");
    std::fs::write(&path, config).expect("config");
    let agent = Lines::spawn(
        tapwire(&broker.address())
            .arg("-c")
            .arg(&path)
            .args(extra)
            .args(["capture", "--source", "ebpf", "--node-name", "node-l"]),
    );
    assert!(
        wait_until(Duration::from_secs(30), || agent
            .stderr()
            .contains("ebpf attached")),
        "agent:\n{}",
        agent.stderr()
    );
    Some((broker, agent, dir))
}

pub mod browser;
pub mod cef;
pub mod clickhouse;
pub mod node;
pub mod planted;

/// The first line of `child`'s standard error that `pick` accepts (what it
/// returns), the rest drained by a thread: a child whose stderr pipe closed
/// would fail its next write and stop.
pub fn stderr_line<T: Send + 'static>(
    child: &mut std::process::Child,
    pick: impl Fn(&str) -> Option<T> + Send + 'static,
) -> Option<T> {
    use std::io::BufRead;
    let stderr = child.stderr.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(found) = tx.as_ref().and_then(|_| pick(&line)) {
                let _ = tx.take().map(|t| t.send(found));
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).ok()
}
