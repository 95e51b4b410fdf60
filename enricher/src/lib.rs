//! The enrich stage (`tapwire enrich`): time-correct pod context on every
//! raw event.
//!
//! - [`config`]: the `[enrich]` section;
//! - [`index`]: who owned an address when (pods reuse IPs), containers, node
//!   addresses; bounded;
//! - [`dns`]: IP-to-name from DNS answers in the stream, bounded (LRU);
//! - [`enrich`]: the rules for one event (pod, host, external with DNS name,
//!   or unresolved after the wait);
//! - [`stage`]: the consumer-loop handler that holds events while their
//!   metadata is late;
//! - [`pods`]: follows the compacted `tapwire.pods` topic from its start;
//! - [`k8s`]: `tapwire k8s-watch`, pods from the Kubernetes API to that topic.

pub mod config;
pub mod dns;
pub mod enrich;
pub mod index;
pub mod k8s;
pub mod pods;
pub mod stage;

pub use config::EnrichConfig;
