//! `tapwire investigate LOCATION --serve ADDR`: the console's Recordings
//! page over recorded slices (S3, a directory or a capture file), offline:
//! no cluster, no Kafka, no ClickHouse. Routes, behind the console's
//! sign-in (a one-time admin token whose link is printed):
//!
//! - `GET /api/v1/recordings/streams?kfl=&since=&until=`: the streams the
//!   query and the time range select (time, endpoints with pod names,
//!   protocol, summary: method, path and status, or DNS name), as
//!   `tapwire investigate --streams --format json` lists them;
//! - `GET /api/v1/recordings/pcap?kfl=&since=&until=`: their packets as one
//!   PCAP (nanosecond timestamps, time order).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tapwire_aggregator::console::{self, Auth};
use tapwire_pcap_recorder::investigate::{self, Criteria, parse_time};
use tapwire_pcap_recorder::store::Store;
use tapwire_plumbing::shutdown::CancellationToken;

/// The recorded slices served.
#[derive(Clone)]
struct Slices {
    store: Arc<Store>,
    prefix: Arc<String>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The criteria of a request's `kfl`, `since` and `until`.
fn criteria(p: &HashMap<String, String>) -> Result<Criteria, String> {
    if let Some(unknown) = p
        .keys()
        .find(|k| !["kfl", "since", "until"].contains(&k.as_str()))
    {
        return Err(format!("unknown parameter {unknown:?} (kfl, since, until)"));
    }
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let filter = match p.get("kfl").filter(|q| !q.trim().is_empty()) {
        None => None,
        Some(q) => Some(
            tapwire_pcap_recorder::entry::compile(q)
                .map_err(|e| format!("kfl is not valid KFL:\n{}", e.render(q)))?,
        ),
    };
    let time = |k: &str| {
        p.get(k)
            .filter(|t| !t.is_empty())
            .map(|t| parse_time(t, now_ns).map_err(|e| format!("{k}: {e}")))
            .transpose()
    };
    Ok(Criteria {
        filter,
        since_ns: time("since")?,
        until_ns: time("until")?,
    })
}

async fn streams(State(s): State<Slices>, Query(p): Query<HashMap<String, String>>) -> Response {
    let criteria = match criteria(&p) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match investigate::search(&s.store, &s.prefix, &criteria, false).await {
        Ok(found) => Json(json!({
            "streams": found.matches,
            "indexes": found.indexes,
            "skipped": found.skipped.iter().map(|(k, why)| json!({"object": k, "reason": why})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn pcap(State(s): State<Slices>, Query(p): Query<HashMap<String, String>>) -> Response {
    let criteria = match criteria(&p) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let found = match investigate::search(&s.store, &s.prefix, &criteria, false).await {
        Ok(found) => found,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    if found.matches.is_empty() {
        return error(StatusCode::NOT_FOUND, "no recorded stream matches".into());
    }
    let Ok(dir) = tempfile::tempdir() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no scratch directory".into(),
        );
    };
    let out = dir.path().join("merged.pcap");
    if let Err(e) = investigate::write_pcap(&s.store, &found.matches, &out, false).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    match tokio::fs::read(&out).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/vnd.tcpdump.pcap"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"tapwire-recording.pcap\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Serves the console with the Recordings routes over `store` until
/// `shutdown`, printing the one-time sign-in link.
pub async fn serve(
    addr: &str,
    store: Store,
    prefix: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse().with_context(|| format!("--serve {addr}"))?;
    let (admin, secret) = console::one_time_admin().context("/dev/urandom")?;
    let auth = Auth::new(vec![admin])?;
    let slices = Slices {
        store: Arc::new(store),
        prefix: Arc::new(prefix),
    };
    let api = Router::new()
        .route("/api/v1/recordings/streams", get(streams))
        .route("/api/v1/recordings/pcap", get(pcap))
        .with_state(slices);
    let app = console::app(api, auth, None);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--serve {addr}"))?;
    let bound = listener.local_addr()?;
    eprintln!("console: sign in at http://{bound}/?token={secret}#/recordings");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
