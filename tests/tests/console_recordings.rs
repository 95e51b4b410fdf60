//! The Recordings page offline: `tapwire investigate DIR --serve ADDR` over
//! the slices `tapwire demo` recorded, with no cluster, Kafka or
//! ClickHouse. The streams listed equal what `tapwire investigate` prints;
//! the PCAP downloaded holds their packets (read back by tshark); the page,
//! in headless Chromium, lists them, downloads, and shows a bad query's
//! caret.

use std::process::Stdio;

use serde_json::{Value, json};
use tapwire_tests::browser::Browser;
use tapwire_tests::http_get_json_as;

#[test]
fn investigate_serves_the_recordings_page_offline() {
    let Some(tshark) = tapwire_tests::tshark() else {
        return;
    };
    if tapwire_tests::browser::chromium().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    tapwire_tests::run_ok(
        std::process::Command::new(tapwire_tests::tapwire_binary())
            .args(["demo", "--events", "60", "--out"])
            .arg(dir.path())
            .env_remove("TAPWIRE_CONFIG"),
    );
    let recordings = dir.path().join("recordings");
    let port = tapwire_tests::free_port();
    let mut server = std::process::Command::new(tapwire_tests::tapwire_binary())
        .arg("investigate")
        .arg(&recordings)
        .args(["--serve", &format!("127.0.0.1:{port}")])
        .env_remove("TAPWIRE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("investigate --serve");
    let (link, token) = tapwire_tests::browser::sign_in_link(&mut server);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");

    // The API equals the command line.
    let (status, body) =
        http_get_json_as(addr, "/api/v1/recordings/streams?kfl=http", Some(&token));
    assert_eq!(status, 200, "{body}");
    let streams = body["streams"].as_array().expect("streams").clone();
    assert!(!streams.is_empty(), "{body}");
    let cli = tapwire_tests::run_ok(
        std::process::Command::new(tapwire_tests::tapwire_binary())
            .arg("investigate")
            .arg(&recordings)
            .args([
                "--kfl",
                "http",
                "--streams",
                "--format",
                "json",
                "--no-progress",
            ])
            .env_remove("TAPWIRE_CONFIG"),
    );
    // One JSON object per line.
    let cli = Value::Array(
        cli.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).expect("JSON line");
                // The command line adds the time as text beside time_ns.
                v.as_object_mut().expect("object").remove("time");
                v
            })
            .collect(),
    );
    assert_eq!(
        Value::Array(streams.clone()),
        cli,
        "the page's streams are investigate's"
    );
    assert_eq!(
        http_get_json_as(addr, "/api/v1/recordings/streams?kfl=http", None).0,
        401
    );

    // The merged PCAP, read back by tshark.
    let (status, pcap) =
        tapwire_tests::http_get(addr, "/api/v1/recordings/pcap?kfl=http", Some(&token));
    assert_eq!(status, 200);
    let file = dir.path().join("download.pcap");
    std::fs::write(&file, &pcap).expect("write");
    let frames = std::process::Command::new(&tshark)
        .arg("-r")
        .arg(&file)
        .output()
        .expect("tshark");
    assert!(
        frames.status.success(),
        "{}",
        String::from_utf8_lossy(&frames.stderr)
    );
    let want: u64 = streams
        .iter()
        .map(|s| s["packets"].as_u64().expect("packets"))
        .sum();
    assert_eq!(
        String::from_utf8_lossy(&frames.stdout).lines().count() as u64,
        want,
        "every packet of the matching streams"
    );

    // The page.
    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    let b = Browser::start(&shots).expect("browser");
    let base = link.split('#').next().expect("base").to_owned();
    b.goto(&format!("{base}#/recordings?kfl=http"));
    let rows = b.wait_for(
        "the streams",
        "return document.body.dataset.loaded === 'recordings' && \
         document.querySelectorAll('#rec-streams tbody tr').length",
    );
    assert_eq!(rows, json!(streams.len()));
    b.click("#rec-download");
    let size = b.wait_for("the download", "return document.body.dataset.downloaded");
    assert_eq!(size, json!(pcap.len().to_string()));
    b.screenshot("10-recordings");
    b.goto(&format!("{base}#/recordings?kfl=http%20and"));
    let error = b.wait_for(
        "the KFL error",
        "const e = document.querySelector('#rec-error'); return e && e.textContent",
    );
    assert!(error.as_str().expect("text").contains('^'), "{error}");
    b.screenshot("11-recordings-error");
    let errors: Vec<String> = b
        .console_errors()
        .into_iter()
        .filter(|e| !e.contains("400"))
        .collect();
    assert!(errors.is_empty(), "JavaScript console errors: {errors:#?}");
    drop(b);
    let _ = server.kill();
    let _ = server.wait();
}
