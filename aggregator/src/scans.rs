//! The Scans routes of `tapwire serve` (over ClickHouse, with a producer for
//! `tapwire.scan.events`):
//!
//! - `GET /api/v1/scans/queue`: jobs per status, the latest jobs, and each
//!   scanner's last heartbeat (Free or Busy, and whether it is still heard).
//! - `GET /api/v1/scans/findings?kind=&object=&state=&limit=`: findings
//!   (each once) with what was decided about them (`open`, `accepted` until
//!   a time, `removed`), and their counts by kind and by object.
//! - `POST /api/v1/admin/scans/findings/{id}/accept?days=N&reason=...`:
//!   accept a finding's risk for N days, decimals allowed (admin token).
//! - `POST /api/v1/admin/scans/findings/{id}/remove?reason=...`: mark the
//!   threat removed (admin token).
//!
//! Actions are `ScanEvent`s on `tapwire.scan.events` (the SIEM gets them as
//! `MLW`, `SD`, `MS`, `NCMP`; ClickHouse as `scan_events`).
//! [`expire_acceptances`] publishes `risk_expired` for acceptances whose
//! time has passed.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use clickhouse::Client;
use serde_json::json;
use tapwire_plumbing::bus::kafka::KafkaSink;
use tapwire_plumbing::bus::{OutRecord, Sink};
use tapwire_plumbing::shutdown::CancellationToken;
use tapwire_schemas::scan::{EVENTS_TOPIC, Finding, Kind, ScanEvent, ScanEventKind, Severity};

use crate::console::Caller;
use crate::query::{json_rows, sql_string};
use crate::serve::{ApiError, Params, Reply, bad, only};

#[derive(Clone)]
struct Scans {
    client: Client,
    sink: KafkaSink,
}

/// The Scans routes.
pub fn routes(client: Client, sink: KafkaSink) -> Router {
    Router::new()
        .route("/api/v1/scans/queue", get(queue))
        .route("/api/v1/scans/findings", get(findings))
        .route("/api/v1/admin/scans/findings/{id}/accept", post(accept))
        .route("/api/v1/admin/scans/findings/{id}/remove", post(remove))
        .with_state(Scans { client, sink })
}

/// A scanner not heard for this long is not `alive`.
const SCANNER_SILENT_NS: i64 = 30_000_000_000;

async fn queue(State(s): State<Scans>, Query(p): Params) -> Reply {
    only(&p, &["limit"])?;
    let limit = limit(&p)?;
    let counts = json_rows(
        &s.client,
        "SELECT status, count() AS jobs FROM scan_jobs GROUP BY status ORDER BY status",
    )
    .await?;
    let jobs = json_rows(
        &s.client,
        &format!("SELECT * FROM scan_jobs ORDER BY updated_ns DESC LIMIT {limit}"),
    )
    .await?;
    let now = tapwire_schemas::scan::now_ns();
    let scanners = json_rows(
        &s.client,
        &format!(
            "SELECT scanner, argMax(status, time_ns) AS status, argMax(job_id, time_ns) AS job_id, \
             max(time_ns) AS at_ns, max(finished) AS finished, argMax(rules, time_ns) AS rules, \
             max(time_ns) > {} AS alive \
             FROM scanner_states GROUP BY scanner ORDER BY scanner",
            now - SCANNER_SILENT_NS
        ),
    )
    .await?;
    let mut statuses = serde_json::Map::new();
    for status in [
        "Pending",
        "In progress",
        "Parsing results",
        "Finished",
        "Error",
    ] {
        statuses.insert(status.to_owned(), json!(0));
    }
    for row in counts {
        if let (Some(status), Some(n)) = (row["status"].as_str(), number(&row["jobs"])) {
            statuses.insert(status.to_owned(), json!(n));
        }
    }
    Ok(Json(json!({ "statuses": statuses, "jobs": jobs, "scanners": scanners })).into_response())
}

/// ClickHouse's JSON numbers come as numbers or, for 64-bit ones, strings.
fn number(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

fn limit(p: &std::collections::HashMap<String, String>) -> Result<u64, ApiError> {
    match p.get("limit") {
        None => Ok(100),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(bad(format!("limit must be 1 to 10000, not {v:?}"))),
        },
    }
}

