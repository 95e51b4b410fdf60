//! Fixtures shared by the aggregator's ClickHouse tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use clickhouse::Client;
use tapwire_aggregator::schema;
use tapwire_aggregator::sink::client;
use tapwire_plumbing::bus::Message;
use tapwire_schemas::events::*;
use tapwire_schemas::{Ip, encode, samples, topics};

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A fresh database on `url`, migrated; the client has it selected.
pub async fn fresh(url: &str) -> (Client, String) {
    let db = format!(
        "tapwire_test_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    let admin = Client::default().with_url(url).with_validation(false);
    admin
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await
        .expect("drop");
    let (_, applied) = schema::migrate(&admin, &db, 30).await.expect("migrate");
    let all: Vec<u32> = schema::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "a new database gets every migration");
    (client(url, &db, "default", ""), db)
}

/// Now, epoch nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
}

/// An external peer named `name` ("" for none).
pub fn external(name: &str) -> PeerContext {
    let mut p = PeerContext::of_kind(PeerKind::External);
    p.dns_name = (!name.is_empty()).then(|| name.to_owned());
    p
}

/// Where an L4 verdict goes.
pub struct To<'a> {
    pub peer: PeerContext,
    pub ip: &'a str,
    pub port: u16,
}

/// A verdict on an L4 event `kind` from `src` to `to` at `ns`.
pub fn l4(kind: L4Kind, src: PeerContext, to: To<'_>, mode: Mode, ns: i64, seq: u64) -> Verdict {
    let mut e = samples::l4_flow(samples::header("node-a", "sensor-a", seq, ns), seq);
    e.kind = kind;
    e.src.ip = "10.1.0.7".parse::<Ip>().expect("ip");
    e.dst.ip = to.ip.parse::<Ip>().expect("ip");
    e.dst.port = to.port;
    let outcome = match mode {
        Mode::Enforce => Outcome::Blocked,
        Mode::Audit => Outcome::Audited,
        Mode::Other => Outcome::Allowed,
    };
    let mut v = samples::verdict(
        EnrichedEvent {
            body: EventBody::L4(e),
            src,
            dst: to.peer,
        },
        mode,
        outcome,
    );
    v.policy = (mode != Mode::Other).then(|| "shop/p".to_owned());
    v.rule = (mode != Mode::Other).then(|| "r".to_owned());
    v.signature_id = "FNT-001".to_owned();
    v.severity = 7;
    v
}

/// Verdicts as consumed messages of `tapwire.verdicts`.
pub fn messages(verdicts: &[Verdict], partition: i32, first_offset: i64) -> Vec<Message> {
    verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| Message {
            topic: topics::VERDICTS.to_owned(),
            partition,
            offset: first_offset + i as i64,
            key: None,
            payload: encode(v).expect("encode"),
            headers: Vec::new(),
        })
        .collect()
}

/// The fixture: known pairs and the connections each must count.
pub struct Fixture {
    pub verdicts: Vec<Verdict>,
    /// (mode, source pod, destination as the console shows it) ->
    /// (connections, last ns)
    pub expected: BTreeMap<(String, String, String), (u64, i64)>,
}

