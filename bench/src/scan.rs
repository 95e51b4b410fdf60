//! Scanning recorded traffic on one core (the issue: scanned MB/s per core
//! on recorded slices with 100 YARA rules). A generated ~64 MiB capture of
//! HTTP sessions (JSON, HTML, logs and binary bodies in MSS-sized segments,
//! with planted secrets, EICAR strings and some of the rules' indicators)
//! goes through [`scan_capture`] from memory, single-threaded (not pinned:
//! no other benchmark pins), with 100 generated rules (literals, `nocase`,
//! `wide`, hex with jumps, anchored regexes, `N of them`) plus the
//! built-in ones, and the secret detectors. The figures are payload MB/s
//! (what was reassembled and scanned) and capture-file MB/s.
//!
//! Baselines, same bytes, same run:
//! - one `Session::scan` over the whole payload concatenated: detectors and
//!   YARA with no capture parsing, reassembly or per-stream passes, so the
//!   ratio is the share those take;
//! - `grep -c -F -f` over the pcap with the rules' literal strings
//!   (`LC_ALL=C`): a fixed-string search, the least any scan must cost;
//! - `yr scan` (yara-x's command line, when on `PATH`) over the pcap with
//!   the same rules (raw file, no reassembly; its clock includes process
//!   start and compiling the rules).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tapwire_packet::synth::{Frame, tcp_session};
use tapwire_packet::{LINKTYPE_ETHERNET, parse};
use tapwire_scanner::detect::Detectors;
use tapwire_scanner::rules::{BUILTIN, RuleSet};
use tapwire_scanner::traffic::scan_capture;
use tapwire_scanner::{ContentScanner, Kind};
use tapwire_tests::planted;

use crate::report::{Row, peak_rss_mib, rate};

/// Size of the generated capture file.
const TARGET_BYTES: u64 = 64 << 20;
/// Generated rules (the built-in ones come on top).
const RULES: usize = 100;
const MSS: usize = 1448;
const T0_NS: i64 = 1_700_000_100_000_000_000;

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "order", "cart", "payment", "invoice", "customer", "shipping", "catalog", "item", "price",
    "stock", "warehouse", "review", "rating", "session", "profile", "account", "search",
    "query", "result", "page", "report", "metric", "latency", "status", "region", "zone",
    "cluster", "node", "pod", "service", "deploy", "release", "feature", "flag", "token",
    "refund", "coupon", "discount", "basket", "checkout",
];

/// Literal indicators the rules look for (no `"` or `\`, no `{x}` placeholder).
#[rustfmt::skip]
const INDICATORS: &[&str] = &[
    "Invoke-Mimikatz", "sekurlsa::logonpasswords", "powershell -nop -w hidden",
    "FromBase64String(", "/etc/shadow", "/bin/sh -c wget", "curl -fsSL http", "chmod +x /tmp/",
    "base64 -d | sh", "nc -lvnp 4444", "python -c 'import pty", "/dev/shm/.x",
    "LD_PRELOAD=/tmp/", "kubectl exec -it", "/var/run/secrets/kubernetes.io",
    "cat /proc/self/environ", "xmrig --donate", "minexmr.com", "pool.supportxmr.com",
    "cryptonight", "Cobalt Strike", "beacon.dll", "ReflectiveLoader", "meterpreter",
    "msfvenom", "mimikatz.exe", "lsass.dmp", "procdump -ma", "vssadmin delete shadows",
    "bcdedit /set", "wevtutil cl", "YOUR FILES ARE ENCRYPTED", ".onion/", "tor2web",
    "eval(base64_decode(", "document.write(unescape(", "<iframe src=", "String.fromCharCode(",
    "${jndi:ldap://", "${jndi:rmi://", "/actuator/env", "../../../../etc/passwd",
    "UNION SELECT NULL", "' OR '1'='1", "<script>alert(", "cmd.exe /c", "rundll32.exe",
    "regsvr32 /s /n /u /i:", "certutil -urlcache", "bitsadmin /transfer", "schtasks /create",
    "crontab -l", "echo ssh-rsa", "authorized_keys", "id_rsa", "docker.sock", "/proc/1/root",
    "nsenter -t 1", "mount -t cgroup", "release_agent", "AWS_SECRET_ACCESS_KEY",
    "metadata.google.internal", "169.254.169.254/latest", "system:masters",
];

