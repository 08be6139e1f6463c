//! `any_udp_port` end to end: the real `sipguard` binary on a veth in a
//! network namespace, a listener on a random high UDP port behind it (a
//! phone's NAT pinhole, say), and from the other namespace the real
//! SIPVicious `svmap` (OPTIONS and INVITE) aimed at that port, hand-made
//! scanner INVITEs, non-SIP UDP, and INVITEs from the trusted provider.
//! With the option on, no scanner request arrives and everything else
//! does; a SIGHUP turning it off lets the scanner through (so the test can
//! tell the option did the work). Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    process::Stdio,
    time::Duration,
};

use rand::Rng;
use sipguard_tests::{
    daemon::Daemon,
    lab::tool,
    netns::{unique, veth, Netns},
    require_root, sip,
};

const PROVIDER4: &str = "198.18.8.1";
const SCANNER4: &str = "198.18.8.66";
const PBX4: &str = "198.18.8.254";
const PER_KIND: usize = 10;

fn config(pbx_if: &str, any: bool) -> String {
    format!(
        "interfaces: [{pbx_if}]\nxdp_mode: native\npolicy: drop\nsip_ports: [5060]\n\
         any_udp_port: {any}\ntrusted: [{PROVIDER4}]\n"
    )
}

/// What arrived at the listener, by (source address, first payload byte
/// is a letter = looks like SIP).
#[derive(Debug, Default)]
struct Arrived {
    sip: HashMap<IpAddr, usize>,
    other: HashMap<IpAddr, usize>,
}

/// Runs one round: svmap OPTIONS and INVITE plus hand-made datagrams to
/// `port`; returns what the listener got.
fn round(wan: &Netns, pbx: &Netns, port: u16, tag: &str) -> Arrived {
    let listener = pbx.run(move || {
        let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind listener");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        s
    });
    // The real scanner, bounded in time: nothing answers it.
    let svmap = tool(&["sipvicious_svmap", "svmap"]);
    for extra in [&[][..], &["-m", "INVITE"][..]] {
        let out = wan
            .command("timeout")
            .args(["-s", "KILL", "20"])
            .arg(&svmap)
            .args(["-P", "5070", "-p", &port.to_string()])
            .args(extra)
            .arg(PBX4)
            .stdin(Stdio::null())
            .output()
            .expect("running svmap");
        eprintln!(
            "{tag}: svmap {extra:?} -p {port}: exit {:?}",
            out.status.code()
        );
    }
    wan.run(move || {
        let dst: SocketAddr = format!("{PBX4}:{port}").parse().expect("dst");
        let scanner = UdpSocket::bind((SCANNER4, 0)).expect("bind scanner");
        let provider = UdpSocket::bind((PROVIDER4, 0)).expect("bind provider");
        for i in 0..PER_KIND {
            let inv = sip::invite(&format!("{i}"), "100", PBX4, "friendly-scanner");
            scanner.send_to(&inv, dst).expect("send");
            // DNS-like and RTP-like datagrams: not SIP, must pass.
            scanner
                .send_to(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", dst)
                .expect("send");
            scanner
                .send_to(&[0x80, 0x00, 0x12, 0x34, 0, 0, 0, 160, 1, 2, 3, 4], dst)
                .expect("send");
            let call = sip::invite(&format!("caller{i}"), "100", PBX4, "Provider SBC");
            provider.send_to(&call, dst).expect("send");
        }
    });
    let mut got = Arrived::default();
    let mut buf = [0u8; 4096];
    while let Ok((n, from)) = listener.recv_from(&mut buf) {
        let looks_sip = n > 0 && buf[0].is_ascii_alphabetic();
        let map = if looks_sip {
            &mut got.sip
        } else {
            &mut got.other
        };
        *map.entry(from.ip()).or_insert(0) += 1;
    }
    got
}

fn n(m: &HashMap<IpAddr, usize>, a: &str) -> usize {
    m.get(&a.parse::<IpAddr>().expect("ip"))
        .copied()
        .unwrap_or(0)
}

#[test]
fn scanner_requests_to_a_random_high_port_are_dropped() {
    if !require_root("scanner_requests_to_a_random_high_port_are_dropped") {
        return;
    }
    let wan = Netns::new("aw");
    let pbx = Netns::new("ap");
    let wan_if = unique("a");
    let pbx_if = unique("b");
    veth(&wan, &wan_if, &pbx, &pbx_if);
    // The scanner's address first: svmap binds the wildcard, so the kernel
    // gives its packets the interface's primary address.
    for a in [SCANNER4, PROVIDER4] {
        wan.exec(&["ip", "addr", "add", &format!("{a}/24"), "dev", &wan_if]);
    }
    pbx.exec(&["ip", "addr", "add", &format!("{PBX4}/24"), "dev", &pbx_if]);
    let port: u16 = rand::thread_rng().gen_range(10_000..65_000);
    eprintln!("random high port: {port}");

    let mut d = Daemon::start(&pbx, &config(&pbx_if, true), &[]);
    let on = round(&wan, &pbx, port, "any_udp_port on");
    eprintln!("any_udp_port on: {on:?}");
    let stats = d.stats_json();
    eprintln!("{stats:#}");
    assert_eq!(n(&on.sip, SCANNER4), 0, "scanner SIP arrived: {on:?}");
    assert_eq!(
        n(&on.sip, PROVIDER4),
        PER_KIND,
        "provider INVITEs lost: {on:?}"
    );
    assert_eq!(n(&on.other, SCANNER4), 2 * PER_KIND, "non-SIP lost: {on:?}");
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
    std::fs::write(d.config_path(), config(&pbx_if, false)).expect("rewrite config");
    d.signal(libc::SIGHUP);
    d.wait_for_log("policy reloaded", Duration::from_secs(10));
    let off = round(&wan, &pbx, port, "any_udp_port off");
    eprintln!("any_udp_port off: {off:?}");
    assert!(
        n(&off.sip, SCANNER4) >= PER_KIND + 2,
        "without any_udp_port the scanner should arrive: {off:?}"
    );
    assert_eq!(n(&off.sip, PROVIDER4), PER_KIND, "{off:?}");
    let status = d.stop();
    assert!(status.success(), "sipguard exited with {status}");
}
