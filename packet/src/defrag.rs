//! IPv4 and IPv6 fragment reassembly, bounded: fragments are grouped by
//! (source, destination, identification, protocol) and put together with
//! `etherparse`'s buffer; a datagram whose fragments do not all arrive
//! within the timeout is dropped, and at most `max_datagrams` are pending
//! (the oldest goes first), so a flood of fragments cannot exhaust memory.

use std::collections::HashMap;
use std::net::IpAddr;

use etherparse::defrag::IpDefragBuf;
use etherparse::{Ipv6ExtensionSlice, NetSlice};

use crate::frame::{PacketError, slice};

/// Which datagram a fragment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 identification, or the IPv6 fragment header's.
    pub id: u32,
    /// The transport protocol number.
    pub protocol: u8,
}

/// A datagram put together again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// Its fragments' key.
    pub key: FragmentKey,
    /// The IP payload: the transport header and its payload.
    pub transport: Vec<u8>,
}

/// What a fragment completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    /// More fragments are needed.
    Pending(FragmentKey),
    /// This was the last missing one.
    Complete(Reassembled),
}

/// Expiry scans every pending datagram: at most this often (capture time),
/// or once per timeout when that is shorter.
const EXPIRE_EVERY_NS: i64 = 1_000_000_000;

struct Partial {
    buf: IpDefragBuf,
    first_ns: i64,
}

/// Pending datagrams and their fragments so far.
pub struct Defragmenter {
    pending: HashMap<FragmentKey, Partial>,
    max_datagrams: usize,
    timeout_ns: i64,
    /// Capture time of the last expiry scan (at most one per second).
    expired_at: i64,
    /// Datagrams dropped: incomplete at the timeout, pushed out by the
    /// bound, or with inconsistent fragments.
    pub dropped: u64,
}

