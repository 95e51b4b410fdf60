//! The node agent (`tapwire capture`): eBPF connection and runtime events,
//! /proc/net inventory, packet capture and pcap replay, produced to the raw
//! topics.
//!
//! Not built yet: tracked by the capture issue (#3). The `tapwire capture`
//! subcommand says so and exits non-zero.
