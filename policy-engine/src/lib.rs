//! The policy stage: audit and enforce policies, and a verdict for every
//! enriched event.
//!
//! - [`document`]: the YAML documents (`NetworkPolicy`, `RuntimePolicy`),
//!   parsed strictly with file, line and field in every error;
//! - [`compile`]: policies compiled once, coverage and precedence rules, and
//!   [`compile::PolicySet::judge`].
//!
//! Not built yet: the `tapwire policy` consumer stage with hot reload, KFL
//! conditions (`when`) in rules, and node enforcement; `tapwire policy check`
//! validates documents.

pub mod compile;
pub mod document;

pub use compile::{CompileError, PolicySet};
pub use document::{Document, DocumentError, parse};
