//! End to end: the real `sipguard` binary attached to a veth in a network
//! namespace; real UDP SIP messages from a trusted and an untrusted address
//! (IPv4 and IPv6) in another namespace; a listener counts what arrives.
//! Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

use sipguard_tests::{
    daemon::Daemon,
    netns::{unique, veth, Netns},
    require_root, sip,
};

const TRUSTED4: &str = "198.18.0.1";
const OTHER4: &str = "198.18.0.2";
const PBX4: &str = "198.18.0.254";
const TRUSTED6: &str = "2001:db8:e2e::1";
const OTHER6: &str = "2001:db8:e2e::2";
const PBX6: &str = "2001:db8:e2e::fe";
const PER_SOURCE: usize = 20;

struct Lab {
    wan: Netns,
    pbx: Netns,
    pbx_if: String,
}

fn lab() -> Lab {
    let wan = Netns::new("w");
    let pbx = Netns::new("p");
    let wan_if = unique("a");
    let pbx_if = unique("b");
    veth(&wan, &wan_if, &pbx, &pbx_if);
    for a in [format!("{TRUSTED4}/24"), format!("{OTHER4}/24")] {
        wan.exec(&["ip", "addr", "add", &a, "dev", &wan_if]);
    }
    for a in [format!("{TRUSTED6}/64"), format!("{OTHER6}/64")] {
        wan.exec(&["ip", "addr", "add", &a, "dev", &wan_if, "nodad"]);
    }
    pbx.exec(&["ip", "addr", "add", &format!("{PBX4}/24"), "dev", &pbx_if]);
    pbx.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{PBX6}/64"),
        "dev",
        &pbx_if,
        "nodad",
    ]);
    Lab { wan, pbx, pbx_if }
}

fn config(pbx_if: &str, mode: &str, trusted: &[&str]) -> String {
    format!(
        "interfaces: [{pbx_if}]\nxdp_mode: {mode}\npolicy: drop\nsip_ports: [5060]\ntrusted: [{}]\n",
        trusted.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
    )
}

/// Sends `PER_SOURCE` INVITEs from each source to the PBX and returns how
/// many arrived from each source address.
fn exchange(lab: &Lab, sources: &[&str]) -> HashMap<IpAddr, usize> {
    let listeners = lab.pbx.run(|| {
        let v4 = UdpSocket::bind("0.0.0.0:5060").expect("bind v4");
        let v6 = socket2_v6only("[::]:5060");
        for s in [&v4, &v6] {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
        }
        (v4, v6)
    });
    let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    lab.wan.run(move || {
        for src in &sources {
            let ip: IpAddr = src.parse().expect("source address");
            let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind source");
            let dst: SocketAddr = if ip.is_ipv4() {
                format!("{PBX4}:5060")
            } else {
                format!("[{PBX6}]:5060")
            }
            .parse()
            .expect("dst");
            for i in 0..PER_SOURCE {
                let msg = sip::invite(&format!("caller{i}"), "100", "pbx.example", "Test/1.0");
                sock.send_to(&msg, dst).expect("send");
            }
        }
    });
    let mut got = HashMap::new();
    let mut buf = [0u8; 4096];
    for s in [&listeners.0, &listeners.1] {
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            *got.entry(canonical(from.ip())).or_insert(0) += 1;
        }
    }
    got
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// An IPv6-only UDP socket so IPv4 arrives on the other one.
fn socket2_v6only(addr: &str) -> UdpSocket {
    use std::os::fd::FromRawFd;
    let sa: std::net::SocketAddrV6 = addr.parse().expect("v6 addr");
    // SAFETY: plain socket(2)/setsockopt(2)/bind(2) on a fresh fd we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            &one as *const _ as *const libc::c_void,
            4,
        );
        let mut raw: libc::sockaddr_in6 = std::mem::zeroed();
        raw.sin6_family = libc::AF_INET6 as u16;
        raw.sin6_port = sa.port().to_be();
        raw.sin6_addr.s6_addr = sa.ip().octets();
        let rc = libc::bind(
            fd,
            &raw as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in6>() as u32,
        );
        assert_eq!(rc, 0, "bind v6: {}", std::io::Error::last_os_error());
        UdpSocket::from_raw_fd(fd)
    }
}

fn count(got: &HashMap<IpAddr, usize>, addr: &str) -> usize {
    got.get(&addr.parse::<IpAddr>().expect("addr"))
        .copied()
        .unwrap_or(0)
}

