//! Trusted DNS names end to end: dnsmasq answers inside the test's own
//! namespace (never a public resolver), the real daemon trusts
//! `sip.provider.test`; a changed record moves the trust with no restart;
//! a dead DNS server keeps the last good addresses. Needs root.

use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sipguard_tests::{
    daemon::{scratch, Daemon},
    lab::{tool, Proc},
    netns::{unique, veth, Netns},
    require_root, sip, sipguard_bin,
};

const FIRST: &str = "198.18.7.1";
const SECOND: &str = "198.18.7.2";
const OTHER: &str = "198.18.7.3";
/// Only reachable through the name's `_sip._udp` SRV record.
const EDGE: &str = "198.18.7.4";
const DNS: &str = "198.18.7.53";
const PBX: &str = "198.18.7.254";
const NAME: &str = "sip.provider.test";
const PER_SOURCE: usize = 10;

struct Net {
    wan: Netns,
    pbx: Netns,
    pbx_if: String,
    dir: PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn net() -> Net {
    let wan = Netns::new("w");
    let pbx = Netns::new("p");
    let wan_if = unique("a");
    let pbx_if = unique("b");
    veth(&wan, &wan_if, &pbx, &pbx_if);
    for a in [FIRST, SECOND, OTHER, EDGE, DNS] {
        wan.exec(&["ip", "addr", "add", &format!("{a}/24"), "dev", &wan_if]);
    }
    pbx.exec(&["ip", "addr", "add", &format!("{PBX}/24"), "dev", &pbx_if]);
    Net {
        wan,
        pbx,
        pbx_if,
        dir: scratch("dns"),
    }
}

fn write_hosts(path: &Path, provider: &str) {
    fs::write(
        path,
        format!("{provider} {NAME}\n{EDGE} edge1.provider.test\n"),
    )
    .unwrap();
}

/// dnsmasq inside the WAN namespace, bound to its address only, answering
/// from a hosts file this test writes, with a 2 s TTL.
fn dnsmasq(net: &Net, hosts: &Path) -> Proc {
    let bin = tool(&["dnsmasq"]);
    let mut cmd = net.wan.command(bin.to_str().unwrap());
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--local=/test/",
        "--local-ttl=2",
        "--port=53",
        "--bind-interfaces",
        "--user=root",
        "--log-queries",
        "--log-facility=-",
    ]);
    cmd.arg(format!("--listen-address={DNS}"));
    cmd.arg(format!("--addn-hosts={}", hosts.display()));
    cmd.arg(format!(
        "--pid-file={}",
        net.dir.join("dnsmasq.pid").display()
    ));
    cmd.arg(format!(
        "--srv-host=_sip._udp.{NAME},edge1.provider.test,5060"
    ));
    let p = Proc::spawn("dnsmasq", cmd, &net.dir.join("dnsmasq.log"));
    // Ready when it answers.
    let start = Instant::now();
    while !fs::read_to_string(net.dir.join("dnsmasq.log"))
        .unwrap_or_default()
        .contains("read ")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "dnsmasq did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

fn config(net: &Net) -> String {
    format!(
        "interfaces: [{}]\npolicy: drop\nsip_ports: [5060]\ntrusted: [{NAME}]\n\
         dns:\n  servers: [\"{DNS}:53\"]\n  min_ttl: 1\n",
        net.pbx_if
    )
}

/// INVITEs from each source; how many reached the PBX per source.
fn exchange(net: &Net, sources: &[&str]) -> HashMap<IpAddr, usize> {
    let listener = net.pbx.run(|| {
        let s = UdpSocket::bind(format!("{PBX}:5060")).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    });
    let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    net.wan.run(move || {
        for src in &sources {
            let ip: IpAddr = src.parse().unwrap();
            let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
            for i in 0..PER_SOURCE {
                let msg = sip::invite(&format!("c{i}"), "100", "pbx.example", "Test/1.0");
                sock.send_to(&msg, format!("{PBX}:5060")).unwrap();
            }
        }
    });
    let mut got = HashMap::new();
    let mut buf = [0u8; 4096];
    while let Ok((_, from)) = listener.recv_from(&mut buf) {
        *got.entry(from.ip()).or_insert(0) += 1;
    }
    got
}

