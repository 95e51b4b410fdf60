//! The recorder (`tapwire record`, `investigate`): KFL-matched L4 streams to
//! PCAP slices with a self-sufficient JSON index, uploaded to S3, and offline
//! investigation over them.
//!
//! # Where things live
//!
//! - `index`: [`SliceIndex`] and the stream records it holds; its JSON format
//!   is documented there. `investigate` reads only these types.
//! - `entry`: [`StreamEntry`], what KFL queries see of a stream, and
//!   [`entries`] / [`stream_matches`].
//! - `pods`: [`PodLookup`] (address to pod at a time), answered by the
//!   cluster's owner index while recording and by a slice index offline.
//! - `reassembly`: [`Reassembler`], packets to TCP/UDP [`Stream`]s that keep
//!   every original packet.
//! - `dissect`: HTTP/1.x and DNS exchanges of a stream, and its TLS
//!   ClientHello, read by `tls`.
//! - `slice`: [`SliceBuilder`] / [`FinishedSlice`], PCAP slices and their index.
//! - `recorder`: [`Recorder`], all of the above behind one `push`.
//! - `store`, `spool`: object stores (S3, directory) and the local spool.

pub mod config;
pub mod dissect;
pub mod entry;
pub mod index;
pub mod investigate;
pub mod pods;
pub mod reassembly;
pub mod recorder;
pub mod slice;
pub mod spool;
pub mod stage;
pub mod store;
pub mod tls;

pub use entry::{StreamEntry, entries, stream_matches};
pub use index::{NamedQuery, SliceIndex, StreamRecord};
pub use pods::{NoPods, PodInterval, PodLookup, PodRef};
pub use reassembly::{CapturedPacket, Reassembler, ReassemblyConfig, Stream};
pub use recorder::{Recorder, RecorderConfig, RecorderError, RecorderStats};
pub use slice::{FinishedSlice, SliceBuilder, SliceConfig};