/// Per rule kind: name, strings (one per `|`) and condition. `{a}`, `{b}`,
/// `{c}` are indicators, `{m}` the rule's marker, `{h*}` random hex bytes,
/// `{lo}-{hi}` a jump, `{re}` one of [`REGEXES`].
#[rustfmt::skip]
const KINDS: [(&str, &str, &str); 5] = [
    ("lit", r#"$a = "{a}"|$b = "{b}" ascii wide|$c = "{m}""#, "any of them"),
    ("nocase", r#"$a = "{a}" nocase|$b = "{b}" nocase|$c = "{c}" nocase"#, "2 of them"),
    ("hex", r#"$h1 = { {h5} [{lo}-{hi}] {h4} }|$h2 = { {h4b} ?? ?? {h4c} }|$s = "{a}""#, "any of them"),
    ("regex", r#"$r = {re}|$s = "{a}""#, "any of them"),
    ("mixed", r#"$a = "{a}"|$b = "{b}" nocase|$c = "{m}" wide|$h = { {h4} [0-8] {h4b} }"#,
        "#a > 2 or ($b and ($c or $h))"),
];

/// Regexes with a literal prefix and bounded repeats (`{i}`: the rule).
const REGEXES: [&str; 4] = [
    r"/X-Implant-{i}: [A-Za-z0-9+=]{16,64}/",
    r"/GET \/c2\/{i}\/[a-f0-9]{8}\.php/",
    r"/stratum\+tcp:\/\/[a-z0-9.-]{4,40}:3{i}/",
    r"/session_token_{i}=[A-Za-z0-9]{20,40}/",
];

/// xorshift64*: deterministic bytes without a crate.
struct Rng(u64);

impl Rng {
    fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.u64() % n
    }
    fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len() as u64) as usize]
    }
    fn token(&mut self, len: usize) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALNUM[self.below(62) as usize] as char)
            .collect()
    }
    fn hex(&mut self, n: usize) -> String {
        let bytes: Vec<String> = (0..n)
            .map(|_| format!("{:02X}", self.u64() as u8))
            .collect();
        bytes.join(" ")
    }
}

