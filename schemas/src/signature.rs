//! CEF signature ids, names and severities, shared by the policy stage (which
//! writes them into verdicts) and the CEF forwarder (which sends them).
//!
//! Family by event: `NT` networking (L4 and DNS), `PM` process management,
//! `FM` file management; a policy violation (audited or blocked) adds the `F`
//! prefix (`FNT`, `FPM`, `FFM`). The number depends only on the event kind and
//! is never reused:
//!
//! | kind | id | | kind | id |
//! |---|---|---|---|---|
//! | network_connect | NT-001 | | process_exec | PM-001 |
//! | network_accept | NT-002 | | process_exit | PM-002 |
//! | network_listen | NT-003 | | file_open | FM-001 |
//! | network_flow | NT-004 | | file_create | FM-002 |
//! | dns_query | NT-010 | | file_write | FM-003 |
//! | dns_lookup | NT-011 | | file_delete | FM-004 |
//! | dns_resolution | NT-012 | | file_chmod | FM-005 |
//! | | | | file_chown | FM-006 |
//! | | | | file_rename | FM-007 |
//!
//! Severity: 7 when the event is audited or blocked, 3 otherwise.
//!
//! Agent events (family `AG`, name `Agent`) come from heartbeats, not
//! verdicts ([`agent_signature`]); the severity is 5 for a success and 10
//! for an error, as the seed rules for agents:
//!
//! | event | id | severity |
//! |---|---|---|
//! | agent connected (first heartbeat seen) or reconnected | AG-001 | 5 |
//! | agent disconnected (silent for two intervals, or stopped) | AG-002 | 10 |
//! | agent lost events (a heartbeat reports a loss) | AG-003 | 10 |

use crate::events::{DnsKind, EnrichedEvent, EventBody, L4Kind, Outcome, RuntimeKind};

/// The kind of the event an enriched record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A connection event.
    L4(L4Kind),
    /// A DNS event.
    Dns(DnsKind),
    /// A process or file event.
    Runtime(RuntimeKind),
}

impl EventKind {
    /// The kind of the event `e` holds.
    pub fn of(e: &EnrichedEvent) -> EventKind {
        match &e.body {
            EventBody::L4(l4) => EventKind::L4(l4.kind),
            EventBody::Dns(dns) => EventKind::Dns(dns.kind),
            EventBody::Runtime(rt) => EventKind::Runtime(rt.kind),
        }
    }
}

/// Header values of one CEF message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// Signature id, e.g. `NT-004` or `FPM-001`.
    pub id: &'static str,
    /// Event name, e.g. `Networking`.
    pub name: &'static str,
    /// 0-10.
    pub severity: i32,
}

