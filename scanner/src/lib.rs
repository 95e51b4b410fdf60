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

pub mod content;
pub mod detect;
pub mod files;
pub mod finding;
pub mod job;
pub mod objects;
pub mod podspec;
pub mod rules;
pub mod traffic;

pub use content::ContentScanner;
pub use finding::{Finding, Kind, Severity};