/// Runs the benchmark: one row per baseline that could run.
pub fn run() -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let [rules_path, all_rules, patterns, pcap_path] =
        ["bench.yar", "all.yar", "patterns.txt", "traffic.pcap"].map(|f| dir.path().join(f));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (rules_text, mut literals) = rules(&mut rng);
    std::fs::write(&rules_path, &rules_text)?;
    std::fs::write(&all_rules, format!("{BUILTIN}\n{rules_text}"))?;
    literals.sort_unstable();
    literals.dedup();
    std::fs::write(&patterns, literals.join("\n") + "\n")?;
    let set = RuleSet::load(&[rules_path]).context("compiling the generated rules")?;
    let count = set.len();
    let detectors = Arc::new(Detectors::new());
    let scanner = ContentScanner::new(detectors, Arc::new(set), Duration::from_secs(600));
    let (sessions, payload) = capture(&pcap_path, &mut rng);
    let pcap = std::fs::read(&pcap_path)?;
    let (payload_len, pcap_len) = (payload.len() as u64, pcap.len() as u64);
    eprintln!("scan: {sessions} sessions, {payload_len} payload bytes, {pcap_len} pcap bytes");

    // tapwire: the capture from memory, reassembled and scanned stream by stream.
    let mut findings = Vec::new();
    let started = Instant::now();
    let reader = Cursor::new(pcap.as_slice());
    let stats = scan_capture("traffic.pcap", reader, None, &scanner, &mut findings)?;
    let ours = started.elapsed();
    let scanned = stats.bytes;
    anyhow::ensure!(
        scanned == payload_len,
        "scanned {scanned} bytes of {payload_len}: {stats:?}"
    );
    let eicar = findings.iter().any(|f| f.rule == "eicar_test_file");
    anyhow::ensure!(eicar, "the planted EICAR strings were not found");
    let yara = findings
        .iter()
        .filter(|f| matches!(f.kind, Kind::Malware))
        .count();
    let secrets = findings.len() - yara;
    let (payload_mbs, file_mbs) = (mb_per_s(payload_len, ours), mb_per_s(pcap_len, ours));
    let streams = stats.streams;
    eprintln!(
        "scan: scan_capture {payload_mbs:.1} MB/s of payload, {file_mbs:.1} MB/s of pcap \
         ({streams} streams, {yara} YARA and {secrets} secret findings, {count} rules)"
    );

    // Baseline: one pass of detectors and YARA over the concatenated payload.
    let (mut hits, mut session) = (Vec::new(), scanner.session());
    let started = Instant::now();
    let scanned = session.scan(&payload, &mut hits);
    let one_pass = mb_per_s(payload_len, started.elapsed());
    scanned.map_err(|e| anyhow::anyhow!("one pass over the payload: {e}"))?;
    let hits = hits.len();
    eprintln!("scan: one Session::scan {one_pass:.1} MB/s ({hits} hits)");
    let row = |stage: &str, ours: f64, baseline_name: String, baseline_per_s: f64| Row {
        stage: format!("scan: traffic, {stage} MB/s, {count} rules"),
        events_per_s: ours,
        baseline_name,
        baseline_per_s,
        peak_rss_mib: 0.0,
    };
    let name = "one Session::scan of all payload, MB/s";
    let mut rows = vec![row("payload", payload_mbs, name.into(), one_pass)];

    // Baselines on the pcap file: grep with the literals, yr with the rules.
    let pcap_os = pcap_path.as_os_str();
    let grep = [OsStr::new("-cFf"), patterns.as_os_str(), pcap_os];
    let yr = [OsStr::new("scan"), all_rules.as_os_str(), pcap_os];
    let grep_name = format!("grep -c -F -f, {} literals, MB/s", literals.len());
    let yr_name = format!("yr scan, {count} rules, MB/s");
    let runs: [(&str, &[&OsStr], &[i32], String); 2] = [
        ("grep", &grep, &[0, 1], grep_name),
        ("yr", &yr, &[0], yr_name),
    ];
    for (program, args, ok, name) in runs {
        if let Some((elapsed, out)) = baseline(program, args, ok)? {
            let (mbs, lines) = (mb_per_s(pcap_len, elapsed), out.lines().count());
            let first = out.lines().next().unwrap_or_default();
            eprintln!("scan: {program} {mbs:.1} MB/s ({lines} lines out, first {first:?})");
            rows.push(row("pcap", file_mbs, name, mbs));
        }
    }
    let rss = peak_rss_mib();
    rows.iter_mut().for_each(|r| r.peak_rss_mib = rss);
    Ok(rows)
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    rate(bytes, elapsed) / 1e6
}

/// `program args`, timed, with its standard output.
type Timed = Option<(Duration, String)>;

/// Runs `program args`, timed; `None` (and why, printed) when it is not on
/// `PATH` or exits with a status not in `ok`.
fn baseline(program: &str, args: &[&OsStr], ok: &[i32]) -> anyhow::Result<Timed> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()));
    if !found {
        eprintln!("scan: `{program}` is not on PATH: no {program} baseline");
        return Ok(None);
    }
    let started = Instant::now();
    let out = Command::new(program)
        .env("LC_ALL", "C")
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    let elapsed = started.elapsed();
    if !out.status.code().is_some_and(|c| ok.contains(&c)) {
        let (status, err) = (out.status, String::from_utf8_lossy(&out.stderr));
        eprintln!(
            "scan: {program} failed ({status}): {}; no {program} baseline",
            err.trim()
        );
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(Some((elapsed, stdout)))
}

/// The marker string unique to rule `i`.
fn marker(i: usize) -> String {
    format!("tw-family-{i:03}-beacon")
}

