//! PPPoE session frames (with and without VLAN tags) and devices without an
//! Ethernet header (tun/ppp under generic XDP), through BPF_PROG_TEST_RUN on
//! the real object and, for tun, end to end with the real daemon. Needs root.

use std::{fs::OpenOptions, io::Write, net::UdpSocket, os::fd::AsRawFd, time::Duration};

use sipguard::kernel::testrun::Sandbox;
use sipguard_common::Reason::*;
use sipguard_tests::{
    addresses::{frame::OTHER4, PBX4, PROVIDER4, SCANNER4, WAN4_PREFIX},
    fixtures::{
        check_case, check_case_as_root,
        pppoe::{f4, invite, ip, policy, pppoe_case, raw_ip_case},
    },
    frames::v4,
    harness::{netns::unique, Daemon, Netns},
    require_root,
};

#[test]
fn pppoe_session_frames() {
    check_case_as_root("pppoe_session_frames", pppoe_case);
}

#[test]
fn raw_ip_entry_point() {
    if !require_root("raw_ip_entry_point") {
        return;
    }
    // The Ethernet entry point would misread these: prove the entry points differ.
    let policy = policy();
    let mut sb = Sandbox::new(&policy).expect("load");
    let on_eth = sb.run(&ip(f4(OTHER4))).expect("run");
    assert_ne!(
        on_eth.reason, DropUntrusted,
        "the Ethernet entry point must not parse raw IP as Ethernet"
    );
    check_case(&raw_ip_case());
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
