//! Topic names: the contract between stages.

/// L4 and DNS events from capture, key = node.
pub const L4_RAW: &str = "tapwire.l4.raw";
/// Runtime events from capture, key = node.
pub const RUNTIME_RAW: &str = "tapwire.runtime.raw";
/// Captured packets, key = direction-independent flow hash.
pub const PACKETS_RAW: &str = "tapwire.packets.raw";
/// /proc/net heartbeats, key = node.
pub const INVENTORY: &str = "tapwire.inventory";
/// Pod metadata, compacted, key = pod uid.
pub const PODS: &str = "tapwire.pods";
/// Enriched L4 and DNS events.
pub const L4_ENRICHED: &str = "tapwire.l4.enriched";
/// Enriched runtime events.
pub const RUNTIME_ENRICHED: &str = "tapwire.runtime.enriched";
/// One verdict per enriched event.
pub const VERDICTS: &str = "tapwire.verdicts";
/// Capture agents' heartbeats (`AgentHeartbeat`), key = sensor id.
pub const AGENTS: &str = "tapwire.agents";
/// Requests to the API (`ApiRequest`), key = user: the audit trail.
pub const AUDIT: &str = "tapwire.audit";
/// Enforce-mode policies for the node agents, compacted, key = policy
/// (`namespace/name`), value = JSON (`tapwire_policy_engine::enforce`); an
/// empty value (tombstone) when the policy is deleted or no longer enforced.
pub const ENFORCEMENT: &str = "tapwire.enforcement";
/// Messages a stage could not decode or validate, with the reason in headers.
pub const DLQ: &str = "tapwire.dlq";

/// Scan jobs (JSON `ScanJob`, key = job id): the scanners' queue, one
/// consumer group.
pub const SCAN_JOBS: &str = "tapwire.scan.jobs";

/// Scan job status changes (JSON `StatusChange`, key = job id).
pub const SCAN_STATUS: &str = "tapwire.scan.status";

/// Scan findings (JSON `FindingRecord`, key = job id).
pub const SCAN_FINDINGS: &str = "tapwire.scan.findings";

/// Scanner heartbeats, Free or Busy (JSON `ScannerState`, key = scanner id).
pub const SCAN_SCANNERS: &str = "tapwire.scan.scanners";

/// What happened to findings and images after scans (JSON `ScanEvent`,
/// key = finding id or image): risk accepted, acceptance expired, threat
/// removed, image compliant or not.
pub const SCAN_EVENTS: &str = "tapwire.scan.events";

/// A topic and how it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: &'static str,
    /// Whether the topic is log-compacted (latest record per key kept).
    pub compacted: bool,
}

/// Every topic the pipeline uses.
pub const ALL: &[TopicSpec] = &[
    TopicSpec {
        name: L4_RAW,
        compacted: false,
    },
    TopicSpec {
        name: RUNTIME_RAW,
        compacted: false,
    },
    TopicSpec {
        name: PACKETS_RAW,
        compacted: false,
    },
    TopicSpec {
        name: INVENTORY,
        compacted: false,
    },
    TopicSpec {
        name: PODS,
        compacted: true,
    },
    TopicSpec {
        name: L4_ENRICHED,
        compacted: false,
    },
    TopicSpec {
        name: RUNTIME_ENRICHED,
        compacted: false,
    },
    TopicSpec {
        name: VERDICTS,
        compacted: false,
    },
    TopicSpec {
        name: AGENTS,
        compacted: false,
    },
    TopicSpec {
        name: AUDIT,
        compacted: false,
    },
    TopicSpec {
        name: ENFORCEMENT,
        compacted: true,
    },
    TopicSpec {
        name: SCAN_JOBS,
        compacted: false,
    },
    TopicSpec {
        name: SCAN_STATUS,
        compacted: false,
    },
    TopicSpec {
        name: SCAN_FINDINGS,
        compacted: false,
    },
    TopicSpec {
        name: SCAN_SCANNERS,
        compacted: false,
    },
    TopicSpec {
        name: SCAN_EVENTS,
        compacted: false,
    },
    TopicSpec {
        name: DLQ,
        compacted: false,
    },
];
