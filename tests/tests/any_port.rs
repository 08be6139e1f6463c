//! `any_udp_port`: SIP requests to any UDP port are judged like SIP-port
//! traffic, recognised by their request line; other UDP to high ports and
//! TCP outside the port set pass untouched. BPF_PROG_TEST_RUN on the real
//! object, host verdict checked against it. Needs root.

use sipguard::{
    kernel::testrun::Sandbox,
    policy::{config::Config, Policy},
};
use sipguard_common::Reason::{self, *};
use sipguard_tests::{
    fixtures::{row, run_rows, Row},
    frames::{ip6, v4, v6},
    require_root, sip,
};

const TRUSTED4: [u8; 4] = [192, 0, 2, 10];
const BLOCKED4: [u8; 4] = [203, 0, 113, 66];
const SCANNER4: [u8; 4] = [198, 51, 100, 7];
const CPE4: [u8; 4] = [100, 64, 0, 1];

fn policy(any: bool) -> Policy {
    let cfg = format!(
        "policy: drop\nsip_ports: [5060]\nany_udp_port: {any}\ntrusted: [192.0.2.10, \"2001:db8:1::/48\"]\nblocked: [203.0.113.0/24]\n"
    );
    Policy::from_config(&Config::parse(&cfg, "any-port fixture").expect("config"))
}

/// Random-looking high ports, fixed so failures reproduce.
const HIGH_PORTS: [u16; 6] = [1024, 17_385, 32_768, 40_001, 52_711, 65_535];

