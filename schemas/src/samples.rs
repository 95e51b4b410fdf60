//! Synthetic events: the load generator (`tapwire topics generate`), the
//! benchmarks and the tests build their traffic here, so all of them exercise
//! the same shapes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::events::*;
use crate::{EventId, Ip};

/// The header of synthetic event `seq` from `sensor_id` on `node`; the id is
/// derived from all three, so regenerating gives the same ids.
pub fn header(node: &str, sensor_id: &str, seq: u64, timestamp_ns: i64) -> EventHeader {
    EventHeader {
        id: EventId::derive(&[node.as_bytes(), sensor_id.as_bytes(), &seq.to_le_bytes()]),
        timestamp_ns,
        node: node.to_owned(),
        sensor_id: sensor_id.to_owned(),
        node_ip: Some(Ip(IpAddr::V4(Ipv4Addr::new(192, 168, 10, 11)))),
    }
}

/// A closed TCP flow between two pod addresses in 10.1.0.0/16, varied by `seq`;
/// every 8th one is IPv6.
pub fn l4_flow(header: EventHeader, seq: u64) -> L4Event {
    let (src, dst) = if seq.is_multiple_of(8) {
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, (seq % 251) as u16)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 2, 80)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(10, 1, (seq % 7) as u8, (seq % 251) as u8)),
            IpAddr::V4(Ipv4Addr::new(10, 1, 200, (seq % 13) as u8)),
        )
    };
    L4Event {
        header,
        kind: L4Kind::NetworkFlow,
        pid: 1000 + (seq % 5000) as u32,
        binary: "curl".to_owned(),
        container_id: Some("3f4e5d6c7b8a".to_owned()),
        src: Endpoint {
            ip: Ip(src),
            port: 32768 + (seq % 28000) as u16,
        },
        dst: Endpoint {
            ip: Ip(dst),
            port: 8080,
        },
        protocol: Protocol::Tcp,
        direction: Direction::Egress,
        duration_ns: Some(1_500_000 + seq % 1000),
        bytes_sent: Some(512),
        bytes_received: Some(4096 + seq % 100),
        final_state: Some(FinalState::Established),
        ppid: Some(1),
        euid: Some(0),
        egid: Some(0),
        binary_path: Some("/usr/bin/curl".to_owned()),
        command_line: Some("curl -s http://10.1.200.1:8080/".to_owned()),
        blocked_by: None,
    }
}

/// A DNS resolution of `example.com`.
pub fn dns_resolution(header: EventHeader) -> DnsEvent {
    DnsEvent {
        header,
        kind: DnsKind::DnsResolution,
        pid: 4242,
        binary: "curl".to_owned(),
        container_id: None,
        name: "example.com".to_owned(),
        query_type: "A".to_owned(),
        answers: vec!["93.184.215.14".to_owned()],
        resolver: Some(Endpoint {
            ip: Ip(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))),
            port: 53,
        }),
        response_code: Some("NOERROR".to_owned()),
        client: Some(Endpoint {
            ip: Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7))),
            port: 40053,
        }),
        connection: Some(crate::EventId([7; 16])),
    }
}

/// A file rename by a shell.
pub fn file_rename(header: EventHeader) -> RuntimeEvent {
    RuntimeEvent {
        header,
        kind: RuntimeKind::FileRename,
        pid: 77,
        ppid: 1,
        uid: 0,
        euid: 0,
        egid: 0,
        binary: "/bin/sh".to_owned(),
        command_line: Some("sh -c mv /etc/a /etc/b".to_owned()),
        container_id: Some("3f4e5d6c7b8a".to_owned()),
        path: Some("/etc/b".to_owned()),
        old_path: Some("/etc/a".to_owned()),
        mode: None,
        owner_uid: None,
        owner_gid: None,
        exit_code: None,
        blocked_by: None,
    }
}

/// Pod `name` in `namespace` owning `ip`.
pub fn pod(header: EventHeader, name: &str, namespace: &str, ip: IpAddr) -> PodMetadata {
    PodMetadata {
        uid: format!("uid-{namespace}-{name}"),
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        ips: vec![Ip(ip)],
        host_network: false,
        containers: vec![Container {
            id: "3f4e5d6c7b8a".to_owned(),
            name: "app".to_owned(),
            image: "registry.example/app:1.2".to_owned(),
            image_digest: Some("sha256:0123abcd".to_owned()),
        }],
        labels: BTreeMap::from([("app".to_owned(), name.to_owned())]),
        workload: Some(Workload {
            kind: "Deployment".to_owned(),
            name: name.to_owned(),
        }),
        start_ns: Some(header.timestamp_ns),
        end_ns: None,
        security: Some(PodSecurity {
            run_as_non_root: Some(true),
            containers: vec![ContainerSecurity {
                name: "app".to_owned(),
                image: "registry.example/app:1.2".to_owned(),
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: true,
                cpu_limit: Some("500m".to_owned()),
                memory_limit: Some("256Mi".to_owned()),
                ..ContainerSecurity::default()
            }],
            ..PodSecurity::default()
        }),
        header,
    }
}

