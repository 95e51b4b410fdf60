//! A verdict to one syslog message carrying CEF, as `MAPPING.md` lays out:
//! the syslog header, the CEF header (signature from
//! [`tapwire_schemas::signature`]) and the extension keys in a fixed order;
//! and an agent event (family `AG`, [`crate::liveness`]) the same way.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::Write as _;
use std::net::IpAddr;

use tapwire_schemas::events::{
    Direction, EventBody, EventHeader, L4Event, L4Kind, Mode, Outcome, PeerContext, PeerKind,
    Protocol, RuntimeEvent, RuntimeKind, Verdict,
};
use tapwire_schemas::signature::{
    AgentEventKind, EventKind, Signature, agent_signature, signature,
};

use crate::config::{CefConfig, Ipv6Keys, NodeIpKey, SourceKey, SyslogFormat};
use crate::escape::{cut, extension_into, header_into};
use crate::liveness::AgentEvent;

/// Maximum value lengths (bytes) of the CEF standard's keys used here.
const MAX_DEFAULT: usize = 1023;
const MAX_ACT: usize = 63;
const MAX_OUTCOME: usize = 63;
const MAX_PROTO: usize = 31;
const MAX_FILE_HASH: usize = 255;
const MAX_DVCHOST: usize = 100;

/// Where IPv6 addresses go by default: key, label key, label.
const SRC_V6: (&str, &str, &str) = ("c6a2", "c6a2Label", "Source IPv6 Address");
const DST_V6: (&str, &str, &str) = ("c6a3", "c6a3Label", "Destination IPv6 Address");
const NODE_V6: (&str, &str, &str) = ("c6a1", "c6a1Label", "Device IPv6 Address");

/// A rendered syslog timestamp (bytes, length).
type Stamp = ([u8; 24], u8);

/// Formats verdicts; built once from the configuration. Not shared between
/// threads: it caches the rendered timestamp of the last second it saw.
pub struct Formatter {
    time_cache: Cell<Option<(i64, Stamp)>>,
    cef_prefix: Vec<u8>,
    syslog_format: SyslogFormat,
    facility: u8,
    hostname: Option<String>,
    cluster_name: Option<String>,
    ipv6: Ipv6Keys,
    source_key: &'static str,
    node_ip_key: NodeIpKey,
    extra_keys: bool,
    cs_max: usize,
}

impl Formatter {
    /// A formatter for `config` (validated beforehand).
    pub fn new(config: &CefConfig) -> Self {
        let mut cef_prefix = b"CEF:0|".to_vec();
        for field in [
            &config.device_vendor,
            &config.device_product,
            &config.device_version,
        ] {
            header_into(field, &mut cef_prefix);
            cef_prefix.push(b'|');
        }
        Formatter {
            time_cache: Cell::new(None),
            cef_prefix,
            syslog_format: config.syslog_format,
            facility: config.facility,
            hostname: config.hostname.clone(),
            cluster_name: config.cluster_name.clone(),
            ipv6: config.ipv6,
            source_key: match config.source_key {
                SourceKey::Source => "source",
                SourceKey::Shost => "shost",
            },
            node_ip_key: config.node_ip_key,
            extra_keys: config.extra_keys,
            cs_max: config.cs_max_bytes,
        }
    }

    /// The syslog header and the CEF header of a message with `sig`, up to
    /// the extension.
    fn headers(&self, header: &EventHeader, sig: Signature, out: &mut Vec<u8>) {
        self.syslog_header(header, sig.severity, out);
        out.extend_from_slice(&self.cef_prefix);
        header_into(sig.id, out);
        out.push(b'|');
        header_into(sig.name, out);
        out.push(b'|');
        out.extend_from_slice(itoa::Buffer::new().format(sig.severity).as_bytes());
        out.push(b'|');
    }

    /// Appends the whole syslog message for `verdict` to `out` (no framing,
    /// no line end). Returns how many values were cut to their maximum.
    pub fn format(&self, verdict: &Verdict, out: &mut Vec<u8>) -> u32 {
        let e = &verdict.event;
        let kind = EventKind::of(e);
        let header = e.header();
        self.headers(header, signature(kind, verdict.outcome), out);
        let mut ext = Ext {
            out,
            first: true,
            cut: 0,
        };
        self.extension(verdict, header, &mut ext);
        ext.cut
    }