/// Connections over three minutes from `base_ns`: pod to pod in each mode,
/// to an external name, accepted from outside; with accepts and flows of
/// pod-to-pod connections that must not count twice.
pub fn fixture(base_ns: i64) -> Fixture {
    let web = || samples::pod_peer("web-1", "shop");
    let db = || To {
        peer: samples::pod_peer("db-0", "shop"),
        ip: "10.1.5.5",
        port: 5432,
    };
    let cart = || samples::pod_peer("cart-0", "shop");
    let tool = || samples::pod_peer("tool-0", "dev");
    let mut f = Fixture {
        verdicts: Vec::new(),
        expected: BTreeMap::new(),
    };
    let mut seq = 0;
    let mut add = |v: Verdict, counted: Option<(&str, &str, &str)>| {
        let ns = v.event.header().timestamp_ns;
        f.verdicts.push(v);
        if let Some((m, s, d)) = counted {
            let e = f
                .expected
                .entry((m.to_owned(), s.to_owned(), d.to_owned()))
                .or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(ns);
        }
    };
    let pg = "db-0 10.1.5.5:5432";
    for i in 0..60i64 {
        let ns = base_ns + i * 3_000_000_000 + 17;
        seq += 1;
        if i % 5 != 4 {
            let v = l4(L4Kind::NetworkConnect, web(), db(), Mode::Enforce, ns, seq);
            add(v, Some(("enforce", "web-1", pg)));
        } else {
            let to = To {
                peer: external("api.example.com"),
                ip: "93.184.216.34",
                port: 443,
            };
            let v = l4(L4Kind::NetworkConnect, web(), to, Mode::Other, ns, seq);
            add(
                v,
                Some(("other", "web-1", "api.example.com 93.184.216.34:443")),
            );
        }
        if i % 3 == 0 {
            seq += 1;
            let v = l4(
                L4Kind::NetworkConnect,
                cart(),
                db(),
                Mode::Audit,
                ns + 1,
                seq,
            );
            add(v, Some(("audit", "cart-0", pg)));
            // The accept of the same connection, seen on db-0's node: not a
            // second connection. Its flow at close: not one either.
            seq += 1;
            add(
                l4(
                    L4Kind::NetworkAccept,
                    cart(),
                    db(),
                    Mode::Audit,
                    ns + 2,
                    seq,
                ),
                None,
            );
            seq += 1;
            add(
                l4(L4Kind::NetworkFlow, cart(), db(), Mode::Audit, ns + 3, seq),
                None,
            );
        }
        if i % 10 == 0 {
            // An accept from outside the cluster counts: no connect is seen.
            seq += 1;
            let to = To {
                peer: web(),
                ip: "10.1.0.9",
                port: 8080,
            };
            let mut v = l4(
                L4Kind::NetworkAccept,
                external(""),
                to,
                Mode::Other,
                ns + 4,
                seq,
            );
            v.event.body.as_l4_mut().expect("l4").direction = Direction::Ingress;
            add(v, Some(("other", "", "web-1 10.1.0.9:8080")));
            seq += 1;
            let v = l4(
                L4Kind::NetworkConnect,
                tool(),
                db(),
                Mode::Audit,
                ns + 5,
                seq,
            );
            add(v, Some(("audit", "tool-0", pg)));
        }
    }
    f
}

/// `SELECT count() FROM table`.
pub async fn count(c: &Client, table: &str) -> u64 {
    c.query(&format!("SELECT count() FROM {table}"))
        .fetch_one()
        .await
        .expect("count")
}

/// A heartbeat of `sensor` with `connections` established connections and
/// the given TCP listeners, and one UDP listener (port 2152, no process).
pub fn snapshot(
    sensor: &str,
    ns: i64,
    connections: u16,
    listeners: &[(u16, &str)],
) -> InventorySnapshot {
    let ep = |ip: &str, port| Endpoint {
        ip: ip.parse::<Ip>().expect("ip"),
        port,
    };
    let socket = |local, remote, state: &str, pid: Option<u32>, binary: Option<&str>| Socket {
        local,
        remote,
        state: state.to_owned(),
        inode: 1,
        pid,
        binary: binary.map(str::to_owned),
        binary_path: binary.map(|b| format!("/usr/sbin/{b}")),
        duration_ns: None,
    };
    InventorySnapshot {
        header: samples::header(sensor, sensor, ns as u64, ns),
        tcp_connections: (0..connections)
            .map(|i| {
                socket(
                    ep("10.0.0.1", 443),
                    Some(ep("10.0.0.2", 40000 + i)),
                    "ESTABLISHED",
                    Some(100),
                    Some("/usr/sbin/nginx"),
                )
            })
            .collect(),
        tcp_listeners: listeners
            .iter()
            .map(|(port, bin)| socket(ep("0.0.0.0", *port), None, "LISTEN", Some(1), Some(bin)))
            .collect(),
        udp_listeners: vec![socket(ep("0.0.0.0", 2152), None, "", None, None)],
    }
}

/// Snapshots as consumed messages of `tapwire.inventory`.
pub fn inventory_messages(snaps: &[InventorySnapshot]) -> Vec<Message> {
    snaps
        .iter()
        .enumerate()
        .map(|(i, s)| Message {
            topic: topics::INVENTORY.to_owned(),
            partition: 0,
            offset: i as i64,
            key: None,
            payload: encode(s).expect("encode"),
            headers: Vec::new(),
        })
        .collect()
}
