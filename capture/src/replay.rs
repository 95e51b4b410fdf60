//! Capture files for replay: the one reader of pcap and pcapng files lives
//! in `tapwire_packet::capture_file` (investigate reads with it too).

pub use tapwire_packet::capture_file::*;
