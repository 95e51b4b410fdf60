//! The shared services that `scripts/services.sh start` runs answer for
//! real: Tansu, ClickHouse, SeaweedFS S3 and syslog-ng. Later stages' tests
//! rely on them; this says early and plainly when one is not there.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use tapwire_tests::{env_or, shared_service, wait_until};

/// A plain HTTP/1.1 request; returns the status line and body.
fn http(address: &str, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[test]
fn kafka_broker_reports_metadata() {
    let brokers = env_or("TAPWIRE_KAFKA_BROKERS", "127.0.0.1:9092");
    let Some(address) = shared_service("Tansu", &brokers) else {
        return;
    };
    let client: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &address)
        .create()
        .expect("client");
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata from the shared broker");
    assert!(!metadata.brokers().is_empty());
}

#[test]
fn clickhouse_answers_sql_over_http() {
    let url = env_or("TAPWIRE_CLICKHOUSE_URL", "http://127.0.0.1:8123");
    let Some(address) = shared_service("ClickHouse", &host_port(&url)) else {
        return;
    };
    let query = "SELECT 6 * 7";
    let (status, body) = http(
        &address,
        &format!(
            "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{query}",
            query.len()
        ),
    );
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("42"), "{body}");
}

#[test]
fn s3_accepts_a_bucket_and_an_object() {
    let url = env_or("TAPWIRE_S3_ENDPOINT", "http://127.0.0.1:8333");
    let Some(address) = shared_service("SeaweedFS S3", &host_port(&url)) else {
        return;
    };
    let bucket = "tapwire-testbed";
    let (status, _) = http(
        &address,
        &format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(
        status.contains("200") || status.contains("409"),
        "create bucket: {status}"
    );
    let (status, _) = http(
        &address,
        &format!(
            "PUT /{bucket}/probe HTTP/1.1\r\nHost: {address}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ),
    );
    assert!(status.contains("200"), "put object: {status}");
    let (status, body) = http(
        &address,
        &format!("GET /{bucket}/probe HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
    );
    assert!(
        status.contains("200") && body.contains("hello"),
        "get object: {status} {body}"
    );
}

#[test]
fn syslog_ng_writes_what_it_receives_over_tcp() {
    let address = env_or("TAPWIRE_SYSLOG_TCP", "127.0.0.1:5601");
    let Some(address) = shared_service("syslog-ng", &address) else {
        return;
    };
    let dir = env_or(
        "TAPWIRE_SYSLOG_DIR",
        &format!("{}/.cache/tapwire-services", env_or("HOME", "/root")),
    );
    let token = format!(
        "testbed-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let message = format!(
        "<134>Nov 23 10:07:28 testhost CEF:0|tapwire|tapwire|0.1|NT-001|Networking|3|msg={token}"
    );
    let mut stream = TcpStream::connect(&address).expect("connect");
    // RFC 6587 octet counting.
    stream
        .write_all(format!("{} {message}", message.len()).as_bytes())
        .expect("send");
    stream.flush().expect("flush");
    drop(stream);
    let file = format!("{dir}/tcp.log");
    let landed = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&file).is_ok_and(|text| text.lines().any(|l| l == message))
    });
    assert!(landed, "{message} did not land in {file}");
}
