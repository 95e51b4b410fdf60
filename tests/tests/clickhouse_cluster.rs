//! Issue 19: the schema on a ClickHouse cluster. Two `clickhouse-server`s
//! (one shard each, both on loopback) over Debian's ZooKeeper, all started
//! by the test in a temporary directory: the migrations make replicated
//! local tables under `Distributed` tables on both; the aggregate stage
//! writes two Kafka partitions through them, a batch whose insert failed on
//! one shard is replayed, then everything is replayed by a restarted stage,
//! and each shard holds exactly its partition's rows once while the
//! `Distributed` tables count every event once; the readers' queries run
//! over them.
//!
//! Needs `clickhouse-server` (`scripts/services.sh install`), and `java`
//! with `/usr/share/java/zookeeper.jar` (`apt-get install zookeeper`);
//! without them the test prints why it skips (under `CI=true` it fails).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tapwire_aggregator::query;
use tapwire_aggregator::schema::{self, SchemaError};
use tapwire_aggregator::sink::{AggregateStage, TABLES, client};
use tapwire_plumbing::bus::Message;
use tapwire_plumbing::consumer::BatchHandler;
use tapwire_schemas::events::L4Kind;
use tapwire_schemas::{encode, samples, topics};
use tapwire_tests::{free_port, require, wait_until};

/// The cluster's name in both servers' `remote_servers`.
const CLUSTER: &str = "tapwire_2x1";
/// Debian's ZooKeeper (package `zookeeper`; its dependencies are on the
/// jar's manifest class path).
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// Server logs for ZooKeeper (slf4j binding; without it ZooKeeper is silent).
const SLF4J_SIMPLE: &str = "/usr/share/java/slf4j-simple.jar";

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|p| p.join(tool))
        .find(|p| p.is_file())
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Process {
    let out = File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Process(
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
    )
}

/// ZooKeeper and two ClickHouse servers, one shard each.
struct Cluster {
    // Dropped in order: the servers, then ZooKeeper, then the directory.
    _servers: Vec<Process>,
    _zookeeper: Process,
    http: [u16; 2],
    dir: tempfile::TempDir,
}