    /// Appends the syslog message for an agent event (`AG` family,
    /// `MAPPING.md` section 7) to `out`. Returns how many values were cut.
    pub fn format_agent(&self, event: &AgentEvent, out: &mut Vec<u8>) -> u32 {
        let h = &event.header;
        self.headers(h, agent_signature(event.kind), out);
        let mut x = Ext {
            out,
            first: true,
            cut: 0,
        };
        x.int("rt", h.timestamp_ns.div_euclid(1_000_000));
        x.str("act", event.action, MAX_ACT);
        let error = event.kind != AgentEventKind::Connected;
        x.str(
            "outcome",
            if error { "Error" } else { "Success" },
            MAX_OUTCOME,
        );
        x.opt("reason", event.reason.as_deref(), MAX_DEFAULT);
        x.str(self.source_key, &h.sensor_id, MAX_DEFAULT);
        x.str("dvchost", &h.node, MAX_DEFAULT);
        x.str("deviceExternalId", &h.sensor_id, MAX_DEFAULT);
        if event.kind == AgentEventKind::Loss {
            x.int("cn1", event.lost());
            x.str("cn1Label", "Events lost", MAX_DEFAULT);
        }
        self.node_fields(&mut x, h);
        if self.extra_keys {
            x.key("externalId");
            let _ = write!(x.out, "{}", h.id.to_hex());
        }
        x.cut
    }

    /// Appends the syslog message for a request to the API (`API` family:
    /// `API-001` severity 3 when it succeeded, `API-002` severity 8 on an
    /// error) to `out`. Returns how many values were cut.
    pub fn format_api(&self, r: &tapwire_schemas::events::ApiRequest, out: &mut Vec<u8>) -> u32 {
        let h = &r.header;
        let ok = r.succeeded();
        self.headers(h, tapwire_schemas::signature::api_signature(ok), out);
        let mut x = Ext {
            out,
            first: true,
            cut: 0,
        };
        x.int("rt", h.timestamp_ns.div_euclid(1_000_000));
        x.str("act", &r.method, MAX_ACT);
        x.str("outcome", if ok { "Success" } else { "Error" }, MAX_OUTCOME);
        if !r.user.is_empty() {
            x.str("suser", &r.user, MAX_DEFAULT);
        }
        if let Some(ip) = r.source_ip {
            self.ip(&mut x, "src", SRC_V6, ip.0);
        }
        let request = if r.query.is_empty() {
            r.route.clone()
        } else {
            format!("{}?{}", r.route, r.query)
        };
        x.str("request", &request, MAX_DEFAULT);
        x.int("cn1", r.status);
        x.str("cn1Label", "HTTP status", MAX_DEFAULT);
        if !r.role.is_empty() {
            x.str("spriv", &r.role, MAX_DEFAULT);
        }
        self.node_fields(&mut x, h);
        if self.extra_keys {
            x.key("externalId");
            let _ = write!(x.out, "{}", h.id.to_hex());
        }
        x.cut
    }

    /// Appends the syslog message for a scan job's status change (`SJ`
    /// family) to `out`; nothing for `Parsing results`. Returns how many
    /// values were cut.
    pub fn format_scan_status(
        &self,
        c: &tapwire_schemas::scan::StatusChange,
        out: &mut Vec<u8>,
    ) -> u32 {
        let Some(sig) = tapwire_schemas::signature::scan_job_signature(c) else {
            return 0;
        };
        let header = scan_header(&c.job_id, c.status.as_str(), c.at_ns, &c.scanner);
        self.headers(&header, sig, out);
        let mut x = Ext {
            out,
            first: true,
            cut: 0,
        };
        x.int("rt", c.at_ns.div_euclid(1_000_000));
        x.str("act", c.status.as_str(), MAX_ACT);
        let failed = c.status == tapwire_schemas::scan::Status::Error;
        x.str(
            "outcome",
            if failed { "Error" } else { "Success" },
            MAX_OUTCOME,
        );
        x.str("fname", &c.object, MAX_DEFAULT);
        if let Some(reason) = &c.reason {
            x.str("reason", reason, MAX_DEFAULT);
        }
        x.str("cs3", &c.job_id, MAX_DEFAULT);
        x.str("cs3Label", "Scan job", MAX_DEFAULT);
        if !c.scanner.is_empty() {
            x.str("dvchost", &c.scanner, MAX_DVCHOST);
        }
        x.int("cn1", i64::from(c.attempt));
        x.str("cn1Label", "Attempt", MAX_DEFAULT);
        if let Some(n) = c.findings {
            x.int("cn2", n as i64);
            x.str("cn2Label", "Findings", MAX_DEFAULT);
        }
        self.node_fields(&mut x, &header);
        x.cut
    }

