//! The truth on a node: pods as network namespaces and kubelet-named cgroup
//! v2 directories ([`tapwire_tests::node`]), real servers and short-lived
//! clients in them, the agent's eBPF source (and packet capture) watching
//! live. Every event must name the pod, process and container that made it.
//! Runs as root (CI does); skips with the reason otherwise.

use std::collections::BTreeSet;
use std::time::Duration;

use tapwire_schemas::{AnyEvent, DnsEvent, DnsKind, L4Event, L4Kind, Protocol, topics};
use tapwire_tests::node::{Node, Pod};
use tapwire_tests::{Lines, ebpf_agent, wait_until};

/// Stops the agent (it must stop cleanly: it ran through whatever the test
/// did) and reads everything it sent to `tapwire.l4.raw`.
fn stop_and_read(agent: Lines, broker: &tapwire_tests::Broker) -> Vec<AnyEvent> {
    let (ok, _) = agent.terminate(Duration::from_secs(15));
    assert!(ok, "the agent stopped cleanly on SIGTERM");
    tapwire_tests::read_topic(
        &broker.address(),
        topics::L4_RAW,
        Duration::from_secs(3),
        |_| false,
    )
}

fn l4_events(events: &[AnyEvent]) -> Vec<&L4Event> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::L4Event(l) => Some(l),
            _ => None,
        })
        .collect()
}

