//! What a scan finds: [`Finding`], its [`Kind`] and [`Severity`], defined
//! with the queue's messages in `tapwire_schemas::scan`.

pub use tapwire_schemas::scan::{Finding, Kind, Severity};
