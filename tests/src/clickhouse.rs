//! A ClickHouse server owned by one test (own ports, own data directory), so
//! the test can stop it and start it again; and a helper for the shared one.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, require, wait_until};

/// The shared test bed's ClickHouse HTTP URL (`TAPWIRE_CLICKHOUSE_URL`, else
/// `http://127.0.0.1:8123`), or `None` with the reason printed.
pub fn shared() -> Option<String> {
    let url = crate::env_or("TAPWIRE_CLICKHOUSE_URL", "http://127.0.0.1:8123");
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    crate::shared_service("ClickHouse", address)?;
    Some(url)
}

/// A private `clickhouse-server`.
pub struct ClickHouse {
    dir: tempfile::TempDir,
    http_port: u16,
    child: Option<Child>,
}

fn binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("clickhouse-server"))
            .find(|p| p.exists())
    });
    require(
        "the clickhouse-server binary",
        found,
        "install it with `scripts/services.sh install`",
    )
}

impl ClickHouse {
    /// Starts a server, or `None` (reason printed) when ClickHouse is not
    /// installed and this is not CI.
    pub fn start() -> Option<ClickHouse> {
        let binary = binary()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let (http_port, tcp_port) = (free_port(), free_port());
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>104857600</mark_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
"#
            ),
        )
        .expect("config.xml");
        std::fs::write(dir.path().join("users.xml"), USERS_XML).expect("users.xml");
        let mut server = ClickHouse {
            dir,
            http_port,
            child: None,
        };
        server.spawn(&binary);
        Some(server)
    }

    fn spawn(&mut self, binary: &PathBuf) {
        let child = Command::new(binary)
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("config.xml").display()
            ))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn clickhouse-server");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.http_port);
        assert!(
            wait_until(Duration::from_secs(60), || TcpStream::connect(&address)
                .is_ok()),
            "clickhouse-server did not listen on {address} within 60 s; log:\n{}",
            std::fs::read_to_string(self.dir.path().join("server.err.log")).unwrap_or_default()
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Kills the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        let binary = binary().expect("clickhouse-server was found at start");
        self.spawn(&binary);
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One number from ClickHouse through `tapwire query sql`: the `n` column of
/// the single row `sql` returns (`tapwire.` names database `db`).
pub fn scalar(url: &str, db: &str, sql: &str) -> u64 {
    let out = crate::run_ok(crate::tapwire("127.0.0.1:1").args([
        "query",
        "sql",
        sql,
        "--clickhouse-url",
        url,
        "--database",
        db,
    ]));
    let row: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON row");
    match &row["n"] {
        serde_json::Value::String(s) => s.parse().expect("number"),
        serde_json::Value::Number(n) => n.as_u64().expect("u64"),
        serde_json::Value::Null => 0,
        other => panic!("unexpected {other}"),
    }
}

/// users.xml of the private servers: `default` without a password, from
/// 127.0.0.1 only, no quotas.
pub const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"#;
