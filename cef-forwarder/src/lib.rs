//! The CEF forwarder (`tapwire cef`): one CEF message per verdict over syslog
//! UDP, TCP or TLS.
//!
//! Not built yet: tracked by the cef-forwarder issue (#7).
