//! SIP inspection fixtures for the real eBPF object through
//! BPF_PROG_TEST_RUN: every rule, every parsing edge case, each row checked
//! for action, reason, counter and host == kernel. Needs root.

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
const OTHER4: [u8; 4] = [198, 51, 100, 7];
const PBX4: [u8; 4] = [100, 64, 0, 1];

const BASE: &str = "\
policy: inspect
sip_ports: [5060, 5061]
trusted: [192.0.2.10]
blocked: [203.0.113.0/24]
";

fn policy(extra: &str) -> Policy {
    let cfg = Config::parse(&format!("{BASE}{extra}"), "inspect fixture").expect("fixture config");
    Policy::from_config(&cfg)
}

fn udp(payload: &[u8]) -> Vec<u8> {
    v4(OTHER4, PBX4).udp(40000, 5060).payload(payload).build()
}

fn invite_ua(ua: &str) -> Vec<u8> {
    sip::invite("alice", "bob", "pbx.example", ua)
}

fn with_ua(ua: &str, eol: &str) -> Vec<u8> {
    sip::request(
        "INVITE",
        "sip:bob@pbx.example",
        &sip::call_headers("<sip:alice@pbx.example>;tag=1", "<sip:bob@pbx.example>", ua),
        "",
        eol,
    )
}

/// svmap's OPTIONS without its User-Agent: only the fingerprint is left.
fn svmap_no_ua() -> Vec<u8> {
    let s = String::from_utf8(sip::svmap_options()).unwrap();
    s.replace("User-Agent: friendly-scanner\r\n", "")
        .into_bytes()
}

fn replace(msg: &[u8], from: &str, to: &str) -> Vec<u8> {
    String::from_utf8(msg.to_vec())
        .unwrap()
        .replace(from, to)
        .into_bytes()
}

