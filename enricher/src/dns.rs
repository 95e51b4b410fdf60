//! IP to DNS name, learned from DNS answers in the stream, bounded by an LRU.

use std::net::IpAddr;
use std::num::NonZeroUsize;

use tapwire_schemas::events::{DnsEvent, DnsKind};

/// The last name each address was given in a DNS answer.
pub struct DnsCache {
    names: lru::LruCache<IpAddr, String>,
}

impl DnsCache {
    /// A cache of at most `entries` addresses (at least 1).
    pub fn new(entries: usize) -> Self {
        DnsCache {
            names: lru::LruCache::new(NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Learns the addresses a query or resolution answered with.
    pub fn learn(&mut self, event: &DnsEvent) {
        if !matches!(
            event.kind,
            DnsKind::DnsQuery | DnsKind::DnsResolution | DnsKind::DnsLookup
        ) {
            return;
        }
        for answer in &event.answers {
            if let Ok(ip) = answer.parse::<IpAddr>() {
                self.names.put(ip, event.name.clone());
            }
        }
    }

    /// The name `ip` was last given.
    pub fn name(&mut self, ip: IpAddr) -> Option<&str> {
        self.names.get(&ip).map(String::as_str)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapwire_schemas::samples;

    #[test]
    fn answers_name_addresses_and_the_oldest_go_first() {
        let mut cache = DnsCache::new(1);
        let mut e = samples::dns_resolution(samples::header("n", "s", 1, 1));
        cache.learn(&e);
        assert_eq!(
            cache.name("93.184.215.14".parse().expect("ip")),
            Some("example.com")
        );
        e.name = "other.example".into();
        e.answers = vec!["192.0.2.1".into(), "alias.example.".into()];
        cache.learn(&e);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.name("93.184.215.14".parse().expect("ip")), None);
        assert_eq!(
            cache.name("192.0.2.1".parse().expect("ip")),
            Some("other.example")
        );
    }
}
