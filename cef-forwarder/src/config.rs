//! The `[cef]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Syslog header style.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// `<PRI>Mmm dd hh:mm:ss HOST CEF:0|...` (what most SIEM CEF collectors expect).
    #[default]
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOST tapwire - - - CEF:0|...`.
    Rfc5424,
}

/// How messages are delimited on a TCP or TLS stream (RFC 6587).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `LEN SP MSG`: safe for any content (RFC 5425 requires it over TLS).
    #[default]
    OctetCounting,
    /// `MSG LF`: for receivers that only split on newlines. CEF escapes LF
    /// inside values, so a message never contains one.
    Lf,
}

/// Where IPv6 addresses go (the standard types `src`/`dst` as IPv4).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Ipv6Keys {
    /// `c6a2` (source) and `c6a3` (destination) with their labels.
    #[default]
    CustomKeys,
    /// IPv6 text in `src`/`dst`, for receivers that accept it.
    SrcDst,
}

/// Which key carries the source name (the seed's `source` is not a CEF
/// dictionary key).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKey {
    /// `source`, as the seed mapping has it.
    #[default]
    Source,
    /// The standard `shost`.
    Shost,
}

/// Where the node's IP goes (the seed's `cs7` is not a CEF dictionary key).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeIpKey {
    /// `cs7` + `cs7Label=Node IP`, as the seed mapping has it.
    #[default]
    Cs7,
    /// The standard `dvc` (device address; `c6a1` for an IPv6 node).
    Dvc,
    /// Left out.
    Omit,
}

/// The flags of `tapwire cef`; each sets its `[cef]` key.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct CefFlags {
    /// Receiver: udp://HOST:PORT (best effort), tcp://HOST:PORT or
    /// tls://HOST:PORT (at least once), file:PATH or - for stdout (cef.target).
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Framing on TCP/TLS: octet-counting (RFC 6587/5425) or lf (cef.framing).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub framing: Option<Framing>,
    /// Syslog header: rfc3164 (`<PRI>Mmm dd hh:mm:ss host`) or rfc5424
    /// (cef.syslog_format).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog_format: Option<SyslogFormat>,
    /// CA bundle (PEM) that signed the TLS receiver's certificate (cef.ca_file).
    #[arg(long, value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS (cef.client_cert_file).
    #[arg(long = "client-cert", value_name = "PEM", requires = "client_key_file")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// Client private key (PEM) (cef.client_key_file).
    #[arg(long = "client-key", value_name = "PEM", requires = "client_cert_file")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// KFL query selecting the verdicts sent, e.g. 'mode != "other"' (cef.filter).
    #[arg(long, value_name = "KFL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Cluster name for cs1 (cef.cluster_name).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Consumer group (cef.group).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The `[cef]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CefConfig {
    /// Where to send: `udp://HOST:PORT`, `tcp://HOST:PORT` or `tls://HOST:PORT`;
    /// or a file, `file:///ABS/PATH` or `file:REL/PATH` (opened for appending
    /// and created if missing), or standard output, `-` or `stdout`. UDP is
    /// best effort (a datagram lost on the way is not seen); TCP, TLS, files
    /// and standard output deliver at least once. A file or standard output
    /// gets one message per line whatever `framing` says.
    pub target: String,
    /// Framing on TCP and TLS (files and standard output are one message per
    /// line).
    pub framing: Framing,
    /// Syslog header style.
    pub syslog_format: SyslogFormat,
    /// Syslog facility number (0-23); 20 is local4.
    pub facility: u8,
    /// Host name in the syslog header; unset: the node the event came from.
    pub hostname: Option<String>,
    /// CEF Device Vendor (at most 63 bytes).
    pub device_vendor: String,
    /// CEF Device Product (at most 63 bytes).
    pub device_product: String,
    /// CEF Device Version (at most 31 bytes).
    pub device_version: String,
    /// Cluster name sent in `cs1`; unset: `cs1` is left out.
    pub cluster_name: Option<String>,
    /// Where IPv6 addresses go.
    pub ipv6: Ipv6Keys,
    /// Which key carries the source name.
    pub source_key: SourceKey,
    /// Which key carries the node IP: `cs7` (seed), `dvc` (standard) or `omit`.
    pub node_ip_key: NodeIpKey,
    /// Also send standard keys the seed table does not list: `proto`, `in`,
    /// `out`, `cn2` (exit code), `cn3` (duration), `dhost`, `cat`
    /// (policy/rule), `externalId` (event id, for de-duplication).
    pub extra_keys: bool,
    /// Maximum bytes of `cs1`..`cs7` values: 4000 (current CEF revisions) or
    /// 1023 (older receivers).
    pub cs_max_bytes: usize,
    /// CA bundle (PEM) to verify a TLS receiver; unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for TLS receivers that ask for one.
    pub client_cert_file: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    pub client_key_file: Option<PathBuf>,
    /// Name to verify the TLS receiver's certificate against; unset: the
    /// target's host.
    pub tls_server_name: Option<String>,
    /// At most this many messages per second; the excess is dropped and
    /// counted (`tapwire_messages_dropped_total{reason="rate_limit"}`).
    /// Unset: no limit, nothing dropped.
    pub rate_limit_per_s: Option<u32>,
    /// KFL query selecting what is sent, e.g. `mode != "other"` or
    /// `outcome != "allowed" or dns` (every violation: audited, blocked,
    /// not prevented); the fields are listed in
    /// `schemas/src/kfl.rs`. Unset: everything.
    pub filter: Option<String>,
    /// Consumer group.
    pub group: String,
    /// Topics to read: verdicts, and enriched-event topics whose events are
    /// forwarded as mode `other` without a policy decision. `tapwire.agents`
    /// (the agents' heartbeats, `AG` messages) is read in any case.
    pub topics: Vec<String>,
}

