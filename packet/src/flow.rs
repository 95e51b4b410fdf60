//! [`FlowKey`]: the 5-tuple of a packet and its direction-independent hash.

use std::fmt;
use std::net::IpAddr;

/// The transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Transport {
    /// The IP protocol number (6 or 17).
    pub fn ip_number(self) -> u8 {
        match self {
            Transport::Tcp => 6,
            Transport::Udp => 17,
        }
    }

    /// `"tcp"` or `"udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A packet's 5-tuple, in the packet's own direction (`src` sent it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// TCP or UDP.
    pub protocol: Transport,
    /// Sender address.
    pub src_ip: IpAddr,
    /// Sender port.
    pub src_port: u16,
    /// Receiver address.
    pub dst_ip: IpAddr,
    /// Receiver port.
    pub dst_port: u16,
}

impl FlowKey {
    /// The same flow seen from the other side (source and destination swapped).
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            protocol: self.protocol,
            src_ip: self.dst_ip,
            src_port: self.dst_port,
            dst_ip: self.src_ip,
            dst_port: self.src_port,
        }
    }

    /// The key with the lower endpoint first, so that both directions of a
    /// flow give the same value. Endpoints order by address (every IPv4
    /// address before every IPv6 address, then numerically), then port.
    pub fn canonical(&self) -> FlowKey {
        if self.is_canonical() {
            *self
        } else {
            self.reversed()
        }
    }

    /// Whether `src` is the lower endpoint (see [`FlowKey::canonical`]). Equal
    /// endpoints count as canonical.
    pub fn is_canonical(&self) -> bool {
        (self.src_ip, self.src_port) <= (self.dst_ip, self.dst_port)
    }

    /// A 64-bit hash that is the same for both directions of a flow.
    ///
    /// It is XXH3-64 (seed 0) over 39 bytes of the [canonical](Self::canonical)
    /// key: the IP protocol number, then for the lower and then the higher
    /// endpoint a family byte (4 or 6), the address in 16 bytes (IPv4 in the
    /// first 4, the rest zero) and the port big-endian. Other components that
    /// key packets by flow must compute it the same way: use this function.
    pub fn flow_hash(&self) -> u64 {
        let key = self.canonical();
        let mut buf = [0u8; 39];
        buf[0] = key.protocol.ip_number();
        put_endpoint(&mut buf[1..20], key.src_ip, key.src_port);
        put_endpoint(&mut buf[20..39], key.dst_ip, key.dst_port);
        xxhash_rust::xxh3::xxh3_64(&buf)
    }
}

fn put_endpoint(out: &mut [u8], ip: IpAddr, port: u16) {
    match ip {
        IpAddr::V4(v4) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&v6.octets());
        }
    }
    out[17..19].copy_from_slice(&port.to_be_bytes());
}

impl fmt::Display for FlowKey {
    /// `tcp 10.0.0.1:80 -> 10.0.0.2:5555`, IPv6 addresses in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ep = |f: &mut fmt::Formatter<'_>, ip: IpAddr, port: u16| match ip {
            IpAddr::V4(v4) => write!(f, "{v4}:{port}"),
            IpAddr::V6(v6) => write!(f, "[{v6}]:{port}"),
        };
        write!(f, "{} ", self.protocol)?;
        ep(f, self.src_ip, self.src_port)?;
        f.write_str(" -> ")?;
        ep(f, self.dst_ip, self.dst_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str, sp: u16, dst: &str, dp: u16, protocol: Transport) -> FlowKey {
        FlowKey {
            protocol,
            src_ip: src.parse().unwrap(),
            src_port: sp,
            dst_ip: dst.parse().unwrap(),
            dst_port: dp,
        }
    }

    #[test]
    fn both_directions_hash_the_same_and_canonicalize_the_same() {
        let k = key("10.0.0.9", 40000, "10.0.0.1", 80, Transport::Tcp);
        let r = k.reversed();
        assert_ne!(k, r);
        assert_eq!(k.flow_hash(), r.flow_hash());
        assert_eq!(k.canonical(), r.canonical());
        assert!(k.canonical().is_canonical());
        assert_eq!(k.canonical().src_ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.reversed(), k);
    }

    #[test]
    fn hash_separates_protocol_ports_and_families() {
        let base = key("10.0.0.1", 1000, "10.0.0.2", 53, Transport::Udp);
        let others = [
            key("10.0.0.1", 1000, "10.0.0.2", 53, Transport::Tcp),
            key("10.0.0.1", 1001, "10.0.0.2", 53, Transport::Udp),
            key("10.0.0.1", 1000, "10.0.0.3", 53, Transport::Udp),
            key(
                "::ffff:10.0.0.1",
                1000,
                "::ffff:10.0.0.2",
                53,
                Transport::Udp,
            ),
            // Swapping only the ports is a different flow.
            key("10.0.0.1", 53, "10.0.0.2", 1000, Transport::Udp),
        ];
        for other in others {
            assert_ne!(base.flow_hash(), other.flow_hash(), "{other}");
        }
    }

    #[test]
    fn same_address_orders_by_port() {
        let k = key("127.0.0.1", 9000, "127.0.0.1", 80, Transport::Tcp);
        assert_eq!(k.canonical().src_port, 80);
        assert_eq!(k.flow_hash(), k.reversed().flow_hash());
    }

    #[test]
    fn displays_ipv6_in_brackets() {
        let k = key("::1", 80, "10.0.0.1", 5, Transport::Tcp);
        assert_eq!(k.to_string(), "tcp [::1]:80 -> 10.0.0.1:5");
    }
}
