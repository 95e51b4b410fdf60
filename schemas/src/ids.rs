//! Identity and address types shared by every event: [`EventId`] and [`Ip`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 128-bit event id (Avro `fixed` of 16 bytes).
///
/// Ids are derived from what identifies an event (sensor, source, sequence or
/// content), never drawn at random when the record is sent: a producer retry,
/// a replay of the same capture or a re-run of a stage gives the same id, so
/// downstream stores can remove duplicates by id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    /// Derives an id from the parts that identify an event. Each part is
    /// length-prefixed so that `["ab", "c"]` and `["a", "bc"]` differ.
    pub fn derive(parts: &[&[u8]]) -> Self {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for part in parts {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        EventId(hasher.digest128().to_be_bytes())
    }

    /// The id as 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

/// The error for text that is not 32 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("an event id is 32 hex digits, got {0:?}")]
pub struct ParseEventIdError(String);

impl FromStr for EventId {
    type Err = ParseEventIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseEventIdError(s.to_owned());
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(EventId(out))
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_bytes(OctetsVisitor::<16>)
            .map(EventId)
    }
}

/// An IPv4 or IPv6 address, carried in Avro as 4 or 16 bytes in network order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ip(pub IpAddr);

impl Ip {
    /// The address's bytes: 4 for IPv4, 16 for IPv6.
    pub fn octets(&self) -> Vec<u8> {
        match self.0 {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    }
}

impl Default for Ip {
    fn default() -> Self {
        Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

impl From<IpAddr> for Ip {
    fn from(ip: IpAddr) -> Self {
        Ip(ip)
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Ip {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Ip)
    }
}

impl Serialize for Ip {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            IpAddr::V4(v4) => serializer.serialize_bytes(&v4.octets()),
            IpAddr::V6(v6) => serializer.serialize_bytes(&v6.octets()),
        }
    }
}

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(IpVisitor)
    }
}

/// Reads exactly `N` bytes, whether the format hands them over as bytes or as
/// a sequence of integers.
struct OctetsVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for OctetsVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; N];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
        }
        Ok(out)
    }
}

struct IpVisitor;

impl<'de> Visitor<'de> for IpVisitor {
    type Value = Ip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("4 (IPv4) or 16 (IPv6) bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        if let Ok(v4) = <[u8; 4]>::try_from(v) {
            Ok(Ip(IpAddr::V4(Ipv4Addr::from(v4))))
        } else if let Ok(v6) = <[u8; 16]>::try_from(v) {
            Ok(Ip(IpAddr::V6(Ipv6Addr::from(v6))))
        } else {
            Err(E::invalid_length(v.len(), &self))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut bytes = Vec::with_capacity(16);
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        self.visit_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_length_prefixed() {
        let a = EventId::derive(&[b"ab", b"c"]);
        assert_eq!(a, EventId::derive(&[b"ab", b"c"]));
        assert_ne!(a, EventId::derive(&[b"a", b"bc"]));
    }

    #[test]
    fn event_id_text_round_trips() {
        let id = EventId::derive(&[b"x"]);
        assert_eq!(id.to_hex().parse::<EventId>().ok(), Some(id));
        assert!("xyz".parse::<EventId>().is_err());
    }
}
