//! End to end in network namespaces: the daemon (the real binary, joined to
//! the PBX namespace with nsenter, private --pin-root) keeps its running
//! policy when a SIGHUP brings a broken config, and sees a 9000-byte jumbo
//! frame whole on a 9000-MTU link, in native mode through the multi-buffer
//! build. Needs root.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use sipguard_tests::{
    addresses::{OTHER4, PBX4, PROVIDER4 as TRUSTED, SCANNER4 as UNTRUSTED},
    harness::{
        traffic::{send_from, Datagram},
        wan::pbx_addr,
        Arrivals, Daemon, Listener, Wan,
    },
    require_root,
};

const WAIT: Duration = Duration::from_secs(30);

fn packets(stats: &Value, reason: &str) -> u64 {
    stats["reasons"][reason]["packets"].as_u64().unwrap_or(0)
}

/// Sends one datagram per (source, payload) to the PBX's port 5060 and
/// returns what arrived.
fn exchange(net: &Wan, sends: &[(std::net::Ipv4Addr, Vec<u8>)]) -> Arrivals {
    let rx = Listener::bind(&net.pbx, &[pbx_addr(5060)]);
    let datagrams = sends
        .iter()
        .map(|(src, payload)| Datagram {
            from: SocketAddr::new((*src).into(), 0),
            to: pbx_addr(5060),
            payload: payload.clone(),
        })
        .collect();
    send_from(&net.wan, datagrams);
    rx.collect()
}

/// One message from the trusted and one from the untrusted source: which
/// of the two arrived.
fn round(net: &Wan, tag: &str) -> (bool, bool) {
    let (t, u) = (
        msg(&format!("{tag}-trusted")),
        msg(&format!("{tag}-untrusted")),
    );
    let got = exchange(net, &[(TRUSTED, t.clone()), (UNTRUSTED, u.clone())]);
    (got.contains(&t), got.contains(&u))
}

