//! The CEF forwarder (`tapwire cef`): one CEF message per verdict, over syslog
//! UDP, TCP (RFC 6587 octet counting or LF framing) or TLS (rustls), or to a
//! file or standard output, one message per line (`tapwire run`).
//!
//! - `MAPPING.md` (crate root): the field-by-field design this code follows;
//! - [`config`]: the `[cef]` section and its checks;
//! - [`escape`]: CEF escaping (header and extension differ) and cutting values
//!   to the standard's maximum lengths on a UTF-8 boundary;
//! - the fields a KFL filter (`cef.filter`) sees on a verdict are those of
//!   `tapwire_schemas::kfl::EventEntry`;
//! - [`format`](mod@format): a verdict to a syslog line with a CEF payload;
//! - [`transport`]: UDP, TCP and TLS senders with reconnects, and file and
//!   stdout writers;
//! - [`liveness`]: agent heartbeats to `AG` events (connected,
//!   disconnected, events lost), the state machine the stage ticks;
//! - [`stage`]: the stage ([`CefConfig`] declares it) and its batch
//!   handler: decode, format, send, flush, and only then let the loop store
//!   offsets.

pub mod config;
pub mod escape;
pub mod format;
pub mod liveness;
pub mod stage;
pub mod transport;

pub use config::CefConfig;