fn xdp_attached(lab: &Lab) -> bool {
    let out = lab
        .pbx
        .exec(&["ip", "-d", "link", "show", "dev", &lab.pbx_if]);
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

fn allowlist_end_to_end(mode: &str) {
    let lab = lab();
    let mut d = Daemon::start(
        &lab.pbx,
        &config(&lab.pbx_if, mode, &[TRUSTED4, TRUSTED6]),
        &[],
    );
    assert!(
        d.log_text().contains(&format!("in {mode} mode")),
        "not attached in {mode} mode:\n{}",
        d.log_text()
    );
    assert!(
        xdp_attached(&lab),
        "no XDP program on {} after start",
        lab.pbx_if
    );

    // Only the trusted sources get through, on IPv4 and IPv6.
    let got = exchange(&lab, &[TRUSTED4, OTHER4, TRUSTED6, OTHER6]);
    assert_eq!(count(&got, TRUSTED4), PER_SOURCE, "{got:?}");
    assert_eq!(count(&got, TRUSTED6), PER_SOURCE, "{got:?}");
    assert_eq!(count(&got, OTHER4), 0, "{got:?}");
    assert_eq!(count(&got, OTHER6), 0, "{got:?}");

    let stats = d.stats_json();
    assert_eq!(stats["dropped"], 2 * PER_SOURCE as u64, "{stats:#}");
    assert_eq!(
        stats["reasons"]["untrusted"]["packets"],
        2 * PER_SOURCE as u64,
        "{stats:#}"
    );
    assert_eq!(
        stats["reasons"]["trusted"]["packets"],
        2 * PER_SOURCE as u64,
        "{stats:#}"
    );
    assert!(
        stats["reasons"]["untrusted"]["bytes"].as_u64().unwrap_or(0) > 2 * PER_SOURCE as u64 * 400,
        "{stats:#}"
    );
    assert_eq!(
        stats["interfaces"][0]["interface"],
        lab.pbx_if.as_str(),
        "{stats:#}"
    );
    assert_eq!(
        stats["interfaces"][0]["dropped"],
        2 * PER_SOURCE as u64,
        "{stats:#}"
    );
    let table = d.cli(&["stats"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("untrusted"),
        "stats table lacks reasons"
    );

    // SIGHUP with the other source trusted changes the verdict, no restart.
    std::fs::write(
        d.config_path(),
        config(&lab.pbx_if, mode, &[TRUSTED4, TRUSTED6, OTHER4]),
    )
    .expect("rewrite config");
    d.signal(libc::SIGHUP);
    d.wait_for_log("policy reloaded", Duration::from_secs(10));
    let got = exchange(&lab, &[OTHER4, OTHER6]);
    assert_eq!(count(&got, OTHER4), PER_SOURCE, "after reload: {got:?}");
    assert_eq!(count(&got, OTHER6), 0, "after reload: {got:?}");

    // SIGTERM: detached, pins gone.
    let pin_root = d.pin_root.clone();
    let status = d.stop();
    assert!(status.success(), "sipguard exited with {status}");
    assert!(
        !xdp_attached(&lab),
        "XDP program still attached after SIGTERM"
    );
    assert!(
        !pin_root.exists(),
        "pins remain under {}",
        pin_root.display()
    );
}

#[test]
fn allowlist_native_mode() {
    if require_root("allowlist_native_mode") {
        allowlist_end_to_end("native");
    }
}

#[test]
fn allowlist_skb_mode() {
    if require_root("allowlist_skb_mode") {
        allowlist_end_to_end("skb");
    }
}

#[test]
fn auto_mode_falls_back_or_goes_native_and_says_which() {
    if !require_root("auto_mode_falls_back_or_goes_native_and_says_which") {
        return;
    }
    let lab = lab();
    let d = Daemon::start(&lab.pbx, &config(&lab.pbx_if, "auto", &[TRUSTED4]), &[]);
    let log = d.log_text();
    assert!(
        log.contains("in native mode") || log.contains("in skb mode"),
        "{log}"
    );
    let got = exchange(&lab, &[TRUSTED4, OTHER4]);
    assert_eq!(
        (count(&got, TRUSTED4), count(&got, OTHER4)),
        (PER_SOURCE, 0),
        "{got:?}"
    );
    assert!(d.stop().success());
}