/// [`RULES`] rules as YARA source ([`KINDS`] in turn), and their literal
/// strings.
fn rules(rng: &mut Rng) -> (String, Vec<String>) {
    let mut text = String::from("// Generated by tapwire-bench (scan.rs).\n\n");
    let mut literals = Vec::new();
    for i in 0..RULES {
        let (kind, template, condition) = KINDS[i % KINDS.len()];
        let ind = |j: usize| INDICATORS[(i * 7 + j * 13) % INDICATORS.len()].to_owned();
        let n = format!("{i:03}");
        let re = REGEXES[i / KINDS.len() % REGEXES.len()].replace("{i}", &n);
        let (lo, hi) = ((1 + i % 4).to_string(), (5 + i % 4 + i % 8).to_string());
        let [h5, h4, h4b, h4c] = [5, 4, 4, 4].map(|len| rng.hex(len));
        let mut strings = template.replace('|', "\n    ");
        for (key, value) in [("{h5}", h5), ("{h4}", h4), ("{h4b}", h4b), ("{h4c}", h4c)] {
            strings = strings.replace(key, &value);
        }
        for (key, value) in [("{lo}", lo), ("{hi}", hi), ("{re}", re)] {
            strings = strings.replace(key, &value);
        }
        for (key, value) in [
            ("{a}", ind(0)),
            ("{b}", ind(1)),
            ("{c}", ind(2)),
            ("{m}", marker(i)),
        ] {
            if template.contains(key) {
                strings = strings.replace(key, &value);
                literals.push(value);
            }
        }
        let severity = ["low", "medium", "high", "critical"][i % 4];
        let _ = write!(
            text,
            "rule bench_{kind}_{n} : bench {{\n  meta:\n    description = \"generated rule {i} \
             ({kind})\"\n    severity = \"{severity}\"\n  strings:\n    {strings}\n  condition:\n    \
             {condition}\n}}\n\n"
        );
    }
    (text, literals)
}

/// Writes the capture to `path`: `planted::frames` then HTTP sessions up to
/// [`TARGET_BYTES`]; returns the sessions and every frame's payload in order.
fn capture(path: &Path, rng: &mut Rng) -> (u64, Vec<u8>) {
    let (mut frames, _) = planted::frames(T0_NS - 1_000_000_000);
    let size = |f: &[Frame]| f.iter().map(|f| 16 + f.data.len() as u64).sum::<u64>();
    let mut bytes = 24 + size(frames.as_slice());
    let mut k = 0;
    while bytes < TARGET_BYTES {
        let s = session(k, rng);
        bytes += size(s.as_slice());
        frames.extend(s);
        k += 1;
    }
    planted::write_pcap(path, &frames);
    let mut payload = Vec::with_capacity(bytes as usize);
    for f in &frames {
        if let Ok(p) = parse(LINKTYPE_ETHERNET, &f.data) {
            payload.extend_from_slice(p.payload);
        }
    }
    (k, payload)
}

/// Connection `k`: one to three requests and responses, in MSS segments.
fn session(k: u64, rng: &mut Rng) -> Vec<Frame> {
    let client = [10, 20, (k / 250 % 250) as u8, (k % 250 + 1) as u8];
    let client = SocketAddr::from((client, 20_000 + (k % 40_000) as u16));
    let port = if k.is_multiple_of(3) { 80 } else { 8080 };
    let server = SocketAddr::from(([10, 30, 0, (k % 40 + 1) as u8], port));
    let mut messages = Vec::new();
    for _ in 0..1 + rng.below(3) {
        messages.push(request(k, rng));
        messages.push(response(k, rng));
    }
    let empty: &[u8] = &[];
    let mut exchanges: Vec<(&[u8], &[u8])> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let side = |seg| [(seg, empty), (empty, seg)][i % 2];
        exchanges.extend(m.chunks(MSS).map(side));
    }
    tcp_session(T0_NS + k as i64 * 50_000_000, client, server, &exchanges)
}

