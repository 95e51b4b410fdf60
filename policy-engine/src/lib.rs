//! The policy stage: audit and enforce policies, and a verdict for every
//! enriched event.
//!
//! - [`document`]: the YAML documents (`NetworkPolicy`, `RuntimePolicy`),
//!   parsed strictly with file, line and field in every error;
//! - [`compile`]: policies compiled once, coverage and precedence rules, and
//!   [`compile::PolicySet::judge`];
//! - [`enforce`]: enforce-mode policies as records for the node agents
//!   (`tapwire.enforcement`), and the kernel tables an agent derives from
//!   them for the pods of its node;
//! - [`config`]: the `[policy]` section (group, files, reload interval);
//! - [`stage`]: the policy stage (declared by [`PolicyConfig`]) and its
//!   batch handler, reloading the policy files when they change.

pub mod compile;
pub mod config;
pub mod document;
pub mod enforce;
pub mod stage;

pub use compile::{CompileError, PolicySet};
pub use config::PolicyConfig;
pub use document::{Document, DocumentError, parse};
