//! `tapwire aggregate`, `tapwire serve` and `tapwire query`: the ClickHouse
//! side.

use anyhow::Context;
use tapwire_aggregator::console::Auth;
use tapwire_aggregator::query::{self, Connection, ConnectionsView};
use tapwire_aggregator::sink;
use tapwire_aggregator::{AggregateConfig, serve::parse_window};
use tapwire_plumbing::shutdown::CancellationToken;

use crate::cli::{AggregateArgs, ModeArg, OutputFormat, QueryCommand, QueryConnectionsArgs};
use crate::config::Config;

fn client(a: &AggregateConfig) -> clickhouse::Client {
    sink::client(&a.clickhouse_url, &a.database, &a.user, &a.password)
}

/// `tapwire aggregate`: until shutdown.
pub async fn run(
    config: &Config,
    args: &AggregateArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let a = config.aggregate.clone();
    if args.migrate_only {
        sink::migrate(&a, &shutdown).await?;
        eprintln!("schema of {} up to date", a.database);
        return Ok(());
    }
    super::stage_alone(config, a, shutdown).await
}

/// The tokens `tapwire serve` accepts: `aggregate.tokens` and the tokens
/// file; with none, a one-time admin token whose sign-in link is printed
/// (the second value).
pub fn serve_tokens(
    a: &tapwire_aggregator::config::AggregateConfig,
) -> anyhow::Result<(Auth, Option<String>)> {
    let mut tokens = a.tokens.clone();
    if let Some(file) = &a.tokens_file {
        tokens.extend(tapwire_aggregator::console::tokens_file(file)?);
    }
    let mut one_time = None;
    if tokens.is_empty() {
        let (admin, secret) =
            tapwire_aggregator::console::one_time_admin().context("/dev/urandom")?;
        tokens.push(admin);
        one_time = Some(secret);
    }
    Ok((Auth::new(tokens)?, one_time))
}

/// This host's name, for the audit trail's headers.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `tapwire serve`: until shutdown.
pub async fn serve(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let a = &config.aggregate;
    let addr = a.listen.parse().context("aggregate.listen")?;
    let (auth, one_time) = serve_tokens(a)?;
    let tls = match (&a.tls_cert_file, &a.tls_key_file) {
        (Some(cert), Some(key)) => Some(tapwire_aggregator::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("aggregate.tls_cert_file and aggregate.tls_key_file go together"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Every API request on tapwire.audit (ClickHouse and the SIEM read it).
    let sink = tapwire_plumbing::bus::kafka::KafkaSink::new(&config.kafka)
        .context("a producer for the audit trail (tapwire.audit)")?;
    let scan_sink = sink.clone();
    let host = hostname();
    let audit = tapwire_aggregator::console::AuditLog::start(sink, &host, &format!("serve-{host}"));
    let stop = shutdown.clone();
    tapwire_aggregator::serve::serve(
        addr,
        client(a),
        auth.clone(),
        tls,
        Some(tapwire_aggregator::serve::Published {
            audit,
            scans: scan_sink,
        }),
        async move { stop.cancelled().await },
        |bound| {
            eprintln!(
                "serving the console and the network API on {scheme}://{bound}/ (ClickHouse {} database {})",
                a.clickhouse_url, a.database
            );
            match &one_time {
                Some(secret) => eprintln!(
                    "no tokens configured (aggregate.tokens, aggregate.tokens_file): sign in with this run's \
                     one-time admin link: {scheme}://{bound}/?token={secret}"
                ),
                None => eprintln!("{} API tokens accepted", auth.len()),
            }
        },
    )
    .await
    .with_context(|| format!("serving on {addr}"))
}

/// `tapwire query ...`.
pub async fn query(config: &Config, command: &QueryCommand) -> anyhow::Result<()> {
    match command {
        QueryCommand::Connections(args) => connections(config, args).await,
        QueryCommand::Sql(args) => {
            let a = &config.aggregate;
            let sql = args.sql.replace("tapwire.", &format!("{}.", a.database));
            for row in query::json_rows(&client(a), &sql).await? {
                println!("{row}");
            }
            Ok(())
        }
    }
}

async fn connections(config: &Config, args: &QueryConnectionsArgs) -> anyhow::Result<()> {
    let a = &config.aggregate;
    let window = parse_window(&args.window).map_err(anyhow::Error::msg)?;
    let until = args.until.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32)
    });
    let mode = args.mode.map(|m| match m {
        ModeArg::Audit => "audit",
        ModeArg::Enforce => "enforce",
        ModeArg::Other => "other",
    });
    let view = query::connections_view(&client(a), until, window, mode, args.limit)
        .await
        .with_context(|| format!("reading connections from {}", a.clickhouse_url))?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        OutputFormat::Table => print!("{}", table(&view, mode)),
    }
    Ok(())
}