fn rows(any: bool) -> Vec<Row> {
    let sip_or = |r: Reason| if any { r } else { PassNotSipPort };
    let invite = sip::invite("100", "100", "198.51.100.1", "friendly-scanner");
    let mut rows = Vec::new();
    for port in HIGH_PORTS {
        let f = |src| v4(src, CPE4).udp(5060, port);
        rows.push(row(
            format!("scanner INVITE to {port}"),
            f(SCANNER4).payload(&invite).build(),
            sip_or(DropUntrusted),
        ));
        rows.push(row(
            format!("svmap OPTIONS to {port}"),
            f(SCANNER4).payload(sip::svmap_options()).build(),
            sip_or(DropUntrusted),
        ));
        rows.push(row(
            format!("trusted INVITE to {port}"),
            f(TRUSTED4).payload(&invite).build(),
            sip_or(PassTrusted),
        ));
        rows.push(row(
            format!("blocked INVITE to {port}"),
            f(BLOCKED4).payload(&invite).build(),
            sip_or(DropBlocked),
        ));
        // Non-SIP UDP to the same ports passes whatever its source.
        for (what, payload) in [
            ("DNS", &b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"[..]),
            ("RTP", &[0x80, 0x00, 0x12, 0x34, 0, 0, 0, 160, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff][..]),
            ("QUIC", &[0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8][..]),
            ("HTTP-ish text", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("SIP response", b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n"),
            ("keep-alive", b"\r\n\r\n"),
            ("empty", b""),
        ] {
            rows.push(row(format!("{what} to {port}"), f(SCANNER4).payload(payload).build(), PassNotSipPort));
            rows.push(row(format!("{what} from blocked to {port}"), f(BLOCKED4).payload(payload).build(), PassNotSipPort));
        }
        // TCP outside the port set is never SIP, even starting with INVITE.
        rows.push(row(
            format!("TCP INVITE to {port}"),
            f(SCANNER4).tcp(40000, port).payload(&invite).build(),
            PassNotSipPort,
        ));
    }
    let v6f = |src: &str| {
        v6(ip6(src), ip6("2001:db8:f::1"))
            .udp(5060, 41_234)
            .payload(&invite)
    };
    rows.push(row(
        "v6 scanner INVITE to 41234",
        v6f("2001:db8:99::7").build(),
        sip_or(DropUntrusted),
    ));
    rows.push(row(
        "v6 trusted INVITE to 41234",
        v6f("2001:db8:1::7").build(),
        sip_or(PassTrusted),
    ));
    rows.push(row(
        "VLAN scanner INVITE to 41234",
        v4(SCANNER4, CPE4)
            .vlan(0x8100)
            .udp(1, 41_234)
            .payload(&invite)
            .build(),
        sip_or(DropUntrusted),
    ));
    rows.push(row(
        "PPPoE scanner INVITE to 41234",
        v4(SCANNER4, CPE4)
            .udp(1, 41_234)
            .payload(&invite)
            .pppoe()
            .build(),
        sip_or(DropUntrusted),
    ));
    // The request line must be complete inside the frame: a frame cut
    // before the line end is not recognised (and its IP length lies).
    let cut = v4(SCANNER4, CPE4)
        .udp(1, 41_234)
        .payload(b"INVITE sip:100@x SIP/2.0\r\n")
        .build();
    rows.push(row(
        "INVITE cut before CRLF to 41234",
        cut[..cut.len() - 3].to_vec(),
        PassNotSipPort,
    ));
    // A request line longer than the bound is not recognised.
    let long = format!("INVITE sip:{}@x SIP/2.0\r\n\r\n", "1".repeat(300));
    rows.push(row(
        "INVITE with a 300-byte URI to 41234",
        v4(SCANNER4, CPE4).udp(1, 41_234).payload(long).build(),
        PassNotSipPort,
    ));
    // The port set still applies without a request line.
    rows.push(row(
        "garbage to 5060",
        v4(SCANNER4, CPE4).udp(1, 5060).payload([0u8; 20]).build(),
        DropUntrusted,
    ));
    rows
}

fn check(any: bool) {
    let policy = policy(any);
    let mut sb = Sandbox::new(&policy).expect("loading the eBPF object (root, BPF)");
    let rows = rows(any);
    let failures = run_rows(&mut sb, &policy, &rows);
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    eprintln!("{} rows passed (any_udp_port: {any})", rows.len());
}

#[test]
fn any_udp_port_drops_scanners_on_high_ports() {
    if require_root("any_udp_port_drops_scanners_on_high_ports") {
        check(true);
    }
}

#[test]
fn without_any_udp_port_high_ports_pass() {
    if require_root("without_any_udp_port_high_ports_pass") {
        check(false);
    }
}

/// Under `policy: inspect` a request on a high port goes on to the SIP
/// inspector (a second tail call from the any-port reader).
#[test]
fn any_udp_port_under_inspect_runs_the_sip_rules() {
    if !require_root("any_udp_port_under_inspect_runs_the_sip_rules") {
        return;
    }
    let cfg = "policy: inspect\nsip_ports: [5060]\nany_udp_port: true\ntrusted: [192.0.2.10]\n";
    let policy = Policy::from_config(&Config::parse(cfg, "any-port inspect").expect("config"));
    let mut sb = Sandbox::new(&policy).expect("loading the eBPF object (root, BPF)");
    let to = |src, payload: &[u8]| v4(src, CPE4).udp(5060, 47_011).payload(payload).build();
    let rows = vec![
        row(
            "friendly-scanner INVITE",
            to(
                SCANNER4,
                &sip::invite("100", "100", "198.51.100.1", "friendly-scanner"),
            ),
            DropUserAgent,
        ),
        row(
            "clean INVITE",
            to(
                SCANNER4,
                &sip::invite("alice", "100", "pbx.example", "Linphone/5.2"),
            ),
            PassInspected,
        ),
        row(
            "trusted scanner-like INVITE",
            to(
                TRUSTED4,
                &sip::invite("100", "100", "198.51.100.1", "friendly-scanner"),
            ),
            PassTrusted,
        ),
        row(
            "svmap OPTIONS",
            to(SCANNER4, &sip::svmap_options()),
            DropUserAgent,
        ),
        row(
            "RTP",
            to(SCANNER4, &[0x80, 0, 1, 2, 0, 0, 0, 160]),
            PassNotSipPort,
        ),
    ];
    let failures = run_rows(&mut sb, &policy, &rows);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
