//! Verdict fixtures for the real eBPF object through BPF_PROG_TEST_RUN:
//! every row states the frame, the expected action and reason, and the
//! counter that must move. Needs root.

use sipguard::{
    kernel::testrun::Sandbox,
    policy::{config::Config, Policy},
};
use sipguard_common::Reason::*;
use sipguard_tests::{
    fixtures::{drops, row, run_rows, Row},
    frames::{ip6, raw, v4, v6, Frame},
    require_root, sip,
};

const TRUSTED4: [u8; 4] = [192, 0, 2, 10];
const BLOCKED4: [u8; 4] = [203, 0, 113, 66];
const OTHER4: [u8; 4] = [198, 51, 100, 7];
const PBX4: [u8; 4] = [100, 64, 0, 1];

const CONFIG: &str = "\
policy: drop
sip_ports: [5060, 5061, \"5080-5082\"]
trusted: [192.0.2.10, \"2001:db8:1::/48\"]
blocked: [203.0.113.0/24, \"2001:db8:bad::/48\"]
";

fn policy(extra: &str) -> Policy {
    let cfg = Config::parse(&format!("{CONFIG}{extra}"), "fixture").expect("fixture config");
    Policy::from_config(&cfg)
}

fn t6() -> [u8; 16] {
    ip6("2001:db8:1::5")
}
fn b6() -> [u8; 16] {
    ip6("2001:db8:bad::1")
}
fn o6() -> [u8; 16] {
    ip6("2001:db8:99::7")
}
fn pbx6() -> [u8; 16] {
    ip6("2001:db8:f::1")
}

fn invite() -> Vec<u8> {
    sip::invite("alice", "bob", "pbx.example", "Yealink SIP-T46S 66.86.0.15")
}

fn base_rows() -> Vec<Row> {
    let inv = invite();
    let f4 = |src| v4(src, PBX4).udp(40000, 5060).payload(&inv);
    let f6 = |src| v6(src, pbx6()).udp(40000, 5060).payload(&inv);
    let hop = |f: Frame| f.ext(0, vec![1, 4, 0, 0, 0, 0]);
    let mut rows = vec![
        row("v4 trusted INVITE", f4(TRUSTED4).build(), PassTrusted),
        row("v4 untrusted INVITE", f4(OTHER4).build(), DropUntrusted),
        row("v4 blocked INVITE", f4(BLOCKED4).build(), DropBlocked),
        row(
            "v4 untrusted to 5061",
            f4(OTHER4).udp(5060, 5061).build(),
            DropUntrusted,
        ),
        row(
            "v4 untrusted to range 5081",
            f4(OTHER4).udp(5060, 5081).build(),
            DropUntrusted,
        ),
        row(
            "v4 untrusted to 5062 (outside)",
            f4(OTHER4).udp(5060, 5062).build(),
            PassNotSipPort,
        ),
        row(
            "v4 untrusted to 5079 (outside)",
            f4(OTHER4).udp(5060, 5079).build(),
            PassNotSipPort,
        ),
        row(
            "v4 untrusted to 53",
            f4(OTHER4).udp(5060, 53).build(),
            PassNotSipPort,
        ),
        row(
            "v4 blocked to non-SIP port",
            f4(BLOCKED4).udp(5060, 443).build(),
            PassNotSipPort,
        ),
        row(
            "v4 untrusted from 5060 to high port",
            f4(OTHER4).udp(5060, 34567).build(),
            PassNotSipPort,
        ),
        row(
            "v4 options untrusted",
            f4(OTHER4).ip_options(40).build(),
            DropUntrusted,
        ),
        row(
            "v4 options trusted",
            f4(TRUSTED4).ip_options(12).build(),
            PassTrusted,
        ),
        row(
            "v4 TCP to 5060 untrusted",
            f4(OTHER4).tcp(40000, 5060).build(),
            DropUntrusted,
        ),
        row(
            "v4 TCP to 5061 trusted",
            f4(TRUSTED4).tcp(40000, 5061).build(),
            PassTrusted,
        ),
        row(
            "v4 TCP to 5060 blocked",
            f4(BLOCKED4).tcp(40000, 5060).build(),
            DropBlocked,
        ),
        row(
            "v4 TCP to 443",
            f4(OTHER4).tcp(40000, 443).build(),
            PassNotSipPort,
        ),
        row(
            "v4 ICMP",
            v4(OTHER4, PBX4).proto(1).payload([8, 0, 0, 0]).build(),
            PassNotUdpTcp,
        ),
        row(
            "v4 first fragment untrusted",
            f4(OTHER4).frag(0x2000).build(),
            DropUntrusted,
        ),
        row(
            "v4 later fragment",
            f4(OTHER4).frag(0x2000 | 185).build(),
            PassFragment,
        ),
        row(
            "v4 last fragment",
            f4(OTHER4).frag(185).build(),
            PassFragment,
        ),
        row("v6 trusted INVITE", f6(t6()).build(), PassTrusted),
        row("v6 untrusted INVITE", f6(o6()).build(), DropUntrusted),
        row("v6 blocked INVITE", f6(b6()).build(), DropBlocked),
        row(
            "v6 untrusted to 8080",
            f6(o6()).udp(5060, 8080).build(),
            PassNotSipPort,
        ),
        row(
            "v6 TCP untrusted",
            f6(o6()).tcp(1234, 5060).build(),
            DropUntrusted,
        ),
        row(
            "v6 ICMPv6",
            v6(o6(), pbx6()).proto(58).payload([128, 0, 0, 0]).build(),
            PassNotUdpTcp,
        ),
        row(
            "v6 hop-by-hop untrusted",
            hop(f6(o6())).build(),
            DropUntrusted,
        ),
        row("v6 hop-by-hop trusted", hop(f6(t6())).build(), PassTrusted),
        row(
            "v6 hop+routing+dstopts untrusted",
            f6(o6())
                .ext(0, vec![])
                .ext(43, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .ext(60, vec![1, 20])
                .build(),
            DropUntrusted,
        ),
        row(
            "v6 hop+routing+dstopts trusted",
            f6(t6())
                .ext(0, vec![])
                .ext(43, vec![0; 22])
                .ext(60, vec![])
                .build(),
            PassTrusted,
        ),
        row(
            "v6 AH untrusted",
            f6(o6()).ext(51, vec![0; 10]).build(),
            DropUntrusted,
        ),
        row(
            "v6 first fragment untrusted",
            f6(o6()).ext(44, vec![0, 1, 0, 0, 0, 1]).build(),
            DropUntrusted,
        ),
        row(
            "v6 later fragment",
            f6(o6()).ext(44, vec![0x05, 0x01, 0, 0, 0, 1]).build(),
            PassFragment,
        ),
        row(
            "v6 extension chain of 6 (the bound)",
            (0..6).fold(f6(o6()), |f, _| f.ext(60, vec![])).build(),
            DropUntrusted,
        ),
        row(
            "v6 extension chain of 7 (over the bound)",
            (0..7).fold(f6(o6()), |f, _| f.ext(60, vec![])).build(),
            PassUnparsed,
        ),
        row(
            "VLAN untrusted",
            f4(OTHER4).vlan(0x8100).build(),
            DropUntrusted,
        ),
        row(
            "VLAN trusted",
            f4(TRUSTED4).vlan(0x8100).build(),
            PassTrusted,
        ),
        row(
            "QinQ untrusted",
            f4(OTHER4).vlan(0x88a8).vlan(0x8100).build(),
            DropUntrusted,
        ),
        row(
            "QinQ trusted",
            f4(TRUSTED4).vlan(0x88a8).vlan(0x8100).build(),
            PassTrusted,
        ),
        row(
            "QinQ v6 untrusted",
            f6(o6()).vlan(0x88a8).vlan(0x8100).build(),
            DropUntrusted,
        ),
        row(
            "three VLAN tags",
            f4(OTHER4).vlan(0x88a8).vlan(0x8100).vlan(0x8100).build(),
            PassUnparsed,
        ),
        row("ARP", raw(0x0806, &[0u8; 28]), PassNotIp),
        row("LLDP", raw(0x88cc, &[0u8; 40]), PassNotIp),
        row("bare Ethernet header", raw(0x0800, &[]), PassUnparsed),
        row(
            "IPv4 ethertype, IPv6 header",
            {
                let mut f = f6(o6()).build();
                f[12] = 0x08;
                f[13] = 0x00;
                f
            },
            PassUnparsed,
        ),
    ];

    // Lying headers on SIP-port traffic.
    let mut lying_udp = f4(OTHER4).build();
    let udp_len_at = 14 + 20 + 4;
    lying_udp[udp_len_at..udp_len_at + 2].copy_from_slice(&4000u16.to_be_bytes());
    rows.push(row(
        "v4 UDP length beyond IP payload, untrusted",
        lying_udp.clone(),
        DropMalformed,
    ));
    let mut lying_trusted = f4(TRUSTED4).build();
    lying_trusted[udp_len_at..udp_len_at + 2].copy_from_slice(&4000u16.to_be_bytes());
    rows.push(row(
        "v4 UDP length beyond IP payload, trusted",
        lying_trusted,
        PassTrusted,
    ));
    let mut short_udp = f4(OTHER4).build();
    short_udp[udp_len_at..udp_len_at + 2].copy_from_slice(&3u16.to_be_bytes());
    rows.push(row(
        "v4 UDP length < 8, untrusted",
        short_udp,
        DropMalformed,
    ));
    let mut long_ip = f4(OTHER4).build();
    long_ip[16..18].copy_from_slice(&9000u16.to_be_bytes());
    rows.push(row(
        "v4 total length beyond frame, untrusted",
        long_ip,
        DropMalformed,
    ));
    let mut bad_ihl = f4(OTHER4).build();
    bad_ihl[14] = 0x44;
    rows.push(row("v4 IHL 4 (< 5)", bad_ihl, PassUnparsed));
    let mut v6_long = f6(o6()).build();
    v6_long[18..20].copy_from_slice(&60000u16.to_be_bytes());
    rows.push(row(
        "v6 payload length beyond frame, untrusted",
        v6_long,
        DropMalformed,
    ));
    // Ethernet padding after a short IP packet is normal, not a lie.
    let mut padded = v4(OTHER4, PBX4).udp(1, 5060).payload(b"x").build();
    padded.extend([0u8; 20]);
    rows.push(row(
        "v4 with Ethernet padding, untrusted",
        padded,
        DropUntrusted,
    ));

    // Truncated at every length: before the UDP header is complete the
    // ports are unknown (pass, unparsed); after it, the IP length lies.
    for (name, full, l4_end) in [
        ("v4", f4(OTHER4).build(), 14 + 20 + 8),
        ("v6", f6(o6()).build(), 14 + 40 + 8),
        (
            "QinQ v4",
            f4(OTHER4).vlan(0x88a8).vlan(0x8100).build(),
            22 + 20 + 8,
        ),
        ("v6 hop-by-hop", hop(f6(o6())).build(), 14 + 40 + 8 + 8),
        ("v4 TCP", f4(OTHER4).tcp(1, 5060).build(), 14 + 20 + 20),
    ] {
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header
        // (and no NIC delivers one), so truncation starts at 14 bytes.
        for n in 14..full.len() {
            if n > l4_end + 8 && n % 97 != 0 {
                continue; // inside the payload every length behaves alike
            }
            let reason = if n < l4_end {
                PassUnparsed
            } else {
                DropMalformed
            };
            rows.push(row(
                format!("{name} truncated to {n} bytes"),
                full[..n].to_vec(),
                reason,
            ));
        }
    }
    rows
}

fn check(extra: &str, rows: Vec<Row>) {
    let policy = policy(extra);
    let mut sb = Sandbox::new(&policy).expect("loading the eBPF object (root, BPF)");
    let failures = run_rows(&mut sb, &policy, &rows);
    assert!(
        failures.is_empty(),
        "{} of {} fixture rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    eprintln!("{} fixture rows passed", rows.len());
}

#[test]
fn allowlist_policy_fixtures() {
    if !require_root("allowlist_policy_fixtures") {
        return;
    }
    check("", base_rows());
}

#[test]
fn monitor_mode_counts_would_drop_and_passes() {
    if !require_root("monitor_mode_counts_would_drop_and_passes") {
        return;
    }
    // Same rows: every drop becomes a monitored pass with the same reason.
    check("mode: monitor\n", base_rows());
}

#[test]
fn production_object_returns_bare_actions() {
    if !require_root("production_object_returns_bare_actions") {
        return;
    }
    let policy = policy("");
    let mut sb = Sandbox::production(&policy).expect("load");
    for r in base_rows() {
        let want = if drops(r.reason) { 1 } else { 2 };
        assert_eq!(sb.run_action(&r.frame).expect("run"), want, "{}", r.name);
    }
}

#[test]
fn empty_settings_pass_everything() {
    if !require_root("empty_settings_pass_everything") {
        return;
    }
    // Before the daemon writes SETTINGS no port is a SIP port.
    let mut p = policy("");
    p.settings = sipguard_common::Settings::empty();
    let mut sb = Sandbox::new(&p).expect("load");
    for r in base_rows() {
        let v = sb.run(&r.frame).expect("run");
        assert_eq!(v.action, 2, "{}", r.name);
        assert!(!drops(v.reason), "{}: {:?}", r.name, v.reason);
    }
}
