//! The scan job queue's messages and topics, defined in
//! `tapwire_schemas::scan` (the recorder creates jobs too).

pub use tapwire_schemas::scan::*;