fn dns_events(events: &[AnyEvent]) -> Vec<&DnsEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            AnyEvent::DnsEvent(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// Three pods listen on 8080, all started before the agent; a fourth pod's
/// short-lived `curl`s reach each twice. Every accept names the listening
/// pod's server (pid, binary, container), every connect the `curl` that
/// made it, though each `curl` exited long before anyone read /proc.
#[test]
fn three_pods_on_one_port_and_short_lived_clients_are_each_attributed() {
    let Some(mut node) = Node::create("node-box") else {
        return;
    };
    let servers: Vec<Pod> = ["web-a", "web-b", "web-c"]
        .iter()
        .map(|name| node.add_pod("shop", name))
        .collect();
    let client = node.add_pod("shop", "client");
    // Warm-up requests of `serve` are made before the agent: not counted.
    let pids: Vec<u32> = servers.iter().map(|s| node.serve_http(s, 8080)).collect();

    let Some((broker, agent, _dir)) = ebpf_agent("", &[]) else {
        return;
    };
    for round in 0..2 {
        for s in &servers {
            let url = format!("http://{}:8080/?round={round}", s.ip);
            let (ok, _, err) = node.run(&client, &["curl", "-s", "-o", "/dev/null", &url]);
            assert!(ok, "curl {url}: {err}");
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let all = stop_and_read(agent, &broker);
    let events = l4_events(&all);
    for (server, pid) in servers.iter().zip(&pids) {
        let accepts: Vec<&&L4Event> = events
            .iter()
            .filter(|e| {
                e.kind == L4Kind::NetworkAccept
                    && e.dst.ip.0 == server.ip
                    && e.src.ip.0 == client.ip
            })
            .collect();
        assert_eq!(accepts.len(), 2, "accepts at {}: {accepts:#?}", server.name);
        for a in accepts {
            assert_eq!(a.pid, *pid, "accept at {} names its server", server.name);
            assert_eq!(a.binary, "python3");
            assert_eq!(
                a.container_id.as_deref(),
                Some(server.container_id.as_str()),
                "accept at {} names its container",
                server.name
            );
            assert!(
                a.command_line
                    .as_deref()
                    .is_some_and(|c| c.contains("http.server")),
                "{a:?}"
            );
        }
        let connects: Vec<&&L4Event> = events
            .iter()
            .filter(|e| e.kind == L4Kind::NetworkConnect && e.dst.ip.0 == server.ip)
            .collect();
        assert_eq!(
            connects.len(),
            2,
            "connects to {}: {connects:#?}",
            server.name
        );
        let client_pids: BTreeSet<u32> = connects.iter().map(|c| c.pid).collect();
        assert_eq!(client_pids.len(), 2, "two curl processes");
        for c in connects {
            assert_eq!(c.src.ip.0, client.ip);
            assert_eq!(c.binary, "curl");
            assert_eq!(
                c.container_id.as_deref(),
                Some(client.container_id.as_str()),
                "the exited curl's connect names its container: {c:?}"
            );
            assert_eq!((c.euid, c.egid), (Some(0), Some(0)));
            assert!(c.ppid.is_some_and(|p| p > 1), "{c:?}");
            assert!(
                c.command_line
                    .as_deref()
                    .is_some_and(|l| l.starts_with("curl ") && l.contains("round=")),
                "{c:?}"
            );
            assert!(
                c.binary_path
                    .as_deref()
                    .is_some_and(|p| p.ends_with("/curl")),
                "{c:?}"
            );
        }
    }
}

/// Pods come and go while the agent runs: a pod listening on 8080 is
/// deleted and a new one gets its address and listens on 8080 in a new
/// namespace; accepts before name the old pod's server, after the new one's.
#[test]
fn a_new_pod_on_a_reused_address_and_port_is_the_new_owner() {
    let Some(mut node) = Node::create("node-box") else {
        return;
    };
    let client = node.add_pod("shop", "caller");
    let old = node.add_pod("shop", "api-old");
    let old_pid = node.serve_http(&old, 8080);
    let Some((broker, agent, _dir)) = ebpf_agent("", &[]) else {
        return;
    };
    let url = format!("http://{}:8080/", old.ip);
    let curl = |node: &Node| {
        let (ok, _, err) = node.run(&client, &["curl", "-s", "-o", "/dev/null", &url]);
        assert!(ok, "curl {url}: {err}");
    };
    curl(&node);
    node.remove_pod(&old);
    let new = node.add_pod_at("shop", "api-new", old.ip);
    let new_pid = node.serve_http(&new, 8080);
    curl(&node);
    let all = stop_and_read(agent, &broker);
    let accepts: Vec<(u32, Option<String>)> = l4_events(&all)
        .into_iter()
        .filter(|e| {
            e.kind == L4Kind::NetworkAccept && e.dst.ip.0 == old.ip && e.src.ip.0 == client.ip
        })
        .map(|e| (e.pid, e.container_id.clone()))
        .collect();
    // `serve` checks the new server with a request of its own, from the new
    // pod itself (not the caller): not among these.
    assert_eq!(
        accepts,
        [
            (old_pid, Some(old.container_id.clone())),
            (new_pid, Some(new.container_id.clone()))
        ]
    );
}

/// A UDP query from a pod, eBPF alone: the connect carries the pod's
/// address and the port the kernel bound, not 0.0.0.0:0, and the pod's
/// container; the query itself is a `dns_query` of the pod's `dig`.
#[test]
fn a_udp_connect_from_a_pod_carries_its_address_and_port() {
    let Some(mut node) = Node::create("node-box") else {
        return;
    };
    let dns = node.add_pod("kube-system", "dns");
    let client = node.add_pod("shop", "asker");
    dns_server(&node, &dns, &[("shop.test", "10.9.9.9")]);
    let Some((broker, agent, _dir)) = ebpf_agent("", &[]) else {
        return;
    };
    let server = format!("@{}", dns.ip);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (ok, out, _) = node.run(
                &client,
                &["dig", "+short", "+tries=1", &server, "api.shop.test"],
            );
            ok && out.trim() == "10.9.9.9"
        }),
        "dnsmasq answers in the dns pod"
    );
    let events = stop_and_read(agent, &broker);
    // Without packet capture, the query itself is seen on its way out.
    let queries: Vec<&DnsEvent> = dns_events(&events)
        .into_iter()
        .filter(|d| d.kind == DnsKind::DnsQuery && d.name == "api.shop.test")
        .collect();
    assert!(!queries.is_empty(), "dig's query from eBPF: {events:#?}");
    for q in &queries {
        assert_eq!(q.binary, "dig");
        assert_eq!(
            q.container_id.as_deref(),
            Some(client.container_id.as_str())
        );
        assert_eq!(q.client.map(|c| c.ip.0), Some(client.ip.into()));
        assert!(q.client.is_some_and(|c| c.port != 0), "{q:?}");
        assert_eq!(
            q.resolver.map(|r| (r.ip.0, r.port)),
            Some((dns.ip.into(), 53))
        );
        assert_eq!(q.query_type, "A");
    }
    let all = l4_events(&events);
    let udp: Vec<&&L4Event> = all
        .iter()
        // Other tests' pods may query their own servers meanwhile.
        .filter(|e| {
            e.protocol == Protocol::Udp
                && e.kind == L4Kind::NetworkConnect
                && e.dst.port == 53
                && e.dst.ip.0 == dns.ip
        })
        .collect();
    assert!(!udp.is_empty(), "dig's UDP connect was seen: {all:#?}");
    assert!(
        udp.iter()
            .all(|e| e.binary_path.as_deref() == Some("/usr/bin/dig")),
        "{udp:#?}"
    );
    for e in &udp {
        assert_eq!(e.src.ip.0, client.ip, "{e:?}");
        assert_ne!(e.src.port, 0, "{e:?}");
        assert_eq!(e.binary, "dig");
        assert_eq!(
            e.container_id.as_deref(),
            Some(client.container_id.as_str())
        );
    }
}

