//! The policy stage: audit and enforce policies, and a verdict for every
//! enriched event.
//!
//! - [`document`]: the YAML documents (`NetworkPolicy`, `RuntimePolicy`),
//!   parsed strictly with file, line and field in every error;
//! - [`compile`]: policies compiled once, coverage and precedence rules, and
//!   [`compile::PolicySet::judge`];
//! - [`config`]: the `[policy]` section (group, files, reload interval);
//! - [`stage`]: the policy stage (declared by [`PolicyConfig`]) and its
//!   batch handler, reloading the policy files when they change.
//!
//! Not built yet: KFL conditions (`when`) in rules, and node enforcement.

pub mod compile;
pub mod config;
pub mod document;
pub mod stage;

pub use compile::{CompileError, PolicySet};
pub use config::PolicyConfig;
pub use document::{Document, DocumentError, parse};