fn request(k: u64, rng: &mut Rng) -> Vec<u8> {
    let (host, path, id, rid) = (rng.word(), rng.word(), rng.below(100_000), rng.token(32));
    let auth = match k % 1500 {
        700 => format!("Authorization: Bearer {}\r\n", rng.token(40)),
        _ => String::new(),
    };
    let head = format!("Host: {host}.shop.svc.cluster.local\r\n{auth}X-Request-Id: {rid}\r\n");
    if rng.below(4) == 0 {
        let len = 200 + rng.below(3_000) as usize;
        let body = json(rng, len);
        let n = body.len();
        let text = format!(
            "POST /api/v1/{path} HTTP/1.1\r\n{head}User-Agent: okhttp/4.12.0\r\n\
             Content-Type: application/json\r\nContent-Length: {n}\r\n\r\n{body}"
        );
        text.into_bytes()
    } else {
        let page = id % 50;
        let text = format!(
            "GET /api/v1/{path}/{id}?page={page} HTTP/1.1\r\n{head}\
             User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n\r\n"
        );
        text.into_bytes()
    }
}

fn response(k: u64, rng: &mut Rng) -> Vec<u8> {
    let len = 1_000 + rng.below(30_000) as usize;
    let (ctype, mut body) = match rng.below(20) {
        0..=6 => ("application/json", json(rng, len).into_bytes()),
        7..=11 => ("text/html; charset=utf-8", html(rng, len).into_bytes()),
        12..=14 => ("text/plain", logs(rng, len).into_bytes()),
        _ => (
            "application/octet-stream",
            (0..len).map(|_| rng.u64() as u8).collect::<Vec<u8>>(),
        ),
    };
    let mut plant = |text: String| {
        let tail = body.split_off(body.len() / 2);
        body.extend_from_slice(text.as_bytes());
        body.extend_from_slice(&tail);
    };
    if k % 700 == 350 {
        plant(planted::eicar());
    }
    if k % 97 == 13 {
        let i = k as usize % RULES;
        let indicator = INDICATORS[i % INDICATORS.len()];
        plant(format!("\n{indicator} {}\n", marker(i)));
    }
    let n = body.len();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {n}\r\nServer: envoy\r\n\r\n"
    );
    [head.into_bytes(), body].concat()
}

fn json(rng: &mut Rng, len: usize) -> String {
    let mut s = String::from("{\"items\":[");
    while s.len() < len {
        let [id, cents, stock] = [1 << 20, 50_000, 500].map(|n| rng.below(n));
        let (sku, name, tag) = (rng.token(8), rng.word(), rng.word());
        let (euros, cents) = (cents / 100, cents % 100);
        let _ = write!(
            s,
            "{{\"id\":{id},\"name\":\"{name}\",\"sku\":\"SKU-{sku}\",\"price\":{euros}.{cents:02},\
             \"tags\":[\"{tag}\"],\"stock\":{stock}}},"
        );
    }
    s.pop();
    s.push_str("],\"page\":1}");
    s
}

fn html(rng: &mut Rng, len: usize) -> String {
    let title = rng.word();
    let mut s = format!("<!DOCTYPE html><html><head><title>{title}</title></head><body>\n");
    while s.len() < len {
        let words: Vec<&str> = (0..8 + rng.below(24)).map(|_| rng.word()).collect();
        let (text, href, n) = (words.join(" "), rng.word(), rng.below(10_000));
        let _ = writeln!(
            s,
            "<p class=\"text\">{text} <a href=\"/{href}/{n}\">more</a></p>"
        );
    }
    s.push_str("</body></html>\n");
    s
}

fn logs(rng: &mut Rng, len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        let [day, h, m, sec, ms, id, ns] =
            [28, 24, 60, 60, 1000, 10_000, 900].map(|n| rng.below(n));
        let [svc, verb, what, path] = [(); 4].map(|()| rng.word());
        let status = [200, 200, 200, 201, 404, 500][rng.below(6) as usize];
        let _ = writeln!(
            s,
            "2024-05-{:02}T{h:02}:{m:02}:{sec:02}.{ms:03}Z level=info svc={svc} msg=\"{verb} {what}\" \
             path=/api/v1/{path}/{id} status={status} latency_ms={ns}",
            day + 1
        );
    }
    s
}
