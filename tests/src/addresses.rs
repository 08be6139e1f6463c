//! Every address an end-to-end test uses, in one place.
//!
//! They exist only inside the network namespaces the harness creates
//! ([`crate::harness::Wan`]). The WAN side uses the documentation ranges
//! (192.0.2.0/24, 2001:db8::/32) and the LAN behind the router a private
//! /24, so a packet that escaped by mistake could never reach a real host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Prefix lengths of the WAN link.
pub const WAN4_PREFIX: u8 = 24;
pub const WAN6_PREFIX: u8 = 64;

/// The host sipguard guards: the PBX, or the router in front of phones.
pub const PBX4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const PBX6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 1);

/// The SIP provider (the trusted source in most configs; the registrar
/// when phones register through the router).
pub const PROVIDER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const PROVIDER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x10);
/// Where the provider's name points after it moves.
pub const PROVIDER4_MOVED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
/// The provider's edge proxy, reachable only through its SRV record.
pub const EDGE4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
/// A DNS server the tests run themselves (never a public resolver).
pub const RESOLVER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// The scanner. It is also the source the kernel picks for unbound WAN
/// sockets towards the PBX: some scanners ignore their bind options.
pub const SCANNER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
pub const SCANNER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x66);

/// Untrusted sources that are neither provider nor scanner.
pub const OTHER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
pub const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x77);
pub const OTHER4B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 78);

/// A /26 of the WAN that holds none of the addresses above.
pub const UNUSED_WAN4_NET: &str = "192.0.2.128/26";

/// Every WAN-side source address, as the harness assigns them.
pub const WAN_SOURCES: [IpAddr; 10] = [
    IpAddr::V4(PROVIDER4),
    IpAddr::V4(PROVIDER4_MOVED),
    IpAddr::V4(EDGE4),
    IpAddr::V4(RESOLVER4),
    IpAddr::V4(SCANNER4),
    IpAddr::V4(OTHER4),
    IpAddr::V4(OTHER4B),
    IpAddr::V6(PROVIDER6),
    IpAddr::V6(SCANNER6),
    IpAddr::V6(OTHER6),
];

/// The LAN behind the router (phones register from here).
pub const LAN4_NET: &str = "10.77.0.0/24";
pub const LAN4_PREFIX: u8 = 24;
pub const ROUTER_LAN4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const PHONE4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// A /24 outside the WAN link, and an IPv6 /64 outside the WAN's /64, each
/// with two sources the WAN namespace sends from (range decisions).
pub const RANGE4_NET: &str = "198.51.100.0/24";
pub const RANGE4_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const RANGE4_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);
pub const RANGE6_NET: &str = "2001:db8:66::/64";
pub const RANGE6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x66, 0, 0, 0, 0, 5);
pub const RANGE6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x66, 0, 0xffff, 0, 0, 6);

/// The link between a Local API's namespace and each router it serves
/// (router n: `10.78.n.2`, the API's end `10.78.n.1`).
pub fn lapi_link(n: u8) -> (Ipv4Addr, Ipv4Addr) {
    (Ipv4Addr::new(10, 78, n, 1), Ipv4Addr::new(10, 78, n, 2))
}
pub const LAPI_LINK_PREFIX: u8 = 24;

/// Addresses written into fixture frames. These frames are only handed to
/// BPF_PROG_TEST_RUN and to the host verdict, never sent on a link, so they
/// may use any documentation range; the fixture configs trust and block
/// exactly these.
pub mod frame {
    /// In every fixture config's `trusted:` list.
    pub const TRUSTED4: [u8; 4] = [192, 0, 2, 10];
    /// Inside every fixture config's blocked 203.0.113.0/24.
    pub const BLOCKED4: [u8; 4] = [203, 0, 113, 66];
    /// Neither trusted nor blocked: the untrusted sender, often a scanner.
    pub const OTHER4: [u8; 4] = [198, 51, 100, 7];
    /// The destination: the PBX, or the router (CPE) in front of it.
    pub const PBX4: [u8; 4] = [100, 64, 0, 1];
}
