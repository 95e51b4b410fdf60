//! The test bed shared by tapwire's integration tests (`tests/tests/`).
//!
//! - [`require`]: finds a real service or tool; without it a test prints why it
//!   skips, except under `CI=true`, where a missing service fails the test
//!   (CI starts every service, so a skip there would hide a failure).
//! - [`Broker`]: a private Tansu broker per test, on its own port and data
//!   directory, that a test can kill and restart.
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
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
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

pub mod cef;
