//! The enrich stage (`tapwire enrich`): time-correct pod context on every
//! raw event.
//!
//! - [`config`]: the `[enrich]` section;
//! - [`dns`]: IP-to-name from DNS answers in the stream, bounded (LRU);
//! - [`enrich`]: the rules for one event (pod, host, external with DNS name,
//!   or unresolved after the wait);
//! - [`stage`]: the stage ([`EnrichConfig`] declares it; it loads
//!   `tapwire.pods` before the first event) and its batch handler, which
//!   holds events while their metadata is late;
//! - [`k8s`]: re-export of [`tapwire_cluster::k8s`] (`tapwire k8s-watch`).
//!
//! Who owned an address when (the index of pods, containers, node addresses
//! and Services) and the cluster records are [`tapwire_cluster`]'s, shared
//! with the pcap recorder.

pub mod config;
pub mod dns;
pub mod enrich;
pub mod stage;

pub use config::EnrichConfig;
pub use tapwire_cluster::k8s;