impl Default for CefConfig {
    fn default() -> Self {
        CefConfig {
            target: "udp://127.0.0.1:514".to_owned(),
            framing: Framing::OctetCounting,
            syslog_format: SyslogFormat::Rfc3164,
            facility: 20,
            hostname: None,
            device_vendor: "tapwire".to_owned(),
            device_product: "tapwire".to_owned(),
            device_version: env!("CARGO_PKG_VERSION").to_owned(),
            cluster_name: None,
            ipv6: Ipv6Keys::CustomKeys,
            source_key: SourceKey::Source,
            node_ip_key: NodeIpKey::Cs7,
            extra_keys: true,
            cs_max_bytes: 4000,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            tls_server_name: None,
            rate_limit_per_s: None,
            filter: None,
            group: "tapwire-cef".to_owned(),
            topics: vec![tapwire_schemas::topics::VERDICTS.to_owned()],
        }
    }
}

/// A `[cef]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cef.{key}: {reason}")]
pub struct CefConfigError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl CefConfig {
    /// Cross-field checks that need no I/O (certificates are read when the
    /// sender is built).
    pub fn validate(&self) -> Result<(), CefConfigError> {
        let bad = |key, reason: String| Err(CefConfigError { key, reason });
        for (key, value, max) in [
            ("device_vendor", &self.device_vendor, 63),
            ("device_product", &self.device_product, 63),
            ("device_version", &self.device_version, 31),
        ] {
            if value.is_empty() || value.len() > max {
                return bad(key, format!("must be 1 to {max} bytes, is {}", value.len()));
            }
            if value.contains(['\r', '\n']) {
                return bad(key, "must not contain CR or LF".into());
            }
        }
        if self.facility > 23 {
            return bad(
                "facility",
                format!("syslog facilities are 0-23, got {}", self.facility),
            );
        }
        if !matches!(self.cs_max_bytes, 1023 | 4000) {
            return bad(
                "cs_max_bytes",
                format!("must be 4000 or 1023, got {}", self.cs_max_bytes),
            );
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return bad(
                "client_cert_file",
                "client_cert_file and client_key_file go together".into(),
            );
        }
        if self.rate_limit_per_s == Some(0) {
            return bad(
                "rate_limit_per_s",
                "0 would drop everything; leave it unset for no limit".into(),
            );
        }
        if self.topics.is_empty() {
            return bad("topics", "name at least one topic".into());
        }
        if let Some(query) = &self.filter {
            tapwire_kfl::compile_dissected(query).map_err(|e| CefConfigError {
                key: "filter",
                reason: format!("not valid KFL:\n{}", e.render(query)),
            })?;
        }
        crate::transport::Target::parse(&self.target).map_err(|reason| CefConfigError {
            key: "target",
            reason,
        })?;
        Ok(())
    }
}