fn arrived(got: &HashMap<IpAddr, usize>, a: &str) -> usize {
    got.get(&a.parse::<IpAddr>().unwrap()).copied().unwrap_or(0)
}

fn check_output(net: &Net, cfg: &Path) -> String {
    let out = net
        .pbx
        .command(sipguard_bin().to_str().unwrap())
        .args(["check", "-c"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn name_change_moves_trust_without_restart() {
    if !require_root("name_change_moves_trust_without_restart") {
        return;
    }
    let net = net();
    let hosts = net.dir.join("hosts");
    write_hosts(&hosts, FIRST);
    let dns = dnsmasq(&net, &hosts);
    let mut d = Daemon::start(&net.pbx, &config(&net), &[]);
    assert!(
        d.log_text()
            .contains(&format!("dns: {NAME} -> [{FIRST}, {EDGE}]")),
        "{}",
        d.log_text()
    );

    let check = check_output(&net, &d.config_path());
    assert!(
        check.contains(&format!("{NAME} -> [{FIRST}, {EDGE}]")),
        "{check}"
    );
    assert!(
        check.contains("srv _sip._udp -> edge1.provider.test.:5060"),
        "{check}"
    );

    let got = exchange(&net, &[FIRST, SECOND, OTHER, EDGE]);
    assert_eq!(arrived(&got, FIRST), PER_SOURCE, "{got:?}");
    assert_eq!(arrived(&got, EDGE), PER_SOURCE, "SRV target: {got:?}");
    assert_eq!(arrived(&got, SECOND), 0, "{got:?}");
    assert_eq!(arrived(&got, OTHER), 0, "{got:?}");

    // The provider moves: dnsmasq re-reads the hosts file on SIGHUP.
    write_hosts(&hosts, SECOND);
    let moved = Instant::now();
    dns.signal(libc::SIGHUP);
    d.wait_for_log(
        &format!("dns: {NAME} changed; trusted now [{SECOND}, {EDGE}]"),
        Duration::from_secs(15),
    );
    eprintln!(
        "record change seen by the daemon after {} ms (ttl 2 s)",
        moved.elapsed().as_millis()
    );
    let got = exchange(&net, &[FIRST, SECOND, OTHER, EDGE]);
    assert_eq!(arrived(&got, SECOND), PER_SOURCE, "{got:?}");
    assert_eq!(arrived(&got, EDGE), PER_SOURCE, "{got:?}");
    assert_eq!(
        arrived(&got, FIRST),
        0,
        "old address still trusted: {got:?}"
    );
    assert_eq!(arrived(&got, OTHER), 0, "{got:?}");
    let stats = d.stats_json().to_string();
    assert!(stats.contains("trusted"), "{stats}");
    assert!(d.child.try_wait().unwrap().is_none(), "daemon restarted?");
    assert!(d.stop().success());
}

#[test]
fn dead_dns_server_keeps_last_good_addresses() {
    if !require_root("dead_dns_server_keeps_last_good_addresses") {
        return;
    }
    let net = net();
    let hosts = net.dir.join("hosts");
    write_hosts(&hosts, FIRST);
    let mut dns = dnsmasq(&net, &hosts);
    let mut d = Daemon::start(&net.pbx, &config(&net), &[]);
    dns.stop(libc::SIGTERM, Duration::from_secs(5));
    let stopped = Instant::now();
    d.wait_for_log(
        &format!("dns: resolving {NAME} failed"),
        Duration::from_secs(30),
    );
    eprintln!(
        "failed refresh logged {} ms after dnsmasq stopped",
        stopped.elapsed().as_millis()
    );
    d.wait_for_log(
        &format!("keeping [{FIRST}, {EDGE}] (dns failures: 1)"),
        Duration::from_secs(1),
    );
    let got = exchange(&net, &[FIRST, EDGE, OTHER]);
    assert_eq!(arrived(&got, FIRST), PER_SOURCE, "{got:?}");
    assert_eq!(arrived(&got, EDGE), PER_SOURCE, "{got:?}");
    assert_eq!(arrived(&got, OTHER), 0, "{got:?}");

    // `check` with the server gone says so within its timeout.
    let started = Instant::now();
    let check = check_output(&net, &d.config_path());
    assert!(check.contains("failed:"), "{check}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "check took {:?}",
        started.elapsed()
    );
    assert!(d.stop().success());
}
