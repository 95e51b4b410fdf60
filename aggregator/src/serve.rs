//! `tapwire serve`: the HTTP JSON API a console reads.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/network/connections-view?window=15m&mode=&limit=&until=` | the connections view: Audit-mode, Enforce-mode and Other tabs with their totals, and per-edge counts |
//! | `GET /api/v1/network/edge?src_namespace=&src=&dst_namespace=&dst=&window=15m&limit=&until=` | one edge's detail: the three tabs' rows and totals of that source/destination pair (names as the view's edges give them), and both sides' decisions (`sides`: egress and ingress, per mode, outcome and policy) |
//! | `GET /api/v1/pod?namespace=&name=&window=15m&until=` | a pod's page: its latest record (labels, workload, containers with image and digest), its addresses over time, its connections and verdicts of the window; 404 when unknown |
//! | `GET /api/v1/events?sensor_id=&kind=&window=15m&until=&kfl=&limit=100&cursor=` | Investigate: network and runtime events of a window, newest first, cursor-paged, filtered by KFL over their columns |
//! | `GET /api/v1/network/connections?sensor_id=&page=1&page_size=100` | active TCP connections (latest heartbeat per sensor), paged; with recent flows |
//! | `GET /api/v2/network/connections?sensor_id=&cursor=&limit=100` | the same, cursor-paged for large fleets |
//! | `GET /api/v2/network/{listeners,udp-listeners,flows}?sensor_id=&cursor=&limit=100` | listeners and completed flows, cursor-paged (`next_cursor` until the last page) |
//! | `GET /api/v1/network/listeners?sensor_id=` | TCP listening services |
//! | `GET /api/v1/network/udp-listeners?sensor_id=` | UDP listeners |
//! | `GET /api/v1/network/flows?sensor_id=&limit=&state=completed` | completed flows, newest first (all of them without `limit`); `state=active`: open connections (connected, not closed yet) |
//! | `GET /api/v1/network/summary` | per sensor: connection and listener counts, and the agent's liveness (`state`: connected, disconnected, reconnected; losses) |
//! | `GET /api/v1/whoami` | the signed-in token's name and role |
//! | `GET /api/v1/admin/tokens` | (admin) the tokens' names and roles |
//! | `GET /` | the web console (`crate::console`) |
//! | `GET /healthz` | `ok` |
//!
//! Every `/api/*` route needs `Authorization: Bearer TOKEN` (401 without a
//! known token, 403 for a viewer on an admin route); the console's files
//! and `/healthz` are open.
//!
//! Every `duration_ns` has a `duration_secs` beside it (null when unknown:
//! a connection older than its sensor). A bad or unknown parameter is a
//! `400` with `{"error": "..."}` naming it; ClickHouse unavailable is a
//! `503` the same way.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clickhouse::Client;
use serde_json::json;

use crate::console::{self, Auth};
use crate::query::{self, QueryError, SocketKind};

/// An API error reply.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl From<QueryError> for ApiError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::BadRequest(m) => ApiError(StatusCode::BAD_REQUEST, m),
            QueryError::ClickHouse(e) => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("ClickHouse unavailable: {e}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) type Params = Query<HashMap<String, String>>;

/// `value` as JSON with `duration_secs` (whole seconds; null when unknown,
/// e.g. a connection older than its sensor) beside every `duration_ns`, at
/// any depth.
fn with_seconds(value: impl serde::Serialize) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(ns) = map.get("duration_ns") {
                    let secs = ns.as_i64().map_or(serde_json::Value::Null, |ns| {
                        serde_json::Value::from(ns.div_euclid(1_000_000_000))
                    });
                    map.insert("duration_secs".into(), secs);
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    walk(&mut v);
    v
}
pub(crate) type Reply = Result<Response, ApiError>;

pub(crate) fn bad(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

/// Rejects parameters the route does not know (a typo should not be ignored).
pub(crate) fn only(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "unknown parameter {k:?}; this route takes {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn number(params: &HashMap<String, String>, name: &str, default: u64) -> Result<u64, ApiError> {
    params.get(name).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| bad(format!("{name} must be a whole number, not {v:?}")))
    })
}

