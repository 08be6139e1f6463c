//! sipguard as a CrowdSec bouncer end to end: the real daemon attached to a
//! veth in a namespace, Debian's real Local API on that namespace's
//! loopback, decisions made with `cscli`, packets sent from the WAN
//! namespace and counted where they arrive and by the kernel's counters.
//! Needs root and the crowdsec package (scripts/setup.sh --tests).

use std::{
    net::{IpAddr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use sipguard_tests::{
    addresses::{lapi_link, LAPI_LINK_PREFIX, PBX4},
    addresses::{
        OTHER4, OTHER4B, OTHER6, PBX6, PROVIDER4, RANGE4_A, RANGE4_B, RANGE4_NET, RANGE6_A,
        RANGE6_B, RANGE6_NET, SCANNER4,
    },
    crowdsec::LocalApi,
    harness::{
        netns::{unique, veth},
        process::{tool, Proc},
        traffic::Receiver,
        wan::pbx_for,
        Daemon, Netns, Wan,
    },
    require_root,
};

/// The poll interval the tests configure.
const INTERVAL: Duration = Duration::from_secs(1);
/// One interval, the pull itself and the test's own 100 ms sampling.
const WITHIN: Duration = Duration::from_secs(4);

struct Router {
    net: Wan,
    daemon: Daemon,
    rx: Receiver,
    rx6: Receiver,
}

/// A router namespace with a Local API on its loopback and sipguard on its
/// WAN interface, pulling every second.
fn router(extra: &str) -> (LocalApi, Router) {
    router_keyed(extra, None)
}

/// [`router`] with the bouncer key written by the test (`Some`) instead
/// of the one `cscli bouncers add` printed.
fn router_keyed(extra: &str, key_text: Option<&str>) -> (LocalApi, Router) {
    let net = Wan::new();
    // Each API has its own namespace, but its scratch directory is named
    // by process and port.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let port = 18000 + (std::process::id() % 1000) as u16 * 8 + NEXT.fetch_add(1, Ordering::SeqCst);
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let api = LocalApi::start(listen, Some(&net.pbx.name)).expect("starting the Local API");
    let (_, mut key) = api.add_bouncer("router-a").expect("cscli bouncers add");
    if let Some(text) = key_text {
        key = api.dir().join("wrong.key");
        std::fs::write(&key, text).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let r = Router::start(net, &api.url(), &key, extra, "");
    (api, r)
}

impl Router {
    /// sipguard on `net`'s router, pulling from `url` every second.
    /// `extra` goes before the `crowdsec:` section, `section` into it.
    fn start(net: Wan, url: &str, key: &Path, extra: &str, section: &str) -> Router {
        let cfg = net.config(&format!(
            "policy: inspect\ntrusted: [{PROVIDER4}]\n{extra}crowdsec:\n  url: {url}\n  api_key_file: {}\n  interval: 1s\n{section}",
            key.display()
        ));
        let mut daemon = Daemon::new(&net.pbx);
        daemon.write_config(&cfg);
        daemon.launch(&["-v"]);
        daemon.wait_for_log("crowdsec: pulling decisions", Duration::from_secs(10));
        let rx = Receiver::start(&net.pbx, 5060);
        let rx6 = Receiver::start_on(&net.pbx, SocketAddr::new(PBX6.into(), 5060));
        Router {
            net,
            daemon,
            rx,
            rx6,
        }
    }

    /// Sends one OPTIONS from `src` every 100 ms until one arrives
    /// (`want_pass`) or until the kernel counts one more `decision` drop;
    /// the time it took, `None` after `timeout`.
    fn until(&self, src: IpAddr, want_pass: bool, timeout: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        let arrived = self.received(src);
        let dropped = self.decision_drops();
        while t0.elapsed() < timeout {
            self.send(src, 1);
            std::thread::sleep(Duration::from_millis(100));
            let done = if want_pass {
                self.received(src) > arrived
            } else {
                self.decision_drops() > dropped
            };
            if done {
                return Some(t0.elapsed());
            }
        }
        None
    }

    fn received(&self, src: IpAddr) -> u64 {
        self.rx.count(src) + self.rx6.count(src)
    }

    /// `n` OPTIONS from `src` to the router's address of its family.
    fn send(&self, src: IpAddr, n: u64) {
        let s = self.net.wan_socket(src);
        let to = SocketAddr::new(pbx_for(src), 5060);
        for i in 0..n {
            s.send_to(format!("OPTIONS sip:p{i}@x SIP/2.0\r\n\r\n").as_bytes(), to)
                .expect("sending OPTIONS");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `sipguard stats` reports these decisions in force.
    fn assert_in_force(&self, what: &str) {
        let stats = self.daemon.cli_ok(&["stats"]);
        assert!(
            stats.contains(&format!("crowdsec decisions: {what}")),
            "{stats}"
        );
    }

    fn decision_drops(&self) -> u64 {
        self.daemon.stats_json()["reasons"]["decision"]["packets"]
            .as_u64()
            .unwrap_or(0)
    }

    /// The WAN namespace also sends from the range sources; the router
    /// routes their answers back over the WAN link.
    fn add_range_sources(&self) {
        for a in [RANGE4_A, RANGE4_B] {
            self.net.wan.add_addr(&self.net.wan_if, a, 32);
        }
        for a in [RANGE6_A, RANGE6_B] {
            self.net.wan.add_addr(&self.net.wan_if, a, 128);
        }
        for (net, fam) in [(RANGE4_NET, "-4"), (RANGE6_NET, "-6")] {
            self.net
                .pbx
                .exec(&["ip", fam, "route", "add", net, "dev", &self.net.pbx_if]);
        }
    }

    /// Sends `n` OPTIONS from `src`; how many arrived.
    fn arrivals(&self, src: IpAddr, n: u64) -> u64 {
        let before = self.received(src);
        self.send(src, n);
        std::thread::sleep(Duration::from_millis(300));
        self.received(src) - before
    }
}

#[test]
fn cscli_decisions_reach_the_kernel_and_end_there() {
    if !require_root("cscli_decisions_reach_the_kernel_and_end_there") {
        return;
    }
    let (mut api, mut r) = router("");
    let other: IpAddr = OTHER4.into();
    assert!(
        r.until(other, true, WITHIN).is_some(),
        "{other} does not pass before any decision"
    );

    api.add_decision(&other.to_string(), "1h", "ban").unwrap();
    let took = r
        .until(other, false, WITHIN)
        .unwrap_or_else(|| panic!("no decision drop of {other} within {WITHIN:?}"));
    eprintln!("cscli decision add -> first drop: {took:?} (interval {INTERVAL:?})");
    assert_eq!(r.arrivals(other, 10), 0, "{other} still gets through");
    r.assert_in_force("1 in force (cscli 1)");
    let bans = r.daemon.cli_ok(&["bans"]);
    assert!(bans.contains("cscli 1"), "{bans}");
    let listed: serde_json::Value =
        serde_json::from_str(&r.daemon.cli_ok(&["bans", "--json"])).unwrap();
    assert_eq!(listed["decisions"]["in_force"], 1, "{listed}");
    assert_eq!(listed["decisions"]["by_origin"]["cscli"], 1, "{listed}");

    api.delete_decision(&other.to_string()).unwrap();
    let took = r
        .until(other, true, WITHIN)
        .unwrap_or_else(|| panic!("{other} still dropped {WITHIN:?} after the delete"));
    eprintln!("cscli decision delete -> passes again: {took:?}");
    assert_eq!(r.arrivals(other, 10), 10);

    // A short decision, then the API goes away: the kernel ends it on time
    // by itself.
    let short: IpAddr = OTHER4B.into();
    // Taken before cscli starts: the decision's 5 s count from its start.
    let added = Instant::now();
    api.add_decision(&short.to_string(), "5s", "ban").unwrap();
    assert!(
        r.until(short, false, WITHIN).is_some(),
        "short decision for {short} not applied"
    );
    api.stop();
    let ended = r
        .until(short, true, Duration::from_secs(10))
        .map(|_| added.elapsed())
        .unwrap_or_else(|| panic!("{short} still dropped 10 s after its 5 s decision"));
    eprintln!("5 s decision, Local API stopped: passes again {ended:?} after the add");
    // The Local API keeps a decision's end to the second (seen here: ends
    // up to ~0.6 s before 5 s from the start of cscli); the test samples
    // every 100 ms. Without the kernel's own check it would never end: no
    // pull can tell the daemon any more.
    assert!(
        ended >= Duration::from_secs(4) && ended <= Duration::from_millis(6500),
        "ended after {ended:?}, not at its 5 s"
    );
    r.daemon
        .wait_for_log("Local API unreachable", Duration::from_secs(5));
    assert!(r.daemon.is_running());
}

#[test]
fn a_decision_for_a_trusted_source_is_not_applied_and_says_so() {
    if !require_root("a_decision_for_a_trusted_source_is_not_applied_and_says_so") {
        return;
    }
    let (api, mut r) = router("");
    let provider: IpAddr = PROVIDER4.into();
    let other: IpAddr = OTHER4.into();
    api.add_decision(&provider.to_string(), "1h", "ban")
        .unwrap();
    api.add_decision(&other.to_string(), "1h", "ban").unwrap();
    r.daemon.wait_for_log(
        &format!("decision for {provider}/32 (origin cscli) not applied: it overlaps trusted {provider}/32"),
        WITHIN,
    );
    assert!(
        r.until(other, false, WITHIN).is_some(),
        "{other} not dropped"
    );
    assert_eq!(r.arrivals(provider, 10), 10, "the provider was cut off");
    r.assert_in_force("1 in force (cscli 1)");

    // `check` (run where the Local API is reachable) says it too.
    let out = r.net.pbx.exec(&[
        sipguard_tests::sipguard_bin().to_str().unwrap(),
        "check",
        "-c",
        r.daemon.config_path().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "not applied: decision for {provider}/32 (origin cscli) overlaps trusted {provider}/32"
        )),
        "{text}"
    );
    assert!(
        text.contains("the Local API holds 2 ban decisions to apply (cscli 2)"),
        "{text}"
    );
}

#[test]
fn a_refused_key_or_an_open_key_file_is_named() {
    if !require_root("a_refused_key_or_an_open_key_file_is_named") {
        return;
    }
    let (api, mut r) = router_keyed("", Some("not-a-key-of-this-api\n"));
    r.daemon.wait_for_log(
        &format!(
            "crowdsec: {}/v1/decisions/stream: the Local API answered 403",
            api.url()
        ),
        WITHIN,
    );
    assert!(r.daemon.is_running(), "a refused key stopped the filter");

    // A key file its group may read is refused before anything runs.
    let key = api.dir().join("wrong.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = r
        .daemon
        .cli(&["check", "-c", r.daemon.config_path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check accepted a 0640 key file");
    assert!(
        err.contains(&format!(
            "crowdsec.api_key_file: {} is accessible by its group or others (mode 0640)",
            key.display()
        )),
        "{err}"
    );
}

#[test]
fn ipv4_and_ipv6_range_decisions_are_ranges() {
    if !require_root("ipv4_and_ipv6_range_decisions_are_ranges") {
        return;
    }
    let (api, r) = router("");
    r.add_range_sources();
    let inside: [IpAddr; 4] = [
        RANGE4_A.into(),
        RANGE4_B.into(),
        RANGE6_A.into(),
        RANGE6_B.into(),
    ];
    let outside: [IpAddr; 2] = [OTHER4.into(), OTHER6.into()];
    for a in inside.iter().chain(&outside) {
        assert_eq!(
            r.arrivals(*a, 5),
            5,
            "{a} does not pass before the decisions"
        );
    }
    api.add_decision(RANGE4_NET, "1h", "ban").unwrap();
    api.add_decision(RANGE6_NET, "1h", "ban").unwrap();
    let took = r
        .until(RANGE6_B.into(), false, WITHIN)
        .unwrap_or_else(|| panic!("{RANGE6_NET} not applied within {WITHIN:?}"));
    eprintln!("range decisions -> first drop: {took:?}");
    for a in inside {
        assert_eq!(r.arrivals(a, 10), 0, "{a} is inside a range decision");
    }
    for a in outside {
        assert_eq!(r.arrivals(a, 10), 10, "{a} is outside both ranges");
    }
    // One entry per range, not one per address.
    let stats = r.daemon.stats_json();
    assert_eq!(stats["decisions"]["cscli"], 2, "{stats}");
    let drops = stats["reasons"]["decision"]["packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(drops >= 40, "{drops} decision drops counted: {stats}");
}

#[test]
fn local_api_and_daemon_restarts_lose_nothing_and_leave_nothing() {
    if !require_root("local_api_and_daemon_restarts_lose_nothing_and_leave_nothing") {
        return;
    }
    let (mut api, mut r) = router("on_exit: keep\n");
    let (kept, deleted, added): (IpAddr, IpAddr, IpAddr) =
        (OTHER4.into(), OTHER4B.into(), SCANNER4.into());
    api.add_decision(&kept.to_string(), "1h", "ban").unwrap();
    api.add_decision(&deleted.to_string(), "1h", "ban").unwrap();
    assert!(r.until(deleted, false, WITHIN).is_some());
    assert!(r.until(kept, false, WITHIN).is_some());

    // The Local API away: what is applied stays applied.
    api.stop();
    r.daemon
        .wait_for_log("Local API unreachable", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    for a in [kept, deleted] {
        assert_eq!(
            r.arrivals(a, 10),
            0,
            "{a} got through while the API was away"
        );
    }
    api.run().expect("restarting the Local API");
    r.daemon
        .wait_for_log("reachable again", Duration::from_secs(10));
    for a in [kept, deleted] {
        assert_eq!(
            r.arrivals(a, 10),
            0,
            "{a} got through after the API came back"
        );
    }

    // The daemon killed: the kernel keeps filtering; what changed on the
    // API meanwhile is caught up by the next daemon's first pull.
    r.daemon.stop_with(libc::SIGKILL);
    api.delete_decision(&deleted.to_string()).unwrap();
    api.add_decision(&added.to_string(), "1h", "ban").unwrap();
    assert_eq!(
        r.arrivals(kept, 10),
        0,
        "{kept} got through without a daemon"
    );
    r.daemon.launch(&["-v"]);
    assert!(
        r.daemon.log_text().contains("adopting the maps pinned"),
        "{}",
        r.daemon.log_text()
    );
    assert!(
        r.until(deleted, true, WITHIN).is_some(),
        "{deleted} stuck after its decision was deleted while no daemon ran"
    );
    assert!(
        r.until(added, false, WITHIN).is_some(),
        "{added} not dropped after a restart"
    );
    assert_eq!(
        r.arrivals(kept, 10),
        0,
        "{kept} got through after the restart"
    );
    r.assert_in_force("2 in force (cscli 2)");
}

#[test]
fn a_scanner_banned_by_router_a_is_dropped_by_router_b() {
    if !require_root("a_scanner_banned_by_router_a_is_dropped_by_router_b") {
        return;
    }
    // One Local API in a namespace of its own, linked to both routers.
    let hub = Netns::new("c");
    let (net_a, net_b) = (Wan::new(), Wan::new());
    for (n, net) in [(1u8, &net_a), (2, &net_b)] {
        let (hub_if, router_if) = (unique("c"), unique("k"));
        veth(&hub, &hub_if, &net.pbx, &router_if);
        let (api_end, router_end) = lapi_link(n);
        hub.add_addr(&hub_if, api_end, LAPI_LINK_PREFIX);
        net.pbx.add_addr(&router_if, router_end, LAPI_LINK_PREFIX);
    }
    let api = LocalApi::start("0.0.0.0:8080".parse().unwrap(), Some(&hub.name))
        .expect("starting the Local API");
    let (_, key_a) = api.add_bouncer("router-a").unwrap();
    let (_, key_b) = api.add_bouncer("router-b").unwrap();
    let password = api
        .add_machine("router-a", "router-a-machine-password-0123")
        .unwrap();
    let url = |n| format!("http://{}:8080", lapi_link(n).0);
    let a = Router::start(
        net_a,
        &url(1),
        &key_a,
        "bans: {threshold: 1}\n",
        &format!(
            "  machine:\n    id: router-a\n    password_file: {}\n",
            password.display()
        ),
    );
    let b = Router::start(net_b, &url(2), &key_b, "", "");
    let scanner: IpAddr = SCANNER4.into();
    // Router B has nothing against the scanner's address.
    assert_eq!(
        b.arrivals(scanner, 5),
        5,
        "B drops {scanner} before any scan"
    );

    // The real svmap against router A; router B is watched meanwhile.
    let svmap = tool(&["sipvicious_svmap", "svmap"]);
    let mut cmd = a.net.wan.command("timeout");
    cmd.args(["-s", "KILL", "20"])
        .arg(&svmap)
        .args(["-P", "5070", "-p", "5060"])
        .arg(PBX4.to_string())
        .stdin(std::process::Stdio::null());
    let started = Instant::now();
    let mut scan = Proc::spawn("svmap", cmd, &a.daemon.path("svmap.log"));
    let took = b
        .until(scanner, false, Duration::from_secs(20))
        .map(|_| started.elapsed())
        .unwrap_or_else(|| panic!("B does not drop {scanner} 20 s after svmap hit A"));
    eprintln!("svmap starts against A -> first drop on B: {took:?} (B pulls every 1 s)");
    let status = scan.wait_for(Duration::from_secs(25));
    eprintln!("svmap exit: {status:?}");
    let on_a = a.daemon.cli_ok(&["bans"]);
    assert!(
        on_a.contains(&scanner.to_string()) && on_a.contains("auto"),
        "A did not ban {scanner}:\n{on_a}"
    );
    assert_eq!(b.arrivals(scanner, 10), 0, "B lets {scanner} through");

    // The alert is on the Local API, with sipguard's scenario and reason;
    // B holds the decision, not a ban of its own.
    let alerts = api.cscli(&["alerts", "list", "-o", "json"]).unwrap();
    assert!(
        alerts.contains("sipguard/sip-scanner") && alerts.contains(&scanner.to_string()),
        "{alerts}"
    );
    // svmap's User-Agent is a scanner signature: the reason the alert carries.
    assert!(alerts.contains("(user_agent)"), "{alerts}");
    let on_b = b.daemon.cli_ok(&["bans"]);
    assert!(
        on_b.contains("0 active") && on_b.contains("crowdsec 1"),
        "B:\n{on_b}"
    );
    assert_eq!(b.arrivals(PROVIDER4.into(), 5), 5, "B cut off the provider");
}
