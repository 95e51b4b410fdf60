//! tapwire's event contracts.
//!
//! - `avro/*.avsc`: the Avro schemas, one file per named type; `avro/history/`
//!   keeps earlier versions that readers must still resolve.
//! - [`events`]: the Rust types, field for field the same as the schemas, and
//!   borrowed views of enriched events and verdicts for the hot paths.
//! - [`registry`](mod@registry): the embedded schemas, composed and fingerprinted.
//! - [`codec`]: single-object encoding (`C3 01` + fingerprint + datum) and
//!   decoding, including older writer schemas; views and verdicts spliced
//!   from an enriched message without re-encoding it.
//! - [`ids`]: [`EventId`] (stable across retries) and [`Ip`].
//! - [`topics`]: topic names and how each is created.
//! - [`samples`]: synthetic events for the load generator, benchmarks and tests.
//! - [`scan`]: the scan job queue's JSON messages (jobs, statuses,
//!   findings, scanner heartbeats).
//! - [`signature`]: CEF signature ids, names and severities per event kind.
//! - [`upgrade`]: conversions of older messages across layout changes that
//!   Avro resolution cannot express.
//! - `kfl` (feature `kfl`): `EventEntry`, events and verdicts as KFL entries.

pub mod codec;
pub mod events;
pub mod ids;
#[cfg(feature = "kfl")]
pub mod kfl;
pub mod registry;
pub mod samples;
pub mod scan;
pub mod signature;
pub mod topics;
pub mod upgrade;

pub use codec::{
    AnyEvent, DecodeError, EncodeError, Record, decode, decode_any, encode, encode_into,
};
pub use events::*;
pub use ids::{EventId, Ip};
pub use registry::{SchemaKind, registry};
