//! Trace export over OTLP/HTTP reaches a receiver (builds with `--features otlp`).
#![cfg(feature = "otlp")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

#[test]
fn batch_spans_are_exported_to_the_configured_endpoint() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let receiver = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("request line");
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line.trim().is_empty() {
                break;
            }
            headers.push(line.trim().to_ascii_lowercase());
        }
        let length: usize = headers
            .iter()
            .find_map(|h| {
                h.strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        let mut stream = stream;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        (request_line, headers, body)
    });

    let out = Command::new(env!("CARGO_BIN_EXE_tapwire"))
        .args(["demo", "--events", "100"])
        .env(
            "TAPWIRE_TELEMETRY__OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}/v1/traces"),
        )
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (request_line, headers, body) = receiver.join().expect("receiver");
    assert!(
        request_line.starts_with("POST /v1/traces "),
        "{request_line}"
    );
    assert!(
        headers
            .iter()
            .any(|h| h == "content-type: application/x-protobuf"),
        "{headers:?}"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("tapwire") && text.contains("batch"),
        "spans missing from the export"
    );
}
