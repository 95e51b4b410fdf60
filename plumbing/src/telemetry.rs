//! Telemetry: structured logs (text or JSON), Prometheus counters per stage,
//! and the admin HTTP server with `/metrics` and `/healthz`.
//!
//! Metric names follow `tapwire_<what>_<unit>_total`; label values are
//! bounded (stage names, error kinds), never addresses or pod names.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, TelemetryConfig};

/// Keeps the OTLP exporter alive; dropping it flushes pending spans.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("warning: flushing OTLP spans failed: {err}");
        }
    }
}

/// Telemetry that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// OTLP export asked for, but this build does not have it.
    #[error(
        "telemetry.otlp_endpoint is set, but this tapwire was built without the `otlp` feature (cargo build --features otlp)"
    )]
    OtlpNotBuilt,
    /// The exporter could not be built.
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Otlp {
        /// The configured endpoint.
        endpoint: String,
        /// What failed.
        reason: String,
    },
}

/// Sets up the global log subscriber and, when `otlp_endpoint` is set, span
/// export over OTLP/HTTP. `RUST_LOG`, when set, overrides the configured
/// filter. A second call (tests) keeps the first subscriber.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let fmt = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        // Colour only for a person at a terminal: a log redirected to a file
        // or collected by the cluster carries no escape codes.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    match &config.otlp_endpoint {
        None => {
            let _ = registry.try_init();
            Ok(TelemetryGuard {
                #[cfg(feature = "otlp")]
                provider: None,
            })
        }
        #[cfg(not(feature = "otlp"))]
        Some(_) => Err(TelemetryError::OtlpNotBuilt),
        #[cfg(feature = "otlp")]
        Some(endpoint) => {
            use opentelemetry::trace::TracerProvider as _;
            use opentelemetry_otlp::WithExportConfig as _;

            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| TelemetryError::Otlp {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                })?;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("tapwire")
                        .build(),
                )
                .build();
            let tracer = provider.tracer("tapwire");
            let _ = registry
                .with(tracing_opentelemetry::layer().with_tracer(tracer))
                .try_init();
            Ok(TelemetryGuard {
                provider: Some(provider),
            })
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageReasonLabels {
    stage: String,
    reason: String,
}

struct Metrics {
    registry: Mutex<Registry>,
    messages_in: Family<StageLabel, Counter>,
    messages_out: Family<StageLabel, Counter>,
    dead_lettered: Family<StageReasonLabels, Counter>,
    dropped: Family<StageReasonLabels, Counter>,
    marked: Family<StageReasonLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let metrics = Metrics {
        registry: Mutex::new(Registry::default()),
        messages_in: Family::default(),
        messages_out: Family::default(),
        dead_lettered: Family::default(),
        dropped: Family::default(),
        marked: Family::default(),
    };
    // prometheus-client appends `_total` to counter names.
    registry.register(
        "tapwire_messages_in",
        "Messages a stage read",
        metrics.messages_in.clone(),
    );
    registry.register(
        "tapwire_messages_out",
        "Records a stage delivered downstream",
        metrics.messages_out.clone(),
    );
    registry.register(
        "tapwire_messages_dead_lettered",
        "Messages sent to tapwire.dlq, by error kind",
        metrics.dead_lettered.clone(),
    );
    registry.register(
        "tapwire_messages_dropped",
        "Messages knowingly dropped, by reason",
        metrics.dropped.clone(),
    );
    registry.register(
        "tapwire_events_marked",
        "Events sent on with a marker (e.g. unresolved), by marker",
        metrics.marked.clone(),
    );
    *metrics.registry.lock().unwrap_or_else(|p| p.into_inner()) = registry;
    metrics
});

/// The counters of one stage.
#[derive(Clone)]
pub struct StageMetrics {
    stage: String,
    /// Messages read.
    pub messages_in: Counter,
    /// Records delivered downstream.
    pub messages_out: Counter,
}

