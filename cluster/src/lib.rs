//! The cluster as tapwire sees it: the records of the compacted
//! `tapwire.pods` topic, the one index of who owned an address when, and the
//! Kubernetes watcher that publishes the records.
//!
//! # Where things live
//!
//! - [`records`]: [`ClusterRecord`] (a pod, node or Service), read from a
//!   `tapwire.pods` payload ([`ClusterRecord::decode`]) and written as a bus
//!   record ([`ClusterRecord::to_out_record`]), so a test or `tapwire run`
//!   can put the cluster on any bus.
//! - [`index`]: [`OwnerIndex`], addresses to owners over time (pods reuse
//!   IPs), container ids, node addresses and Service cluster IPs, bounded by
//!   [`IndexLimits`]. The enricher asks [`OwnerIndex::owner`]; the pcap
//!   recorder asks [`OwnerIndex::pod_at`] and [`OwnerIndex::history`].
//! - [`k8s`]: `tapwire k8s-watch`, pods, nodes and Services from the
//!   Kubernetes API (kube-rs watchers) to `tapwire.pods`, and records from a
//!   saved `kubectl get -o json` listing.
//!
//! - [`feed`]: [`feed::ClusterFeed`], the topic followed from its start on
//!   either bus (following a compacted topic is an operation of the bus),
//!   as records to apply to an index.

#![deny(missing_docs)]

pub mod feed;
pub mod index;
pub mod k8s;
pub mod records;

pub use index::{IndexLimits, IndexLimitsError, Owner, OwnerIndex, PodTenancy};
pub use records::{ClusterRecord, RecordError};