fn time_of(ns: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ns.to_string())
}

/// The view as aligned text: one block per tab, then the edges.
pub fn table(view: &ConnectionsView, only: Option<&str>) -> String {
    let mut out = format!(
        "Network connections from {} to {} (UTC)\n",
        time_of(i64::from(view.from_s) * 1_000_000_000),
        time_of(i64::from(view.until_s) * 1_000_000_000)
    );
    let tabs: [(&str, &str, &Vec<Connection>); 3] = [
        ("audit", "Audit-mode connections", &view.audit),
        ("enforce", "Enforce-mode connections", &view.enforce),
        ("other", "Other connections", &view.other),
    ];
    for (mode, title, rows) in tabs {
        if only.is_some_and(|m| m != mode) {
            continue;
        }
        // The tab's number counts the whole window, also rows the limit cut.
        out.push_str(&format!("\n{title} ({})\n", view.totals.of(mode)));
        let mut lines = vec![[
            "SOURCE".to_owned(),
            "PROTOCOL".to_owned(),
            "DESTINATION".to_owned(),
            "CONNECTIONS".to_owned(),
            "LAST CONNECTION".to_owned(),
        ]];
        for r in rows.iter() {
            lines.push([
                r.source(),
                r.protocol.to_uppercase(),
                r.destination(),
                r.connections.to_string(),
                time_of(r.last_seen_ns),
            ]);
        }
        if rows.is_empty() {
            out.push_str("  (none)\n");
            continue;
        }
        out.push_str(&align(&lines));
        let cut = view.rows.of(mode).saturating_sub(rows.len() as u64);
        if cut > 0 {
            out.push_str(&format!("  ... {cut} more rows not shown\n"));
        }
    }
    if only.is_none() && !view.edges.is_empty() {
        out.push_str("\nEdges (connections per mode)\n");
        let mut lines = vec![[
            "SOURCE".to_owned(),
            "DESTINATION".to_owned(),
            "AUDIT".to_owned(),
            "ENFORCE".to_owned(),
            "OTHER".to_owned(),
        ]];
        for e in &view.edges {
            let name = |ns: &str, n: &str| {
                if ns.is_empty() {
                    n.to_owned()
                } else {
                    format!("{ns}/{n}")
                }
            };
            lines.push([
                name(&e.src_namespace, &e.src),
                name(&e.dst_namespace, &e.dst),
                e.audit.to_string(),
                e.enforce.to_string(),
                e.other.to_string(),
            ]);
        }
        out.push_str(&align(&lines));
    }
    out
}

fn align<const N: usize>(lines: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for line in lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in lines {
        out.push_str("  ");
        for (i, (w, cell)) in widths.iter().zip(line).enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_aggregator::query::TabTotals;

    fn row(mode: &str, pod: &str, n: u64) -> Connection {
        Connection {
            mode: mode.into(),
            protocol: "tcp".into(),
            src_kind: "pod".into(),
            src_namespace: "shop".into(),
            src_workload: pod.into(),
            src_pod: pod.into(),
            src_ip: "10.1.0.7".into(),
            src_port: 40000,
            src_domain: String::new(),
            dst_kind: "pod".into(),
            dst_namespace: "shop".into(),
            dst_workload: "db".into(),
            dst_pod: "db".into(),
            dst_ip: "10.1.5.5".into(),
            dst_port: 5432,
            dst_domain: String::new(),
            connections: n,
            last_seen_ns: 0,
        }
    }

    #[test]
    fn a_tabs_number_counts_the_window_not_the_rows_printed() {
        let view = ConnectionsView {
            from_s: 0,
            until_s: 900,
            totals: TabTotals {
                audit: 12,
                enforce: 0,
                other: 0,
            },
            rows: TabTotals {
                audit: 3,
                enforce: 0,
                other: 0,
            },
            audit: vec![row("audit", "web", 7)],
            enforce: Vec::new(),
            other: Vec::new(),
            edges: Vec::new(),
        };
        let text = table(&view, None);
        assert!(text.contains("Audit-mode connections (12)"), "{text}");
        assert!(text.contains("2 more rows not shown"), "{text}");
        assert!(text.contains("Enforce-mode connections (0)"), "{text}");
    }
}
