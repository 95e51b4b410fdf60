//! The recorder (`tapwire record`, `investigate`, `kfl`): KFL-matched L4
//! streams to PCAP slices in S3, and offline investigation.
//!
//! Not built yet: tracked by the pcap-recorder issue (#8).
