//! One module per subcommand family; each function takes parsed arguments
//! and the loaded configuration, and returns when the work is done.

pub mod aggregate;
pub mod capture;
pub mod cef;
pub mod demo;
pub mod enrich;
pub mod investigate;
pub mod policy;
pub mod record;
pub mod run;
pub mod tail;
pub mod topics;