    /// Appends the syslog message for what happened after a scan (risk
    /// accepted, expired, threat removed: `MLW`, `SD`, `MS`, `NCMP`;
    /// compliance: `CMP-001`, `NCMP-001`) to `out`. Returns how many values
    /// were cut.
    pub fn format_scan_event(
        &self,
        e: &tapwire_schemas::scan::ScanEvent,
        out: &mut Vec<u8>,
    ) -> u32 {
        let sig = tapwire_schemas::signature::scan_event_signature(e);
        let header = scan_header(&e.id, e.event.as_str(), e.at_ns, "");
        self.headers(&header, sig, out);
        let mut x = Ext {
            out,
            first: true,
            cut: 0,
        };
        x.int("rt", e.at_ns.div_euclid(1_000_000));
        x.str("act", e.event.as_str(), MAX_ACT);
        x.str(
            "outcome",
            if e.success { "Success" } else { "Error" },
            MAX_OUTCOME,
        );
        if !e.user.is_empty() {
            x.str("suser", &e.user, MAX_DEFAULT);
        }
        x.str("fname", &e.object, MAX_DEFAULT);
        if !e.reason.is_empty() {
            x.str("reason", &e.reason, MAX_DEFAULT);
        }
        if !e.finding_id.is_empty() {
            x.str("cs3", &e.finding_id, MAX_DEFAULT);
            x.str("cs3Label", "Finding", MAX_DEFAULT);
            x.str("cs4", &e.rule, MAX_DEFAULT);
            x.str("cs4Label", "Rule", MAX_DEFAULT);
        }
        if let Some(until) = e.until_ns {
            x.int("end", until.div_euclid(1_000_000));
        }
        self.node_fields(&mut x, &header);
        x.cut
    }

    /// The cluster, node name and node IP every family carries.
    fn node_fields(&self, x: &mut Ext<'_>, h: &EventHeader) {
        let cs = self.cs_max;
        x.labeled(
            ("cs1", "cs1Label"),
            self.cluster_name.as_deref().unwrap_or_default(),
            "Cluster name",
            cs,
        );
        x.labeled(("cs2", "cs2Label"), &h.node, "Node name", cs);
        if let Some(ip) = h.node_ip {
            match (self.node_ip_key, ip.0) {
                (NodeIpKey::Cs7, ip) => {
                    x.labeled(("cs7", "cs7Label"), &ip.to_string(), "Node IP", cs)
                }
                (NodeIpKey::Dvc, ip) => self.ip(x, "dvc", NODE_V6, ip),
                (NodeIpKey::Omit, _) => {}
            }
        }
    }