/// dnsmasq in `pod`, answering each name (and its subdomains) with its
/// address, and nothing else.
fn dns_server(node: &Node, pod: &Pod, names: &[(&str, &str)]) {
    let listen = pod.ip.to_string();
    let addresses: Vec<String> = names
        .iter()
        .map(|(name, answer)| format!("--address=/{name}/{answer}"))
        .collect();
    let mut argv = vec![
        "dnsmasq",
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--port=53",
        "--listen-address",
        &listen,
        "--bind-interfaces",
    ];
    argv.extend(addresses.iter().map(String::as_str));
    node.spawn(pod, &argv);
}

/// A lookup by name from a pod (`getent ahosts`, then `curl` by name) is a
/// `dns_lookup` of that pod's process with the answers; `curl`'s connect to
/// the answered address is a `dns_resolution` naming the host, the address
/// and the connect event.
#[test]
fn lookups_and_the_connects_they_lead_to_name_the_pod() {
    let Some(mut node) = Node::create("node-box") else {
        return;
    };
    let dns = node.add_pod("kube-system", "dns");
    let web = node.add_pod("shop", "web");
    let client = node.add_pod("shop", "cart");
    dns_server(&node, &dns, &[("web.shop.test", &web.ip.to_string())]);
    node.set_resolver(&client, dns.ip);
    node.serve_http(&web, 8080);
    let Some((broker, agent, _dir)) = ebpf_agent("", &[]) else {
        return;
    };
    let (ok, out, err) = node.run(&client, &["getent", "ahosts", "web.shop.test"]);
    assert!(
        ok && out.contains(&web.ip.to_string()),
        "getent: {out} {err}"
    );
    let (ok, _, err) = node.run(
        &client,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "http://web.shop.test:8080/",
        ],
    );
    assert!(ok, "curl by name: {err}");
    let events = stop_and_read(agent, &broker);
    let dns_events: Vec<&DnsEvent> = dns_events(&events)
        .into_iter()
        .filter(|d| d.name == "web.shop.test")
        .collect();
    let lookups: Vec<&&DnsEvent> = dns_events
        .iter()
        .filter(|d| d.kind == DnsKind::DnsLookup)
        .collect();
    let binaries: BTreeSet<&str> = lookups.iter().map(|d| d.binary.as_str()).collect();
    assert!(
        binaries.contains("getent") && binaries.contains("curl"),
        "lookups by getent and curl: {dns_events:#?}"
    );
    for l in &lookups {
        assert_eq!(
            l.container_id.as_deref(),
            Some(client.container_id.as_str()),
            "{l:?}"
        );
        assert!(l.answers.contains(&web.ip.to_string()), "{l:?}");
        assert_eq!(l.response_code.as_deref(), Some("NOERROR"));
    }
    let connect = events
        .iter()
        .find_map(|e| match e {
            AnyEvent::L4Event(c)
                if c.kind == L4Kind::NetworkConnect
                    && c.dst.ip.0 == web.ip
                    && c.binary == "curl" =>
            {
                Some(c)
            }
            _ => None,
        })
        .expect("curl's connect");
    let resolutions: Vec<&&DnsEvent> = dns_events
        .iter()
        .filter(|d| d.kind == DnsKind::DnsResolution)
        .collect();
    assert_eq!(resolutions.len(), 1, "{dns_events:#?}");
    let r = resolutions[0];
    assert_eq!(r.answers, [web.ip.to_string()]);
    assert_eq!(r.connection, Some(connect.header.id));
    assert_eq!(r.client, Some(connect.src));
    assert_eq!(
        r.container_id.as_deref(),
        Some(client.container_id.as_str())
    );
}

