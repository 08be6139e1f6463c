//! `any_udp_port` end to end: the real `sipguard` binary on a veth in a
//! network namespace, a listener on a random high UDP port behind it (a
//! phone's NAT pinhole, say), and from the other namespace the real
//! SIPVicious `svmap` (OPTIONS and INVITE) aimed at that port, hand-made
//! scanner INVITEs, non-SIP UDP, and INVITEs from the trusted provider.
//! With the option on, no scanner request arrives and everything else
//! does; a SIGHUP turning it off lets the scanner through (so the test can
//! tell the option did the work). Needs root.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use rand::Rng;
use sipguard_tests::{
    addresses::{PBX4, PROVIDER4, SCANNER4},
    harness::{
        process::tool,
        traffic::{send_from, Datagram},
        Arrivals, Daemon, Listener, Wan,
    },
    require_root, sip,
};

const PER_KIND: usize = 10;

fn config(net: &Wan, any: bool) -> String {
    net.config(&format!(
        "xdp_mode: native\npolicy: drop\nsip_ports: [5060]\n\
         any_udp_port: {any}\ntrusted: [{PROVIDER4}]\n"
    ))
}

/// What arrived at the listener, split by whether the first payload byte
/// is a letter (looks like SIP).
#[derive(Debug)]
struct Arrived {
    sip: Arrivals,
    other: Arrivals,
}

/// Runs one round: svmap OPTIONS and INVITE plus hand-made datagrams to
/// `port`; returns what the listener got.
fn round(net: &Wan, port: u16, tag: &str) -> Arrived {
    let dst = SocketAddr::new(PBX4.into(), port);
    let listener = Listener::bind(&net.pbx, &[dst]);
    // The real scanner, bounded in time: nothing answers it. It binds the
    // wildcard; the WAN routes give its packets the scanner's address.
    let svmap = tool(&["sipvicious_svmap", "svmap"]);
    for extra in [&[][..], &["-m", "INVITE"][..]] {
        let out = net
            .wan
            .command("timeout")
            .args(["-s", "KILL", "20"])
            .arg(&svmap)
            .args(["-P", "5070", "-p", &port.to_string()])
            .args(extra)
            .arg(PBX4.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("running svmap");
        eprintln!(
            "{tag}: svmap {extra:?} -p {port}: exit {:?}",
            out.status.code()
        );
    }
    let scanner = SocketAddr::new(SCANNER4.into(), 0);
    let provider = SocketAddr::new(PROVIDER4.into(), 0);
    let mut datagrams = Vec::new();
    for i in 0..PER_KIND {
        let host = PBX4.to_string();
        for (from, payload) in [
            (
                scanner,
                sip::invite(&format!("{i}"), "100", &host, "friendly-scanner"),
            ),
            // DNS-like and RTP-like datagrams: not SIP, must pass.
            (
                scanner,
                b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec(),
            ),
            (
                scanner,
                vec![0x80, 0x00, 0x12, 0x34, 0, 0, 0, 160, 1, 2, 3, 4],
            ),
            (
                provider,
                sip::invite(&format!("caller{i}"), "100", &host, "Provider SBC"),
            ),
        ] {
            datagrams.push(Datagram {
                from,
                to: dst,
                payload,
            });
        }
    }
    send_from(&net.wan, datagrams);
    let got = listener.collect();
    let looks_sip = |p: &[u8]| p.first().is_some_and(u8::is_ascii_alphabetic);
    Arrived {
        sip: got.filter(looks_sip),
        other: got.filter(|p| !looks_sip(p)),
    }
}

#[test]
fn scanner_requests_to_a_random_high_port_are_dropped() {
    if !require_root("scanner_requests_to_a_random_high_port_are_dropped") {
        return;
    }
    let net = Wan::new();
    let port: u16 = rand::thread_rng().gen_range(10_000..65_000);
    eprintln!("random high port: {port}");

    let mut d = Daemon::start(&net.pbx, &config(&net, true), &[]);
    let on = round(&net, port, "any_udp_port on");
    eprintln!("any_udp_port on: {on:?}");
    let stats = d.stats_json();
    eprintln!("{stats:#}");
    assert_eq!(on.sip.from(SCANNER4), 0, "scanner SIP arrived: {on:?}");
    assert_eq!(
        on.sip.from(PROVIDER4),
        PER_KIND,
        "provider INVITEs lost: {on:?}"
    );
    assert_eq!(
        on.other.from(SCANNER4),
        2 * PER_KIND,
        "non-SIP lost: {on:?}"
    );
    let untrusted = stats["reasons"]["untrusted"]["packets"]
        .as_u64()
        .unwrap_or(0);
    // svmap sent at least one request per run, plus the hand-made INVITEs.
    assert!(
        untrusted >= PER_KIND as u64 + 2,
        "untrusted drops {untrusted}: {stats:#}"
    );
    assert!(
        stats["reasons"]["not_sip_port"]["packets"]
            .as_u64()
            .unwrap_or(0)
            >= 2 * PER_KIND as u64,
        "{stats:#}"
    );

    // Off again (SIGHUP): the same scanner reaches the port.
    d.write_config(&config(&net, false));
    d.signal(libc::SIGHUP);
    d.wait_for_log("policy reloaded", Duration::from_secs(10));
    let off = round(&net, port, "any_udp_port off");
    eprintln!("any_udp_port off: {off:?}");
    assert!(
        off.sip.from(SCANNER4) >= PER_KIND + 2,
        "without any_udp_port the scanner should arrive: {off:?}"
    );
    assert_eq!(off.sip.from(PROVIDER4), PER_KIND, "{off:?}");
    let status = d.stop();
    assert!(status.success(), "sipguard exited with {status}");
}