    fn syslog_header(&self, header: &EventHeader, cef_severity: i32, out: &mut Vec<u8>) {
        let syslog_severity = match cef_severity {
            0..=3 => 6,
            4..=6 => 5,
            7..=8 => 4,
            _ => 2,
        };
        let pri = u16::from(self.facility) * 8 + syslog_severity;
        let host = self.hostname.as_deref().unwrap_or(&header.node);
        let host = if host.is_empty() { "-" } else { host };
        out.push(b'<');
        out.extend_from_slice(itoa::Buffer::new().format(pri).as_bytes());
        out.push(b'>');
        let second = header.timestamp_ns.div_euclid(1_000_000_000);
        let cached = self.time_cache.get();
        let stamp = match cached {
            Some((s, stamp)) if s == second => stamp,
            _ => {
                let stamp = self.render_second(second);
                self.time_cache.set(Some((second, stamp)));
                stamp
            }
        };
        out.extend_from_slice(&stamp.0[..usize::from(stamp.1)]);
        if self.syslog_format == SyslogFormat::Rfc5424 {
            let ms = header.timestamp_ns.rem_euclid(1_000_000_000) / 1_000_000;
            out.extend_from_slice(&[
                b'.',
                b'0' + (ms / 100) as u8,
                b'0' + (ms / 10 % 10) as u8,
                b'0' + (ms % 10) as u8,
                b'Z',
            ]);
        }
        out.push(b' ');
        // A host name is one token: anything but printable ASCII becomes `_`.
        out.extend(
            host.bytes()
                .map(|b| if b.is_ascii_graphic() { b } else { b'_' }),
        );
        match self.syslog_format {
            SyslogFormat::Rfc3164 => out.push(b' '),
            SyslogFormat::Rfc5424 => out.extend_from_slice(b" tapwire - - - "),
        }
    }

    /// The timestamp part of the syslog header for one second (UTC):
    /// `Mmm dd hh:mm:ss` or `1 YYYY-MM-DDThh:mm:ss` (milliseconds follow).
    fn render_second(&self, second: i64) -> Stamp {
        let time = time::OffsetDateTime::from_unix_timestamp(second)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut out = Vec::with_capacity(24);
        let two = |out: &mut Vec<u8>, v: u8| out.extend_from_slice(&[b'0' + v / 10, b'0' + v % 10]);
        match self.syslog_format {
            SyslogFormat::Rfc3164 => {
                const MONTHS: [&[u8; 3]; 12] = [
                    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct",
                    b"Nov", b"Dec",
                ];
                out.extend_from_slice(MONTHS[usize::from(u8::from(time.month())) - 1]);
                let day = time.day();
                out.extend_from_slice(&[
                    b' ',
                    if day < 10 { b' ' } else { b'0' + day / 10 },
                    b'0' + day % 10,
                    b' ',
                ]);
            }
            SyslogFormat::Rfc5424 => {
                let _ = write!(out, "1 {:04}-", time.year().clamp(0, 9999));
                two(&mut out, u8::from(time.month()));
                out.push(b'-');
                two(&mut out, time.day());
                out.push(b'T');
            }
        }
        two(&mut out, time.hour());
        out.push(b':');
        two(&mut out, time.minute());
        out.push(b':');
        two(&mut out, time.second());
        let mut stamp = [0u8; 24];
        let n = out.len().min(24);
        stamp[..n].copy_from_slice(&out[..n]);
        (stamp, n as u8)
    }