/// The signature of an event of `kind` with `outcome`.
pub fn signature(kind: EventKind, outcome: Outcome) -> Signature {
    let violation = outcome.is_violation();
    let (plain, flagged, name) = match kind {
        EventKind::L4(k) => {
            let (p, f) = match k {
                L4Kind::NetworkConnect => ("NT-001", "FNT-001"),
                L4Kind::NetworkAccept => ("NT-002", "FNT-002"),
                L4Kind::NetworkListen => ("NT-003", "FNT-003"),
                L4Kind::NetworkFlow => ("NT-004", "FNT-004"),
            };
            (p, f, "Networking")
        }
        EventKind::Dns(k) => {
            let (p, f) = match k {
                DnsKind::DnsQuery => ("NT-010", "FNT-010"),
                DnsKind::DnsLookup => ("NT-011", "FNT-011"),
                DnsKind::DnsResolution => ("NT-012", "FNT-012"),
            };
            (p, f, "Networking")
        }
        EventKind::Runtime(k) => match k {
            RuntimeKind::ProcessExec => ("PM-001", "FPM-001", "Process management"),
            RuntimeKind::ProcessExit => ("PM-002", "FPM-002", "Process management"),
            RuntimeKind::FileOpen => ("FM-001", "FFM-001", "File management"),
            RuntimeKind::FileCreate => ("FM-002", "FFM-002", "File management"),
            RuntimeKind::FileWrite => ("FM-003", "FFM-003", "File management"),
            RuntimeKind::FileDelete => ("FM-004", "FFM-004", "File management"),
            RuntimeKind::FileChmod => ("FM-005", "FFM-005", "File management"),
            RuntimeKind::FileChown => ("FM-006", "FFM-006", "File management"),
            RuntimeKind::FileRename => ("FM-007", "FFM-007", "File management"),
        },
    };
    Signature {
        id: if violation { flagged } else { plain },
        name,
        severity: if violation { 7 } else { 3 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_take_the_f_family_and_severity_7() {
        let flow = EventKind::L4(L4Kind::NetworkFlow);
        assert_eq!(
            signature(flow, Outcome::Allowed),
            Signature {
                id: "NT-004",
                name: "Networking",
                severity: 3
            }
        );
        assert_eq!(signature(flow, Outcome::Blocked).id, "FNT-004");
        assert_eq!(signature(flow, Outcome::Audited).severity, 7);
        let exec = EventKind::Runtime(RuntimeKind::ProcessExec);
        assert_eq!(signature(exec, Outcome::Blocked).id, "FPM-001");
        assert_eq!(signature(exec, Outcome::Allowed).name, "Process management");
        let rename = EventKind::Runtime(RuntimeKind::FileRename);
        assert_eq!(signature(rename, Outcome::Audited).id, "FFM-007");
    }
}

/// What happened to a capture agent, as the SIEM is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentEventKind {
    /// First heartbeat of a sensor, or the first after it was disconnected.
    Connected,
    /// Silent for two heartbeat intervals, or stopped.
    Disconnected,
    /// A heartbeat reported lost events.
    Loss,
}

/// The signature of an API request (seed's `API` family): `API-001` when it
/// succeeded (severity 3), `API-002` on an error (severity 8).
pub fn api_signature(succeeded: bool) -> Signature {
    let (id, severity) = if succeeded {
        ("API-001", 3)
    } else {
        ("API-002", 8)
    };
    Signature {
        id,
        name: "API",
        severity,
    }
}

/// The signature of a scan job's status change (seed's `SJ` family, the
/// scanner's events): `SJ-001` queued (3), `SJ-002` started (3), `SJ-003`
/// finished (3, 5 with findings), `SJ-004` an attempt without a result, to
/// be tried again (6), `SJ-005` failed for good (8). `Parsing results` is
/// not sent (it is followed by `Finished` at once).
pub fn scan_job_signature(change: &crate::scan::StatusChange) -> Option<Signature> {
    use crate::scan::Status;
    let (id, severity) = match change.status {
        Status::Pending if change.reason.is_none() => ("SJ-001", 3),
        Status::Pending => ("SJ-004", 6),
        Status::InProgress => ("SJ-002", 3),
        Status::ParsingResults => return None,
        Status::Finished if change.findings.unwrap_or(0) > 0 => ("SJ-003", 5),
        Status::Finished => ("SJ-003", 3),
        Status::Error => ("SJ-005", 8),
    };
    Some(Signature {
        id,
        name: "Scan job",
        severity,
    })
}

/// The signature of what happened after a scan: risk accepted (`-001`),
/// acceptance expired (`-002`), threat removed (`-003`) in the family of
/// the finding's kind (`MLW` malware, `SD` sensitive data, `MS`
/// misconfiguration, `NCMP` non-compliance); `CMP-001` an image meets the
/// requirements, `NCMP-001` it does not.
pub fn scan_event_signature(event: &crate::scan::ScanEvent) -> Signature {
    use crate::scan::{Kind, ScanEventKind};
    let family = |kind: Option<Kind>| match kind {
        Some(Kind::Malware) => ("MLW", "Malware"),
        Some(Kind::SensitiveData) => ("SD", "Sensitive data"),
        Some(Kind::Misconfiguration) | None => ("MS", "Misconfiguration"),
        Some(Kind::NonCompliance) => ("NCMP", "Non-compliance"),
    };
    let (id, name, severity) = match event.event {
        ScanEventKind::Compliant => ("CMP-001", "Compliance", 3),
        ScanEventKind::NonCompliant => ("NCMP-001", "Compliance", 7),
        ScanEventKind::RiskAccepted | ScanEventKind::RiskExpired | ScanEventKind::ThreatRemoved => {
            let (family, name) = family(event.kind);
            let n = match event.event {
                ScanEventKind::RiskAccepted => 1,
                ScanEventKind::RiskExpired => 2,
                _ => 3,
            };
            let id = match (family, n) {
                ("MLW", 1) => "MLW-001",
                ("MLW", 2) => "MLW-002",
                ("MLW", _) => "MLW-003",
                ("SD", 1) => "SD-001",
                ("SD", 2) => "SD-002",
                ("SD", _) => "SD-003",
                ("NCMP", 1) => "NCMP-002",
                ("NCMP", 2) => "NCMP-003",
                ("NCMP", _) => "NCMP-004",
                (_, 1) => "MS-001",
                (_, 2) => "MS-002",
                _ => "MS-003",
            };
            (id, name, if n == 3 { 3 } else { 5 })
        }
    };
    Signature {
        id,
        name,
        severity: if event.success { severity } else { 8 },
    }
}

/// The signature of an agent event: `AG-001` (connected, 5), `AG-002`
/// (disconnected, 10), `AG-003` (events lost, 10).
pub fn agent_signature(kind: AgentEventKind) -> Signature {
    let (id, severity) = match kind {
        AgentEventKind::Connected => ("AG-001", 5),
        AgentEventKind::Disconnected => ("AG-002", 10),
        AgentEventKind::Loss => ("AG-003", 10),
    };
    Signature {
        id,
        name: "Agent",
        severity,
    }
}

#[cfg(test)]
mod agent_tests {
    use super::*;

    #[test]
    fn agent_errors_are_severity_10_and_success_5() {
        assert_eq!(agent_signature(AgentEventKind::Disconnected).id, "AG-002");
        assert_eq!(agent_signature(AgentEventKind::Disconnected).severity, 10);
        assert_eq!(agent_signature(AgentEventKind::Connected).severity, 5);
        assert_eq!(agent_signature(AgentEventKind::Loss).id, "AG-003");
    }
}
