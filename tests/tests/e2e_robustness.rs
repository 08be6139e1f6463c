//! End to end in network namespaces: the daemon (the real binary, joined to
//! the router namespace with nsenter, private --pin-root) keeps its running
//! policy when a SIGHUP brings a broken config, and sees a 9000-byte jumbo
//! frame whole on a 9000-MTU link. Needs root.

use std::{collections::BTreeSet, net::UdpSocket, path::PathBuf, time::Duration};

use serde_json::Value;
use sipguard_tests::{
    daemon::Daemon,
    netns::{unique, veth, Netns},
    require_root,
};

const WAIT: Duration = Duration::from_secs(30);

const ROUTER: &str = "192.0.2.1";
const TRUSTED: &str = "192.0.2.10";
const UNTRUSTED: &str = "192.0.2.66";

fn packets(stats: &Value, reason: &str) -> u64 {
    stats["reasons"][reason]["packets"].as_u64().unwrap_or(0)
}

/// A router namespace and a WAN namespace on a veth pair with `mtu`; the
/// WAN side holds a trusted and an untrusted source address.
struct Net {
    router: Netns,
    wan: Netns,
    router_if: String,
}

impl Net {
    fn new(mtu: u32) -> Net {
        let router = Netns::new("r");
        let wan = Netns::new("w");
        let router_if = unique("a");
        let wan_if = unique("b");
        veth(&router, &router_if, &wan, &wan_if);
        let mtu = mtu.to_string();
        router.exec(&["ip", "link", "set", &router_if, "mtu", &mtu]);
        wan.exec(&["ip", "link", "set", &wan_if, "mtu", &mtu]);
        router.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{ROUTER}/24"),
            "dev",
            &router_if,
        ]);
        wan.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{TRUSTED}/24"),
            "dev",
            &wan_if,
        ]);
        wan.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{UNTRUSTED}/24"),
            "dev",
            &wan_if,
        ]);
        Net {
            router,
            wan,
            router_if,
        }
    }

    fn config(&self, body: &str) -> String {
        format!("interfaces: [{}]\n{body}", self.router_if)
    }

    /// Sends one datagram per (source, payload) to the router's port 5060
    /// and returns the payloads that arrived.
    fn exchange(&self, sends: &[(&'static str, Vec<u8>)]) -> BTreeSet<Vec<u8>> {
        let rx = self
            .router
            .run(|| UdpSocket::bind((ROUTER, 5060)).expect("bind receiver"));
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        for (src, payload) in sends {
            let src = *src;
            let tx = self
                .wan
                .run(move || UdpSocket::bind((src, 0)).expect("bind sender"));
            tx.send_to(payload, (ROUTER, 5060)).expect("send");
        }
        let mut got = BTreeSet::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = rx.recv(&mut buf) {
            got.insert(buf[..n].to_vec());
        }
        got
    }
}

fn msg(tag: &str) -> Vec<u8> {
    format!("OPTIONS sip:100@{ROUTER} SIP/2.0\r\nCall-ID: {tag}\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_policy() {
    if !require_root("sighup_with_a_broken_config_keeps_the_running_policy") {
        return;
    }
    let net = Net::new(1500);
    let good = format!("policy: drop\nsip_ports: [5060]\ntrusted: [{TRUSTED}]\n");
    let mut daemon = Daemon::start(&net.router, &net.config(&good), &[]);
    let config: PathBuf = daemon.config_path();

    let round = |tag: &str| -> (bool, bool) {
        let (t, u) = (
            msg(&format!("{tag}-trusted")),
            msg(&format!("{tag}-untrusted")),
        );
        let got = net.exchange(&[(TRUSTED, t.clone()), (UNTRUSTED, u.clone())]);
        (got.contains(&t), got.contains(&u))
    };
    assert_eq!(
        round("before"),
        (true, false),
        "allowlist applies before the reload"
    );
    let s0 = daemon.stats_json();

    // A broken config that, if any part of it applied, would let the
    // untrusted source in.
    std::fs::write(&config, format!("interfaces: [{}]\npolicy: drop\nsip_ports: [5060]\ntrusted:\n  - {TRUSTED}\n  - {UNTRUSTED}\n  - 300.1.2.3\n", net.router_if)).unwrap();
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
    std::fs::write(&config, "# everything commented out\n").unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log_count("reload failed, keeping the running policy", 2, WAIT);
    assert_eq!(
        round("empty"),
        (true, false),
        "old policy still applies after an empty config"
    );

    // A valid change does apply (so the checks above can fail).
    std::fs::write(
        &config,
        net.config(&format!(
            "policy: drop\nsip_ports: [5060]\ntrusted: [{TRUSTED}, {UNTRUSTED}]\n"
        )),
    )
    .unwrap();
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

#[test]
fn jumbo_frame_is_seen_whole_on_a_9000_mtu_link() {
    if !require_root("jumbo_frame_is_seen_whole_on_a_9000_mtu_link") {
        return;
    }
    let net = Net::new(9000);
    // Inspect: a lying length would be dropped as malformed, a whole
    // datagram passes to the (not yet present) inspector.
    let daemon = Daemon::start(
        &net.router,
        &net.config("policy: inspect\nsip_ports: [5060]\n"),
        &[],
    );
    let log = daemon.log_text();
    // veth refuses a program without multi-buffer support in native mode
    // at this MTU; auto mode falls back to generic XDP, which linearizes.
    assert!(
        log.contains("in skb mode") || log.contains("in native mode"),
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
    let got = net.exchange(&[(UNTRUSTED, big.clone())]);
    assert!(got.contains(&big), "the 9000-byte datagram arrived");
    let s = daemon.stats_json();
    let inspected = &s["reasons"]["inspected_clean"];
    assert_eq!(packets(&s, "malformed"), 0, "{s}");
    assert_eq!(inspected["packets"].as_u64(), Some(1), "{s}");
    assert_eq!(inspected["bytes"].as_u64(), Some(9000 + 14), "{s}");
    assert!(daemon.stop().success());
}