    fn extension(&self, v: &Verdict, h: &EventHeader, x: &mut Ext<'_>) {
        let e = &v.event;
        let (l4, dns, rt) = match &e.body {
            EventBody::L4(l) => (Some(l), None, None),
            EventBody::Dns(d) => (None, Some(d), None),
            EventBody::Runtime(r) => (None, None, Some(r)),
        };
        // The side whose process the event describes.
        let local = match &e.body {
            EventBody::L4(l4) if l4.direction != Direction::Egress => &e.dst,
            EventBody::L4(_) | EventBody::Dns(_) | EventBody::Runtime(_) => &e.src,
        };

        x.int("rt", h.timestamp_ns.div_euclid(1_000_000));
        x.str("act", act(&e.body), MAX_ACT);
        x.str(
            "outcome",
            match v.mode {
                Mode::Audit => "Audit",
                Mode::Enforce => "Enforce",
                Mode::Other => "Other",
            },
            MAX_OUTCOME,
        );
        // `outcome` carries the mode (the seed's rule); what became of an
        // enforce-mode violation is said here, so no SIEM reads a block
        // into a violation that went through.
        match v.outcome {
            Outcome::Blocked => x.str("reason", "blocked by the node", MAX_DEFAULT),
            Outcome::NotPrevented => x.str("reason", "not prevented", MAX_DEFAULT),
            Outcome::Allowed | Outcome::Audited => {}
        }
        match &e.body {
            EventBody::L4(l4) => match l4.direction {
                Direction::Egress => x.int("deviceDirection", 1),
                Direction::Ingress => x.int("deviceDirection", 0),
                Direction::None => {}
            },
            EventBody::Dns(_) => x.int("deviceDirection", 1),
            EventBody::Runtime(_) => {}
        }
        let source = match l4 {
            Some(l4) if l4.kind == L4Kind::NetworkListen => peer_name(&e.dst, h, Some(l4.dst.ip.0)),
            Some(l4) => peer_name(&e.src, h, Some(l4.src.ip.0)),
            None => peer_name(&e.src, h, dns.and_then(|d| d.client).map(|c| c.ip.0)),
        };
        x.str(self.source_key, &source, MAX_DEFAULT);

        if let Some(l4) = l4 {
            self.l4_keys(l4, x);
        }
        if let Some(client) = dns.and_then(|d| d.client) {
            self.ip(x, "src", SRC_V6, client.ip.0);
            x.int("spt", client.port);
        }
        if let Some(resolver) = dns.and_then(|d| d.resolver.as_ref()) {
            self.ip(x, "dst", DST_V6, resolver.ip.0);
            x.int("dpt", resolver.port);
        }
        if let Some(l4) = l4.filter(|l| l.kind == L4Kind::NetworkFlow) {
            self.flow_keys(l4, x);
        }

        match &e.body {
            EventBody::L4(l4) if l4.pid != 0 => x.int("dpid", l4.pid),
            EventBody::Dns(d) if d.pid != 0 => x.int("dpid", d.pid),
            EventBody::Runtime(r) => x.int("dpid", r.pid),
            EventBody::L4(_) | EventBody::Dns(_) => {}
        }
        // Parent and effective ids: runtime events always carry them, L4
        // events when the kernel took them (eBPF; not packets or /proc).
        let ids = match (rt, l4) {
            (Some(r), _) => Some((Some(r.ppid), Some(r.euid), Some(r.egid))),
            (None, Some(l)) => Some((l.ppid, l.euid, l.egid)),
            (None, None) => None,
        };
        if let Some((ppid, euid, egid)) = ids {
            if let Some(ppid) = ppid {
                x.int("spid", ppid);
            }
            if let Some(euid) = euid {
                x.str("duid", itoa::Buffer::new().format(euid), MAX_DEFAULT);
            }
            if let Some(egid) = egid {
                x.labeled(
                    ("flexString1", "flexString1Label"),
                    itoa::Buffer::new().format(egid),
                    "EGID",
                    MAX_DEFAULT,
                );
            }
        }
        if let Some(r) = rt {
            if r.kind == RuntimeKind::ProcessExec {
                x.int("cn1", r.pid);
                x.str("cn1Label", "New PID", MAX_DEFAULT);
            }
            if self.extra_keys
                && let Some(code) = r.exit_code
            {
                x.int("cn2", code);
                x.str("cn2Label", "Exit code", MAX_DEFAULT);
            }
        }
        x.labeled(
            ("flexString2", "flexString2Label"),
            e.body.container_id().unwrap_or_default(),
            "Container ID",
            MAX_DEFAULT,
        );

        let cs = self.cs_max;
        self.node_fields(x, h);
        x.labeled(
            ("cs3", "cs3Label"),
            local.namespace.as_deref().unwrap_or_default(),
            "Namespace name",
            cs,
        );
        x.labeled(
            ("cs5", "cs5Label"),
            local.pod.as_deref().unwrap_or_default(),
            "Pod name",
            cs,
        );
        x.labeled(
            ("cs6", "cs6Label"),
            local.container.as_deref().unwrap_or_default(),
            "Container name",
            cs,
        );
        x.opt("request", local.image.as_deref(), MAX_DEFAULT);
        x.opt("fileHash", local.image_digest.as_deref(), MAX_FILE_HASH);

        if self.extra_keys {
            let dhost = match &e.body {
                EventBody::L4(_) => e.dst.dns_name.as_deref(),
                EventBody::Dns(d) => Some(d.name.as_str()),
                EventBody::Runtime(_) => None,
            };
            x.opt("dhost", dhost, MAX_DEFAULT);
            if let Some(policy) = &v.policy {
                match &v.rule {
                    Some(rule) => x.str("cat", &format!("{policy}/{rule}"), MAX_DEFAULT),
                    None => x.str("cat", policy, MAX_DEFAULT),
                }
            }
            x.key("externalId");
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for b in h.id.0 {
                x.out
                    .extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
        }

        match &e.body {
            EventBody::Runtime(r) => self.file_and_command_keys(r, x),
            EventBody::L4(l4) => {
                x.opt("dproc", Some(process_name(&l4.binary)), MAX_DEFAULT);
                if let Some(line) = &l4.command_line {
                    x.labeled(("cs4", "cs4Label"), line, "Command", self.cs_max);
                }
            }
            EventBody::Dns(d) => x.opt("dproc", Some(process_name(&d.binary)), MAX_DEFAULT),
        }
    }

    fn l4_keys(&self, l4: &L4Event, x: &mut Ext<'_>) {
        if l4.kind != L4Kind::NetworkListen {
            self.ip(x, "src", SRC_V6, l4.src.ip.0);
            x.int("spt", l4.src.port);
        }
        self.ip(x, "dst", DST_V6, l4.dst.ip.0);
        x.int("dpt", l4.dst.port);
        if self.extra_keys {
            let proto = match l4.protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
            };
            x.str("proto", proto, MAX_PROTO);
        }
    }

