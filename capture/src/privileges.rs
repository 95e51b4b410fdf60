//! Which capabilities the agent holds, and what each source needs: read
//! once from `/proc/self/status` (`CapEff`), so the agent can say exactly
//! which capability is missing and run the sources it can.

use std::fmt;

/// A Linux capability a source needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Raw packet sockets (live capture).
    NetRaw,
    /// Loading BPF programs and creating maps.
    Bpf,
    /// Attaching to tracepoints (perf events).
    Perfmon,
    /// Reading other users' `/proc/PID/fd` (inventory pid resolution).
    SysPtrace,
    /// The pre-5.8 catch-all that also grants BPF and PERFMON.
    SysAdmin,
}

impl Capability {
    /// The bit number in the capability sets.
    pub fn bit(self) -> u32 {
        match self {
            Capability::NetRaw => 13,
            Capability::SysPtrace => 19,
            Capability::SysAdmin => 21,
            Capability::Perfmon => 38,
            Capability::Bpf => 39,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::NetRaw => "CAP_NET_RAW",
            Capability::Bpf => "CAP_BPF",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::SysPtrace => "CAP_SYS_PTRACE",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
        })
    }
}

/// The effective capability set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities(pub u64);

impl Capabilities {
    /// The current process's effective set; empty when it cannot be read.
    pub fn current() -> Self {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| Self::parse_status(&s))
            .unwrap_or(Capabilities(0))
    }

    /// The `CapEff:` line of a `/proc/PID/status` text.
    pub fn parse_status(status: &str) -> Option<Self> {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))?
            .trim();
        u64::from_str_radix(hex, 16).ok().map(Capabilities)
    }

    /// Whether `cap` is effective.
    pub fn has(self, cap: Capability) -> bool {
        self.0 & (1u64 << cap.bit()) != 0
    }

    /// What live capture lacks (empty: it can run).
    pub fn missing_for_packets(self) -> Vec<Capability> {
        [Capability::NetRaw]
            .into_iter()
            .filter(|c| !self.has(*c))
            .collect()
    }

    /// What the eBPF programs lack (empty: they can load). CAP_SYS_ADMIN
    /// stands in for both on its own.
    pub fn missing_for_ebpf(self) -> Vec<Capability> {
        if self.has(Capability::SysAdmin) {
            return Vec::new();
        }
        [Capability::Bpf, Capability::Perfmon]
            .into_iter()
            .filter(|c| !self.has(*c))
            .collect()
    }

    /// Without CAP_SYS_PTRACE the inventory still runs, but sockets of
    /// other users' processes have no pid.
    pub fn missing_for_inventory_owners(self) -> Vec<Capability> {
        [Capability::SysPtrace]
            .into_iter()
            .filter(|c| !self.has(*c))
            .collect()
    }
}

/// `CAP_A and CAP_B`.
pub fn list(caps: &[Capability]) -> String {
    caps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_capeff_and_names_what_is_missing() {
        let root = Capabilities::parse_status("Name:\tx\nCapEff:\t000001ffffffffff\n").unwrap();
        assert!(root.missing_for_ebpf().is_empty());
        assert!(root.missing_for_packets().is_empty());
        let none = Capabilities::parse_status("CapEff:\t0000000000000000\n").unwrap();
        assert_eq!(list(&none.missing_for_ebpf()), "CAP_BPF and CAP_PERFMON");
        assert_eq!(list(&none.missing_for_packets()), "CAP_NET_RAW");
        let bpf_only = Capabilities(1 << 39);
        assert_eq!(bpf_only.missing_for_ebpf(), [Capability::Perfmon]);
        let sys_admin = Capabilities(1 << 21);
        assert!(sys_admin.missing_for_ebpf().is_empty());
    }
}