/// Each finding once (the newest copy), with the last decision about it.
const FINDINGS: &str = "\
SELECT f.finding_id AS finding_id, f.job_id AS job_id, f.kind AS kind, f.rule AS rule, \
  f.severity AS severity, f.object AS object, f.location AS location, f.offset AS offset, \
  f.frame AS frame, f.excerpt AS excerpt, f.found_ns AS found_ns, \
  e.last_event AS last_event, e.until_ns AS until_ns, e.user AS decided_by \
FROM (SELECT finding_id, argMax(job_id, time_ns) AS job_id, argMax(kind, time_ns) AS kind, \
        argMax(rule, time_ns) AS rule, argMax(severity, time_ns) AS severity, \
        argMax(object, time_ns) AS object, argMax(location, time_ns) AS location, \
        argMax(offset, time_ns) AS offset, argMax(frame, time_ns) AS frame, \
        argMax(excerpt, time_ns) AS excerpt, max(time_ns) AS found_ns \
      FROM scan_findings GROUP BY finding_id) AS f \
LEFT JOIN (SELECT finding_id, argMax(event, at_ns) AS last_event, argMax(until_ns, at_ns) AS until_ns, \
             argMax(user, at_ns) AS user \
           FROM scan_events WHERE finding_id != '' GROUP BY finding_id) AS e \
USING finding_id";

async fn findings(State(s): State<Scans>, Query(p): Params) -> Reply {
    only(&p, &["kind", "object", "state", "limit"])?;
    let limit = limit(&p)?;
    let mut filters = Vec::new();
    if let Some(kind) = p.get("kind") {
        if ![
            "sensitive_data",
            "malware",
            "misconfiguration",
            "non_compliance",
        ]
        .contains(&kind.as_str())
        {
            return Err(bad(format!(
                "kind must be sensitive_data, malware, misconfiguration or non_compliance, not {kind:?}"
            )));
        }
        filters.push(format!("kind = {}", sql_string(kind)));
    }
    if let Some(object) = p.get("object") {
        filters.push(format!("object = {}", sql_string(object)));
    }
    let rows = json_rows(
        &s.client,
        &format!(
            "SELECT * FROM ({FINDINGS}) {} ORDER BY found_ns DESC",
            if filters.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", filters.join(" AND "))
            }
        ),
    )
    .await?;
    let now = tapwire_schemas::scan::now_ns();
    let wanted = p.get("state").map(String::as_str);
    if let Some(w) = wanted
        && !["open", "accepted", "removed"].contains(&w)
    {
        return Err(bad(format!(
            "state must be open, accepted or removed, not {w:?}"
        )));
    }
    let mut by_kind = std::collections::BTreeMap::<String, u64>::new();
    let mut by_object = std::collections::BTreeMap::<String, u64>::new();
    let mut out = Vec::new();
    for mut row in rows {
        let until = row["until_ns"]
            .as_i64()
            .or_else(|| row["until_ns"].as_str()?.parse().ok());
        let state = match row["last_event"].as_str().unwrap_or("") {
            "risk_accepted" if until.is_some_and(|u| u > now) => "accepted",
            "threat_removed" => "removed",
            _ => "open",
        };
        row["state"] = json!(state);
        if wanted.is_some_and(|w| w != state) {
            continue;
        }
        if state == "open" {
            *by_kind
                .entry(row["kind"].as_str().unwrap_or("").to_owned())
                .or_default() += 1;
            *by_object
                .entry(row["object"].as_str().unwrap_or("").to_owned())
                .or_default() += 1;
        }
        if (out.len() as u64) < limit {
            out.push(row);
        }
    }
    let by_object: Vec<_> = by_object
        .into_iter()
        .map(|(object, open)| json!({ "object": object, "open": open }))
        .collect();
    Ok(
        Json(json!({ "findings": out, "open_by_kind": by_kind, "open_by_object": by_object }))
            .into_response(),
    )
}

/// The finding `id` as stored, or a 404.
async fn finding(s: &Scans, id: &str) -> Result<Finding, ApiError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("{id:?} is not a finding id (32 hex digits)")));
    }
    let rows = json_rows(
        &s.client,
        &format!(
            "SELECT kind, rule, severity, object, location, excerpt FROM scan_findings \
             WHERE finding_id = {} ORDER BY time_ns DESC LIMIT 1",
            sql_string(id)
        ),
    )
    .await?;
    let row = rows.into_iter().next().ok_or_else(|| {
        ApiError(
            axum::http::StatusCode::NOT_FOUND,
            format!("no finding {id}"),
        )
    })?;
    let text = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
    let kind: Kind = serde_json::from_value(row["kind"].clone())
        .map_err(|e| bad(format!("finding {id} has an unknown kind: {e}")))?;
    Ok(Finding {
        id: id.to_owned(),
        kind,
        rule: text("rule"),
        severity: Severity::parse(&text("severity")).unwrap_or_default(),
        object: text("object"),
        location: text("location"),
        offset: None,
        frame: None,
        excerpt: text("excerpt"),
    })
}

