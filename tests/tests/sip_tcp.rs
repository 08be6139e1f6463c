//! SIP over TCP end to end under `policy: inspect`: the real daemon on a
//! veth in native XDP mode, real TCP connections from another namespace.
//! A scanner's request over an established connection is dropped (the
//! connection then stalls: its retransmissions are dropped too), a clean
//! request arrives byte for byte, and SIPp calls over TCP (`-t t1`)
//! complete from a trusted and from an untrusted source. Needs root and
//! sipp.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::FromRawFd as _,
    process::Stdio,
    sync::mpsc,
    time::Duration,
};

use sipguard_tests::{
    addresses::{OTHER4, PBX4, PROVIDER4, SCANNER4},
    harness::{wan_and_daemon, Daemon, Proc, Wan},
    sip,
};

/// A TCP connection from `src` (an address of the WAN namespace) to
/// `to`, made in that namespace.
fn connect_from(net: &Wan, src: Ipv4Addr, to: SocketAddr) -> TcpStream {
    net.wan.run(move || {
        // SAFETY: plain socket calls on a descriptor owned here; the
        // sockaddr structs are zeroed and filled for AF_INET.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let sin = |a: Ipv4Addr, port: u16| {
                let mut s: libc::sockaddr_in = std::mem::zeroed();
                s.sin_family = libc::AF_INET as u16;
                s.sin_port = port.to_be();
                s.sin_addr.s_addr = u32::from(a).to_be();
                s
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
            let local = sin(src, 0);
            assert_eq!(
                libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
                0,
                "bind {src}: {}",
                std::io::Error::last_os_error()
            );
            let SocketAddr::V4(to) = to else {
                panic!("IPv4 only")
            };
            let remote = sin(*to.ip(), to.port());
            assert_eq!(
                libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len),
                0,
                "connect {to} from {src}: {}",
                std::io::Error::last_os_error()
            );
            TcpStream::from_raw_fd(fd)
        }
    })
}

/// Accepts connections on `listener` and reports, per connection, the
/// peer and every byte it sent until it went quiet for `quiet`.
fn serve(listener: TcpListener, quiet: Duration) -> mpsc::Receiver<(SocketAddr, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let peer = c.peer_addr().unwrap();
                c.set_read_timeout(Some(quiet)).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send((peer, got));
            });
        }
    });
    rx
}

fn reason_packets(d: &Daemon, reason: &str) -> u64 {
    d.stats_json()["reasons"][reason]["packets"]
        .as_u64()
        .unwrap_or(0)
}

/// The WAN and a daemon inspecting it in native mode, `PROVIDER4`
/// trusted; `None` (the test skips) without root.
fn inspecting(test: &str) -> Option<(Wan, Daemon)> {
    let (net, mut d) = wan_and_daemon(test)?;
    d.write_config(&net.config(&format!(
        "xdp_mode: native\npolicy: inspect\ntrusted: [{PROVIDER4}]\n"
    )));
    d.launch(&[]);
    Some((net, d))
}

#[test]
fn scanner_requests_over_tcp_are_dropped_and_clean_ones_arrive() {
    let Some((net, d)) = inspecting("scanner_requests_over_tcp_are_dropped_and_clean_ones_arrive")
    else {
        return;
    };
    let to = SocketAddr::from((PBX4, 5060));
    let listener = net
        .pbx
        .run(move || TcpListener::bind(to).expect("binding 5060/tcp"));
    let arrivals = serve(listener, Duration::from_secs(3));

    // A clean INVITE from an untrusted source: inspected, arrives whole.
    let legit = sip::invite("alice", "100", "pbx.example", "Yealink SIP-T46S 66.86.0.15");
    let mut c = connect_from(&net, OTHER4, to);
    c.write_all(&legit).unwrap();
    let (peer, got) = arrivals.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(peer.ip(), OTHER4);
    assert_eq!(got, legit, "the clean INVITE arrives byte for byte");
    drop(c);
    assert!(reason_packets(&d, "inspected_clean") >= 1);

    // svmap's OPTIONS over an established connection: the handshake
    // passes (no data), the request is dropped, and so is every
    // retransmission of it: nothing reaches the PBX.
    let mut c = connect_from(&net, SCANNER4, to);
    c.write_all(&sip::svmap_options()).unwrap();
    let (peer, got) = arrivals.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(peer.ip(), SCANNER4);
    assert_eq!(got, b"", "the scanner's request never arrives");
    let dropped = reason_packets(&d, "user_agent");
    assert!(dropped >= 1, "user_agent drops: {dropped}");
    drop(c);
    let stats = d.stats_json();
    assert!(
        stats["reasons"]["uninspectable"]["packets"]
            .as_u64()
            .unwrap_or(0)
            >= 4,
        "handshakes and ACKs pass as uninspectable: {stats}"
    );
}

/// SIPp calls over TCP (one connection, `-t t1`) from `src`; returns
/// SIPp's exit status and output.
fn sipp_tcp_calls(net: &Wan, src: Ipv4Addr, calls: u32) -> std::process::Output {
    let pbx = PBX4.to_string();
    let uas = Proc::adopt(
        "sipp uas",
        net.pbx
            .command("sipp")
            .args([
                "-sn", "uas", "-t", "t1", "-i", &pbx, "-p", "5060", "-nostdin",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sipp (apt-get install sip-tester)"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = net
        .wan
        .command("timeout")
        .args(["30", "sipp", "-sn", "uac", "-t", "t1", "-i"])
        .arg(src.to_string())
        .args([
            "-p",
            "5070",
            "-m",
            &calls.to_string(),
            "-r",
            "10",
            "-nostdin",
        ])
        .arg(format!("{PBX4}:5060"))
        .output()
        .expect("running sipp");
    drop(uas);
    out
}

#[test]
fn sipp_calls_over_tcp_complete_trusted_and_inspected() {
    let Some((net, d)) = inspecting("sipp_calls_over_tcp_complete_trusted_and_inspected") else {
        return;
    };
    for (src, reason) in [(PROVIDER4, "trusted"), (OTHER4, "inspected_clean")] {
        let before = reason_packets(&d, reason);
        let out = sipp_tcp_calls(&net, src, 5);
        assert!(
            out.status.success(),
            "SIPp calls over TCP from {src} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let after = reason_packets(&d, reason);
        // Each call sends INVITE, ACK and BYE, each starting a segment
        // unless the ACK and the BYE share one.
        assert!(
            after - before >= 10,
            "{src}: only {} packets counted as {reason}",
            after - before
        );
    }
    let s = d.stats_json();
    for r in ["user_agent", "not_sip", "sipvicious", "malformed"] {
        assert_eq!(
            s["reasons"][r]["packets"].as_u64().unwrap_or(0),
            0,
            "SIPp over TCP must not be dropped ({r}): {s}"
        );
    }
}