impl std::fmt::Debug for Defragmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defragmenter")
            .field("pending", &self.pending.len())
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl Defragmenter {
    /// At most `max_datagrams` pending, each for at most `timeout_ns`.
    pub fn new(max_datagrams: usize, timeout_ns: i64) -> Self {
        Defragmenter {
            pending: HashMap::new(),
            max_datagrams: max_datagrams.max(1),
            timeout_ns,
            expired_at: i64::MIN,
            dropped: 0,
        }
    }

    /// Datagrams waiting for fragments.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the datagram of `key` is still waiting for fragments.
    pub fn is_pending(&self, key: &FragmentKey) -> bool {
        self.pending.contains_key(key)
    }

    /// Takes a frame that [`crate::parse`] called a fragment, seen at
    /// `ts_ns`.
    ///
    /// # Errors
    ///
    /// The frame's [`PacketError`] when it is not an IP fragment, or
    /// [`PacketError::Fragment`] when it contradicts the datagram's other
    /// fragments (the datagram is dropped).
    pub fn fragment(
        &mut self,
        link_type: u32,
        data: &[u8],
        ts_ns: i64,
    ) -> Result<Fragment, PacketError> {
        let sliced = slice(link_type, data)?;
        let (key, offset, more, payload) = match &sliced.net {
            Some(NetSlice::Ipv4(v4)) => {
                let h = v4.header();
                let key = FragmentKey {
                    src: IpAddr::V4(h.source_addr()),
                    dst: IpAddr::V4(h.destination_addr()),
                    id: u32::from(h.identification()),
                    protocol: v4.payload().ip_number.0,
                };
                (
                    key,
                    h.fragments_offset(),
                    h.more_fragments(),
                    v4.payload().payload,
                )
            }
            Some(NetSlice::Ipv6(v6)) => {
                let frag = v6
                    .extensions()
                    .clone()
                    .into_iter()
                    .find_map(|e| match e {
                        Ipv6ExtensionSlice::Fragment(f) => Some(f.to_header()),
                        _ => None,
                    })
                    .ok_or(PacketError::NotIp)?;
                let h = v6.header();
                let key = FragmentKey {
                    src: IpAddr::V6(h.source_addr()),
                    dst: IpAddr::V6(h.destination_addr()),
                    id: frag.identification,
                    protocol: v6.payload().ip_number.0,
                };
                (
                    key,
                    frag.fragment_offset,
                    frag.more_fragments,
                    v6.payload().payload,
                )
            }
            _ => return Err(PacketError::NotIp),
        };
        if ts_ns.saturating_sub(self.expired_at) >= EXPIRE_EVERY_NS.min(self.timeout_ns) {
            self.expire(ts_ns);
        }
        if !self.pending.contains_key(&key)
            && self.pending.len() >= self.max_datagrams
            && let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.first_ns)
                .map(|(k, _)| *k)
        {
            self.pending.remove(&oldest);
            self.dropped += 1;
        }
        let partial = self.pending.entry(key).or_insert_with(|| Partial {
            buf: IpDefragBuf::new(etherparse::IpNumber(key.protocol), Vec::new(), Vec::new()),
            first_ns: ts_ns,
        });
        if partial.buf.add(offset, more, payload).is_err() {
            self.pending.remove(&key);
            self.dropped += 1;
            return Err(PacketError::Fragment);
        }
        if !partial.buf.is_complete() {
            return Ok(Fragment::Pending(key));
        }
        let Some(done) = self.pending.remove(&key) else {
            return Ok(Fragment::Pending(key));
        };
        let (transport, _) = done.buf.take_bufs();
        Ok(Fragment::Complete(Reassembled { key, transport }))
    }

    /// Drops datagrams older than the timeout at `now_ns`; returns their
    /// keys.
    pub fn expire(&mut self, now_ns: i64) -> Vec<FragmentKey> {
        self.expired_at = now_ns;
        let timeout = self.timeout_ns;
        let old: Vec<FragmentKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ns - p.first_ns > timeout)
            .map(|(k, _)| *k)
            .collect();
        for k in &old {
            self.pending.remove(k);
        }
        self.dropped += old.len() as u64;
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LINKTYPE_RAW, parse, parse_transport};

    fn ipv4_fragments(payload: &[u8], size: usize) -> Vec<Vec<u8>> {
        crate::synth::ipv4_fragments(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            0x1234,
            &crate::synth::udp_datagram(40000, 53, payload),
            size,
        )
    }

    #[test]
    fn fragments_in_any_order_make_the_datagram() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut frames = ipv4_fragments(&payload, 1480);
        assert_eq!(frames.len(), 3);
        frames.swap(0, 2);
        let mut d = Defragmenter::new(16, 1_000_000_000);
        let mut done = None;
        for f in &frames {
            assert!(matches!(parse(LINKTYPE_RAW, f), Err(PacketError::Fragment)));
            if let Fragment::Complete(r) = d.fragment(LINKTYPE_RAW, f, 5).expect("fragment") {
                done = Some(r);
            }
        }
        let r = done.expect("complete");
        let p = parse_transport(r.key.src, r.key.dst, r.key.protocol, &r.transport).expect("udp");
        assert_eq!((p.flow.src_port, p.flow.dst_port), (40000, 53));
        assert_eq!(p.payload, payload.as_slice());
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn incomplete_datagrams_are_dropped_by_time_and_by_bound() {
        let frames = ipv4_fragments(&[7; 2000], 1480);
        let mut d = Defragmenter::new(1, 1_000);
        assert!(matches!(
            d.fragment(LINKTYPE_RAW, &frames[0], 0),
            Ok(Fragment::Pending(_))
        ));
        // Too late for the rest.
        assert!(matches!(
            d.fragment(LINKTYPE_RAW, &frames[1], 5_000),
            Ok(Fragment::Pending(_))
        ));
        assert_eq!(d.dropped, 1);
        assert_eq!(d.pending(), 1);
    }
}
