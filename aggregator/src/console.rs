//! The web console and the API's sign-in.
//!
//! - The console: `console/index.html`, `console.js`, `console.css`, built
//!   into the binary (`include_str!`), served at `/` and `/console/*`: plain
//!   HTML, CSS and one JavaScript module, nothing fetched from elsewhere.
//! - Sign-in: every `/api/*` route needs `Authorization: Bearer TOKEN`, a
//!   token of [`ApiToken`] (name, role, secret) from `aggregate.tokens` or a
//!   tokens file (a mounted Kubernetes Secret); a missing or unknown token
//!   is a 401 with no data, a viewer's token on an `/api/v1/admin/*` route a
//!   403. `/healthz`, `/metrics` and the console's own files are open (the
//!   page asks for a token). Tokens are compared in constant time and never
//!   logged; requests are logged with the token's name.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every read route.
    Viewer,
    /// Also the `/api/v1/admin/*` routes.
    Admin,
}

/// A bearer token of the API and the console.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who uses it (shown in the console and the audit trail).
    pub name: String,
    /// Viewer or admin.
    pub role: Role,
    /// The secret (at least 16 characters).
    pub token: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Too short to be a secret.
    #[error("token {0:?}: the secret must be at least 16 characters")]
    Short(String),
    /// Two tokens share a name or a secret.
    #[error("token {0:?}: its name or secret is used twice")]
    Duplicate(String),
    /// A tokens file that does not read or parse.
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// What is wrong (never the secret).
        reason: String,
    },
}

/// Reads a tokens file: one `NAME ROLE SECRET` per line, `#` comments (the
/// form a Kubernetes Secret mounted as a file takes).
pub fn tokens_file(path: &Path) -> Result<Vec<ApiToken>, TokenError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TokenError::File {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = |reason: &str| TokenError::File {
            file: file.clone(),
            reason: format!("line {}: {reason}", i + 1),
        };
        let [name, role, token] = fields[..] else {
            return Err(bad("expected NAME ROLE SECRET"));
        };
        let role = match role {
            "viewer" => Role::Viewer,
            "admin" => Role::Admin,
            _ => return Err(bad("the role is viewer or admin")),
        };
        out.push(ApiToken {
            name: name.to_owned(),
            role,
            token: token.to_owned(),
        });
    }
    Ok(out)
}

/// The tokens the API accepts.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Arc<Vec<ApiToken>>,
}

/// Who made a request (set by the sign-in layer for the handlers).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Auth {
    /// Accepts `tokens` (checked: long enough, names and secrets unique).
    pub fn new(tokens: Vec<ApiToken>) -> Result<Auth, TokenError> {
        for (i, t) in tokens.iter().enumerate() {
            if t.token.len() < 16 {
                return Err(TokenError::Short(t.name.clone()));
            }
            if tokens[..i]
                .iter()
                .any(|o| o.name == t.name || o.token == t.token)
            {
                return Err(TokenError::Duplicate(t.name.clone()));
            }
        }
        Ok(Auth {
            tokens: Arc::new(tokens),
        })
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether none is (then every API request is refused).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token `secret` is, compared in constant time.
    fn find(&self, secret: &[u8]) -> Option<&ApiToken> {
        let mut found = None;
        for t in self.tokens.iter() {
            let a = t.token.as_bytes();
            let mut diff = (a.len() ^ secret.len()) as u8 | u8::from(a.len() != secret.len());
            for (i, b) in a.iter().enumerate() {
                diff |= b ^ secret.get(i).copied().unwrap_or(0);
            }
            if diff == 0 {
                found = Some(t);
            }
        }
        found
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (status, Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tapwire\""),
        );
    }
    r
}

/// The sign-in layer of the `/api/*` routes.
pub async fn require_token(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let secret = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = secret.and_then(|s| auth.find(s.as_bytes())) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "sign in: this API needs a bearer token (Authorization: Bearer TOKEN)",
        );
    };
    let caller = Caller {
        name: token.name.clone(),
        role: token.role,
    };
    if req.uri().path().starts_with("/api/v1/admin/") && token.role != Role::Admin {
        let mut refused = refuse(StatusCode::FORBIDDEN, "this route needs an admin token");
        // Who was refused, for the audit trail.
        refused.extensions_mut().insert(caller);
        return refused;
    }
    tracing::debug!(user = %caller.name, path = %req.uri().path(), "api request");
    req.extensions_mut().insert(caller.clone());
    let mut response = next.run(req).await;
    // For the audit layer outside this one.
    response.extensions_mut().insert(caller);
    response
}

/// The API's audit trail: every `/api/*` request (who, from where, what,
/// the status) as an `ApiRequest` on `tapwire.audit`, sent in batches by a
/// background task. A full queue or a failed send is counted and logged,
/// never blocks an answer (`tapwire_messages_dropped_total{stage="serve",
/// reason="audit"}`).
#[derive(Clone)]
pub struct AuditLog {
    tx: tokio::sync::mpsc::Sender<tapwire_schemas::events::ApiRequest>,
    node: String,
    instance: String,
    seq: Arc<std::sync::atomic::AtomicU64>,
    metrics: tapwire_plumbing::telemetry::StageMetrics,
}

