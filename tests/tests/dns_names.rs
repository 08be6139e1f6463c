//! Trusted DNS names end to end: dnsmasq answers inside the test's own
//! namespace (never a public resolver), the real daemon trusts
//! `sip.provider.test`; a changed record moves the trust with no restart;
//! a dead DNS server keeps the last good addresses. Needs root.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sipguard_tests::{
    addresses::{
        EDGE4 as EDGE, OTHER4 as OTHER, PROVIDER4 as FIRST, PROVIDER4_MOVED as SECOND,
        RESOLVER4 as DNS,
    },
    harness::{
        daemon::scratch,
        process::tool,
        traffic::{send_from, Datagram},
        wan::pbx_addr,
        Arrivals, Daemon, Listener, Proc, Wan,
    },
    require_root, sip, sipguard_bin,
};

const NAME: &str = "sip.provider.test";
const PER_SOURCE: usize = 10;

/// The standard WAN and a scratch directory for dnsmasq's files.
struct Net {
    wan: Wan,
    dir: PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn net() -> Net {
    Net {
        wan: Wan::new(),
        dir: scratch("dns"),
    }
}

fn write_hosts(path: &Path, provider: std::net::Ipv4Addr) {
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
    let mut cmd = net.wan.wan.command(bin.to_str().unwrap());
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
    net.wan.config(&format!(
        "policy: drop\nsip_ports: [5060]\ntrusted: [{NAME}]\n\
         dns:\n  servers: [\"{DNS}:53\"]\n  min_ttl: 1\n"
    ))
}

/// INVITEs from each source; what reached the PBX.
fn exchange(net: &Net, sources: &[std::net::Ipv4Addr]) -> Arrivals {
    let listener = Listener::bind(&net.wan.pbx, &[pbx_addr(5060)]);
    let mut datagrams = Vec::new();
    for &src in sources {
        for i in 0..PER_SOURCE {
            datagrams.push(Datagram {
                from: SocketAddr::new(IpAddr::V4(src), 0),
                to: pbx_addr(5060),
                payload: sip::invite(&format!("c{i}"), "100", "pbx.example", "Test/1.0"),
            });
        }
    }
    send_from(&net.wan.wan, datagrams);
    listener.collect()
}

fn check_output(net: &Net, cfg: &Path) -> String {
    let out = net
        .wan
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

/// dnsmasq answering `NAME` with the first provider address, and the
/// daemon trusting `NAME`.
fn running() -> (Net, PathBuf, Proc, Daemon) {
    let net = net();
    let hosts = net.dir.join("hosts");
    write_hosts(&hosts, FIRST);
    let dns = dnsmasq(&net, &hosts);
    let d = Daemon::start(&net.wan.pbx, &config(&net), &[]);
    (net, hosts, dns, d)
}

/// Waits up to `limit` for `line` in the daemon's log and prints how long
/// after `since`, when `what` happened, it came.
fn logged_after(d: &mut Daemon, line: &str, limit: Duration, since: Instant, what: &str) {
    d.wait_for_log(line, limit);
    eprintln!(
        "{line:?} logged {} ms after {what}",
        since.elapsed().as_millis()
    );
}

#[test]
fn name_change_moves_trust_without_restart() {
    if !require_root("name_change_moves_trust_without_restart") {
        return;
    }
    let (net, hosts, dns, mut d) = running();
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
    assert_eq!(got.from(FIRST), PER_SOURCE, "{got:?}");
    assert_eq!(got.from(EDGE), PER_SOURCE, "SRV target: {got:?}");
    assert_eq!(got.from(SECOND), 0, "{got:?}");
    assert_eq!(got.from(OTHER), 0, "{got:?}");

    // The provider moves: dnsmasq re-reads the hosts file on SIGHUP.
    write_hosts(&hosts, SECOND);
    let moved = Instant::now();
    dns.signal(libc::SIGHUP);
    logged_after(
        &mut d,
        &format!("dns: {NAME} changed; trusted now [{SECOND}, {EDGE}]"),
        Duration::from_secs(15),
        moved,
        "the record changed (ttl 2 s)",
    );
    let got = exchange(&net, &[FIRST, SECOND, OTHER, EDGE]);
    assert_eq!(got.from(SECOND), PER_SOURCE, "{got:?}");
    assert_eq!(got.from(EDGE), PER_SOURCE, "{got:?}");
    assert_eq!(got.from(FIRST), 0, "old address still trusted: {got:?}");
    assert_eq!(got.from(OTHER), 0, "{got:?}");
    let stats = d.stats_json().to_string();
    assert!(stats.contains("trusted"), "{stats}");
    assert!(d.is_running(), "daemon restarted?");
    assert!(d.stop().success());
}

#[test]
fn dead_dns_server_keeps_last_good_addresses() {
    if !require_root("dead_dns_server_keeps_last_good_addresses") {
        return;
    }
    let (net, _hosts, mut dns, mut d) = running();
    dns.stop(libc::SIGTERM, Duration::from_secs(5));
    let stopped = Instant::now();
    logged_after(
        &mut d,
        &format!("dns: resolving {NAME} failed"),
        Duration::from_secs(30),
        stopped,
        "dnsmasq stopped",
    );
    d.wait_for_log(
        &format!("keeping [{FIRST}, {EDGE}] (dns failures: 1)"),
        Duration::from_secs(1),
    );
    let got = exchange(&net, &[FIRST, EDGE, OTHER]);
    assert_eq!(got.from(FIRST), PER_SOURCE, "{got:?}");
    assert_eq!(got.from(EDGE), PER_SOURCE, "{got:?}");
    assert_eq!(got.from(OTHER), 0, "{got:?}");

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
