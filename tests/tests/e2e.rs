//! End to end: the real `sipguard` binary attached to a veth in a network
//! namespace; real UDP SIP messages from a trusted and an untrusted address
//! (IPv4 and IPv6) in another namespace; a listener counts what arrives.
//! Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use sipguard_tests::{
    addresses::{OTHER4, OTHER6, PBX4, PBX6, PROVIDER4 as TRUSTED4, PROVIDER6 as TRUSTED6},
    harness::{
        traffic::{send_from, Datagram},
        wan::pbx_for,
        Arrivals, Daemon, Listener, Wan,
    },
    require_root, sip,
};

const PER_SOURCE: usize = 20;

fn config(net: &Wan, mode: &str, trusted: &[IpAddr]) -> String {
    net.config(&format!(
        "xdp_mode: {mode}\npolicy: drop\nsip_ports: [5060]\ntrusted: [{}]\n",
        trusted
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Sends `PER_SOURCE` INVITEs from each source to the PBX (in the source's
/// family) and returns what arrived.
fn exchange(net: &Wan, sources: &[IpAddr]) -> Arrivals {
    let to = |src: IpAddr| SocketAddr::new(pbx_for(src), 5060);
    let listener = Listener::bind(&net.pbx, &[to(PBX4.into()), to(PBX6.into())]);
    let mut datagrams = Vec::new();
    for &src in sources {
        for i in 0..PER_SOURCE {
            datagrams.push(Datagram {
                from: SocketAddr::new(src, 0),
                to: to(src),
                payload: sip::invite(&format!("caller{i}"), "100", "pbx.example", "Test/1.0"),
            });
        }
    }
    send_from(&net.wan, datagrams);
    listener.collect()
}

fn allowlist_end_to_end(mode: &str) {
    let net = Wan::new();
    let mut d = Daemon::start(
        &net.pbx,
        &config(&net, mode, &[TRUSTED4.into(), TRUSTED6.into()]),
        &[],
    );
    assert!(
        d.log_text().contains(&format!("in {mode} mode")),
        "not attached in {mode} mode:\n{}",
        d.log_text()
    );
    assert!(
        net.xdp_attached(),
        "no XDP program on {} after start",
        net.pbx_if
    );

    // Only the trusted sources get through, on IPv4 and IPv6.
    let got = exchange(
        &net,
        &[
            TRUSTED4.into(),
            OTHER4.into(),
            TRUSTED6.into(),
            OTHER6.into(),
        ],
    );
    assert_eq!(got.from(TRUSTED4), PER_SOURCE, "{got:?}");
    assert_eq!(got.from(TRUSTED6), PER_SOURCE, "{got:?}");
    assert_eq!(got.from(OTHER4), 0, "{got:?}");
    assert_eq!(got.from(OTHER6), 0, "{got:?}");

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
        net.pbx_if.as_str(),
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
    d.write_config(&config(
        &net,
        mode,
        &[TRUSTED4.into(), TRUSTED6.into(), OTHER4.into()],
    ));
    d.signal(libc::SIGHUP);
    d.wait_for_log("policy reloaded", Duration::from_secs(10));
    let got = exchange(&net, &[OTHER4.into(), OTHER6.into()]);
    assert_eq!(got.from(OTHER4), PER_SOURCE, "after reload: {got:?}");
    assert_eq!(got.from(OTHER6), 0, "after reload: {got:?}");

    // SIGTERM: detached, pins gone.
    let pin_root = d.pin_root.clone();
    let status = d.stop();
    assert!(status.success(), "sipguard exited with {status}");
    assert!(
        !net.xdp_attached(),
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
    let net = Wan::new();
    let mut d = Daemon::start(&net.pbx, &config(&net, "auto", &[TRUSTED4.into()]), &[]);
    let log = d.log_text();
    assert!(
        log.contains("in native mode") || log.contains("in skb mode"),
        "{log}"
    );
    let got = exchange(&net, &[TRUSTED4.into(), OTHER4.into()]);
    assert_eq!(
        (got.from(TRUSTED4), got.from(OTHER4)),
        (PER_SOURCE, 0),
        "{got:?}"
    );
    assert!(d.stop().success());
}