/// `tapwire run` on `node` with the live `sources` (packets captured on
/// the veths of `capture_on`), the node's listing and `extra` arguments;
/// runs `traffic` once the sources are up and returns the report.
fn run_on_node(
    node: &Node,
    sources: &[&str],
    capture_on: &[&Pod],
    extra: &[&std::ffi::OsStr],
    traffic: impl Fn(),
) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let listing = node.write_listing(dir.path());
    let config = dir.path().join("tapwire.toml");
    let veths: Vec<String> = capture_on
        .iter()
        .map(|p| format!("\"{}\"", p.host_veth))
        .collect();
    std::fs::write(
        &config,
        format!(
            // These tests count what happened; what enforcement refuses is
            // tested in enforce.rs.
            "[capture]\nnode_name = \"{}\"\n[capture.packets]\ninterfaces = [{}]\n[capture.ebpf]\nenforce = false\n",
            node.name,
            veths.join(", ")
        ),
    )
    .expect("config");
    let mut cmd = std::process::Command::new(tapwire_tests::tapwire_binary());
    cmd.arg("-c").arg(&config).arg("run");
    for s in sources {
        cmd.args(["--source", s]);
    }
    cmd.arg("--cluster").arg(&listing).args(extra);
    let run = Lines::spawn(&mut cmd);
    let ready = |stderr: &str| {
        (!sources.contains(&"ebpf") || stderr.contains("ebpf attached"))
            && (!sources.contains(&"packets") || stderr.contains("packets capturing"))
    };
    assert!(
        wait_until(Duration::from_secs(30), || ready(&run.stderr())),
        "run {sources:?} started:\n{}",
        run.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    traffic();
    std::thread::sleep(Duration::from_secs(2));
    run.terminate(Duration::from_secs(30)).1
}

/// `tapwire run` on `node` with the live `sources`, capturing packets on
/// every pod's veth; runs `traffic` once the sources are up and returns the
/// report's edges of the pods named `count-*` as (source, destination,
/// audit, enforce, other).
fn run_and_count(
    node: &Node,
    sources: &[&str],
    traffic: impl Fn(),
) -> Vec<(String, String, u64, u64, u64)> {
    let pods: Vec<&Pod> = node.pods().iter().collect();
    let report = run_on_node(node, sources, &pods, &[], traffic);
    edges(&report, "/count-")
}

/// The edges of a `tapwire run` report whose source or destination name
/// contains `marker`, as (source, destination, audit, enforce, other).
fn edges(report: &[String], marker: &str) -> Vec<(String, String, u64, u64, u64)> {
    let at = report
        .iter()
        .position(|l| l.starts_with("Edges"))
        .unwrap_or_else(|| panic!("no edges in the report: {report:#?}"));
    let mut edges: Vec<(String, String, u64, u64, u64)> = report[at + 2..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse().ok());
            (f.len() == 5 && (f[0].contains(marker) || f[1].contains(marker)))
                .then(|| Some((f[0].to_owned(), f[1].to_owned(), n(2)?, n(3)?, n(4)?)))?
        })
        .collect();
    edges.sort();
    edges
}

/// The same traffic (three `curl`s and a `dig` from one pod) counts the same
/// with eBPF alone, packets alone and both: one connection is one
/// connection, whichever sources see it.
#[test]
fn the_same_traffic_counts_the_same_whichever_sources_see_it() {
    let Some(mut node) = Node::create("node-count") else {
        return;
    };
    let dns = node.add_pod("kube-system", "count-dns");
    let web = node.add_pod("shop", "count-web");
    let client = node.add_pod("shop", "count-client");
    dns_server(&node, &dns, &[("shop.test", "10.9.9.9")]);
    node.serve_http(&web, 8080);
    let url = format!("http://{}:8080/", web.ip);
    let server = format!("@{}", dns.ip);
    let traffic = || {
        for _ in 0..3 {
            let (ok, _, err) = node.run(&client, &["curl", "-s", "-o", "/dev/null", &url]);
            assert!(ok, "curl: {err}");
        }
        let (ok, out, err) = node.run(
            &client,
            &["dig", "+short", "+tries=1", &server, "a.shop.test"],
        );
        assert!(ok && out.trim() == "10.9.9.9", "dig: {out} {err}");
    };
    let expected = vec![
        (
            "shop/count-client".to_owned(),
            "kube-system/count-dns".to_owned(),
            0,
            0,
            1,
        ),
        (
            "shop/count-client".to_owned(),
            "shop/count-web".to_owned(),
            0,
            0,
            3,
        ),
    ];
    for sources in [&["ebpf"][..], &["packets"], &["ebpf", "packets"]] {
        let edges = run_and_count(&node, sources, traffic);
        assert_eq!(edges, expected, "edges with {sources:?}");
    }
}

