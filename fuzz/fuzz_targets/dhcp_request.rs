//! A network's DHCP server, as a guest's packets reach it: whatever the bytes, reading them
//! never panics, and an answer (to a request that parses) is a well-formed BOOTREPLY that
//! carries the request's xid and hardware address and ends its options.
#![no_main]

use std::net::Ipv4Addr;

use corral_net::dhcp::{answer, Lease, Message};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else {
        return;
    };
    let lease = Lease {
        ip: Ipv4Addr::new(10, 88, 0, 7),
        prefix: 24,
        router: Some(Ipv4Addr::new(10, 88, 0, 1)),
        dns: Ipv4Addr::new(10, 88, 0, 1),
        hostname: Some("vm".into()),
        domain: Some("net".into()),
        mtu: Some(1500),
    };
    if let Some(r) = answer(&m, Some(&lease), Ipv4Addr::new(10, 88, 0, 1)) {
        let p = &r.packet;
        assert!(p.len() >= 300);
        assert_eq!(p[0], 2);
        assert_eq!(p[4..8], m.xid);
        assert_eq!(p[28..34], m.mac);
        assert!(p[240..].contains(&255));
    }
});