fn sensor(params: &HashMap<String, String>) -> Option<&str> {
    params
        .get("sensor_id")
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// `15m`, `90s`, `2h`, `1d` (a bare number is seconds).
pub fn parse_window(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u32 = digits
        .parse()
        .map_err(|_| format!("window {text:?}: expected a number and s, m, h or d, e.g. 15m"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("window {text:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(scale)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("window {text:?}: must be between 1s and about 136 years"))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

async fn connections_view(State(c): State<Client>, Query(p): Params) -> Reply {
    only(&p, &["window", "mode", "limit", "until"])?;
    let window = parse_window(p.get("window").map_or("15m", String::as_str)).map_err(bad)?;
    let limit = number(&p, "limit", 500)?;
    let until = number(&p, "until", u64::from(now_s()))?;
    let view = query::connections_view(
        &c,
        u32::try_from(until).map_err(|_| bad("until is epoch seconds".to_owned()))?,
        window,
        p.get("mode").map(String::as_str),
        u32::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000),
    )
    .await?;
    Ok(Json(view).into_response())
}

async fn edge(State(c): State<Client>, Query(p): Params) -> Reply {
    only(
        &p,
        &[
            "src_namespace",
            "src",
            "dst_namespace",
            "dst",
            "window",
            "limit",
            "until",
        ],
    )?;
    let text = |name: &str, required: bool| -> Result<String, ApiError> {
        match p.get(name) {
            Some(v) => Ok(v.clone()),
            None if required => Err(bad(format!(
                "{name} is required (an edge's {name} from the connections view)"
            ))),
            None => Ok(String::new()),
        }
    };
    let pair = query::Pair {
        src_namespace: text("src_namespace", false)?,
        src: text("src", true)?,
        dst_namespace: text("dst_namespace", false)?,
        dst: text("dst", true)?,
    };
    let window = parse_window(p.get("window").map_or("15m", String::as_str)).map_err(bad)?;
    let limit = number(&p, "limit", 500)?;
    let until = number(&p, "until", u64::from(now_s()))?;
    let until = u32::try_from(until).map_err(|_| bad("until is epoch seconds".to_owned()))?;
    let view = query::edge_detail(
        &c,
        until,
        window,
        &pair,
        u32::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000),
    )
    .await?;
    let sides = query::edge_sides(&c, until, window, &pair).await?;
    Ok(Json(json!({ "edge": pair, "view": view, "sides": sides })).into_response())
}

/// Sensors whose agent is disconnected now: their last inventory is not
/// active any more.
async fn disconnected(c: &Client) -> Result<Vec<String>, ApiError> {
    Ok(crate::liveness::liveness(c, now_ns())
        .await?
        .into_iter()
        .filter(|s| !s.state.is_alive())
        .map(|s| s.sensor_id)
        .collect())
}

/// A pod's page: its latest record, addresses over time, and its
/// connections and verdicts of the window.
async fn pod(State(c): State<Client>, Query(p): Params) -> Reply {
    only(&p, &["namespace", "name", "window", "until"])?;
    let required = |k: &str| {
        p.get(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("{k} is required")))
    };
    let (namespace, name) = (required("namespace")?, required("name")?);
    let window = parse_window(p.get("window").map_or("15m", String::as_str)).map_err(bad)?;
    let until = number(&p, "until", u64::from(now_s()))?;
    let until = u32::try_from(until).map_err(|_| bad("until is epoch seconds".to_owned()))?;
    match query::pod_detail(&c, namespace, name, until, window).await? {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no pod {namespace}/{name} in tapwire.pods"),
        )),
    }
}

/// The Investigate view: events by sensor, kind and window, with a KFL
/// filter over the event's columns, cursor-paged.
async fn events(State(c): State<Client>, Query(p): Params) -> Reply {
    only(
        &p,
        &[
            "sensor_id",
            "kind",
            "window",
            "until",
            "kfl",
            "limit",
            "cursor",
        ],
    )?;
    let window = parse_window(p.get("window").map_or("15m", String::as_str)).map_err(bad)?;
    let until_s = number(&p, "until", u64::from(now_s()))?;
    let until_ns = i64::try_from(until_s)
        .ok()
        .and_then(|s| s.checked_mul(1_000_000_000))
        .ok_or_else(|| bad("until is epoch seconds".to_owned()))?;
    let filter = match p.get("kfl").filter(|q| !q.trim().is_empty()) {
        None => None,
        Some(q) => Some(
            tapwire_kfl::compile_dissected(q)
                .map_err(|e| bad(format!("kfl is not valid KFL:\n{}", e.render(q))))?,
        ),
    };
    let page = query::events(
        &c,
        query::EventsQuery {
            sensor_id: sensor(&p),
            kind: p.get("kind").map(String::as_str).filter(|k| !k.is_empty()),
            since_ns: until_ns - i64::from(window) * 1_000_000_000,
            until_ns,
            limit: number(&p, "limit", 100)?,
            cursor: p
                .get("cursor")
                .map(String::as_str)
                .filter(|c| !c.is_empty()),
            filter: filter.as_ref(),
        },
    )
    .await?;
    Ok(Json(with_seconds(page)).into_response())
}