/// Node `name` with the address `ip` (uid `NAME-uid`).
pub fn node(name: &str, ip: IpAddr) -> NodeMetadata {
    NodeMetadata {
        header: header(name, "watch", 0, 0),
        uid: format!("{name}-uid"),
        name: name.to_owned(),
        addresses: vec![Ip(ip)],
        labels: BTreeMap::new(),
        end_ns: None,
    }
}

/// The cluster DNS Service `kube-system/kube-dns` at `10.96.0.10:53` (uid
/// `kube-dns-uid`), existing since time 0.
pub fn kube_dns() -> ServiceMetadata {
    ServiceMetadata {
        header: header("", "watch", 0, 0),
        uid: "kube-dns-uid".to_owned(),
        name: "kube-dns".to_owned(),
        namespace: "kube-system".to_owned(),
        cluster_ips: vec![Ip(IpAddr::from([10, 96, 0, 10]))],
        ports: vec![53],
        selector: BTreeMap::new(),
        start_ns: Some(0),
        end_ns: None,
    }
}

/// A pod context for `pod` in `namespace`.
pub fn pod_peer(pod: &str, namespace: &str) -> PeerContext {
    PeerContext {
        kind: PeerKind::Pod,
        pod_uid: Some(format!("uid-{namespace}-{pod}")),
        pod: Some(pod.to_owned()),
        namespace: Some(namespace.to_owned()),
        container: Some("app".to_owned()),
        node: Some("node-a".to_owned()),
        labels: BTreeMap::from([("app".to_owned(), pod.to_owned())]),
        workload: Some(Workload {
            kind: "Deployment".to_owned(),
            name: pod.to_owned(),
        }),
        image: Some("registry.example/app:1.2".to_owned()),
        image_digest: Some("sha256:0123abcd".to_owned()),
        dns_name: None,
    }
}

/// The verdict for `event` under `mode` with `outcome`, named after the
/// policy `shop/baseline` when a policy covers it.
pub fn verdict(event: EnrichedEvent, mode: Mode, outcome: Outcome) -> Verdict {
    let kind = crate::signature::EventKind::of(&event);
    let sig = crate::signature::signature(kind, outcome);
    let covered = mode != Mode::Other;
    Verdict {
        event,
        mode,
        policy: covered.then(|| "shop/baseline".to_owned()),
        rule: covered.then(|| "rule-1".to_owned()),
        signature_id: sig.id.to_owned(),
        severity: sig.severity,
        outcome,
        sides: Vec::new(),
    }
}

/// A flow from pod `web-1` to an external `example.com`, no policy.
pub fn flow_verdict(header: EventHeader, seq: u64) -> Verdict {
    let mut dst = PeerContext::of_kind(PeerKind::External);
    dst.dns_name = Some("example.com".to_owned());
    verdict(
        EnrichedEvent {
            body: EventBody::L4(l4_flow(header, seq)),
            src: pod_peer("web-1", "shop"),
            dst,
        },
        Mode::Other,
        Outcome::Allowed,
    )
}

/// A request of `user` to `route`, answered `status`.
pub fn api_request(header: EventHeader, user: &str, route: &str, status: i32) -> ApiRequest {
    ApiRequest {
        header,
        user: user.to_owned(),
        role: if user.is_empty() {
            String::new()
        } else {
            "viewer".to_owned()
        },
        source_ip: Some(Ip("127.0.0.1".parse().expect("literal"))),
        method: "GET".to_owned(),
        route: route.to_owned(),
        query: "window=15m".to_owned(),
        status,
        duration_ns: 1_500_000,
    }
}

/// A heartbeat of an agent started at `started_ns`, the `sequence`th, sent
/// at `header`'s time, with `ringbuf` lost events since the previous one.
pub fn heartbeat(
    header: EventHeader,
    started_ns: i64,
    sequence: u64,
    ringbuf: u64,
) -> AgentHeartbeat {
    AgentHeartbeat {
        header,
        agent_version: "0.1.0".to_owned(),
        started_ns,
        sequence,
        interval_ms: 10_000,
        sources: vec!["inventory".to_owned(), "ebpf".to_owned()],
        losses: vec![
            SourceLoss {
                source: "ringbuf".to_owned(),
                lost: ringbuf,
            },
            SourceLoss {
                source: "packet_queue".to_owned(),
                lost: 0,
            },
        ],
        stopping: false,
        enforcing: false,
    }
}
