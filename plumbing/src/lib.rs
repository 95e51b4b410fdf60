//! What every tapwire stage shares.
//!
//! - [`bus`]: the message bus behind one interface: Kafka ([`bus::kafka`],
//!   rdkafka with bundled librdkafka) for clusters, an in-memory bus
//!   ([`bus::memory`]) for the embedded mode; topic creation.
//! - [`stage`]: the stage contract ([`stage::Stage`]: name, group, inputs,
//!   outputs, handler) and its two runners: one stage alone over Kafka,
//!   or a graph of stages over the in-memory bus.
//! - [`consumer`]: the at-least-once consumer loop: batches in, handler,
//!   dead letters, offsets stored only once the handler's output is
//!   durable.
//! - [`dlq`]: dead-letter records (`tapwire.dlq`) and their headers.
//! - [`config`]: the configuration file, environment overrides, strict keys.
//! - [`telemetry`]: logs, Prometheus metrics, `/metrics` and `/healthz`.
//! - [`shutdown`]: the cancellation token every service takes.

pub mod bus;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod shutdown;
pub mod stage;
pub mod telemetry;