/// `Some(answer)` of a four-letter command `word` to ZooKeeper at `port`.
fn four_letters(port: u16, word: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(word.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

impl Cluster {
    /// Starts everything, or `None` (reason printed) when a program is
    /// missing.
    fn start() -> Option<Cluster> {
        let clickhouse = require(
            "the clickhouse-server binary",
            on_path("clickhouse-server"),
            "install it with `scripts/services.sh install`",
        )?;
        let java = require(
            "Debian's ZooKeeper (java and /usr/share/java/zookeeper.jar)",
            on_path("java").filter(|_| Path::new(ZOOKEEPER_JAR).is_file()),
            "install it with `apt-get install zookeeper` (ZooKeeper 3.8 and a JRE)",
        )?;
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let started = Instant::now();

        let zk_port = free_port();
        std::fs::create_dir_all(d.join("zookeeper")).expect("zookeeper dir");
        std::fs::write(
            d.join("zoo.cfg"),
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={zk_port}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=srvr\n",
                d.join("zookeeper").display()
            ),
        )
        .expect("zoo.cfg");
        let mut classpath = ZOOKEEPER_JAR.to_owned();
        if Path::new(SLF4J_SIMPLE).is_file() {
            classpath = format!("{classpath}:{SLF4J_SIMPLE}");
        }
        let zookeeper = spawn(
            Command::new(java)
                .args(["-Xmx256m", "-cp", &classpath])
                .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                .arg(d.join("zoo.cfg")),
            &d.join("zookeeper.log"),
        );
        // `srvr` names the mode once the server takes sessions (`ruok` says
        // `imok` earlier, and ClickHouse 18.16 crashes when its first
        // ZooKeeper session fails).
        assert!(
            wait_until(Duration::from_secs(60), || four_letters(zk_port, "srvr")
                .is_some_and(|a| a.contains("Mode: standalone"))),
            "ZooKeeper did not answer on {zk_port} within 60 s; log:\n{}",
            std::fs::read_to_string(d.join("zookeeper.log")).unwrap_or_default()
        );
        eprintln!("ZooKeeper up after {:?}", started.elapsed());

        let http = [free_port(), free_port()];
        let tcp = [free_port(), free_port()];
        let shards: String = tcp
            .iter()
            .map(|port| {
                format!(
                    "<shard><internal_replication>true</internal_replication>\
                     <replica><host>127.0.0.1</host><port>{port}</port></replica></shard>"
                )
            })
            .collect();
        std::fs::write(d.join("users.xml"), tapwire_tests::clickhouse::USERS_XML)
            .expect("users.xml");
        let mut servers = Vec::new();
        for i in 0..2 {
            let s = d.join(format!("server{}", i + 1));
            std::fs::create_dir_all(&s).expect("server dir");
            let sd = s.display();
            // The same replica name on both: the bookkeeping table's
            // replica is `{shard}-{replica}`, unique across the cluster.
            std::fs::write(
                s.join("config.xml"),
                format!(
                    r#"<?xml version="1.0"?>
<yandex>
  <logger><level>information</level><log>{sd}/server.log</log><errorlog>{sd}/server.err.log</errorlog></logger>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <interserver_http_port>{interserver}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <listen_host>127.0.0.1</listen_host>
  <path>{sd}/data/</path>
  <tmp_path>{sd}/tmp/</tmp_path>
  <user_files_path>{sd}/user_files/</user_files_path>
  <format_schema_path>{sd}/format_schemas/</format_schema_path>
  <users_config>{users}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>104857600</mark_cache_size>
  <mlock_executable>false</mlock_executable>
  <remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>
  <zookeeper><node><host>127.0.0.1</host><port>{zk_port}</port></node></zookeeper>
  <macros><shard>0{shard}</shard><replica>r1</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
"#,
                    http = http[i],
                    tcp = tcp[i],
                    interserver = free_port(),
                    users = d.join("users.xml").display(),
                    shard = i + 1,
                ),
            )
            .expect("config.xml");
            servers.push(spawn(
                Command::new(&clickhouse)
                    .arg(format!("--config-file={sd}/config.xml"))
                    .current_dir(&s),
                &s.join("stdout.log"),
            ));
        }
        for (i, port) in http.iter().enumerate() {
            assert!(
                wait_until(Duration::from_secs(60), || sql(*port, "SELECT 1").is_ok()),
                "clickhouse-server {} did not answer on {port} within 60 s; log:\n{}",
                i + 1,
                std::fs::read_to_string(d.join(format!("server{}/server.err.log", i + 1)))
                    .unwrap_or_default()
            );
        }
        eprintln!(
            "ZooKeeper and two ClickHouse servers up after {:?}",
            started.elapsed()
        );
        Some(Cluster {
            _servers: servers,
            _zookeeper: zookeeper,
            http,
            dir,
        })
    }

    /// The HTTP URL of server `i` (0 or 1).
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.http[i])
    }

    /// One value (TSV) that `query` returns on server `i`.
    fn one(&self, i: usize, query: &str) -> String {
        sql(self.http[i], query)
            .unwrap_or_else(|e| panic!("server {}: {query}: {e}", i + 1))
            .trim()
            .to_owned()
    }

    /// Server logs, for a failure.
    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["server1/server.err.log", "server2/server.err.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            out += &format!("--- {name}\n");
            for line in tail.into_iter().rev() {
                out += line;
                out.push('\n');
            }
        }
        out
    }
}

/// `query` over ClickHouse's HTTP interface on `port` (TSV out), or the
/// server's error.
fn sql(port: u16, query: &str) -> Result<String, String> {
    sql_with(port, "", query)
}