impl AuditLog {
    /// Sends to `sink`; `node` and `instance` name this server in the
    /// records' headers.
    pub fn start<S>(sink: S, node: &str, instance: &str) -> AuditLog
    where
        S: tapwire_plumbing::bus::Sink + 'static,
    {
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<tapwire_schemas::events::ApiRequest>(10_000);
        let metrics = tapwire_plumbing::telemetry::StageMetrics::new("serve");
        let task_metrics = metrics.clone();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 1000).await > 0 {
                let records: Vec<_> = batch
                    .drain(..)
                    .filter_map(|r| {
                        let payload = tapwire_schemas::encode(&r).ok()?;
                        Some(tapwire_plumbing::bus::OutRecord::new(
                            tapwire_schemas::topics::AUDIT,
                            Some(r.user.clone().into_bytes()),
                            payload,
                        ))
                    })
                    .collect();
                let n = records.len() as u64;
                match sink.send_batch(records).await {
                    Ok(()) => {
                        task_metrics.messages_out.inc_by(n);
                    }
                    Err(err) => {
                        task_metrics.dropped("audit", n);
                        tracing::warn!(error = %err, requests = n, "API requests not written to the audit trail");
                    }
                }
            }
        });
        AuditLog {
            tx,
            node: node.to_owned(),
            instance: instance.to_owned(),
            seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            metrics,
        }
    }

    fn record(&self, mut r: tapwire_schemas::events::ApiRequest, at_ns: i64) {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r.header = tapwire_schemas::events::EventHeader {
            id: tapwire_schemas::EventId::derive(&[
                b"api",
                self.node.as_bytes(),
                self.instance.as_bytes(),
                &at_ns.to_le_bytes(),
                &seq.to_le_bytes(),
            ]),
            timestamp_ns: at_ns,
            node: self.node.clone(),
            sensor_id: self.instance.clone(),
            node_ip: None,
        };
        if self.tx.try_send(r).is_err() {
            self.metrics.dropped("audit", 1);
            tracing::warn!("the audit trail's queue is full: an API request was not recorded");
        }
    }
}

/// The audit layer of the `/api/*` routes (outside the sign-in layer, so
/// refusals are recorded too).
pub async fn audit(State(log): State<Option<AuditLog>>, req: Request, next: Next) -> Response {
    let Some(log) = log else {
        return next.run(req).await;
    };
    let started = std::time::Instant::now();
    let at_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let source_ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| {
            req.extensions()
                .get::<axum::extract::ConnectInfo<crate::tls::TlsPeer>>()
                .map(|c| c.0.0.ip())
        })
        .map(tapwire_schemas::Ip);
    let method = req.method().to_string();
    let route = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let response = next.run(req).await;
    let caller = response.extensions().get::<Caller>();
    log.record(
        tapwire_schemas::events::ApiRequest {
            header: Default::default(),
            user: caller.map(|c| c.name.clone()).unwrap_or_default(),
            role: caller
                .map(|c| match c.role {
                    Role::Viewer => "viewer".to_owned(),
                    Role::Admin => "admin".to_owned(),
                })
                .unwrap_or_default(),
            source_ip,
            method,
            route,
            query,
            status: i32::from(response.status().as_u16()),
            duration_ns: started.elapsed().as_nanos() as i64,
        },
        at_ns,
    );
    response
}

async fn whoami(req: Request) -> Response {
    match req.extensions().get::<Caller>() {
        Some(c) => Json(json!({ "name": c.name, "role": c.role })).into_response(),
        None => refuse(StatusCode::UNAUTHORIZED, "sign in"),
    }
}

async fn admin_tokens(State(auth): State<Auth>) -> Response {
    let names: Vec<_> = auth
        .tokens
        .iter()
        .map(|t| json!({ "name": t.name, "role": t.role }))
        .collect();
    Json(json!({ "tokens": names })).into_response()
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The sign-in routes (`/api/v1/whoami`, `/api/v1/admin/tokens`), to sit
/// behind [`require_token`] with the data routes.
pub fn api_routes(auth: Auth) -> Router {
    Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/admin/tokens", get(admin_tokens))
        .with_state(auth)
}

/// The console's files, open to everyone (the page asks for a token).
pub fn assets() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                asset(
                    include_str!("../console/index.html"),
                    "text/html; charset=utf-8",
                )
            }),
        )
        .route(
            "/console/console.js",
            get(|| async {
                asset(
                    include_str!("../console/console.js"),
                    "text/javascript; charset=utf-8",
                )
            }),
        )
        .route(
            "/console/console.css",
            get(|| async {
                asset(
                    include_str!("../console/console.css"),
                    "text/css; charset=utf-8",
                )
            }),
        )
}

/// The whole application around `data` (the data routes, their state
/// applied): with the sign-in routes, behind the sign-in layer and, outside
/// it, the audit layer (refusals are recorded too); the console's files and
/// `/healthz` open. `tapwire serve`, `run/demo --serve` and `investigate
/// --serve` all serve it.
pub fn app(data: Router, auth: Auth, audit: Option<AuditLog>) -> Router {
    let api = data
        .merge(api_routes(auth.clone()))
        .layer(axum::middleware::from_fn_with_state(auth, require_token))
        .layer(axum::middleware::from_fn_with_state(audit, self::audit));
    Router::new()
        .merge(api)
        .merge(assets())
        .route("/healthz", get(|| async { "ok" }))
}

/// An admin token for this process only (the sign-in link a command prints
/// when no token is configured), and its secret.
pub fn one_time_admin() -> std::io::Result<(ApiToken, String)> {
    let secret = random_secret()?;
    Ok((
        ApiToken {
            name: "one-time-admin".to_owned(),
            role: Role::Admin,
            token: secret.clone(),
        },
        secret,
    ))
}

/// A fresh 32-hex-digit secret from the kernel's random source.
pub fn random_secret() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