/// Policies of the `probe` namespace: probe-web admits only
/// probe-frontend (enforce-mode ingress), probe-client may talk only to
/// probe-web (audit-mode egress).
const PROBE_POLICIES: &str = "\
apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: probe}
spec:
  mode: enforce
  selector: {matchLabels: {app: probe-web}}
  ingress:
    - name: from-frontend
      from: [{pod: {namespace: probe, matchLabels: {app: probe-frontend}}}]
      ports: [8080]
---
apiVersion: tapwire.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: probe}
spec:
  mode: audit
  selector: {matchLabels: {app: probe-client}}
  egress:
    - name: to-web
      to: [{pod: {namespace: probe, matchLabels: {app: probe-web}}}]
";

/// Live traffic under policies of both ends: each connection lands in the
/// tab of the most severe of the source's egress and the destination's
/// ingress decision, and a probe from the node (seen by eBPF as a connect
/// on the host and an accept in the pod) counts once.
#[test]
fn live_connections_land_in_the_tab_both_ends_decide_and_host_probes_count_once() {
    let Some(mut node) = Node::create("node-probe") else {
        return;
    };
    let web = node.add_pod("probe", "probe-web");
    let other = node.add_pod("probe", "probe-other");
    let frontend = node.add_pod("probe", "probe-frontend");
    let client = node.add_pod("probe", "probe-client");
    node.serve_http(&web, 8080);
    node.serve_http(&other, 8080);
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies.yaml");
    std::fs::write(&policies, PROBE_POLICIES).expect("policies");
    let curl = |from: Option<&Pod>, to: &Pod, times: usize| {
        let url = format!("http://{}:8080/", to.ip);
        for _ in 0..times {
            let argv = ["curl", "-s", "-o", "/dev/null", url.as_str()];
            let ok = match from {
                Some(pod) => node.run(pod, &argv).0,
                // The node itself, as a kubelet probe.
                None => std::process::Command::new("curl")
                    .args(&argv[1..])
                    .status()
                    .is_ok_and(|s| s.success()),
            };
            assert!(ok, "curl {url}");
        }
    };
    let report = run_on_node(
        &node,
        &["ebpf"],
        &[],
        &["--policies".as_ref(), policies.as_os_str()],
        || {
            curl(Some(&frontend), &web, 2);
            curl(Some(&client), &web, 1);
            curl(Some(&client), &other, 1);
            curl(Some(&frontend), &other, 1);
            curl(None, &web, 2);
        },
    );
    let got = edges(&report, "probe/");
    let edge = |src: &str, dst: &str, audit, enforce, other| {
        (src.to_owned(), dst.to_owned(), audit, enforce, other)
    };
    assert_eq!(
        got,
        vec![
            // Not from probe-frontend: the destination's enforce-mode ingress
            // violation decides, over the node's lack of policy.
            edge("node-probe", "probe/probe-web", 0, 2, 0),
            // Audit-mode egress violation; probe-other has no ingress policy.
            edge("probe/probe-client", "probe/probe-other", 1, 0, 0),
            // Egress allowed (audit), ingress denied (enforce): enforce wins.
            edge("probe/probe-client", "probe/probe-web", 0, 1, 0),
            edge("probe/probe-frontend", "probe/probe-other", 0, 0, 1),
            // Allowed by the enforce-mode ingress policy: the Enforce tab.
            edge("probe/probe-frontend", "probe/probe-web", 0, 2, 0),
        ],
        "{report:#?}"
    );
}