/// [`sql`] with `settings` (`name=value&...`).
fn sql_with(port: u16, settings: &str, query: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "60",
            "-w",
            "\n%{http_code}",
            "--data-binary",
            "@-",
        ])
        .arg(format!("http://127.0.0.1:{port}/?{settings}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(query.as_bytes())?;
            c.wait_with_output()
        })
        .map_err(|e| format!("curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    if out.status.success() && status == "200" {
        Ok(body.to_owned())
    } else {
        Err(format!(
            "HTTP {status}: {body}{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Connect verdicts at `offsets` of partitions 0 and 1, interleaved (seq
/// numbers apart per partition).
fn batch(offsets: std::ops::Range<u64>, base_ns: i64) -> Vec<Message> {
    let mut out = Vec::new();
    for o in offsets {
        for p in 0..2u64 {
            let seq = p * 100_000 + o;
            let node = if p == 0 { "node-a" } else { "node-b" };
            let mut v = samples::flow_verdict(
                samples::header(node, "cluster-test", seq, base_ns + seq as i64 * 1_000_000),
                seq % 30,
            );
            v.event.body.as_l4_mut().expect("l4").kind = L4Kind::NetworkConnect;
            out.push(Message {
                topic: topics::VERDICTS.to_owned(),
                partition: p as i32,
                offset: o as i64,
                key: Some(node.as_bytes().to_vec()),
                payload: encode(&v).expect("encode"),
                headers: Vec::new(),
            });
        }
    }
    out
}

/// The aggregate stage writing into `db` through server `i`, with inserts
/// that wait for every shard (what keeps a batch atomic per shard).
fn stage(cluster: &Cluster, i: usize, db: &str) -> AggregateStage {
    AggregateStage::new(
        client(&cluster.url(i), db, "default", "").with_setting("insert_distributed_sync", "1"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_tables_shard_by_partition_and_replays_are_skipped_per_shard() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let db = "tapwire_cluster";
    let all: Vec<u32> = schema::MIGRATIONS.iter().map(|m| m.version).collect();

    // Migrations through server 1 make the tables on both.
    let started = Instant::now();
    let admin = |i| client(&cluster.url(i), "default", "default", "");
    let (_, applied) = schema::migrate_on(&admin(0), db, 30, Some(CLUSTER))
        .await
        .unwrap_or_else(|e| panic!("migrate on the cluster: {e}\n{}", cluster.logs()));
    assert_eq!(applied, all, "a new database gets every migration");
    eprintln!(
        "{} migrations on the cluster in {:?}",
        all.len(),
        started.elapsed()
    );
    let engines: BTreeMap<String, String> = cluster
        .one(
            1,
            &format!("SELECT name, engine FROM system.tables WHERE database = '{db}'"),
        )
        .lines()
        .map(|l| l.split_once('\t').expect("name, engine"))
        .map(|(n, e)| (n.to_owned(), e.to_owned()))
        .collect();
    for table in TABLES {
        assert_eq!(engines[table], "Distributed", "{table} on server 2");
        let local = schema::local_table(table);
        assert!(
            engines[&local].starts_with("Replicated"),
            "{local} on server 2: {}",
            engines[&local]
        );
    }
    assert_eq!(engines["scan_jobs"], "View");
    assert_eq!(engines["schema_migrations"], "ReplicatedMergeTree");
    // Migration 7's columns reached the local tables and the Distributed
    // table made again over them.
    for table in ["verdicts", "verdicts_local"] {
        assert_eq!(
            cluster.one(
                1,
                &format!(
                    "SELECT count() FROM system.columns WHERE database = '{db}' \
                     AND table = '{table}' AND name = 'src_edge'"
                ),
            ),
            "1",
            "{table}"
        );
    }

    // Every server holds the applied versions: migrating through server 2
    // applies nothing, and without the cluster it is refused.
    let versions = format!("SELECT uniqExact(version) FROM {db}.schema_migrations");
    assert!(
        wait_until(Duration::from_secs(30), || cluster.one(1, &versions)
            == all.len().to_string()),
        "schema_migrations replicated to server 2"
    );
    let (_, again) = schema::migrate_on(&admin(1), db, 30, Some(CLUSTER))
        .await
        .expect("again, through server 2");
    assert!(again.is_empty(), "nothing twice: {again:?}");
    assert!(matches!(
        schema::migrate(&admin(1), db, 30).await,
        Err(SchemaError::Layout { .. })
    ));

    let base_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
        - 600_000_000_000;

    // Batch 1: offsets 0..40 of both partitions.
    let mut first = stage(&cluster, 0, db);
    let rejected = first.handle(&batch(0..40, base_ns)).await.expect("batch 1");
    assert!(rejected.is_empty(), "{rejected:?}");

    // Batch 2 (offsets 40..80), written in parts: partition 0's rows (all
    // on shard 1), then partition 1's while shard 2's verdicts table is
    // away: that insert fails, and the counts and events inserts running
    // beside it may or may not have reached shard 2. (Reading the marks
    // would fail too, so the failing part continues where the stage left
    // off: no marks are read.)
    let count =
        |i: usize, table: &str| cluster.one(i, &format!("SELECT count() FROM {db}.{table}"));
    let second = batch(40..80, base_ns);
    let (zero, one): (Vec<Message>, Vec<Message>) =
        second.iter().cloned().partition(|m| m.partition == 0);
    first.handle(&zero).await.expect("partition 0 of batch 2");
    assert_eq!(count(0, "verdicts_local"), "80");
    assert_eq!(count(1, "verdicts_local"), "40");
    cluster.one(1, &format!("DETACH TABLE {db}.verdicts_local"));
    let failed = first.handle(&one).await;
    cluster.one(1, &format!("ATTACH TABLE {db}.verdicts_local"));
    assert!(failed.is_err(), "a shard's table was missing: {failed:?}");
    assert_eq!(count(0, "network_events_local"), "80", "partition 0");
    assert_eq!(count(1, "verdicts_local"), "40", "partition 1: not yet");
    let events_on_2: u64 = count(1, "network_events_local").parse().expect("a count");
    assert!(
        events_on_2 == 40 || events_on_2 == 80,
        "partition 1's events: all of the insert or none ({events_on_2})"
    );
    // The whole batch again (a rewind: the marks are read through the
    // Distributed tables) writes only what is missing: partition 1's
    // verdicts, and its events if their insert did not go through.
    let before = first.written().clone();
    let rejected = first.handle(&second).await.expect("batch 2, again");
    assert!(rejected.is_empty(), "{rejected:?}");
    let after = first.written();
    assert_eq!(after.rows[3], before.rows[3] + 40, "verdicts: partition 1");
    assert_eq!(
        after.rows[1],
        before.rows[1] + (80 - events_on_2),
        "events: only what was missing"
    );
    assert_eq!(count(0, "verdicts_local"), "80");
    assert_eq!(count(1, "verdicts_local"), "80");
    assert_eq!(count(1, "network_events_local"), "80");

    // A restart (fresh marks, read through the Distributed tables) replays
    // everything and adds offsets 80..100: only those are written.
    let mut restarted = stage(&cluster, 1, db);
    let rejected = restarted
        .handle(&batch(0..100, base_ns))
        .await
        .expect("replay");
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(restarted.written().rows[3], 40, "20 new per partition");
    assert_eq!(restarted.written().connections_counted, 40);

    // Each shard holds exactly its partition's rows, each offset once.
    for (i, partition) in [(0, "0"), (1, "1")] {
        for table in ["verdicts", "network_events"] {
            assert_eq!(
                cluster.one(
                    i,
                    &format!(
                        "SELECT count() AS n, uniqExact(src_offset) AS offsets, \
                         min(src_partition) AS lo, max(src_partition) AS hi \
                         FROM {db}.{table}_local"
                    ),
                ),
                format!("100\t100\t{partition}\t{partition}"),
                "{table} on server {}",
                i + 1
            );
        }
        assert_eq!(
            cluster.one(
                i,
                &format!(
                    "SELECT sum(connections) AS n, min(src_partition) AS lo, \
                     max(src_partition) AS hi FROM {db}.connection_counts_local"
                ),
            ),
            format!("100\t{partition}\t{partition}"),
            "connection_counts on server {}",
            i + 1
        );
    }
    // And the Distributed tables count every event once, from either server.
    for i in 0..2 {
        assert_eq!(count(i, "verdicts"), "200");
        assert_eq!(count(i, "network_events"), "200");
        assert_eq!(
            cluster.one(
                i,
                &format!("SELECT sum(connections) FROM {db}.connection_counts")
            ),
            "200"
        );
    }

    // The readers' SQL runs over the Distributed tables and the view, with
    // `IN (SELECT ...)` over a Distributed table run once over all shards
    // (`distributed_product_mode = 'global'`; the default refuses it:
    // "Double-distributed IN/JOIN subqueries is denied").
    let reader = client(&cluster.url(1), db, "default", "")
        .with_setting("distributed_product_mode", "global");
    let now_s = (base_ns / 1_000_000_000) as u32 + 600;
    let view = query::connections_view(&reader, now_s, 3600, None, 100)
        .await
        .expect("the connections view");
    let t = &view.totals;
    assert_eq!(t.audit + t.enforce + t.other, 200, "{t:?}");
    query::summary(&reader).await.expect("the sensors' summary");
    let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("../aggregator/queries");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&queries)
        .expect("aggregator/queries")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let query = std::fs::read_to_string(&path)
            .expect("read")
            .replace("tapwire.", &format!("{db}."));
        if let Err(e) = sql_with(cluster.http[1], "distributed_product_mode=global", &query) {
            panic!("{} on the cluster: {e}", path.display());
        }
    }
    assert_eq!(
        cluster.one(0, &format!("SELECT count() FROM {db}.scan_jobs")),
        "0"
    );
}
