//! Headless Chromium driven through chromedriver's WebDriver protocol
//! (Debian's `chromium` and `chromium-driver`), for the console's tests: a
//! small blocking client over plain HTTP/1.1, no extra crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session: chromedriver and the Chromium it started, ended on
/// drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    /// Where screenshots go.
    pub shots: PathBuf,
}

/// Finds Chromium and chromedriver, or `None` with the reason printed (a
/// failure under CI).
pub fn chromium() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.is_file());
    let browser = crate::require(
        "chromium",
        find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]),
        "install it with `scripts/services.sh install` (apt: chromium)",
    )?;
    let driver = crate::require(
        "chromedriver",
        find(&["/usr/bin/chromedriver"]),
        "install it with `scripts/services.sh install` (apt: chromium-driver)",
    )?;
    Some((browser, driver))
}

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut s = TcpStream::connect(addr).expect("chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .expect("request");
    // chromedriver says `Connection: close` but keeps the socket open: the
    // body is read by its Content-Length.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_len, length) = loop {
        let n = s.read(&mut buf).unwrap_or_else(|e| {
            panic!(
                "chromedriver did not answer {method} {path} ({e}): {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
        assert!(n > 0, "chromedriver closed {method} {path} early");
        raw.extend_from_slice(&buf[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (at + 4, length);
        }
    };
    while raw.len() < head_len + length {
        let n = s.read(&mut buf).expect("body");
        assert!(n > 0, "chromedriver closed {method} {path} mid-body");
        raw.extend_from_slice(&buf[..n]);
    }
    let status = String::from_utf8_lossy(&raw[..head_len])
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = String::from_utf8_lossy(&raw[head_len..head_len + length]).into_owned();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (1400x900), screenshots
    /// into `shots`.
    pub fn start(shots: &Path) -> Option<Browser> {
        let (chromium, chromedriver) = chromium()?;
        let port = crate::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let ready = crate::wait_until(Duration::from_secs(20), || {
            TcpStream::connect(addr).is_ok() && http(addr, "GET", "/status", None).0 == 200
        });
        assert!(ready, "chromedriver answers on {addr}");
        let (status, body) = http(
            addr,
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1400,900"]
                },
                "goog:loggingPrefs": {"browser": "ALL"}
            }}})),
        );
        assert_eq!(status, 200, "new session: {body}");
        let session = body["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        std::fs::create_dir_all(shots).expect("screenshot directory");
        Some(Browser {
            driver,
            addr,
            session,
            shots: shots.to_path_buf(),
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, reply) = http(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        assert_eq!(status, 200, "{method} {path}: {reply}");
        reply["value"].clone()
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns
    /// its value.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits until `script` returns something truthy; returns it.
    pub fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.eval(script, json!([]));
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}; page: {}",
                self.eval("return document.body.innerText", json!([]))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves the mouse to `(x, y)` of the viewport, and clicks there when
    /// asked.
    pub fn pointer(&self, x: f64, y: f64, click: bool) {
        let mut actions = vec![json!({"type": "pointerMove", "duration": 0,
            "origin": "viewport", "x": x.round() as i64, "y": y.round() as i64})];
        if click {
            actions.push(json!({"type": "pointerDown", "button": 0}));
            actions.push(json!({"type": "pointerUp", "button": 0}));
        }
        self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "pointer", "id": "mouse",
                "parameters": {"pointerType": "mouse"}, "actions": actions}]})),
        );
        self.call("DELETE", "/actions", None);
    }

    /// A point of the viewport on the graph's edge `src` -> `dst` where
    /// that edge is the topmost element (another edge may cross its middle).
    pub fn edge_point(&self, src: &str, dst: &str) -> (f64, f64) {
        let point = self.eval(
            "const p = [...document.querySelectorAll('#graph-svg path.edge')]\
               .find(p => p.dataset.src === arguments[0] && p.dataset.dst === arguments[1]);\
             for (const f of [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8]) {\
               const m = p.getPointAtLength(p.getTotalLength() * f);\
               const s = new DOMPoint(m.x, m.y).matrixTransform(p.getScreenCTM());\
               const top = document.elementFromPoint(s.x, s.y);\
               if (top && top.dataset.src === arguments[0] && top.dataset.dst === arguments[1]) return [s.x, s.y];\
             }\
             return null;",
            json!([src, dst]),
        );
        let at = |i: usize| {
            point[i]
                .as_f64()
                .unwrap_or_else(|| panic!("no visible point on the edge {src} -> {dst}"))
        };
        (at(0), at(1))
    }

    /// Clicks the first element matching `css`.
    pub fn click(&self, css: &str) {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = found[ELEMENT].as_str().expect("element").to_owned();
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Writes a PNG of the viewport as `name.png` in the screenshot
    /// directory and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.call("GET", "/screenshot", None);
        let png = base64(data.as_str().expect("base64 PNG"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// The browser console's errors so far (JavaScript exceptions, failed
    /// loads), from chromedriver's log.
    pub fn console_errors(&self) -> Vec<String> {
        let (_, reply) = http(
            self.addr,
            "POST",
            &format!("/session/{}/se/log", self.session),
            Some(&json!({"type": "browser"})),
        );
        reply["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (with padding) to bytes.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The sign-in link a console command prints on stderr (`console: sign in
/// at URL`), and its token; the rest of `child`'s stderr is drained.
pub fn sign_in_link(child: &mut Child) -> (String, String) {
    let link = crate::stderr_line(child, |l| {
        l.strip_prefix("console: sign in at ").map(str::to_owned)
    })
    .expect("a printed sign-in link");
    let token = link
        .split_once("?token=")
        .and_then(|(_, t)| t.split('#').next())
        .expect("a token in the link")
        .to_owned();
    (link, token)
}