/// `tapwire run` on the node with the pods' listing: a `dig` from pod A
/// (packets on pod A's veth, as a node agent captures) is a DNS query of pod
/// A; a `curl` by name from pod A (eBPF) is a lookup, a resolution and a
/// connection of pod A, whose CEF lines carry the keys of the seed's table
/// (dpid, spid, duid, flexString1, cs4, dproc, flexString2) with the right
/// values.
#[test]
fn cef_names_the_pod_and_process_of_dns_queries_and_connections() {
    let Some(mut node) = Node::create("node-box") else {
        return;
    };
    let dns = node.add_pod("kube-system", "dns");
    let web = node.add_pod("shop", "web");
    let client = node.add_pod("shop", "frontend");
    dns_server(
        &node,
        &dns,
        &[
            ("cart.shop.test", "10.9.9.9"),
            ("web.shop.test", &web.ip.to_string()),
        ],
    );
    node.set_resolver(&client, dns.ip);
    let web_pid = node.serve_http(&web, 8080);
    let dir = tempfile::tempdir().expect("tempdir");
    let cef = dir.path().join("cef.log");
    let server = format!("@{}", dns.ip);
    let url = "http://web.shop.test:8080/cart";
    let report = run_on_node(
        &node,
        &["ebpf", "packets"],
        &[&client],
        &["--cef-out".as_ref(), cef.as_os_str()],
        || {
            let (ok, out, err) = node.run(
                &client,
                &["dig", "+short", "+tries=1", &server, "cart.shop.test"],
            );
            assert!(ok && out.trim() == "10.9.9.9", "dig: {out} {err}");
            let (ok, _, err) = node.run(&client, &["curl", "-s", "-o", "/dev/null", url]);
            assert!(ok, "curl: {err}");
        },
    );

    let lines = tapwire_tests::cef::read_file(&cef);
    let query = lines
        .iter()
        .find(|m| m.get("dhost") == Some("cart.shop.test") && m.get("act").is_some())
        .unwrap_or_else(|| panic!("no DNS line for cart.shop.test in {lines:#?}\n{report:?}"));
    assert_eq!(query.get("cs5"), Some(client.name.as_str()), "{query:?}");
    // Packets gave the answer, eBPF the process that asked.
    assert_eq!(query.get("dproc"), Some("dig"), "{query:?}");
    assert_eq!(query.get("flexString2"), Some(client.container_id.as_str()));
    assert!(query.get("dpid").is_some(), "{query:?}");
    assert_eq!(query.get("cs3"), Some("shop"));
    assert_eq!(query.get("src"), Some(client.ip.to_string().as_str()));
    assert!(
        query.get("spt").is_some_and(|p| p != "0" && p != "53"),
        "{query:?}"
    );
    assert_eq!(query.get("dst"), Some(dns.ip.to_string().as_str()));
    assert_eq!(query.get("dpt"), Some("53"));

    let connect = lines
        .iter()
        .find(|m| {
            m.get("act") == Some("egress")
                && m.get("dst") == Some(web.ip.to_string().as_str())
                && m.get("dpt") == Some("8080")
                && m.get("dpid").is_some()
        })
        .unwrap_or_else(|| panic!("no connect line to the web pod in {lines:#?}"));
    assert_eq!(
        connect.get("cs5"),
        Some(client.name.as_str()),
        "{connect:?}"
    );
    assert_eq!(connect.get("dproc"), Some("curl"));
    assert_eq!(connect.get("duid"), Some("0"));
    assert_eq!(connect.get("flexString1"), Some("0"));
    assert_eq!(connect.get("flexString1Label"), Some("EGID"));
    assert!(
        connect
            .get("spid")
            .is_some_and(|p| p.parse::<u32>().is_ok_and(|p| p > 1))
    );
    assert_eq!(
        connect.get("cs4"),
        Some(format!("curl -s -o /dev/null {url}").as_str())
    );
    assert_eq!(connect.get("cs4Label"), Some("Command"));
    assert_eq!(
        connect.get("flexString2"),
        Some(client.container_id.as_str())
    );
    for (signature, kind) in [("NT-011", "lookup"), ("NT-012", "resolution")] {
        let line = lines
            .iter()
            .find(|m| m.signature_id == signature && m.get("dhost") == Some("web.shop.test"))
            .unwrap_or_else(|| panic!("no {kind} line for web.shop.test in {lines:#?}"));
        assert_eq!(line.get("cs5"), Some(client.name.as_str()), "{line:?}");
        assert_eq!(line.get("dproc"), Some("curl"), "{line:?}");
        assert!(line.get("dpid").is_some(), "{line:?}");
        assert_eq!(line.get("flexString2"), Some(client.container_id.as_str()));
    }
    let accept = lines
        .iter()
        .find(|m| {
            m.get("act") == Some("ingress")
                && m.get("dst") == Some(web.ip.to_string().as_str())
                && m.get("dpid").is_some()
        })
        .unwrap_or_else(|| panic!("no accept line at the web pod in {lines:#?}"));
    assert_eq!(accept.get("dpid"), Some(web_pid.to_string().as_str()));
    assert_eq!(accept.get("cs5"), Some(web.name.as_str()));
    assert_eq!(accept.get("dproc"), Some("python3"));
}
