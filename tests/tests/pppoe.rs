//! PPPoE session frames (with and without VLAN tags) and devices without an
//! Ethernet header (tun/ppp under generic XDP), through BPF_PROG_TEST_RUN on
//! the real object and, for tun, end to end with the real daemon. Needs root.

use std::{fs::OpenOptions, io::Write, net::UdpSocket, os::fd::AsRawFd, time::Duration};

use sipguard::{
    kernel::testrun::Sandbox,
    policy::{config::Config, Policy},
};
use sipguard_common::{packet::Link, Reason::*};
use sipguard_tests::{
    addresses::{PBX4, PROVIDER4, SCANNER4, WAN4_PREFIX},
    fixtures::{row, run_rows_on, Row},
    frames::{ip6, raw, v4, v6, Frame},
    harness::{netns::unique, Daemon, Netns},
    require_root, sip,
};

const TRUSTED4: [u8; 4] = [192, 0, 2, 10];
const BLOCKED4: [u8; 4] = [203, 0, 113, 66];
const OTHER4: [u8; 4] = [198, 51, 100, 7];
const CPE4: [u8; 4] = [100, 64, 0, 1];

const CONFIG: &str = "\
policy: drop
sip_ports: [5060, 5061]
trusted: [192.0.2.10, \"2001:db8:1::/48\"]
blocked: [203.0.113.0/24]
";

fn policy() -> Policy {
    Policy::from_config(&Config::parse(CONFIG, "pppoe fixture").expect("fixture config"))
}

fn invite() -> Vec<u8> {
    sip::invite("alice", "bob", "pbx.example", "Yealink SIP-T46S 66.86.0.15")
}

fn f4(src: [u8; 4]) -> Frame {
    v4(src, CPE4).udp(40000, 5060).payload(invite())
}

fn f6(src: &str) -> Frame {
    v6(ip6(src), ip6("2001:db8:f::1"))
        .udp(40000, 5060)
        .payload(invite())
}

fn check(rows: Vec<Row>, link: Link) {
    let policy = policy();
    let mut sb = Sandbox::new(&policy).expect("loading the eBPF object (root, BPF)");
    let failures = run_rows_on(&mut sb, &policy, &rows, link);
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    eprintln!("{} {link:?} rows passed", rows.len());
}

/// A named way of wrapping a frame in PPPoE (and VLAN tags).
type Shape = (&'static str, fn(Frame) -> Frame);

#[test]
fn pppoe_session_frames() {
    if !require_root("pppoe_session_frames") {
        return;
    }
    let shapes: [Shape; 3] = [
        ("PPPoE", |f| f.pppoe()),
        ("VLAN+PPPoE", |f| f.vlan(0x8100).pppoe()),
        ("QinQ+PPPoE", |f| f.vlan(0x88a8).vlan(0x8100).pppoe()),
    ];
    let mut rows = Vec::new();
    for (shape, wrap) in shapes {
        let r =
            |name: &str, f: Frame, reason| row(format!("{shape} {name}"), wrap(f).build(), reason);
        rows.extend([
            r("v4 trusted INVITE", f4(TRUSTED4), PassTrusted),
            r("v4 untrusted INVITE", f4(OTHER4), DropUntrusted),
            r("v4 blocked INVITE", f4(BLOCKED4), DropBlocked),
            r(
                "v4 untrusted to 5061",
                f4(OTHER4).udp(1, 5061),
                DropUntrusted,
            ),
            r("v4 untrusted to 53", f4(OTHER4).udp(1, 53), PassNotSipPort),
            r("v4 TCP untrusted", f4(OTHER4).tcp(1, 5060), DropUntrusted),
            r(
                "v4 ICMP",
                v4(OTHER4, CPE4).proto(1).payload([8, 0, 0, 0]),
                PassNotUdpTcp,
            ),
            r("v4 later fragment", f4(OTHER4).frag(100), PassFragment),
            r("v6 trusted INVITE", f6("2001:db8:1::5"), PassTrusted),
            r("v6 untrusted INVITE", f6("2001:db8:99::7"), DropUntrusted),
            r(
                "v6 hop-by-hop untrusted",
                f6("2001:db8:99::7").ext(0, vec![1, 4, 0, 0, 0, 0]),
                DropUntrusted,
            ),
            r(
                "v6 untrusted to 8080",
                f6("2001:db8:99::7").udp(1, 8080),
                PassNotSipPort,
            ),
        ]);
        // PPP control protocols are not IP, whatever follows them.
        for (name, proto) in [
            ("LCP", 0xc021u16),
            ("IPCP", 0x8021),
            ("IPV6CP", 0x8057),
            ("PAP", 0xc023),
            ("CHAP", 0xc223),
        ] {
            let mut f = f4(OTHER4);
            if shape != "PPPoE" {
                f = f.vlan(0x8100);
                if shape.starts_with("QinQ") {
                    f.vlans.insert(0, 0x88a8);
                }
            }
            rows.push(row(
                format!("{shape} {name}"),
                f.pppoe_proto(proto.to_be_bytes().to_vec()).build(),
                PassNotIp,
            ));
        }
        // Truncated at and inside every header: before the UDP header is
        // complete the ports are unknown (pass, unparsed); after it the IP
        // length lies about a SIP-port packet (drop, malformed).
        for (ip, full) in [
            ("v4", wrap(f4(OTHER4)).build()),
            ("v6", wrap(f6("2001:db8:99::7")).build()),
        ] {
            let tags = full.len() - 8 - if ip == "v4" { 20 } else { 40 } - 8 - invite().len() - 14;
            let pppoe_at = 14 + tags;
            let l4_end = pppoe_at + 8 + if ip == "v4" { 20 } else { 40 } + 8;
            for n in 14..l4_end + 3 {
                let reason = if n < l4_end {
                    PassUnparsed
                } else {
                    DropMalformed
                };
                rows.push(row(
                    format!("{shape} {ip} truncated to {n} bytes (PPPoE at {pppoe_at})"),
                    full[..n].to_vec(),
                    reason,
                ));
            }
        }
    }
    // PFC: a one-byte PPP protocol field, as ppp_generic accepts.
    rows.push(row(
        "PPPoE v4 PFC untrusted",
        f4(OTHER4).pppoe_proto(vec![0x21]).build(),
        DropUntrusted,
    ));
    rows.push(row(
        "PPPoE v6 PFC trusted",
        f6("2001:db8:1::9").pppoe_proto(vec![0x57]).build(),
        PassTrusted,
    ));
    // The PPP field says IPv4, the packet is IPv6: not judged by a wrong header.
    rows.push(row(
        "PPPoE v4 field, v6 packet",
        f6("2001:db8:99::7").pppoe_proto(vec![0, 0x21]).build(),
        PassUnparsed,
    ));
    // Discovery stage (PADI/PADO/PADR/PADS/PADT) never carries IP.
    let disc = {
        let mut f = f4(OTHER4).pppoe().build();
        f[12..14].copy_from_slice(&0x8863u16.to_be_bytes());
        f
    };
    rows.push(row(
        "PPPoE discovery with an IP-looking body",
        disc,
        PassNotIp,
    ));
    rows.push(row(
        "PPPoE discovery PADI",
        raw(0x8863, &[0x11, 0x09, 0, 0, 0, 4, 1, 1, 0, 0]),
        PassNotIp,
    ));
    rows.push(row(
        "PPPoE ethertype, no header",
        raw(0x8864, &[]),
        PassUnparsed,
    ));
    rows.push(row(
        "three VLAN tags then PPPoE",
        f4(OTHER4)
            .vlan(0x88a8)
            .vlan(0x8100)
            .vlan(0x8100)
            .pppoe()
            .build(),
        PassUnparsed,
    ));
    check(rows, Link::Ethernet);
}

#[test]
fn raw_ip_entry_point() {
    if !require_root("raw_ip_entry_point") {
        return;
    }
    let ip = |f: Frame| f.build_ip();
    let mut rows = vec![
        row("v4 trusted INVITE", ip(f4(TRUSTED4)), PassTrusted),
        row("v4 untrusted INVITE", ip(f4(OTHER4)), DropUntrusted),
        row("v4 blocked INVITE", ip(f4(BLOCKED4)), DropBlocked),
        row(
            "v4 untrusted to 53",
            ip(f4(OTHER4).udp(1, 53)),
            PassNotSipPort,
        ),
        row(
            "v4 ICMP",
            ip(v4(OTHER4, CPE4).proto(1).payload([8, 0, 0, 0, 0, 0, 0, 0])),
            PassNotUdpTcp,
        ),
        row("v6 trusted INVITE", ip(f6("2001:db8:1::5")), PassTrusted),
        row(
            "v6 untrusted INVITE",
            ip(f6("2001:db8:99::7")),
            DropUntrusted,
        ),
        row("version 0 (not IP)", vec![0u8; 40], PassNotIp),
    ];
    // BPF_PROG_TEST_RUN refuses packets under 14 bytes, so truncation of
    // the raw-IP entry point is covered from there (the host parser's unit
    // tests cover shorter ones).
    let full = ip(f4(OTHER4));
    for n in 14..31 {
        rows.push(row(
            format!("v4 truncated to {n}"),
            full[..n].to_vec(),
            if n < 28 { PassUnparsed } else { DropMalformed },
        ));
    }
    // The Ethernet entry point would misread these: prove the entry points differ.
    let policy = policy();
    let mut sb = Sandbox::new(&policy).expect("load");
    let on_eth = sb.run(&ip(f4(OTHER4))).expect("run");
    assert_ne!(
        on_eth.reason, DropUntrusted,
        "the Ethernet entry point must not parse raw IP as Ethernet"
    );
    check(rows, Link::RawIp);
}

const TUNSETIFF: libc::c_ulong = 0x400454ca;

/// Opens the persistent tun device `name` (in the calling thread's netns).
fn open_tun(name: &str) -> std::fs::File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("open /dev/net/tun");
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().enumerate() {
        ifr.ifr_name[i] = b as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF with a valid ifreq on the tun fd we own.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &ifr) };
    assert_eq!(
        rc,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    f
}

/// The daemon attached (generic XDP) to a tun device in `tun` mode: the
/// kernel runs the program with the IP header at data[0]; sipguard picks
/// the raw-IP entry point from the link type and filters correctly.
#[test]
fn tun_device_without_ethernet_header() {
    if !require_root("tun_device_without_ethernet_header") {
        return;
    }
    let ns = Netns::new("t");
    let tun = unique("tun");
    ns.exec(&["ip", "tuntap", "add", "dev", &tun, "mode", "tun"]);
    ns.add_addr(&tun, PBX4, WAN4_PREFIX);
    ns.exec(&["ip", "link", "set", &tun, "up"]);
    let cfg = format!("interfaces: [{tun}]\nxdp_mode: auto\npolicy: drop\nsip_ports: [5060]\ntrusted: [{PROVIDER4}]\n");
    let mut d = Daemon::start(&ns, &cfg, &[]);
    assert!(
        d.log_text().contains("raw IP entry point"),
        "{}",
        d.log_text()
    );
    let tun2 = tun.clone();
    let (got, sent) = ns.run(move || {
        let sock = UdpSocket::bind((PBX4, 5060)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut dev = open_tun(&tun2);
        let mut sent = 0;
        for (src, n) in [(PROVIDER4, 5), (SCANNER4, 5)] {
            for _ in 0..n {
                let pkt = v4(src.octets(), PBX4.octets())
                    .udp(40000, 5060)
                    .payload(invite())
                    .build_ip();
                dev.write_all(&pkt).expect("write to tun");
                sent += 1;
            }
        }
        let mut got = std::collections::HashMap::new();
        let mut buf = [0u8; 4096];
        while let Ok((_, from)) = sock.recv_from(&mut buf) {
            *got.entry(from.ip()).or_insert(0) += 1;
        }
        (got, sent)
    });
    assert_eq!(sent, 10);
    assert_eq!(
        got.get(&PROVIDER4.into()),
        Some(&5),
        "trusted over tun: {got:?}"
    );
    assert_eq!(
        got.get(&SCANNER4.into()),
        None,
        "untrusted over tun: {got:?}"
    );
    let stats = d.stats_json();
    assert_eq!(stats["reasons"]["untrusted"]["packets"], 5, "{stats:#}");
    assert_eq!(stats["reasons"]["trusted"]["packets"], 5, "{stats:#}");
    assert!(d.stop().success());
}