async fn publish(s: &Scans, event: &ScanEvent) -> Result<(), ApiError> {
    let record = OutRecord::new(
        EVENTS_TOPIC,
        Some(event.finding_id.clone().into_bytes()),
        serde_json::to_vec(event).expect("an event serializes"),
    );
    s.sink.send_batch(vec![record]).await.map_err(|e| {
        ApiError(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("the action was not recorded (Kafka): {e}"),
        )
    })
}

fn user(caller: &Option<Extension<Caller>>) -> String {
    caller.as_ref().map(|c| c.name.clone()).unwrap_or_default()
}

async fn accept(
    State(s): State<Scans>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
    Query(p): Params,
) -> Reply {
    only(&p, &["days", "reason"])?;
    let days: f64 = match p.get("days").map(|d| d.parse::<f64>()) {
        Some(Ok(d)) if d > 0.0 && d <= 3650.0 => d,
        Some(_) => {
            return Err(bad(
                "days must be more than 0 and at most 3650 (decimals allowed)".to_owned(),
            ));
        }
        None => {
            return Err(bad(
                "days is required: how long the acceptance holds".to_owned()
            ));
        }
    };
    let reason = p.get("reason").cloned().unwrap_or_default();
    let f = finding(&s, &id).await?;
    let mut event = ScanEvent::new(
        ScanEventKind::RiskAccepted,
        &f.object,
        Some(&f),
        &user(&caller),
        reason,
    );
    event.until_ns = Some(event.at_ns + (days * 86_400e9) as i64);
    publish(&s, &event).await?;
    Ok(Json(json!({ "event": event })).into_response())
}

async fn remove(
    State(s): State<Scans>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
    Query(p): Params,
) -> Reply {
    only(&p, &["reason"])?;
    let reason = p.get("reason").cloned().unwrap_or_default();
    let f = finding(&s, &id).await?;
    let event = ScanEvent::new(
        ScanEventKind::ThreatRemoved,
        &f.object,
        Some(&f),
        &user(&caller),
        reason,
    );
    publish(&s, &event).await?;
    Ok(Json(json!({ "event": event })).into_response())
}

/// Every 10 s, a `risk_expired` event for each acceptance whose time has
/// passed and that nothing followed; until the returned token is cancelled.
/// The event's id is derived from the finding and the acceptance's end, so
/// two servers expiring the same acceptance publish the same event.
pub fn expire_acceptances(client: Client, sink: KafkaSink) -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = token.cancelled() => break,
            }
            if let Err(err) = expire_once(&client, &sink).await {
                tracing::warn!(error = %err, "scans: risk acceptances not checked for expiry");
            }
        }
    });
    stop
}

async fn expire_once(client: &Client, sink: &KafkaSink) -> Result<(), String> {
    let now = tapwire_schemas::scan::now_ns();
    let due = json_rows(
        client,
        &format!(
            "SELECT finding_id, argMax(event, at_ns) AS last, argMax(until_ns, at_ns) AS until_ns, \
             argMax(user, at_ns) AS user, any(kind) AS kind, any(rule) AS rule, any(object) AS object \
             FROM scan_events WHERE finding_id != '' GROUP BY finding_id \
             HAVING last = 'risk_accepted' AND until_ns <= {now}"
        ),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for row in due {
        let text = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
        let until = row["until_ns"]
            .as_i64()
            .or_else(|| row["until_ns"].as_str()?.parse().ok())
            .unwrap_or(now);
        let finding_id = text("finding_id");
        let kind: Option<Kind> = serde_json::from_value(row["kind"].clone()).ok();
        let mut event = ScanEvent::new(
            ScanEventKind::RiskExpired,
            &text("object"),
            None,
            "",
            format!("the acceptance by {} ended", text("user")),
        );
        event.id = tapwire_schemas::EventId::derive(&[
            b"risk_expired",
            finding_id.as_bytes(),
            &until.to_le_bytes(),
        ])
        .to_string();
        event.finding_id = finding_id;
        event.kind = kind;
        event.rule = text("rule");
        event.until_ns = Some(until);
        records.push(OutRecord::new(
            EVENTS_TOPIC,
            Some(event.finding_id.clone().into_bytes()),
            serde_json::to_vec(&event).expect("an event serializes"),
        ));
    }
    if records.is_empty() {
        return Ok(());
    }
    let n = records.len();
    sink.send_batch(records).await.map_err(|e| e.to_string())?;
    tracing::info!(acceptances = n, "scans: risk acceptances expired");
    Ok(())
}