impl StageMetrics {
    /// Counters for `stage` (shared with every other handle of that stage).
    pub fn new(stage: &str) -> Self {
        let label = StageLabel {
            stage: stage.to_owned(),
        };
        StageMetrics {
            stage: stage.to_owned(),
            messages_in: METRICS.messages_in.get_or_create(&label).clone(),
            messages_out: METRICS.messages_out.get_or_create(&label).clone(),
        }
    }

    /// Counts one dead-lettered message of kind `reason`.
    pub fn dead_lettered(&self, reason: &str) {
        self.count(&METRICS.dead_lettered, reason, 1);
    }

    /// Counts `n` events sent on with `mark` (e.g. `unresolved`).
    pub fn marked(&self, mark: &str, n: u64) {
        self.count(&METRICS.marked, mark, n);
    }

    /// Counts `n` messages dropped for `reason`.
    pub fn dropped(&self, reason: &str, n: u64) {
        self.count(&METRICS.dropped, reason, n);
    }

    fn count(&self, family: &Family<StageReasonLabels, Counter>, reason: &str, n: u64) {
        family
            .get_or_create(&StageReasonLabels {
                stage: self.stage.clone(),
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }
}

/// Every metric in the OpenMetrics text format.
pub fn render_metrics() -> String {
    let mut out = String::new();
    let registry = METRICS.registry.lock().unwrap_or_else(|p| p.into_inner());
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// What `/healthz` reports: healthy, or failing with a reason; and, while
/// healthy, a note on a state worth knowing (such as recording being off).
#[derive(Clone, Default)]
pub struct Health {
    failure: Arc<Mutex<Option<String>>>,
    note: Arc<Mutex<Option<String>>>,
}

impl Health {
    /// Marks healthy.
    pub fn set_ok(&self) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Marks failing with `reason`.
    pub fn set_failing(&self, reason: String) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// `None` when healthy.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets (or, with `None`, clears) the note `/healthz` adds to `ok`.
    pub fn set_note(&self, note: Option<String>) {
        *self.note.lock().unwrap_or_else(|p| p.into_inner()) = note;
    }

    /// The note, if any.
    pub fn note(&self) -> Option<String> {
        self.note.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `/healthz` reply: `ok` (with the note), or the failure.
    pub fn reply(&self) -> (bool, String) {
        match (self.failure(), self.note()) {
            (None, None) => (true, "ok\n".to_owned()),
            (None, Some(note)) => (true, format!("ok: {note}\n")),
            (Some(reason), _) => (false, format!("failing: {reason}\n")),
        }
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until `shutdown`. Returns the
/// bound address (port 0 picks one).
pub async fn serve_admin(
    addr: SocketAddr,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    render_metrics(),
                )
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let health = health.clone();
                async move {
                    match health.reply() {
                        (true, body) => (StatusCode::OK, body),
                        (false, body) => (StatusCode::SERVICE_UNAVAILABLE, body),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "admin server stopped");
        }
    });
    Ok(bound)
}

/// Lets one log line through per interval at a call site and counts the rest.
pub struct RateLimit {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// One line per `interval`.
    pub fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines suppressed since the last one)` when a line may be logged.
    pub fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_counters_show_up_in_the_exposition() {
        let metrics = StageMetrics::new("unit-test-stage");
        metrics.messages_in.inc_by(3);
        metrics.dead_lettered("bad_magic");
        metrics.marked("unresolved", 2);
        metrics.dropped("rate_limit", 5);
        let text = render_metrics();
        for line in [
            r#"tapwire_events_marked_total{stage="unit-test-stage",reason="unresolved"} 2"#,
            r#"tapwire_messages_dropped_total{stage="unit-test-stage",reason="rate_limit"} 5"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(
            text.contains(r#"tapwire_messages_in_total{stage="unit-test-stage"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tapwire_messages_dead_lettered_total{stage="unit-test-stage",reason="bad_magic"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn rate_limit_counts_what_it_suppresses() {
        let limit = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.suppressed.load(Ordering::Relaxed), 2);
    }
}
