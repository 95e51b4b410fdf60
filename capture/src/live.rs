//! Live capture with libpcap (the `pcap` crate): on Linux libpcap reads an
//! AF_PACKET socket through a TPACKET_V3 memory-mapped ring (buffered mode,
//! which is what this module asks for), compiles the tcpdump-syntax filter
//! to classic BPF and attaches it in the kernel, and honours the snap
//! length. One thread per interface, reading in non-blocking mode; an empty
//! interface list is `any`.
//!
//! Loss: frames the kernel dropped (ring full) and frames dropped because
//! the agent's send queue was full are both added to one counter that the
//! agent reports as loss records.
//!
//! Built only with the `live-capture` feature (libpcap is linked then);
//! without it [`start`] fails with [`LiveError::NotBuilt`] and
//! [`missing_reason`] says why, so the agent refuses the source at start.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
#[cfg(feature = "live-capture")]
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use tapwire_plumbing::shutdown::CancellationToken;
use tokio::sync::mpsc;

use crate::config::PacketsConfig;
use crate::replay::Frame;

/// Why this build cannot capture live, when it cannot.
pub fn missing_reason() -> Option<&'static str> {
    if cfg!(feature = "live-capture") {
        None
    } else {
        Some(NOT_BUILT)
    }
}

const NOT_BUILT: &str = "this build has no live packet capture: build with `--features \
    live-capture` (needs libpcap-dev), or use --source ebpf or pcap:FILE";

#[cfg(feature = "live-capture")]
type PcapError = pcap::Error;
/// Stands in for libpcap's error type in builds without it.
#[cfg(not(feature = "live-capture"))]
#[derive(Debug, thiserror::Error)]
#[error("libpcap is not in this build")]
pub struct PcapError;

/// Why live capture failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Built without the `live-capture` feature.
    #[error("{}", NOT_BUILT)]
    NotBuilt,
    /// libpcap refused to open the interface.
    #[error("cannot capture on {interface}: {source}")]
    Open {
        /// The interface.
        interface: String,
        /// libpcap's reason.
        #[source]
        source: PcapError,
    },
    /// The capture filter does not compile.
    #[error("capture filter {filter:?} on {interface}: {source}")]
    Filter {
        /// The interface.
        interface: String,
        /// The filter.
        filter: String,
        /// libpcap's reason.
        #[source]
        source: PcapError,
    },
    /// Reading failed.
    #[error("capture on {interface} stopped: {source}")]
    Read {
        /// The interface.
        interface: String,
        /// libpcap's reason.
        #[source]
        source: PcapError,
    },
}

/// Without libpcap in the build: says so.
#[cfg(not(feature = "live-capture"))]
pub fn start(
    _config: &PacketsConfig,
    _tx: mpsc::Sender<Frame>,
    _lost: Arc<AtomicU64>,
    _shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<Result<(), LiveError>>>, LiveError> {
    Err(LiveError::NotBuilt)
}

/// Opens every interface (so that a bad name or filter fails at once) and
/// starts one reader thread each, sending frames to `tx` until `shutdown`.
#[cfg(feature = "live-capture")]
pub fn start(
    config: &PacketsConfig,
    tx: mpsc::Sender<Frame>,
    lost: Arc<AtomicU64>,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<Result<(), LiveError>>>, LiveError> {
    let interfaces = if config.interfaces.is_empty() {
        vec!["any".to_owned()]
    } else {
        config.interfaces.clone()
    };
    let mut captures = Vec::new();
    for interface in interfaces {
        let open = |source| LiveError::Open {
            interface: interface.clone(),
            source,
        };
        let mut cap = pcap::Capture::from_device(interface.as_str())
            .map_err(open)?
            .snaplen(config.snaplen_bytes as i32)
            .buffer_size(config.buffer_bytes as i32)
            .precision(pcap::Precision::Nano)
            .promisc(false)
            .immediate_mode(false)
            .timeout(100)
            .open()
            .and_then(|c| c.setnonblock())
            .map_err(open)?;
        if let Some(filter) = &config.filter {
            cap.filter(filter, true)
                .map_err(|source| LiveError::Filter {
                    interface: interface.clone(),
                    filter: filter.clone(),
                    source,
                })?;
        }
        captures.push((interface, cap));
    }
    Ok(captures
        .into_iter()
        .map(|(interface, cap)| {
            let tx = tx.clone();
            let lost = lost.clone();
            let stop = shutdown.clone();
            std::thread::spawn(move || read_loop(interface, cap, tx, lost, stop))
        })
        .collect())
}

#[cfg(feature = "live-capture")]
fn read_loop(
    interface: String,
    mut cap: pcap::Capture<pcap::Active>,
    tx: mpsc::Sender<Frame>,
    lost: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Result<(), LiveError> {
    let link_type = cap.get_datalink().0 as u32;
    let name = (interface != "any").then(|| interface.clone());
    let mut index = 0u64;
    let mut kernel_dropped = 0u64;
    while !stop.is_cancelled() {
        let frame = match cap.next_packet() {
            Ok(p) => Frame {
                index,
                offset: 0,
                timestamp_ns: p.header.ts.tv_sec * 1_000_000_000 + p.header.ts.tv_usec,
                link_type,
                original_len: p.header.len,
                data: p.data.to_vec(),
                interface: name.clone(),
            },
            // Non-blocking: nothing to read right now. (A blocking read
            // with a timeout can wait forever on an idle TPACKET_V3 ring,
            // and then shutdown would never be noticed.)
            Err(pcap::Error::TimeoutExpired) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if let Ok(stats) = cap.stats() {
                    let dropped = u64::from(stats.dropped) + u64::from(stats.if_dropped);
                    if dropped > kernel_dropped {
                        lost.fetch_add(dropped - kernel_dropped, Ordering::Relaxed);
                        kernel_dropped = dropped;
                    }
                }
                continue;
            }
            Err(source) => return Err(LiveError::Read { interface, source }),
        };
        index += 1;
        match tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                lost.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
        }
    }
    Ok(())
}