    fn flow_keys(&self, l4: &L4Event, x: &mut Ext<'_>) {
        if !self.extra_keys {
            return;
        }
        // `in`/`out` are bytes towards / from the destination side.
        let (to_dst, from_dst) = match l4.direction {
            Direction::Ingress => (l4.bytes_received, l4.bytes_sent),
            _ => (l4.bytes_sent, l4.bytes_received),
        };
        for (key, bytes) in [("in", to_dst), ("out", from_dst)] {
            // Readers such as Elastic parse these as 32-bit.
            if let Some(b) = bytes.filter(|b| *b <= i32::MAX as u64) {
                x.int(key, b);
            }
        }
        if let Some(ns) = l4.duration_ns {
            x.int("cn3", ns / 1_000_000);
            x.str("cn3Label", "Duration ms", MAX_DEFAULT);
        }
    }

    fn file_and_command_keys(&self, r: &RuntimeEvent, x: &mut Ext<'_>) {
        if matches!(r.kind, RuntimeKind::FileCreate | RuntimeKind::FileChmod)
            && let Some(mode) = r.mode
        {
            x.str("filePermission", &format!("0{mode:03o}"), MAX_DEFAULT);
        }
        x.str("dproc", process_name(&r.binary), MAX_DEFAULT);
        if r.kind == RuntimeKind::FileRename {
            x.opt("oldFilePath", r.old_path.as_deref(), MAX_DEFAULT);
        }
        x.opt("filePath", r.path.as_deref(), MAX_DEFAULT);
        if r.kind == RuntimeKind::FileChown {
            let owner = |id: Option<u32>| id.map(|i| i.to_string()).unwrap_or_default();
            let value = format!("{}:{}", owner(r.owner_uid), owner(r.owner_gid));
            x.labeled(("cs4", "cs4Label"), &value, "NewOwner", self.cs_max);
        } else {
            x.labeled(
                ("cs4", "cs4Label"),
                r.command_line.as_deref().unwrap_or_default(),
                "Command",
                self.cs_max,
            );
        }
    }

    fn ip(
        &self,
        x: &mut Ext<'_>,
        v4_key: &str,
        (v6_key, v6_label_key, v6_label): (&str, &str, &str),
        ip: IpAddr,
    ) {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (ip, self.ipv6) {
            (IpAddr::V6(_), Ipv6Keys::CustomKeys) => {
                x.key(v6_key);
                let _ = write!(x.out, "{ip}");
                x.str(v6_label_key, v6_label, MAX_DEFAULT);
            }
            (IpAddr::V4(v4), _) => {
                x.key(v4_key);
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        x.out.push(b'.');
                    }
                    x.out
                        .extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
                }
            }
            (IpAddr::V6(_), Ipv6Keys::SrcDst) => {
                x.key(v4_key);
                let _ = write!(x.out, "{ip}");
            }
        }
    }
}