async fn connections_v1(State(c): State<Client>, Query(p): Params) -> Reply {
    only(&p, &["sensor_id", "page", "page_size"])?;
    let page = query::connections_page(
        &c,
        sensor(&p),
        &disconnected(&c).await?,
        number(&p, "page", 1)?,
        number(&p, "page_size", 100)?,
    )
    .await?;
    Ok(Json(with_seconds(page)).into_response())
}

async fn connections_v2(State(c): State<Client>, Query(p): Params) -> Reply {
    only(&p, &["sensor_id", "cursor", "limit"])?;
    let page = query::connections_after(
        &c,
        sensor(&p),
        &disconnected(&c).await?,
        p.get("cursor")
            .map(String::as_str)
            .filter(|s| !s.is_empty()),
        number(&p, "limit", 100)?,
    )
    .await?;
    Ok(Json(with_seconds(page)).into_response())
}

async fn tcp_listeners(State(c): State<Client>, Query(p): Params) -> Reply {
    only(&p, &["sensor_id"])?;
    let rows = query::listeners(&c, SocketKind::TcpListener, sensor(&p)).await?;
    Ok(Json(with_seconds(json!({ "listeners": rows }))).into_response())
}

async fn udp_listeners(State(c): State<Client>, Query(p): Params) -> Reply {
    only(&p, &["sensor_id"])?;
    let rows = query::listeners(&c, SocketKind::UdpListener, sensor(&p)).await?;
    Ok(Json(with_seconds(json!({ "listeners": rows }))).into_response())
}

async fn listeners_v2(c: &Client, p: &HashMap<String, String>, kind: SocketKind) -> Reply {
    only(p, &["sensor_id", "cursor", "limit"])?;
    let limit = number(p, "limit", 100)?;
    if !(1..=5000).contains(&limit) {
        return Err(bad(format!(
            "limit must be between 1 and 5000, not {limit}"
        )));
    }
    let (rows, next_cursor) = query::sockets_after(
        c,
        kind,
        sensor(p),
        &disconnected(c).await?,
        p.get("cursor")
            .map(String::as_str)
            .filter(|s| !s.is_empty()),
        limit,
    )
    .await?;
    Ok(Json(with_seconds(
        json!({ "listeners": rows, "next_cursor": next_cursor }),
    ))
    .into_response())
}

async fn tcp_listeners_v2(State(c): State<Client>, Query(p): Params) -> Reply {
    listeners_v2(&c, &p, SocketKind::TcpListener).await
}

async fn udp_listeners_v2(State(c): State<Client>, Query(p): Params) -> Reply {
    listeners_v2(&c, &p, SocketKind::UdpListener).await
}

async fn flows_v2(State(c): State<Client>, Query(p): Params) -> Reply {
    only(&p, &["sensor_id", "cursor", "limit"])?;
    let (rows, next_cursor) = query::flows_after(
        &c,
        sensor(&p),
        p.get("cursor")
            .map(String::as_str)
            .filter(|s| !s.is_empty()),
        number(&p, "limit", 100)?,
    )
    .await?;
    Ok(Json(with_seconds(
        json!({ "flows": rows, "next_cursor": next_cursor }),
    ))
    .into_response())
}

async fn flows(State(c): State<Client>, Query(p): Params) -> Reply {
    only(&p, &["sensor_id", "limit", "state"])?;
    // v1 returns every flow unless a limit is asked for.
    let limit = match p.get("limit") {
        None => None,
        Some(_) => {
            let limit = number(&p, "limit", 0)?;
            if limit == 0 {
                return Err(bad("limit must be at least 1".to_owned()));
            }
            Some(limit)
        }
    };
    match p.get("state").map_or("completed", String::as_str) {
        "completed" => {
            let rows = query::flows(&c, sensor(&p), limit).await?;
            Ok(Json(with_seconds(json!({ "flows": rows }))).into_response())
        }
        "active" => {
            let rows = query::active_flows(&c, sensor(&p), limit).await?;
            Ok(Json(json!({ "flows": rows })).into_response())
        }
        other => Err(bad(format!(
            "state must be completed or active, not {other:?}"
        ))),
    }
}

