//! The console over `tapwire run` and `tapwire demo` (`--serve ADDR`): the
//! same sign-in and pages as `tapwire serve`, its data from the in-memory
//! counts ([`MemoryConnections`]) and the run's cluster records instead of
//! ClickHouse. The window is the whole run (a replay's traffic is as old as
//! its capture). Routes that need ClickHouse's tables (inventories,
//! flows, events) answer 501 saying so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tapwire_schemas::PodMetadata;

use crate::console::{self, Auth};
use crate::memory::MemoryConnections;
use crate::query::Pair;

/// What the console reads in memory.
#[derive(Clone)]
pub struct MemoryData {
    /// The run's connection counts.
    pub counts: Arc<Mutex<MemoryConnections>>,
    /// The run's pods.
    pub pods: Arc<Vec<PodMetadata>>,
}

type Params = Query<HashMap<String, String>>;

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn limit(p: &HashMap<String, String>) -> Result<usize, String> {
    match p.get("limit") {
        None => Ok(500),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.clamp(1, 10_000))
            .map_err(|_| format!("limit: {v:?} is not a number")),
    }
}

async fn connections_view(State(d): State<MemoryData>, Query(p): Params) -> Response {
    let limit = match limit(&p) {
        Ok(l) => l,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let view = d
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .view_of(limit, None);
    Json(view).into_response()
}

async fn edge(State(d): State<MemoryData>, Query(p): Params) -> Response {
    let limit = match limit(&p) {
        Ok(l) => l,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let text = |k: &str| p.get(k).cloned().unwrap_or_default();
    if text("src").is_empty() || text("dst").is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "src and dst are required (an edge's names from the connections view)".into(),
        );
    }
    let pair = Pair {
        src_namespace: text("src_namespace"),
        src: text("src"),
        dst_namespace: text("dst_namespace"),
        dst: text("dst"),
    };
    let view = d
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .view_of(limit, Some(&pair));
    Json(json!({ "edge": pair, "view": view, "sides": [] })).into_response()
}

async fn pod(State(d): State<MemoryData>, Query(p): Params) -> Response {
    let (ns, name) = (
        p.get("namespace").cloned().unwrap_or_default(),
        p.get("name").cloned().unwrap_or_default(),
    );
    match d.pods.iter().find(|x| x.namespace == ns && x.name == name) {
        Some(pod) => Json(json!({ "pod": pod })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no pod {ns}/{name} in this run"),
        ),
    }
}

async fn needs_clickhouse() -> Response {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "not available over tapwire run or demo: this page reads ClickHouse's tables \
         (run tapwire aggregate and tapwire serve)"
            .into(),
    )
}

/// The console and its API over `data`, behind `auth`.
pub fn router(data: MemoryData, auth: Auth) -> Router {
    let api = Router::new()
        .route("/api/v1/network/connections-view", get(connections_view))
        .route("/api/v1/network/edge", get(edge))
        .route("/api/v1/pod", get(pod))
        .route("/api/v1/events", get(needs_clickhouse))
        .route("/api/v1/network/connections", get(needs_clickhouse))
        .route("/api/v1/network/listeners", get(needs_clickhouse))
        .route("/api/v1/network/udp-listeners", get(needs_clickhouse))
        .route("/api/v1/network/flows", get(needs_clickhouse))
        .route("/api/v1/network/summary", get(needs_clickhouse))
        .with_state(data);
    console::app(api, auth, None)
}

/// Serves [`router`] on `addr` until `shutdown`; `bound` hears the address.
pub async fn serve(
    addr: SocketAddr,
    data: MemoryData,
    auth: Auth,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    bound(listener.local_addr()?);
    axum::serve(listener, router(data, auth))
        .with_graceful_shutdown(shutdown)
        .await
}
