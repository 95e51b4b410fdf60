//! The aggregator: enriched events with their verdicts, the inventory
//! snapshots and the agents' heartbeats in ClickHouse, and the views
//! analysts and a console read.
//!
//! - [`config`]: the `[aggregate]` section.
//! - [`schema`]: versioned, idempotent migrations for ClickHouse 18.16 and
//!   current releases (TTL, `LowCardinality`, `IPv6` where supported).
//! - [`rows`]: table rows, and which events count as connections.
//! - [`sink`]: `tapwire aggregate`'s handler: one insert per table per
//!   batch, offsets stored after the inserts, replays skipped by the Kafka
//!   position every row carries.
//! - [`liveness`]: each sensor's state (connected, disconnected,
//!   reconnected) and recent losses from its heartbeats.
//! - [`memory`]: the same counts and view in memory, for `tapwire run`
//!   and `tapwire demo`; [`memory_serve`]: the console over them
//!   (`--serve`).
//! - [`query`]: the connections view (Audit/Enforce/Other tabs, edges), the
//!   paged API reads, listeners, flows, per-sensor summaries.
//! - [`serve`]: `tapwire serve`, the HTTP JSON API over [`query`].
//! - [`tls`]: HTTPS for `tapwire serve` (rustls, certificate from files).
//! - [`console`]: the web console served with it (files in `console/`,
//!   built in) and the bearer-token sign-in of every API route.
//! - `queries/*.sql` (crate root): analysts' SQL against the schema, each
//!   run by a test.

pub mod config;
pub mod console;
pub mod liveness;
pub mod memory;
pub mod memory_serve;
pub mod query;
pub mod rows;
pub mod scans;
pub mod schema;
pub mod serve;
pub mod sink;
pub mod tls;

pub use config::AggregateConfig;