fn act(body: &EventBody) -> &'static str {
    match body {
        EventBody::L4(l4) => match l4.direction {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
            Direction::None => "",
        },
        // The asking process sends the query.
        EventBody::Dns(_) => "egress",
        EventBody::Runtime(r) => match r.kind {
            RuntimeKind::ProcessExec => "exec",
            RuntimeKind::ProcessExit => "exit",
            RuntimeKind::FileOpen => "open",
            RuntimeKind::FileCreate => "create",
            RuntimeKind::FileWrite => "write",
            RuntimeKind::FileDelete => "delete",
            RuntimeKind::FileChmod => "chmod",
            RuntimeKind::FileChown => "chown",
            RuntimeKind::FileRename => "rename",
        },
    }
}

/// `dproc` for every family: the process name as the kernel keeps it
/// (`comm`: the executable's file name, at most 15 bytes). L4 and DNS
/// events carry it as is; runtime events carry the executable's path, whose
/// file name the kernel cut to the same 15 bytes at exec.
pub fn process_name(binary: &str) -> &str {
    let name = binary.rsplit('/').next().unwrap_or(binary);
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// How a peer is named in `source`: pod name, node, DNS name or address.
fn peer_name<'a>(peer: &'a PeerContext, h: &'a EventHeader, ip: Option<IpAddr>) -> Cow<'a, str> {
    let ip_text = || Cow::Owned(ip.map(|ip| ip.to_string()).unwrap_or_default());
    match peer.kind {
        PeerKind::Pod => Cow::Borrowed(peer.pod.as_deref().unwrap_or_default()),
        PeerKind::Host => Cow::Borrowed(peer.node.as_deref().unwrap_or(&h.node)),
        PeerKind::External | PeerKind::Service => {
            peer.dns_name.as_deref().map_or_else(ip_text, Cow::Borrowed)
        }
        PeerKind::Unresolved => ip_text(),
        PeerKind::None => Cow::Borrowed(""),
    }
}

/// Writes `key=value` pairs separated by spaces.
struct Ext<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
    cut: u32,
}

impl Ext<'_> {
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
    }

    /// A string value; empty values are left out.
    fn str(&mut self, key: &str, value: &str, max: usize) {
        if value.is_empty() {
            return;
        }
        let (value, was_cut) = cut(value, max);
        self.cut += u32::from(was_cut);
        self.key(key);
        extension_into(value, self.out);
    }

    fn opt(&mut self, key: &str, value: Option<&str>, max: usize) {
        if let Some(value) = value {
            self.str(key, value, max);
        }
    }

    fn int(&mut self, key: &str, value: impl itoa::Integer) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A value and its label (`csN` + `csNLabel`), both left out when the
    /// value is empty.
    fn labeled(&mut self, (key, label_key): (&str, &str), value: &str, label: &str, max: usize) {
        if value.is_empty() {
            return;
        }
        self.str(key, value, max);
        self.str(label_key, label, MAX_DEFAULT);
    }
}

/// A header for scan messages: no node (the scanner names itself in
/// `dvchost`), the id derived from what the message is about.
fn scan_header(id: &str, what: &str, at_ns: i64, sensor: &str) -> EventHeader {
    EventHeader {
        id: tapwire_schemas::EventId::derive(&[
            id.as_bytes(),
            what.as_bytes(),
            &at_ns.to_le_bytes(),
        ]),
        timestamp_ns: at_ns,
        node: String::new(),
        sensor_id: sensor.to_owned(),
        node_ip: None,
    }
}

#[cfg(test)]
mod api_tests {
    use tapwire_schemas::samples;

