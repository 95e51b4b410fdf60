//! Object scans: what tapwire finds in recorded traffic, container
//! filesystems and pod specs, and the scan job queue that spreads the work
//! over scanners.
//!
//! # Where things live
//!
//! - `finding`: [`Finding`], its [`Kind`] and [`Severity`]; findings never
//!   hold a secret, only where it is and a redacted excerpt.
//! - `detect`: the secret detectors (credentials, keys, tokens, card
//!   numbers).
//! - `rules`: YARA rules (yara-x): the built-in set, files and directories,
//!   reloaded on change.
//! - `content`: bytes to hits with both of the above.
//! - `traffic`: a PCAP/pcapng to findings, stream by stream.
//! - `objects`: slices in a store (S3, directory) to findings.
//! - `files`: a filesystem tree (a container's root) to findings.
//! - `podspec`: misconfigurations of a pod spec and image compliance.
//! - `job`: the queue's messages and topics.
//! - `queue`: the scanner stage: one job at a time from the scanners'
//!   consumer group, statuses, retries, heartbeats; pod records become
//!   jobs.
//! - `config`: the `[scan]` section and the flags of `tapwire scanner`.

pub mod config;
pub mod content;
pub mod detect;
pub mod files;
pub mod finding;
pub mod job;
pub mod objects;
pub mod podspec;
pub mod queue;
pub mod rules;
pub mod traffic;

pub use content::ContentScanner;
pub use finding::{Finding, Kind, Severity};
