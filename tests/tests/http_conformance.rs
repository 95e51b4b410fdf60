//! Issue 20, HTTP conformance: a real HTTP/1.1 server (Python's
//! `http.server`, keep-alive, chunked responses, a chunked request body)
//! in a pod of the node in a box, real `curl` clients in another; tcpdump
//! records the client pod's veth; `tapwire investigate --kfl http` lists
//! exactly the exchanges tshark counts, each with its response.

use std::process::{Command, Stdio};
use std::time::Duration;

use tapwire_tests::node::Node;
use tapwire_tests::{require, run_ok, tapwire};

const SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            body = b"x" * 100
            self.send_response(404 if "missing" in self.path else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
    def do_POST(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                self.rfile.read(size)
                self.rfile.readline()
        else:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"#;

fn tshark_count(pcap: &std::path::Path, filter: &str) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", filter])
        .stderr(Stdio::null())
        .output()
        .expect("tshark");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn investigate_finds_every_http_exchange_tshark_finds() {
    let Some(mut node) = Node::create("node-http") else {
        return;
    };
    for tool in ["tcpdump", "tshark", "curl"] {
        if require(
            tool,
            tapwire_tests::on_path(tool),
            "scripts/services.sh install",
        )
        .is_none()
        {
            return;
        }
    }
    let web = node.add_pod("shop", "http-web");
    let client = node.add_pod("shop", "http-client");
    node.spawn(&web, &["python3", "-c", SERVER, "8080"]);
    let base = format!("http://{}:8080", web.ip);
    assert!(
        tapwire_tests::wait_until(Duration::from_secs(15), || node
            .run(
                &client,
                &["curl", "-s", "-o", "/dev/null", &format!("{base}/warm")]
            )
            .0),
        "the server answers"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("http.pcap");
    let mut tcpdump = Command::new("tcpdump")
        .args(["-i", &client.host_veth, "-U", "-w"])
        .arg(&pcap)
        .arg("tcp port 8080")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_secs(2));
    let urls = [
        format!("{base}/a"),
        format!("{base}/chunked"),
        format!("{base}/missing"),
    ];
    // Three requests on one kept-alive connection.
    let (ok, _, err) = node.run(
        &client,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            &urls[0],
            &urls[1],
            &urls[2],
        ],
    );
    assert!(ok, "keep-alive curl: {err}");
    // A chunked request body, and a HEAD (no body in its response).
    let (ok, _, err) = node.run(
        &client,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "a body sent in chunks",
            &format!("{base}/upload"),
        ],
    );
    assert!(ok, "chunked POST: {err}");
    let (ok, _, err) = node.run(&client, &["curl", "-s", "-I", &format!("{base}/head")]);
    assert!(ok, "HEAD: {err}");
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status();
    let _ = tcpdump.wait();

    let requests = tshark_count(&pcap, "http.request");
    let responses = tshark_count(&pcap, "http.response");
    assert_eq!(
        (requests, responses),
        (5, 5),
        "the capture holds every exchange"
    );
    let rows: Vec<serde_json::Value> = run_ok(
        tapwire("127.0.0.1:1")
            .arg("investigate")
            .arg(&pcap)
            .args(["--kfl", "http", "--format", "json"]),
    )
    .lines()
    .map(|l| serde_json::from_str(l).expect("json"))
    .collect();
    let summaries: Vec<&str> = rows.iter().filter_map(|r| r["summary"].as_str()).collect();
    assert_eq!(rows.len(), requests, "{summaries:?}");
    assert_eq!(
        summaries,
        [
            "GET /a 200",
            "GET /chunked 200",
            "GET /missing 404",
            "POST /upload 201",
            "HEAD /head 200"
        ]
    );
    // The kept-alive exchanges share one stream.
    assert_eq!(rows[0]["stream"], rows[2]["stream"]);
    assert_ne!(rows[0]["stream"], rows[3]["stream"]);
}