    /// The seed's API family: severity 3 when a request succeeded, 8 on an
    /// error; the user, the caller's address and the request named.
    #[test]
    fn api_requests_format_with_the_seeds_severities() {
        let formatter = super::Formatter::new(&crate::CefConfig::default());
        let line = |r| {
            let mut buf = Vec::new();
            formatter.format_api(&r, &mut buf);
            String::from_utf8(buf).expect("utf-8")
        };
        let ok = line(samples::api_request(
            samples::header("node-a", "serve-1", 1, 1_700_000_000_000_000_000),
            "soc",
            "/api/v1/pod",
            200,
        ));
        assert!(
            ok.contains("|API-001|API|3|rt=1700000000000 act=GET outcome=Success suser=soc src=127.0.0.1 request=/api/v1/pod?window\\=15m cn1=200 cn1Label=HTTP status spriv=viewer"),
            "{ok}"
        );
        let refused = line(samples::api_request(
            samples::header("node-a", "serve-1", 2, 1_700_000_000_000_000_000),
            "",
            "/api/v1/events",
            401,
        ));
        assert!(refused.contains("|API-002|API|8|"), "{refused}");
        assert!(refused.contains("outcome=Error"), "{refused}");
        assert!(!refused.contains("suser="), "{refused}");
    }

    /// Issue 18: the scanner's events (`SJ`) and what happens after scans
    /// (`MLW`, `SD`, `MS`, `CMP`, `NCMP`), with `fname`, `suser`,
    /// `outcome` and `reason` as the seed's table says.
    #[test]
    fn scan_families_carry_the_object_the_user_and_the_outcome() {
        use tapwire_schemas::scan::{
            Finding, Kind, ScanEvent, ScanEventKind, ScanJob, ScanObject, Severity, Status,
        };
        let formatter = super::Formatter::new(&crate::CefConfig::default());
        let job = ScanJob::new(
            ScanObject::Slice {
                url: "s3://evidence/a.pcap".into(),
            },
            "record",
            1,
        );
        let status = |status, reason: Option<&str>| {
            let mut buf = Vec::new();
            let change = job.status(status, 3, "scanner-1", reason.map(str::to_owned));
            formatter.format_scan_status(&change, &mut buf);
            String::from_utf8(buf).expect("utf-8")
        };
        let queued = status(Status::Pending, None);
        assert!(queued.contains("|SJ-001|Scan job|3|"), "{queued}");
        assert!(queued.contains("fname=s3://evidence/a.pcap"), "{queued}");
        let failed = status(Status::Error, Some("E-TIMEOUT: no result within 120 s"));
        assert!(failed.contains("|SJ-005|Scan job|8|"), "{failed}");
        assert!(failed.contains("outcome=Error"), "{failed}");
        assert!(
            failed.contains("reason=E-TIMEOUT: no result within 120 s"),
            "{failed}"
        );
        assert!(
            failed.contains("dvchost=scanner-1") && failed.contains("cn1=3"),
            "{failed}"
        );
        assert!(status(Status::ParsingResults, None).is_empty());

        let finding = Finding::new(
            Kind::Malware,
            "eicar_test_file",
            Severity::High,
            "container:abc",
            "/tmp/x".into(),
            Some(0),
            None,
            "X5O".into(),
        );
        let event = |kind, finding: Option<&Finding>, user: &str| {
            let mut buf = Vec::new();
            let e = ScanEvent::new(
                kind,
                "container:abc",
                finding,
                user,
                "known test file".into(),
            );
            formatter.format_scan_event(&e, &mut buf);
            String::from_utf8(buf).expect("utf-8")
        };
        let accepted = event(ScanEventKind::RiskAccepted, Some(&finding), "soc");
        assert!(accepted.contains("|MLW-001|Malware|5|"), "{accepted}");
        assert!(
            accepted.contains("suser=soc") && accepted.contains("outcome=Success"),
            "{accepted}"
        );
        assert!(accepted.contains("cs4=eicar_test_file"), "{accepted}");
        let secret = Finding {
            kind: Kind::SensitiveData,
            ..finding.clone()
        };
        assert!(event(ScanEventKind::RiskExpired, Some(&secret), "").contains("|SD-002|"));
        let misconf = Finding {
            kind: Kind::Misconfiguration,
            ..finding
        };
        assert!(event(ScanEventKind::ThreatRemoved, Some(&misconf), "soc").contains("|MS-003|"));
        assert!(event(ScanEventKind::NonCompliant, None, "").contains("|NCMP-001|Compliance|7|"));
        assert!(event(ScanEventKind::Compliant, None, "").contains("|CMP-001|Compliance|3|"));
    }
}