/// Per sensor: its latest inventory counts and its agent's liveness
/// (`state` connected, disconnected or reconnected; a sensor known only by
/// one of the two is listed with what is known).
async fn summary(State(c): State<Client>, Query(p): Params) -> Reply {
    only(&p, &[])?;
    let now = now_ns();
    let mut sensors: std::collections::BTreeMap<String, serde_json::Value> =
        std::collections::BTreeMap::new();
    for s in query::summary(&c).await? {
        sensors.insert(s.sensor_id.clone(), json!(s));
    }
    for l in crate::liveness::liveness(&c, now).await? {
        let entry = sensors
            .entry(l.sensor_id.clone())
            .or_insert_with(|| json!({ "sensor_id": l.sensor_id, "node": l.node }));
        if let Some(map) = entry.as_object_mut() {
            // A disconnected sensor has no active connections.
            if !l.state.is_alive() {
                map.insert("tcp_connections".into(), json!(0));
            }
            map.insert("state".into(), json!(l.state));
            map.insert("liveness".into(), json!(l));
        }
    }
    let sensors: Vec<serde_json::Value> = sensors.into_values().collect();
    Ok(Json(json!({ "sensors": sensors })).into_response())
}

/// The API's routes over `client` (its database selected), behind the
/// sign-in of `auth`, with the console's files and `/healthz` open; with
/// `scans` (a producer for `tapwire.scan.events`), the Scans routes too.
pub fn router(
    client: Client,
    auth: Auth,
    audit: Option<console::AuditLog>,
    scans: Option<tapwire_plumbing::bus::kafka::KafkaSink>,
) -> Router {
    let scan_routes = match scans {
        Some(sink) => crate::scans::routes(client.clone(), sink),
        None => Router::new(),
    };
    let api = Router::new()
        .route("/api/v1/network/connections-view", get(connections_view))
        .route("/api/v1/network/edge", get(edge))
        .route("/api/v1/events", get(events))
        .route("/api/v1/pod", get(pod))
        .route("/api/v1/network/connections", get(connections_v1))
        .route("/api/v2/network/connections", get(connections_v2))
        .route("/api/v2/network/listeners", get(tcp_listeners_v2))
        .route("/api/v2/network/udp-listeners", get(udp_listeners_v2))
        .route("/api/v2/network/flows", get(flows_v2))
        .route("/api/v1/network/listeners", get(tcp_listeners))
        .route("/api/v1/network/udp-listeners", get(udp_listeners))
        .route("/api/v1/network/flows", get(flows))
        .route("/api/v1/network/summary", get(summary))
        .with_state(client)
        .merge(scan_routes);
    console::app(api, auth, audit)
}

/// What the server writes to Kafka: the audit trail of every API request,
/// and the Scans page's actions (`tapwire.scan.events`).
pub struct Published {
    /// `tapwire.audit`.
    pub audit: console::AuditLog,
    /// A producer for `tapwire.scan.events`.
    pub scans: tapwire_plumbing::bus::kafka::KafkaSink,
}

/// Serves the API on `addr` until `shutdown`; reports the bound address
/// through `bound` (useful with port 0). Without `published` there is no
/// audit trail and no Scans routes.
pub async fn serve(
    addr: SocketAddr,
    client: Client,
    auth: Auth,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    published: Option<Published>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let (audit, scans) = match published {
        Some(p) => {
            let stop = crate::scans::expire_acceptances(client.clone(), p.scans.clone());
            (Some(p.audit), Some((p.scans, stop)))
        }
        None => (None, None),
    };
    let _expiry = scans.as_ref().map(|(_, stop)| stop.clone().drop_guard());
    let scans = scans.map(|(sink, _)| sink);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    bound(listener.local_addr()?);
    match tls {
        None => {
            axum::serve(
                listener,
                router(client, auth, audit, scans)
                    .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        Some(config) => {
            axum::serve(
                crate::tls::TlsListener::new(listener, config),
                router(client, auth, audit, scans)
                    .into_make_service_with_connect_info::<crate::tls::TlsPeer>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_units() {
        assert_eq!(parse_window("15m"), Ok(900));
        assert_eq!(parse_window("90"), Ok(90));
        assert_eq!(parse_window("2h"), Ok(7200));
        assert_eq!(parse_window("1d"), Ok(86_400));
        for bad in ["", "m", "15x", "0m", "-5m", "99999999999d"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }
}
