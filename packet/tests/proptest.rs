//! No input makes the decoders panic, and flow hashes ignore direction.

use proptest::prelude::*;
use tapwire_packet::{FlowKey, Transport, dns, parse};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn frames_never_panic(link in prop_oneof![Just(1u32), Just(101), Just(113), Just(228), Just(229), Just(276), any::<u32>()],
                          data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(link, &data);
    }

    #[test]
    fn ip_like_frames_never_panic(version in prop_oneof![Just(0x45u8), Just(0x60)],
                                  rest in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut data = vec![version];
        data.extend_from_slice(&rest);
        if let Ok(p) = parse(101, &data) {
            prop_assert!(p.payload.len() <= data.len());
        }
    }

    #[test]
    fn dns_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = dns::parse(&data);
        let mut frames = dns::TcpFrames::new(&data);
        for m in frames.by_ref() {
            let _ = dns::parse(m);
        }
        prop_assert!(frames.rest().len() <= data.len());
    }

    #[test]
    fn flow_hash_is_direction_independent(a in any::<[u8; 16]>(), b in any::<[u8; 4]>(),
                                          sp in any::<u16>(), dp in any::<u16>(), tcp in any::<bool>()) {
        let key = FlowKey {
            protocol: if tcp { Transport::Tcp } else { Transport::Udp },
            src_ip: std::net::Ipv6Addr::from(a).into(),
            src_port: sp,
            dst_ip: std::net::Ipv4Addr::from(b).into(),
            dst_port: dp,
        };
        prop_assert_eq!(key.flow_hash(), key.reversed().flow_hash());
        prop_assert_eq!(key.canonical(), key.reversed().canonical());
    }
}