fn msg(tag: &str) -> Vec<u8> {
    format!("OPTIONS sip:100@{PBX4} SIP/2.0\r\nCall-ID: {tag}\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_policy() {
    if !require_root("sighup_with_a_broken_config_keeps_the_running_policy") {
        return;
    }
    let net = Wan::new();
    let good = format!("policy: drop\nsip_ports: [5060]\ntrusted: [{TRUSTED}]\n");
    let mut daemon = Daemon::start(&net.pbx, &net.config(&good), &[]);

    let round = |tag: &str| round(&net, tag);
    assert_eq!(
        round("before"),
        (true, false),
        "allowlist applies before the reload"
    );
    let s0 = daemon.stats_json();

    // A broken config that, if any part of it applied, would let the
    // untrusted source in.
    daemon.write_config(&net.config(&format!(
        "policy: drop\nsip_ports: [5060]\ntrusted:\n  - {TRUSTED}\n  - {UNTRUSTED}\n  - 300.1.2.3\n"
    )));
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log_count("reload failed, keeping the running policy", 1, WAIT);
    let log = daemon.log_text();
    assert!(
        log.contains("line 7") && log.contains("trusted[2]: '300.1.2.3'"),
        "the error names line and field:\n{log}"
    );
    assert_eq!(
        round("broken"),
        (true, false),
        "old policy still applies after a failed reload"
    );
    let s1 = daemon.stats_json();
    assert_eq!(packets(&s1, "trusted") - packets(&s0, "trusted"), 1, "{s1}");
    assert_eq!(
        packets(&s1, "untrusted") - packets(&s0, "untrusted"),
        1,
        "{s1}"
    );

    // An empty file is refused the same way.
    daemon.write_config("# everything commented out\n");
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log_count("reload failed, keeping the running policy", 2, WAIT);
    assert_eq!(
        round("empty"),
        (true, false),
        "old policy still applies after an empty config"
    );

    // A valid change does apply (so the checks above can fail).
    daemon.write_config(&net.config(&format!(
        "policy: drop\nsip_ports: [5060]\ntrusted: [{TRUSTED}, {UNTRUSTED}]\n"
    )));
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("policy reloaded", WAIT);
    assert_eq!(
        round("fixed"),
        (true, true),
        "a good reload lets the new source in"
    );

    let pins = sipguard::kernel::pins::versioned_dir(&daemon.pin_root);
    assert!(daemon.stop().success(), "daemon exits cleanly");
    assert!(!pins.exists(), "pins removed on exit");
}

/// A reload to a config that lists no interface applies: every link is
/// detached and the daemon stays up, idle, as it starts on such a config;
/// a later reload that lists the interface attaches it again.
#[test]
fn reload_to_no_interface_detaches_and_a_later_one_attaches_again() {
    if !require_root("reload_to_no_interface_detaches_and_a_later_one_attaches_again") {
        return;
    }
    let net = Wan::new();
    let policy = format!("policy: drop\nsip_ports: [5060]\ntrusted: [{TRUSTED}]\n");
    let mut daemon = Daemon::start(&net.pbx, &net.config(&policy), &[]);
    let round = |tag: &str| round(&net, tag);
    assert_eq!(round("attached"), (true, false), "filtering before");
    let link = sipguard::kernel::pins::link_path(&daemon.pin_root, &net.pbx_if);
    assert!(link.exists(), "{} pinned", link.display());

    daemon.write_config(&format!("interfaces: []\n{policy}"));
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("policy reloaded", WAIT);
    let log = daemon.log_text();
    assert!(
        log.contains(&format!("detached from {}", net.pbx_if))
            && log.contains("no interface configured: sipguard is attached to none")
            && !log.contains("reload failed"),
        "{log}"
    );
    assert!(!link.exists(), "the link pin is gone");
    assert_eq!(round("idle"), (true, true), "nothing filters while idle");
    assert!(daemon.is_running(), "the daemon stays up");

    daemon.write_config(&net.config(&policy));
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log_count("policy reloaded", 2, WAIT);
    assert_eq!(round("again"), (true, false), "attached again");
    assert!(daemon.stop().success());
}

#[test]
fn jumbo_frame_is_seen_whole_on_a_9000_mtu_link() {
    if !require_root("jumbo_frame_is_seen_whole_on_a_9000_mtu_link") {
        return;
    }
    let net = Wan::with_mtu(9000);
    // Inspect: a lying length would be dropped as malformed, a whole
    // datagram passes to the (not yet present) inspector.
    let mut daemon = Daemon::start(
        &net.pbx,
        &net.config("policy: inspect\nsip_ports: [5060]\n"),
        &[],
    );
    let log = daemon.log_text();
    // veth refuses a program without multi-buffer support in native mode
    // at this MTU: auto mode attaches the multi-buffer build natively where
    // the kernel has it (5.18+), else falls back to generic XDP, which
    // linearizes.
    assert!(
        log.contains("in skb mode") || log.contains("in native mode (multi-buffer build)"),
        "{log}"
    );
    eprintln!(
        "{}",
        log.lines()
            .filter(|l| l.contains("attached") || l.contains("native XDP"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let mut big = msg("jumbo");
    big.resize(9000 - 20 - 8, b'x');
    let got = exchange(&net, &[(UNTRUSTED, big.clone())]);
    assert!(got.contains(&big), "the 9000-byte datagram arrived");
    let s = daemon.stats_json();
    let inspected = &s["reasons"]["inspected_clean"];
    assert_eq!(packets(&s, "malformed"), 0, "{s}");
    assert_eq!(inspected["packets"].as_u64(), Some(1), "{s}");
    assert_eq!(inspected["bytes"].as_u64(), Some(9000 + 14), "{s}");
    assert!(daemon.stop().success());
}

/// `xdp_mode: native` on a 9000-MTU veth: the daemon attaches the
/// multi-buffer build (a single-buffer program does not attach there), and
/// it reads the User-Agent late in a 9000-byte INVITE, in the frame's
/// fragments. Small frames on the same link are judged as before.
#[test]
fn jumbo_invites_in_native_mode_are_inspected_whole() {
    if !require_root("jumbo_invites_in_native_mode_are_inspected_whole") {
        return;
    }
    if !sipguard::kernel::features::has_multi_buffer() {
        eprintln!(
            "SKIP jumbo_invites_in_native_mode_are_inspected_whole: this kernel has no \
             multi-buffer XDP (Linux 5.18+)"
        );
        return;
    }
    let net = Wan::with_mtu(9000);
    let mut daemon = Daemon::start(
        &net.pbx,
        &net.config("xdp_mode: native\npolicy: inspect\nsip_ports: [5060]\n"),
        &[],
    );
    let log = daemon.log_text();
    assert!(
        log.contains("MTU 9000 is above the 3506 bytes a single-buffer XDP program takes")
            && log.contains("in native mode (multi-buffer build)"),
        "{log}"
    );
    use sipguard_tests::fixtures::jumbo::invite_with;
    // 8972 bytes: the largest UDP payload of a 9000-byte IPv4 packet.
    let jumbo = |ua: &str| invite_with(&format!("User-Agent: {ua}"), 8800, 8972);
    let small = |ua: &str| invite_with(&format!("User-Agent: {ua}"), 300, 600);
    let legit_jumbo = jumbo("Yealink SIP-T46S 66.86.0.15");
    let legit_small = small("Yealink SIP-T46S 66.86.0.15");
    let got = exchange(
        &net,
        &[
            (UNTRUSTED, jumbo("friendly-scanner")),
            (OTHER4, legit_jumbo.clone()),
            (UNTRUSTED, small("friendly-scanner")),
            (OTHER4, legit_small.clone()),
        ],
    );
    assert_eq!(got.from(UNTRUSTED), 0, "scanner INVITEs dropped: {got:?}");
    assert!(
        got.contains(&legit_jumbo),
        "the jumbo INVITE arrived byte for byte"
    );
    assert!(
        got.contains(&legit_small),
        "the small INVITE arrived byte for byte"
    );
    assert_eq!(got.from(OTHER4), 2, "{got:?}");
    let s = daemon.stats_json();
    assert_eq!(packets(&s, "user_agent"), 2, "{s}");
    assert_eq!(packets(&s, "inspected_clean"), 2, "{s}");
    assert_eq!(
        s["reasons"]["inspected_clean"]["bytes"].as_u64(),
        Some((9000 + 14) + (600 + 42)),
        "{s}"
    );
    assert_eq!(packets(&s, "inspected_partial"), 0, "{s}");
    assert!(daemon.stop().success());
}
