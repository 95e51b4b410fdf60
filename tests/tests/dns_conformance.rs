//! Issue 20, DNS conformance: a real DNS server (dnsmasq) answers SSHFP,
//! RRSIG, URI, TXT, SRV and A questions over UDP and TCP, and a query with
//! an EDNS cookie, in a private network namespace; tcpdump records it; and
//! `tapwire investigate --kfl dns` finds exactly the DNS exchanges tshark
//! counts, each named by its question type.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tapwire_tests::{is_root, on_path, require, run_ok, tapwire};

const NS: &str = "tw-dns-conformance";

/// Runs `args` inside the namespace.
fn in_ns(args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", NS]).args(args);
    cmd
}

/// The namespace and its processes, removed when dropped (also on failure).
struct Bed {
    children: Vec<Child>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", NS]).status();
    }
}

#[test]
fn investigate_finds_every_dns_exchange_tshark_finds() {
    if require(
        "root (network namespaces)",
        is_root().then_some(()),
        "run as root, as CI does",
    )
    .is_none()
    {
        return;
    }
    for tool in ["dnsmasq", "dig", "tcpdump", "tshark", "ip"] {
        if require(tool, on_path(tool), "scripts/services.sh install").is_none() {
            return;
        }
    }
    let _ = Command::new("ip").args(["netns", "del", NS]).status();
    assert!(
        Command::new("ip")
            .args(["netns", "add", NS])
            .status()
            .expect("ip")
            .success()
    );
    let mut bed = Bed {
        children: Vec::new(),
    };
    assert!(
        in_ns(&["ip", "link", "set", "lo", "up"])
            .status()
            .expect("lo")
            .success()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("dns.pcap");

    // Records of types the resolver libraries rarely see, as raw data.
    let sshfp = "0401aabbccddeeff00112233445566778899aabbccdd";
    let rrsig = "002c0d0200000e1065000000640000001234047465737400aabbccdd";
    let uri = "000a0001687474703a2f2f6578616d706c652e636f6d2f";
    bed.children.push(
        in_ns(&[
            "dnsmasq",
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--port=53",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            &format!("--dns-rr=host.test,44,{sshfp}"),
            &format!("--dns-rr=host.test,46,{rrsig}"),
            &format!("--dns-rr=svc.test,256,{uri}"),
            "--txt-record=txt.test,hello world",
            "--srv-host=_sip._tcp.test,sip.test,5060,10,5",
            "--address=/a.test/10.9.8.7",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq"),
    );
    bed.children.push(
        in_ns(&["tcpdump", "-i", "lo", "-U", "-w"])
            .arg(&pcap)
            .arg("port 53")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump"),
    );
    std::thread::sleep(Duration::from_secs(2));
    let questions = [
        ("host.test", "SSHFP"),
        ("host.test", "RRSIG"),
        ("svc.test", "URI"),
        ("txt.test", "TXT"),
        ("_sip._tcp.test", "SRV"),
        ("a.test", "A"),
    ];
    for (name, qtype) in questions {
        for transport in ["+notcp", "+tcp"] {
            let out = in_ns(&[
                "dig",
                "@127.0.0.1",
                transport,
                "+tries=1",
                "+time=3",
                name,
                qtype,
            ])
            .output()
            .expect("dig");
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("status: NOERROR"),
                "{name} {qtype} {transport}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    in_ns(&[
        "dig",
        "@127.0.0.1",
        "+cookie",
        "+tries=1",
        "+time=3",
        "a.test",
        "A",
    ])
    .output()
    .expect("dig");
    std::thread::sleep(Duration::from_secs(1));
    for c in &mut bed.children {
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
    }
    std::thread::sleep(Duration::from_secs(1));

    // tshark's count of DNS questions (each with its answer) is the number
    // of exchanges investigate must list.
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "dns.flags.response == 0",
            "-T",
            "fields",
            "-e",
            "dns.qry.type",
        ])
        .stderr(Stdio::null())
        .output()
        .expect("tshark");
    let asked = String::from_utf8_lossy(&tshark.stdout).lines().count();
    assert_eq!(
        asked,
        2 * questions.len() + 1,
        "the capture holds every question"
    );
    let rows: Vec<serde_json::Value> = run_ok(
        tapwire("127.0.0.1:1")
            .arg("investigate")
            .arg(&pcap)
            .args(["--kfl", "dns", "--format", "json"]),
    )
    .lines()
    .map(|l| serde_json::from_str(l).expect("json"))
    .collect();
    assert_eq!(rows.len(), asked, "{rows:#?}");
    for (name, qtype) in questions {
        let answered = rows
            .iter()
            .filter(|r| {
                r["summary"]
                    .as_str()
                    .is_some_and(|s| s == format!("{qtype} {name} NOERROR"))
            })
            .count();
        // A a.test is asked a third time, with an EDNS cookie.
        let want = if qtype == "A" { 3 } else { 2 };
        assert_eq!(answered, want, "{qtype} {name} over UDP and TCP: {rows:#?}");
    }
}