/// Rows for the default rules (built-in scanner list, fingerprint, not-SIP).
fn default_rows() -> Vec<Row> {
    let legit = invite_ua("Yealink SIP-T46S 66.86.0.15");
    let scanner = invite_ua("friendly-scanner");
    let mut big_tail = String::from_utf8(with_ua("sipcli/v1.8", "\r\n")).unwrap();
    // UA beyond the 1500-byte window: not seen, the verdict is partial.
    big_tail = big_tail.replace(
        "User-Agent:",
        &format!("X-Pad: {}\r\nUser-Agent:", "p".repeat(1600)),
    );
    let mut big_head = String::from_utf8(with_ua("sipcli/v1.8", "\r\n")).unwrap();
    big_head = big_head.replace(
        "Content-Length: 0",
        &format!("X-Pad: {}\r\nContent-Length: 0", "p".repeat(1600)),
    );
    let big_clean = replace(big_tail.as_bytes(), "sipcli/v1.8", "Grandstream GXP2170");
    // The header block split by the end of a first IP fragment: the UDP
    // length promises more than the fragment carries.
    let first_frag = |msg: &[u8], cut: usize| {
        let mut f = v4(OTHER4, PBX4)
            .udp(40000, 5060)
            .payload(&msg[..cut])
            .frag(0x2000)
            .build();
        let ulen = (8 + msg.len()) as u16;
        f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&ulen.to_be_bytes());
        f
    };
    let mut stun = vec![0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([0x55u8; 12]);
    let fragile = with_ua("friendly-scanner", "\r\n");
    let ua_at = String::from_utf8(fragile.clone())
        .unwrap()
        .find("User-Agent")
        .unwrap();
    vec![
        row("legit INVITE", udp(&legit), PassInspected),
        row(
            "legit REGISTER (From == To)",
            udp(&sip::register("alice", "pbx.example", "Linphone/5.2.5")),
            PassInspected,
        ),
        row(
            "legit OPTIONS keepalive",
            udp(&sip::request(
                "OPTIONS",
                "sip:pbx.example",
                &[
                    ("From", "<sip:alice@pbx.example>;tag=1"),
                    ("To", "<sip:pbx.example>"),
                ],
                "",
                "\r\n",
            )),
            PassInspected,
        ),
        row("scanner UA", udp(&scanner), DropUserAgent),
        row("svmap OPTIONS", udp(&sip::svmap_options()), DropUserAgent),
        row(
            "svmap fingerprint without UA",
            udp(&svmap_no_ua()),
            DropSipVicious,
        ),
        row(
            "fingerprint, compact f/t",
            udp(&replace(
                &replace(&svmap_no_ua(), "To:", "t:"),
                "From:",
                "f:",
            )),
            DropSipVicious,
        ),
        row(
            "fingerprint, only 1.1.1.1 host",
            udp(&replace(&svmap_no_ua(), "\"sipvicious\"", "\"100\"")),
            DropSipVicious,
        ),
        row(
            "fingerprint, only display name",
            udp(&replace(&svmap_no_ua(), "1.1.1.1", "example.com")),
            DropSipVicious,
        ),
        row(
            "From != To at 1.1.1.1",
            udp(&replace(
                &svmap_no_ua(),
                "To: \"sipvicious\"<sip:100@1.1.1.1>",
                "To: <sip:200@1.1.1.1>",
            )),
            PassInspected,
        ),
        row(
            "UA upper case",
            udp(&with_ua("FRIENDLY-SCANNER", "\r\n")),
            DropUserAgent,
        ),
        row(
            "UA header name upper case",
            udp(&replace(
                &with_ua("sipcli/v1.8", "\r\n"),
                "User-Agent:",
                "USER-AGENT:",
            )),
            DropUserAgent,
        ),
        row(
            "UA header name mixed case",
            udp(&replace(
                &with_ua("VaxSIPUserAgent/3.1", "\r\n"),
                "User-Agent:",
                "user-AGENT:",
            )),
            DropUserAgent,
        ),
        row(
            "UA tab and spaces after colon",
            udp(&replace(
                &with_ua("sundayddr", "\r\n"),
                "User-Agent: ",
                "User-Agent:\t   ",
            )),
            DropUserAgent,
        ),
        row(
            "UA no space after colon",
            udp(&replace(
                &with_ua("pplsip", "\r\n"),
                "User-Agent: ",
                "User-Agent:",
            )),
            DropUserAgent,
        ),
        row(
            "UA space before colon",
            udp(&replace(
                &with_ua("iWar", "\r\n"),
                "User-Agent: ",
                "User-Agent : ",
            )),
            DropUserAgent,
        ),
        row(
            "UA bare LF",
            udp(&with_ua("sipvicious", "\n")),
            DropUserAgent,
        ),
        row(
            "legit bare LF",
            udp(&with_ua("Cisco/SPA504G-7.6.2", "\n")),
            PassInspected,
        ),
        row(
            "UA as last header",
            udp(&sip::request(
                "INVITE",
                "sip:bob@pbx.example",
                &[
                    ("From", "<sip:a@b>;tag=1"),
                    ("To", "<sip:bob@b>"),
                    ("User-Agent", "smap 0.6"),
                ],
                "",
                "\r\n",
            )),
            DropUserAgent,
        ),
        row(
            "UA substring only",
            udp(&with_ua("my friendly-scanner", "\r\n")),
            PassInspected,
        ),
        row(
            "UA in body only",
            udp(&sip::request(
                "INVITE",
                "sip:bob@pbx.example",
                &[("Content-Type", "text/plain"), ("Content-Length", "28")],
                "User-Agent: friendly-scanner",
                "\r\n",
            )),
            PassInspected,
        ),
        row(
            "X-User-Agent header",
            udp(&replace(&scanner, "User-Agent:", "X-User-Agent:")),
            PassInspected,
        ),
        row(
            "UA in a folded continuation",
            udp(&replace(
                &legit,
                "Content-Type",
                " User-Agent: friendly-scanner\r\nContent-Type",
            )),
            PassInspected,
        ),
        row(
            "long Via before the UA",
            udp(&replace(
                &with_ua("sip-scan", "\r\n"),
                "rport",
                &"x".repeat(700),
            )),
            DropUserAgent,
        ),
        row(
            "message > window, UA early",
            udp(big_head.as_bytes()),
            DropUserAgent,
        ),
        row(
            "message > window, UA late",
            udp(big_tail.as_bytes()),
            PassPartial,
        ),
        row("message > window, clean", udp(&big_clean), PassPartial),
        row(
            "headers without the empty line",
            udp(&legit[..legit.len() - sip_body_len(&legit) - 2]),
            PassPartial,
        ),
        row(
            "first fragment cut before UA",
            first_frag(&fragile, ua_at - 3),
            PassPartial,
        ),
        row(
            "first fragment cut after UA value",
            first_frag(&fragile, ua_at + 28),
            DropUserAgent,
        ),
        row(
            "first fragment cut inside UA value (prefix incomplete)",
            first_frag(&fragile, ua_at + 16),
            PassPartial,
        ),
        row(
            "first fragment cut in request line",
            first_frag(&fragile, 10),
            PassPartial,
        ),
        row("CRLF keepalive", udp(b"\r\n\r\n"), PassInspected),
        row("NUL keepalive", udp(&[0, 0, 0, 0]), PassInspected),
        row("empty UDP", udp(b""), PassInspected),
        row("STUN binding", udp(&stun), PassInspected),
        row(
            "SIP response from scanner UA",
            udp(b"SIP/2.0 200 OK\r\nUser-Agent: friendly-scanner\r\n\r\n"),
            PassInspected,
        ),
        row(
            "garbage",
            udp(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            DropNotSip,
        ),
        row(
            "HTTP",
            udp(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            DropNotSip,
        ),
        row(
            "bad SIP version",
            udp(b"INVITE sip:a@b SIP/3.0\r\n\r\n"),
            DropNotSip,
        ),
        row(
            "lowercase method",
            udp(b"invite sip:a@b SIP/2.0\r\n\r\n"),
            DropNotSip,
        ),
        row(
            "unknown method, clean",
            udp(b"FOO sip:a@b SIP/2.0\r\n\r\n"),
            PassInspected,
        ),
        row(
            "v6 scanner",
            v6(ip6("2001:db8:99::7"), ip6("2001:db8:f::1"))
                .udp(1, 5060)
                .payload(&scanner)
                .build(),
            DropUserAgent,
        ),
        row(
            "v6 legit",
            v6(ip6("2001:db8:99::7"), ip6("2001:db8:f::1"))
                .udp(1, 5060)
                .payload(&legit)
                .build(),
            PassInspected,
        ),
        row(
            "QinQ scanner",
            v4(OTHER4, PBX4)
                .udp(1, 5061)
                .payload(&scanner)
                .vlan(0x88a8)
                .vlan(0x8100)
                .build(),
            DropUserAgent,
        ),
        row(
            "v4 options scanner",
            v4(OTHER4, PBX4)
                .udp(1, 5060)
                .payload(&scanner)
                .ip_options(40)
                .build(),
            DropUserAgent,
        ),
        row(
            "trusted scanner",
            v4(TRUSTED4, PBX4).udp(1, 5060).payload(&scanner).build(),
            PassTrusted,
        ),
        row(
            "blocked legit",
            v4(BLOCKED4, PBX4).udp(1, 5060).payload(&legit).build(),
            DropBlocked,
        ),
        row(
            "TCP scanner",
            v4(OTHER4, PBX4).tcp(1, 5060).payload(&scanner).build(),
            PassUninspectable,
        ),
        row(
            "scanner to non-SIP port",
            v4(OTHER4, PBX4).udp(1, 5070).payload(&scanner).build(),
            PassNotSipPort,
        ),
    ]
}

fn sip_body_len(msg: &[u8]) -> usize {
    let s = String::from_utf8_lossy(msg);
    s.len() - s.find("\r\n\r\n").unwrap() - 4
}

fn check(p: &Policy, rows: Vec<Row>) {
    let mut sb = Sandbox::new(p).expect("loading the eBPF object (root, BPF)");
    let failures = run_rows(&mut sb, p, &rows);
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    eprintln!("{} inspection rows passed", rows.len());
}

#[test]
fn default_rules() {
    if !require_root("default_rules") {
        return;
    }
    check(&policy(""), default_rows());
}

/// Repeated, folded and respelled User-Agent, From and To headers.
#[test]
fn repeated_headers() {
    if !require_root("repeated_headers") {
        return;
    }
    check(
        &sipguard_tests::fixtures::repeated_headers::policy(),
        sipguard_tests::fixtures::repeated_headers::rows(),
    );
}

#[test]
fn default_rules_monitor_mode() {
    if !require_root("default_rules_monitor_mode") {
        return;
    }
    check(&policy("mode: monitor\n"), default_rows());
}

#[test]
fn embedded_default_policy() {
    if !require_root("embedded_default_policy") {
        return;
    }
    let p = Policy::from_config(&Config::embedded_default().expect("embedded default"));
    let rows = vec![
        row(
            "legit INVITE",
            udp(&invite_ua("Yealink SIP-T46S")),
            PassInspected,
        ),
        row("svmap", udp(&sip::svmap_options()), DropUserAgent),
        row("fingerprint", udp(&svmap_no_ua()), DropSipVicious),
        row("garbage", udp(b"hello"), DropNotSip),
    ];
    check(&p, rows);
}

#[test]
fn opt_in_rules() {
    if !require_root("opt_in_rules") {
        return;
    }
    let p = policy(
        "inspect:\n  drop_methods: [MESSAGE, subscribe]\n  drop_ip_uri: true\n  expected_users: [alice, \"+4930123\"]\n",
    );
    let h = |uri: &str, method: &str| {
        udp(&sip::request(
            method,
            uri,
            &sip::call_headers(
                "<sip:x@pbx.example>;tag=1",
                "<sip:alice@pbx.example>",
                "Yealink",
            ),
            "",
            "\r\n",
        ))
    };
    let rows = vec![
        row(
            "INVITE expected user",
            h("sip:alice@pbx.example", "INVITE"),
            PassInspected,
        ),
        row(
            "INVITE expected number",
            h("sip:+4930123@pbx.example;user=phone", "INVITE"),
            PassInspected,
        ),
        row(
            "INVITE other user",
            h("sip:100@pbx.example", "INVITE"),
            DropUnknownUser,
        ),
        row(
            "INVITE user prefix of expected",
            h("sip:alic@pbx.example", "INVITE"),
            DropUnknownUser,
        ),
        row(
            "INVITE user extending expected",
            h("sip:alice2@pbx.example", "INVITE"),
            DropUnknownUser,
        ),
        row(
            "INVITE user case differs",
            h("sip:Alice@pbx.example", "INVITE"),
            DropUnknownUser,
        ),
        row(
            "INVITE without user",
            h("sip:pbx.example", "INVITE"),
            DropUnknownUser,
        ),
        row(
            "INVITE 40-byte user",
            h(&format!("sip:{}@pbx.example", "a".repeat(40)), "INVITE"),
            DropUnknownUser,
        ),
        row(
            "OPTIONS other user",
            h("sip:100@pbx.example", "OPTIONS"),
            PassInspected,
        ),
        row(
            "INVITE to IPv4 literal",
            h("sip:alice@198.51.100.1", "INVITE"),
            DropUriIpHost,
        ),
        row(
            "INVITE to IPv4 literal with port",
            h("sip:alice@198.51.100.1:5060;transport=udp", "INVITE"),
            DropUriIpHost,
        ),
        row(
            "INVITE to IPv6 literal",
            h("sip:alice@[2001:db8::1]", "INVITE"),
            DropUriIpHost,
        ),
        row(
            "OPTIONS to bare IP",
            h("sip:198.51.100.1", "OPTIONS"),
            DropUriIpHost,
        ),
        row(
            "sips URI",
            h("sips:alice@pbx.example", "INVITE"),
            PassInspected,
        ),
        row(
            "numeric-looking domain",
            h("sip:alice@123.example", "INVITE"),
            PassInspected,
        ),
        row(
            "MESSAGE dropped",
            h("sip:alice@pbx.example", "MESSAGE"),
            DropMethod,
        ),
        row(
            "SUBSCRIBE dropped",
            h("sip:alice@pbx.example", "SUBSCRIBE"),
            DropMethod,
        ),
        row(
            "NOTIFY passes",
            h("sip:alice@pbx.example", "NOTIFY"),
            PassInspected,
        ),
        row(
            "scanner UA still first",
            udp(&invite_ua("friendly-scanner")),
            DropUserAgent,
        ),
    ];
    check(&p, rows);
}

#[test]
fn replaced_lists_and_rules_off() {
    if !require_root("replaced_lists_and_rules_off") {
        return;
    }
    let p =
        policy("inspect:\n  user_agents: [Yealink]\n  sipvicious: false\n  drop_not_sip: false\n");
    let rows = vec![
        row(
            "friendly-scanner no longer listed",
            udp(&invite_ua("friendly-scanner")),
            PassInspected,
        ),
        row(
            "listed Yealink",
            udp(&invite_ua("yealink SIP-T46S")),
            DropUserAgent,
        ),
        row("fingerprint off", udp(&svmap_no_ua()), PassInspected),
        row("not-SIP off", udp(b"hello"), PassInspected),
    ];
    check(&p, rows);
}

#[test]
fn reload_removes_and_adds_list_entries() {
    if !require_root("reload_removes_and_adds_list_entries") {
        return;
    }
    let first = policy("inspect:\n  extra_user_agents: [evilscan]\n  expected_users: [alice]\n");
    let second = policy("inspect:\n  user_agents: [otherscan]\n  expected_users: [bob]\n");
    let mut sb = Sandbox::new(&first).expect("load");
    // OPTIONS: the expected-user rule does not apply to them.
    let options = |ua: &str| udp(&replace(&invite_ua(ua), "INVITE sip:", "OPTIONS sip:"));
    let evil = options("EvilScan 2");
    let other = options("otherscan");
    let to = |u: &str| udp(&sip::invite("x", u, "pbx.example", "Yealink"));
    let r = |sb: &mut Sandbox, f: &[u8]| -> Reason { sb.run(f).expect("run").reason };
    assert_eq!(r(&mut sb, &evil), DropUserAgent);
    assert_eq!(r(&mut sb, &other), PassInspected);
    assert_eq!(r(&mut sb, &to("alice")), PassInspected);
    assert_eq!(r(&mut sb, &to("bob")), DropUnknownUser);
    sb.apply(&second).expect("apply");
    assert_eq!(r(&mut sb, &evil), PassInspected);
    assert_eq!(r(&mut sb, &other), DropUserAgent);
    assert_eq!(
        r(&mut sb, &udp(&sip::svmap_options())),
        DropSipVicious,
        "friendly-scanner left the list"
    );
    assert_eq!(r(&mut sb, &to("alice")), DropUnknownUser);
    assert_eq!(r(&mut sb, &to("bob")), PassInspected);
    for f in [&evil, &other, &to("alice"), &to("bob")] {
        assert_eq!(second.evaluate(f).reason, r(&mut sb, f));
    }
}

/// The filter and the tail-called inspector are verified separately; each
/// must stay well inside the kernel's 1M processed-instruction budget
/// (together, inlined, they did not fit).
#[test]
fn filter_and_inspector_each_fit_the_verifier_budget() {
    if !sipguard_tests::require_root("filter_and_inspector_each_fit_the_verifier_budget") {
        return;
    }
    let cfg = sipguard::policy::config::Config::embedded_default().expect("embedded default");
    let sb = sipguard::kernel::testrun::Sandbox::new(&sipguard::policy::Policy::from_config(&cfg))
        .expect("load");
    let filter = sb
        .verified_instructions_of(sipguard_common::PROGRAM_NAME)
        .expect("info")
        .expect("count");
    let inspector = sb
        .verified_instructions_of(sipguard_common::INSPECT_PROGRAM_NAME)
        .expect("info")
        .expect("count");
    let any_port = sb
        .verified_instructions_of(sipguard_common::ANY_PORT_PROGRAM_NAME)
        .expect("info")
        .expect("count");
    eprintln!(
        "verifier: filter {filter} instructions processed, inspector {inspector}, \
         any-port reader {any_port}"
    );
    assert!(
        filter < 500_000 && inspector < 500_000 && any_port < 500_000,
        "filter {filter}, inspector {inspector}, any-port reader {any_port}"
    );
}
