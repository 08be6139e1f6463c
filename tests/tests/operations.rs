//! End-to-end tests of the operations features with the real daemon in
//! network namespaces: drop events, bans, feeds reloaded under traffic,
//! surviving SIGKILL, SIGTERM behaviour, metrics. Needs root.

use std::{
    io::{Read as _, Write as _},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use sipguard_tests::{
    addresses::{
        OTHER4 as OTHER, OTHER4B as OTHER2, OTHER6, PBX4, PROVIDER4 as PROVIDER, PROVIDER6,
        SCANNER4 as SCANNER, UNUSED_WAN4_NET,
    },
    harness::{process::read_stdout, wan::pbx_addr, wan_and_daemon, Daemon, Receiver, Steady, Wan},
    require_root,
};

const MS: Duration = Duration::from_millis(1);

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A sipguard config on native XDP for the WAN interface.
fn native(net: &Wan, body: &str) -> String {
    net.config(&format!("xdp_mode: native\n{body}"))
}

/// The standard WAN and a daemon for it with `body` as its config, not
/// yet launched; `None` (the test skips) without root.
fn setup(test: &str, body: &str) -> Option<(Wan, Daemon)> {
    let (net, d) = wan_and_daemon(test)?;
    d.write_config(&native(&net, body));
    Some((net, d))
}

/// [`setup`], launched.
fn started(test: &str, body: &str) -> Option<(Wan, Daemon)> {
    let (net, mut d) = setup(test, body)?;
    d.launch(&[]);
    Some((net, d))
}

fn reason_packets(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["reasons"][reason]["packets"].as_u64().unwrap_or(0)
}

#[test]
fn drop_events_reach_the_log_and_the_events_client() {
    let Some((net, mut d)) = started(
        "drop_events_reach_the_log_and_the_events_client",
        &format!(
            "policy: drop\ntrusted: [{PROVIDER}]\nblocked: [{OTHER}]\nevents:\n  interval: 1s\n"
        ),
    ) else {
        return;
    };
    let meta = std::fs::metadata(d.events_socket()).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "events socket must be root-only"
    );

    let mut json = d.events_client(true, 2);
    let mut text = d.events_client(false, 1);
    std::thread::sleep(Duration::from_millis(300));
    let rx = Receiver::start(&net.pbx, 5060);
    net.send_options(PROVIDER, 5060, 5, MS);
    net.send_options(SCANNER, 5060, 10, Duration::ZERO);
    net.send_options(OTHER, 5060, 3, Duration::ZERO);
    assert_eq!(rx.wait_for(PROVIDER, 5, Duration::from_secs(2)), 5);

    let out = read_stdout(&mut json);
    assert!(json.wait().unwrap().success());
    let evs = json_lines(&out);
    assert_eq!(evs.len(), 2, "{out}");
    let scan = evs
        .iter()
        .find(|e| e["src"] == SCANNER.to_string())
        .unwrap_or_else(|| panic!("no event for the scanner: {out}"));
    assert_eq!(scan["reason"], "untrusted");
    assert_eq!(scan["action"], "drop");
    assert_eq!(scan["dport"], 5060);
    assert_eq!(scan["protocol"], "udp");
    assert_eq!(scan["interface"], net.pbx_if.as_str());
    let blk = evs
        .iter()
        .find(|e| e["src"] == OTHER.to_string())
        .unwrap_or_else(|| panic!("no event for the blocked source: {out}"));
    assert_eq!(blk["reason"], "blocked");
    let t = read_stdout(&mut text);
    assert!(
        t.contains(&format!("drop untrusted udp {SCANNER}:"))
            && t.contains(&format!("-> {PBX4}:5060")),
        "{t}"
    );

    // The daemon logs them readably, and sampling held the rest back.
    d.wait_for_log(&format!("drop blocked udp {OTHER}"), Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(1100));
    net.send_options(SCANNER, 5060, 1, Duration::ZERO);
    d.wait_for_log("(+9 suppressed)", Duration::from_secs(2));

    // Every drop is accounted for: sent, suppressed, over budget or lost.
    let m = d.cli_ok(&["stats", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&m).unwrap();
    let drops = s["dropped"].as_u64().unwrap();
    assert_eq!(drops, 14, "{m}");
    let (sent, supp, lost) = ops_stats(&d);
    assert_eq!(
        sent + supp + lost,
        drops,
        "sent {sent} suppressed {supp} (over budget included) lost {lost}"
    );
    assert_eq!(lost, 0);
    assert_eq!(
        s["operations"]["events_over_budget"], 0,
        "two sources stay within the default budget: {m}"
    );
}

/// Sent, not sent (suppressed by sampling or held over the per-CPU
/// budget: both are carried by the source's next event), lost.
fn ops_stats(d: &Daemon) -> (u64, u64, u64) {
    let dir = d.pin_dir();
    let m = sipguard::kernel::stateful::read_stats(
        &sipguard::kernel::stateful::stats_pinned(&dir).unwrap(),
    )
    .unwrap();
    (
        m.events_sent,
        m.events_suppressed + m.events_over_budget,
        m.events_lost,
    )
}

#[test]
fn bans_after_n_drops_expire_after_the_ttl_and_obey_the_cli() {
    let Some((net, d)) = started(
        "bans_after_n_drops_expire_after_the_ttl_and_obey_the_cli",
        &format!(
            "policy: drop\ntrusted: [{PROVIDER}]\nbans:\n  enabled: true\n  threshold: 5\n  window: 10s\n  ttl: 2s\n"
        ),
    ) else {
        return;
    };
    net.send_options(SCANNER, 5060, 5, MS);
    let listed: serde_json::Value = serde_json::from_str(&d.cli_ok(&["bans", "--json"])).unwrap();
    // No CrowdSec section, but the decision maps are pinned: none in force.
    assert_eq!(listed["decisions"]["in_force"], 0, "{listed}");
    let bans = &listed["bans"];
    let b = bans.as_array().unwrap();
    assert_eq!(b.len(), 1, "{bans}");
    assert_eq!(b[0]["source"], SCANNER.to_string());
    assert_eq!(b[0]["origin"], "auto");
    assert!(b[0]["remaining_secs"].as_u64().unwrap() <= 2);
    net.send_options(SCANNER, 5060, 3, MS);
    assert_eq!(reason_packets(&d.stats_json(), "banned"), 3);
    assert_eq!(reason_packets(&d.stats_json(), "untrusted"), 5);

    // Manual bans and unban. A ban never overrides the trusted list (an
    // IPv6 /64 ban next to a provider must not cut the provider off).
    let rx = Receiver::start(&net.pbx, 5060);
    // So banning a trusted address is refused, naming the entry.
    let o = d.cli(&["ban", &PROVIDER.to_string(), "--for", "1h"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains(&format!(
                "{PROVIDER} is trusted (trusted entry {PROVIDER}/32)"
            ))
            && err.contains("would not take effect"),
        "{err}"
    );
    d.cli_ok(&["ban", &OTHER.to_string()]);
    let t = d.cli_ok(&["bans"]);
    assert!(
        !t.contains(&PROVIDER.to_string())
            && t.contains("manual")
            && t.contains("forever")
            && t.contains("2 active"),
        "{t}"
    );
    net.send_options(PROVIDER, 5060, 4, MS);
    assert_eq!(
        rx.wait_for(PROVIDER, 4, Duration::from_secs(2)),
        4,
        "a trusted source passes, banned or not"
    );
    assert_eq!(reason_packets(&d.stats_json(), "banned"), 3);
    let o = d.cli(&["unban", &PROVIDER.to_string()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not banned"));

    // The automatic ban ends by itself after its TTL.
    std::thread::sleep(Duration::from_millis(2100));
    let bans: serde_json::Value = serde_json::from_str(&d.cli_ok(&["bans", "--json"])).unwrap();
    assert_eq!(
        bans["bans"].as_array().unwrap().len(),
        1,
        "only the manual ban of {OTHER} is left: {bans}"
    );
    net.send_options(SCANNER, 5060, 1, MS);
    let s = d.stats_json();
    assert_eq!(reason_packets(&s, "banned"), 3, "no ban after the TTL");
    assert_eq!(reason_packets(&s, "untrusted"), 6);
}

/// stdout and stderr of a command that must fail, asserting it did.
fn failed(o: std::process::Output, what: &str) -> (String, String) {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{what} must exit 1: {out}{err}");
    (out, err)
}

#[test]
fn check_and_the_daemon_name_what_trusted_overrides() {
    let Some((net, mut d)) = setup("check_and_the_daemon_name_what_trusted_overrides", "") else {
        return;
    };
    let feed = d.path("feed.txt");
    // 192.0.2.0/28 holds the provider: the whole entry stays out of the
    // blocklist; the other entry is blocked.
    std::fs::write(&feed, format!("{UNUSED_WAN4_NET}\n192.0.2.0/28\n")).unwrap();
    d.write_config(&native(
        &net,
        &format!(
            "policy: drop\ntrusted: [{PROVIDER}, \"{PROVIDER6}\"]\nfeeds: [{}]\n",
            feed.display()
        ),
    ));
    d.launch(&[]);
    let feed_line = format!(
        "trusted 192.0.2.10/32 overrides feed entry 192.0.2.0/28 ({}): the entry is not blocked",
        feed.display()
    );
    assert!(d.log_text().contains(&feed_line), "{}", d.log_text());
    let cfg = d.config_path();
    let check = d.cli_ok(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(
        check.contains(&format!("overrides (1):\n  {feed_line}\n")),
        "{check}"
    );

    // An IPv6 ban is a /64: it acts on the rest of the prefix, not on the
    // trusted address inside it, and says so.
    let ban = d.cli_ok(&["ban", &OTHER6.to_string()]);
    assert_eq!(
        ban,
        "banned 2001:db8:5::/64 until `sipguard unban`\n  except trusted 2001:db8:5::10/128: \
         trusted sources are checked before bans\n"
    );
    let ban_line = "trusted 2001:db8:5::10/128 overrides ban 2001:db8:5::/64: the ban does not \
                    apply to 2001:db8:5::10/128";
    let check = d.cli_ok(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(
        check.contains(&format!("overrides (2):\n  {feed_line}\n  {ban_line}\n")),
        "{check}"
    );
    d.signal(libc::SIGHUP);
    d.wait_for_log(ban_line, Duration::from_secs(5));
}

#[test]
fn ban_and_unban_say_what_they_changed() {
    let Some((_net, d)) = started(
        "ban_and_unban_say_what_they_changed",
        &format!("policy: drop\ntrusted: [{PROVIDER}]\n"),
    ) else {
        return;
    };
    d.cli_ok(&["ban", &OTHER.to_string(), "--for", "1h"]);
    let again = d.cli_ok(&["ban", &OTHER.to_string()]);
    assert!(
        again.starts_with(&format!(
            "banned {OTHER} until `sipguard unban`\n  it replaces the manual ban of {OTHER} \
             that was in force (remaining: 3"
        )) && again.ends_with("s)\n"),
        "{again}"
    );
    assert_eq!(
        d.cli_ok(&["unban", &OTHER.to_string()]),
        format!("unbanned {OTHER}\n")
    );
    let (out, err) = failed(d.cli(&["unban", &OTHER.to_string()]), "a second unban");
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("", &*format!("sipguard: {OTHER} is not banned\n"))
    );
    // A ban whose time is up is not in force: lifting it changes nothing.
    d.cli_ok(&["ban", &OTHER.to_string(), "--for", "300ms"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, err) = failed(
        d.cli(&["unban", &OTHER.to_string()]),
        "unban of an ended ban",
    );
    assert!(
        err.starts_with(&format!(
            "sipguard: {OTHER} is not banned: its ban had ended 1 s ago"
        )),
        "{err}"
    );

    // BANS is an LRU map: when full, a new ban evicts the least recently
    // used one, and the CLI names exactly the bans that went. The LRU keeps
    // free entries per CPU, so the fill and the CLI (which inherits this
    // thread's affinity) run on one CPU: there, a full map has none left.
    // SAFETY: a zeroed cpu_set_t with one CPU set, for this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
    let mut bans = sipguard::kernel::bans::bans_pinned(&d.pin_dir()).unwrap();
    let entry = sipguard_common::abi::BanEntry::new(
        sipguard_common::abi::BAN_FOREVER,
        sipguard_common::abi::BAN_AUTO,
        5,
    );
    for i in 0..sipguard_common::abi::BAN_ENTRIES {
        let a = Ipv4Addr::new(10, 200, (i >> 8) as u8, i as u8);
        bans.insert(sipguard::kernel::bans::key_for(a.into(), 64), entry, 0)
            .unwrap();
    }
    let keys = |bans: &aya::maps::HashMap<_, _, _>| -> std::collections::BTreeSet<String> {
        bans.keys()
            .map(|k| sipguard::kernel::bans::key_label(&k.unwrap(), 64))
            .collect()
    };
    let before = keys(&bans);
    let full = d.cli_ok(&["ban", &OTHER.to_string()]);
    let after = keys(&bans);
    let gone: std::collections::BTreeSet<String> = before
        .difference(&after)
        .map(|e| {
            format!("  the ban table was full: the ban of {e} was evicted to make room (least recently used)")
        })
        .collect();
    assert!(!gone.is_empty(), "a ban on a full map evicts one");
    let mut said = full.lines();
    assert_eq!(
        said.next(),
        Some(format!("banned {OTHER} until `sipguard unban`").as_str())
    );
    assert_eq!(
        said.map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>(),
        gone
    );
    let listed: serde_json::Value = serde_json::from_str(&d.cli_ok(&["bans", "--json"])).unwrap();
    assert!(listed["bans"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["source"] == OTHER.to_string()));
}

#[test]
fn events_say_when_the_daemon_closed_the_socket_early() {
    let Some((_net, mut d)) = started(
        "events_say_when_the_daemon_closed_the_socket_early",
        "policy: drop\n",
    ) else {
        return;
    };
    let events = d.events_client(true, 5);
    std::thread::sleep(Duration::from_millis(300));
    d.stop();
    let o = events.wait_with_output().unwrap();
    assert_eq!(
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned()
        ),
        (
            Some(1),
            format!(
                "sipguard: the daemon closed {} after 0 of the 5 events asked for\n",
                d.events_socket().display()
            )
        )
    );
}

#[test]
fn detach_names_pins_it_could_not_remove() {
    let Some((net, d)) = started("detach_names_pins_it_could_not_remove", "policy: drop\n") else {
        return;
    };
    // A map pinned there by someone else: not sipguard's to remove.
    let stranger = d.pin_dir().join("stranger");
    let o = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&stranger)
        .args([
            "type", "array", "key", "4", "value", "4", "entries", "1", "name", "stranger",
        ])
        .output()
        .expect("bpftool (apt-get install bpftool)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (out, err) = failed(d.cli(&["detach"]), "a detach that leaves pins");
    let _ = std::fs::remove_file(&stranger);
    assert_eq!(
        (out, err),
        (
            format!("detached from {}\n", net.pbx_if),
            format!(
                "sipguard: the filter is detached, but {} is not removed: it still holds stranger\n",
                d.pin_dir().display()
            )
        )
    );
}

#[test]
fn cli_bans_work_when_automatic_bans_are_off() {
    // Automatic bans off (the `drop` policy's default): nothing fills BANS
    // but the CLI, and the filter skips the lookup until the first ban.
    let Some((net, mut d)) = setup(
        "cli_bans_work_when_automatic_bans_are_off",
        &format!("policy: drop\ntrusted: [{PROVIDER}]\n"),
    ) else {
        return;
    };
    d.launch(&[]);
    net.send_options(OTHER, 5060, 2, MS);
    d.cli_ok(&["ban", &OTHER.to_string()]);
    net.send_options(OTHER, 5060, 3, MS);
    let s = d.stats_json();
    assert_eq!(reason_packets(&s, "untrusted"), 2);
    assert_eq!(
        reason_packets(&s, "banned"),
        3,
        "the CLI's ban applies at once"
    );
}

#[test]
fn metrics_are_served_over_http() {
    let Some((net, d)) = started(
        "metrics_are_served_over_http",
        &format!("policy: drop\ntrusted: [{PROVIDER}]\nmetrics:\n  listen: 127.0.0.1:9560\n"),
    ) else {
        return;
    };
    net.send_options(SCANNER, 5060, 4, MS);
    net.send_options(PROVIDER, 5060, 2, MS);
    d.cli_ok(&["ban", &OTHER2.to_string(), "--for", "10m"]);
    let body = net.pbx.run(|| {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9560").unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let r_if = &net.pbx_if;
    for want in [
        format!(
            "sipguard_packets_total{{interface=\"{r_if}\",reason=\"untrusted\",action=\"drop\"}} 4"
        ),
        format!(
            "sipguard_packets_total{{interface=\"{r_if}\",reason=\"trusted\",action=\"pass\"}} 2"
        ),
        "sipguard_active_bans 1".to_string(),
        "sipguard_events_lost_total 0".to_string(),
        "sipguard_events_suppressed_total 3".to_string(),
        "sipguard_build_info{version=".to_string(),
    ] {
        assert!(body.contains(&want), "missing {want}:\n{body}");
    }
}

/// Sends `n` OPTIONS from `src`; they must be all the receiver ever got
/// from it.
fn send_and_expect_all(net: &Wan, rx: &Receiver, src: Ipv4Addr, n: u64, why: &str) {
    net.send_options(src, 5060, n, MS);
    assert_eq!(rx.wait_for(src, n, Duration::from_secs(2)), n, "{why}");
}

/// OPTIONS from `src` to the PBX every millisecond until finished.
fn steady(net: &Wan, src: Ipv4Addr) -> Steady {
    Steady::start(net.wan_socket(src), pbx_addr(5060))
}

#[test]
fn sigkill_and_restart_keep_filtering_without_a_gap() {
    let Some((net, mut d)) = started(
        "sigkill_and_restart_keep_filtering_without_a_gap",
        &format!("policy: drop\ntrusted: [{PROVIDER}]\nblocked: [{OTHER}]\non_exit: keep\n"),
    ) else {
        return;
    };
    let rx = Receiver::start(&net.pbx, 5060);
    let scan = steady(&net, SCANNER);
    let blocked = steady(&net, OTHER);
    let good = steady(&net, PROVIDER);
    std::thread::sleep(Duration::from_millis(200));
    d.stop_with(libc::SIGKILL);
    // No daemon at all: the pinned link and maps keep filtering.
    std::thread::sleep(Duration::from_millis(500));
    let during = d.stats_json();
    d.launch(&[]);
    assert!(
        d.log_text().contains("adopting the maps pinned"),
        "{}",
        d.log_text()
    );
    assert!(
        d.log_text()
            .contains("adopted the pinned XDP link (program unchanged)"),
        "{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_millis(200));
    let (n_scan, n_blocked, n_good) = (scan.finish(), blocked.finish(), good.finish());
    assert_eq!(
        rx.wait_for(PROVIDER, n_good, Duration::from_secs(2)),
        n_good,
        "every trusted packet arrived"
    );
    assert_eq!(
        rx.count(SCANNER),
        0,
        "no scanner packet got through at any time"
    );
    assert_eq!(
        rx.count(OTHER),
        0,
        "no blocked packet got through at any time"
    );
    // Counters kept counting across the kill: one continuous series.
    let s = d.stats_json();
    assert_eq!(reason_packets(&s, "untrusted"), n_scan);
    assert_eq!(reason_packets(&s, "blocked"), n_blocked);
    assert!(reason_packets(&during, "untrusted") > 0);

    // on_exit: keep leaves the filter in place after SIGTERM...
    d.stop_with(libc::SIGTERM);
    assert!(d.pin_dir().join(format!("link_{}", net.pbx_if)).exists());
    net.send_options(SCANNER, 5060, 3, MS);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.count(SCANNER), 0);
    // ...until `sipguard detach` removes everything.
    let out = d.cli_ok(&["detach", "--iface", &net.pbx_if]);
    assert!(out.contains("detached from"), "{out}");
    assert!(
        !sipguard::kernel::pins::versioned_dir(&d.pin_root).exists(),
        "pins removed"
    );
    send_and_expect_all(&net, &rx, SCANNER, 3, "filter gone after detach");
}

#[test]
fn sigterm_with_on_exit_detach_removes_the_filter() {
    let Some((net, mut d)) = started(
        "sigterm_with_on_exit_detach_removes_the_filter",
        &format!("policy: drop\ntrusted: [{PROVIDER}]\non_exit: detach\n"),
    ) else {
        return;
    };
    let rx = Receiver::start(&net.pbx, 5060);
    net.send_options(SCANNER, 5060, 3, MS);
    d.stop_with(libc::SIGTERM);
    let log = d.log_text();
    assert!(log.contains("detached from"), "{log}");
    assert!(!d.pin_root.exists(), "pins removed");
    assert!(!d.events_socket().exists(), "socket removed");
    send_and_expect_all(
        &net,
        &rx,
        SCANNER,
        3,
        "only the packets after SIGTERM arrive",
    );
}

#[test]
fn a_different_program_on_the_pinned_link_is_replaced_in_place() {
    let Some((net, mut d)) = setup(
        "a_different_program_on_the_pinned_link_is_replaced_in_place",
        &format!("policy: drop\ntrusted: [{PROVIDER}]\n"),
    ) else {
        return;
    };
    // An "older build": the object's empty program, attached through a
    // pinned link where the daemon keeps its own.
    let link_pin = d.pin_dir().join(format!("link_{}", net.pbx_if));
    pin_pass_everything_link(&net, &d.pin_dir(), &[], |_| {});
    let (old_prog, _) = sipguard::kernel::pins::link_info(&link_pin).unwrap();
    let rx = Receiver::start(&net.pbx, 5060);
    send_and_expect_all(&net, &rx, SCANNER, 2, "the old program passes everything");
    let good = steady(&net, PROVIDER);
    d.launch(&[]);
    assert!(
        d.log_text()
            .contains("replaced the program of the pinned XDP link"),
        "{}",
        d.log_text()
    );
    let (new_prog, ifindex) = sipguard::kernel::pins::link_info(&link_pin).unwrap();
    assert_ne!(new_prog, old_prog);
    assert_ne!(ifindex, 0);
    net.send_options(SCANNER, 5060, 3, MS);
    std::thread::sleep(Duration::from_millis(100));
    let n_good = good.finish();
    assert_eq!(rx.count(SCANNER), 2, "the new program drops the scanner");
    assert_eq!(
        rx.wait_for(PROVIDER, n_good, Duration::from_secs(2)),
        n_good,
        "no trusted packet lost during the swap"
    );
}

/// Attaches the object's empty program to the WAN interface through a link
/// pinned in `dir` (where a daemon of that map ABI keeps it), with `maps`
/// of the same object pinned beside it after `fill` wrote into them: a
/// filter some other sipguard build left running.
fn pin_pass_everything_link(
    net: &Wan,
    dir: &std::path::Path,
    maps: &'static [&'static str],
    fill: impl FnOnce(&mut aya::Ebpf) + Send + 'static,
) {
    std::fs::create_dir_all(dir).unwrap();
    let (r_if, dir) = (net.pbx_if.clone(), dir.to_path_buf());
    net.pbx.run(move || {
        let mut ebpf = sipguard::kernel::program::load(Default::default()).unwrap();
        fill(&mut ebpf);
        for m in maps {
            ebpf.map(m).unwrap().pin(dir.join(m)).unwrap();
        }
        sipguard::kernel::program::load_program(&mut ebpf, "empty_pass", false).unwrap();
        let prog = sipguard::kernel::program::xdp_program(&mut ebpf, "empty_pass").unwrap();
        let id = prog.attach(&r_if, aya::programs::XdpMode::Driver).unwrap();
        let link = prog.take_link(id).unwrap();
        let fd = aya::programs::links::FdLink::try_from(link).unwrap();
        fd.pin(dir.join(format!("link_{r_if}"))).unwrap();
    });
}

/// Creates a map with raw bpf(2), writes `content` (key, value) into it and
/// pins it at `path`: a layout this build no longer has.
fn pin_raw_map(
    path: &std::path::Path,
    (map_type, key, value, entries): (u32, u32, u32, u32),
    content: &[(&[u8], &[u8])],
) {
    let mut attr = [0u8; 128];
    for (i, v) in [map_type, key, value, entries].iter().enumerate() {
        attr[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    // SAFETY: BPF_MAP_CREATE (0), BPF_MAP_UPDATE_ELEM (2) and BPF_OBJ_PIN
    // (6) with attr buffers of the size passed; keys, values and the path
    // outlive the calls, and are as long as the map's sizes (asserted).
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), 128u32) };
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    for (k, v) in content {
        assert_eq!((k.len(), v.len()), (key as usize, value as usize));
        let mut attr = [0u8; 128];
        attr[..4].copy_from_slice(&(fd as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(k.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(v.as_ptr() as u64).to_ne_bytes());
        let rc = unsafe { libc::syscall(libc::SYS_bpf, 2, attr.as_mut_ptr(), 128u32) };
        assert_eq!(
            rc,
            0,
            "BPF_MAP_UPDATE_ELEM: {}",
            std::io::Error::last_os_error()
        );
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut attr = [0u8; 128];
    attr[..8].copy_from_slice(&(c.as_ptr() as u64).to_ne_bytes());
    attr[8..12].copy_from_slice(&(fd as u32).to_ne_bytes());
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 6, attr.as_mut_ptr(), 128u32) };
    assert_eq!(rc, 0, "BPF_OBJ_PIN: {}", std::io::Error::last_os_error());
    unsafe { libc::close(fd as i32) };
}

const LRU_HASH: u32 = 9;

/// `BANS` as map ABI 3 and older laid it out (16-byte entries: expiry,
/// origin, drop count), holding a manual ban of OTHER.
fn pin_older_bans(dir: &std::path::Path) {
    use sipguard_common::*;
    let key = sipguard::kernel::bans::key_for(OTHER.into(), 64);
    let mut ban = [0u8; 16];
    ban[..8].copy_from_slice(&BAN_FOREVER.to_ne_bytes());
    ban[8..12].copy_from_slice(&BAN_MANUAL.to_ne_bytes());
    pin_raw_map(
        &dir.join("BANS"),
        (LRU_HASH, 20, 16, BAN_ENTRIES),
        &[(key_bytes(&key), &ban)],
    );
}

fn key_bytes(key: &sipguard_common::AddrKey) -> &[u8] {
    // SAFETY: AddrKey is plain data without padding (20 bytes, asserted in
    // its crate).
    unsafe {
        std::slice::from_raw_parts(
            (key as *const sipguard_common::AddrKey).cast::<u8>(),
            std::mem::size_of_val(key),
        )
    }
}

/// Slot the older filter gave the WAN interface: not the one this
/// version gives it (1), so counters must follow the name.
const OLDER_SLOT: u32 = 5;

/// What the older filter holds besides its bans ([`pin_older_bans`]): OTHER2
/// learned as a registrar for an hour, 1,000 sipvicious drops counted on the WAN
/// interface in slot [`OLDER_SLOT`], 7 bans made (`OPS_STATS`).
fn fill_older_state(ebpf: &mut aya::Ebpf, wan_if: &str) {
    use aya::maps::{Array, HashMap, PerCpuArray, PerCpuValues};
    use sipguard_common::*;
    let now = sipguard::kernel::stateful::boot_ns();
    let mut learned: HashMap<_, V4Key, LearnedExpiry> =
        HashMap::try_from(ebpf.map_mut("LEARNED_V4").unwrap()).unwrap();
    learned
        .insert(OTHER2.octets(), now + 3_600_000_000_000, 0)
        .unwrap();
    let mut names: Array<_, IfaceName> =
        Array::try_from(ebpf.map_mut("IFACE_NAMES").unwrap()).unwrap();
    let mut n: IfaceName = [0; 16];
    n[..wan_if.len()].copy_from_slice(wan_if.as_bytes());
    names.set(OLDER_SLOT, n, 0).unwrap();
    let cpus = aya::util::nr_cpus().unwrap();
    let mut counters: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(ebpf.map_mut("COUNTERS").unwrap()).unwrap();
    let mut cells = vec![Counter::default(); cpus];
    cells[0] = Counter {
        packets: 1000,
        bytes: 64_000,
    };
    let index = counter_index(OLDER_SLOT, false, Reason::DropSipVicious as u32);
    counters
        .set(index, PerCpuValues::try_from(cells).unwrap(), 0)
        .unwrap();
    let mut stats: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map_mut("OPS_STATS").unwrap()).unwrap();
    let mut made = vec![0u64; cpus];
    made[cpus - 1] = 7;
    stats
        .set(STAT_BANS_CREATED, PerCpuValues::try_from(made).unwrap(), 0)
        .unwrap();
}

#[test]
fn a_filter_of_an_older_map_abi_is_taken_over_in_place_its_state_carried_and_its_pins_removed() {
    let Some((net, mut d)) = setup(
        "a_filter_of_an_older_map_abi_is_taken_over_in_place_its_state_carried_and_its_pins_removed",
        &format!("policy: drop\ntrusted: [{PROVIDER}]\n"),
    ) else {
        return;
    };
    let older = sipguard_common::MAP_ABI_VERSION - 1;
    let old_dir = d.pin_root.join(format!("v{older}"));
    let wan_if = net.pbx_if.clone();
    pin_pass_everything_link(
        &net,
        &old_dir,
        &[
            "COUNTERS",
            "IFACE_NAMES",
            "BAN_COUNTS",
            "LEARNED_V4",
            "LEARNED_V6",
            "OPS_STATS",
        ],
        move |ebpf| fill_older_state(ebpf, &wan_if),
    );
    pin_older_bans(&old_dir);
    // FRAGS of another value size than this version's (8 bytes).
    pin_raw_map(&old_dir.join("FRAGS"), (LRU_HASH, 40, 16, 16384), &[]);
    let (old_prog, _) =
        sipguard::kernel::pins::link_info(&old_dir.join(format!("link_{}", net.pbx_if))).unwrap();
    let rx = Receiver::start(&net.pbx, 5060);
    send_and_expect_all(&net, &rx, SCANNER, 2, "the older filter passes everything");
    let good = steady(&net, PROVIDER);
    d.launch(&[]);
    let log = d.log_text();
    assert!(
        log.contains(&format!("taking over the XDP link of map ABI v{older}")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "map ABI v{older} -> v{}: carried COUNTERS 1, LEARNED_V4 1, LEARNED_V6 0, OPS_STATS 1, BANS 1, BAN_COUNTS 0",
            older + 1
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("FRAGS (v{older}'s is a LruHash of 16384 entries, 40-byte keys, 16-byte values, this version's a LruHash of 16384 entries, 40-byte keys, 8-byte values)")),
        "{log}"
    );
    assert!(
        log.contains(&format!("removed the pins of map ABI v{older}")),
        "{log}"
    );
    assert!(!old_dir.exists(), "the older version's pins are gone");
    let (new_prog, ifindex) =
        sipguard::kernel::pins::link_info(&d.pin_dir().join(format!("link_{}", net.pbx_if)))
            .unwrap();
    assert_ne!(new_prog, old_prog, "the link runs this build's program");
    assert_ne!(ifindex, 0);
    net.send_options(SCANNER, 5060, 3, MS);
    // The carried ban drops OTHER as banned (not merely untrusted); the
    // carried registrar lets OTHER2 through a policy that drops the rest.
    net.send_options(OTHER, 5060, 4, MS);
    send_and_expect_all(&net, &rx, OTHER2, 3, "the learned registrar was carried");
    std::thread::sleep(Duration::from_millis(100));
    let n_good = good.finish();
    assert_eq!(rx.count(SCANNER), 2, "the new program drops the scanner");
    assert_eq!(rx.count(OTHER), 0, "the carried ban drops OTHER");
    assert_eq!(
        rx.wait_for(PROVIDER, n_good, Duration::from_secs(2)),
        n_good,
        "no trusted packet lost during the takeover"
    );
    let stats = d.stats_json();
    assert_eq!(reason_packets(&stats, "banned"), 4, "{stats}");
    assert_eq!(reason_packets(&stats, "untrusted"), 3, "{stats}");
    let wan = stats["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["interface"] == net.pbx_if.as_str())
        .unwrap_or_else(|| panic!("no {} in {stats}", net.pbx_if));
    assert_eq!(
        wan["reasons"]["sipvicious"]["packets"], 1000,
        "the older counters follow the interface name: {stats}"
    );
    assert_eq!(stats["operations"]["bans_created"], 7, "{stats}");
    let bans = d.cli_ok(&["bans"]);
    assert!(bans.contains(&OTHER.to_string()), "{bans}");
}

/// A feed of `n` filler /32s in 172.16.0.0/12 starting at `base`, plus `extra`.
fn feed_text(n: u32, base: u32, extra: &[&str]) -> String {
    let mut s = String::from("# test feed\n");
    for i in 0..n {
        let a = 0xac10_0000u32 | ((base + i) & 0x000f_ffff);
        s.push_str(&format!("{}\n", std::net::Ipv4Addr::from(a)));
    }
    for e in extra {
        s.push_str(&format!("{e} ; listed\n"));
    }
    s
}

fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn feeds_reload_under_traffic_without_a_gap() {
    let Some((net, mut d)) = wan_and_daemon("feeds_reload_under_traffic_without_a_gap") else {
        return;
    };
    let feed = d.path("feed.txt");
    let (scanner, other) = (SCANNER.to_string(), OTHER.to_string());
    write_atomically(&feed, &feed_text(20_000, 0, &[&scanner, UNUSED_WAN4_NET]));
    // inspect: untrusted sources that are not blocked pass (the inspector's
    // rules are not this test's business); bans off so only the feed drops.
    d.write_config(&native(
        &net,
        &format!(
            "policy: inspect\nbans:\n  enabled: false\nfeeds: [{}]\n",
            feed.display()
        ),
    ));
    d.launch(&[]);
    let rx = Receiver::start(&net.pbx, 5060);
    let scan = steady(&net, SCANNER);
    let legit = steady(&net, PROVIDER);
    // Three reloads: two by file change (polling), one by SIGHUP; each
    // replaces all 20,000 filler entries and keeps the scanner listed.
    write_atomically(&feed, &feed_text(20_000, 50_000, &[&scanner]));
    d.wait_for_log("blocklist feed changed: reloaded", Duration::from_secs(10));
    write_atomically(&feed, &feed_text(20_000, 100_000, &[&scanner, &other]));
    std::thread::sleep(Duration::from_millis(1500));
    d.signal(libc::SIGHUP);
    d.wait_for_log("policy reloaded", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    let (n_scan, n_legit) = (scan.finish(), legit.finish());
    assert_eq!(
        rx.wait_for(PROVIDER, n_legit, Duration::from_secs(2)),
        n_legit,
        "no legitimate packet dropped"
    );
    assert_eq!(
        rx.count(SCANNER),
        0,
        "the scanner, in every version of the feed, never got through"
    );
    assert_eq!(reason_packets(&d.stats_json(), "blocked"), n_scan);
    // The last version is in force: OTHER is now blocked, OTHER2 not.
    net.send_options(OTHER, 5060, 2, MS);
    net.send_options(OTHER2, 5060, 2, MS);
    assert_eq!(rx.wait_for(OTHER2, 2, Duration::from_secs(2)), 2);
    assert_eq!(rx.count(OTHER), 0);
    let blocked = sipguard::kernel::maps::PolicyMaps::open_pinned(&d.pin_dir()).unwrap();
    assert_eq!(
        blocked.blocked_v4_entries(),
        20_002,
        "old filler entries were removed"
    );

    // A broken feed is not applied: the running lists stay.
    std::fs::write(&feed, format!("{OTHER}\nnot-an-address\n")).unwrap();
    d.wait_for_log(
        "feed reload failed, keeping the running lists",
        Duration::from_secs(10),
    );
    assert!(d.log_text().contains("line 2"), "{}", d.log_text());
    net.send_options(SCANNER, 5060, 2, MS);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.count(SCANNER), 0);
}

/// Measurement, run by hand: `cargo test --test operations million -- --ignored --nocapture`.
#[test]
#[ignore]
fn million_entry_feed_load_time() {
    if !require_root("million_entry_feed_load_time") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sg-million-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let feed = dir.join("feed.txt");
    // A million addresses, one a line, 3 apart from `first` on.
    let million = |first: u32| {
        let mut text = String::with_capacity(16 << 20);
        for i in 0..1_000_000u32 {
            text.push_str(&format!("{}\n", std::net::Ipv4Addr::from(first + i * 3)));
        }
        text
    };
    std::fs::write(&feed, million(0x6400_0000)).unwrap();
    let cfg = sipguard::policy::config::Config::parse(
        &format!("policy: drop\nfeeds: [{}]\n", feed.display()),
        "t",
    )
    .unwrap();
    let t0 = Instant::now();
    let policy = sipguard::policy::sources::feeds::FeedWatch::new(&cfg.feeds)
        .policy(&cfg)
        .unwrap();
    let parse = t0.elapsed();
    let t1 = Instant::now();
    let mut sb = sipguard::kernel::testrun::Sandbox::new(&policy).unwrap();
    let first = t1.elapsed();
    let t2 = Instant::now();
    sb.apply(&policy).unwrap();
    let same = t2.elapsed();
    // Worst case: every entry replaced (1M adds, then 1M removals).
    std::fs::write(&feed, million(0x6400_0001)).unwrap();
    let policy2 = sipguard::policy::sources::feeds::FeedWatch::new(&cfg.feeds)
        .policy(&cfg)
        .unwrap();
    let t3 = Instant::now();
    sb.apply(&policy2).unwrap();
    let all_new = t3.elapsed();
    println!("1,000,000-entry feed: parse {parse:?}, first load (incl. program load) {first:?}, unchanged reload {same:?}, full replacement {all_new:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Measurement, run by hand: `cargo test --release --test operations flood -- --ignored --nocapture`.
/// Raw frames from 65,536 distinct sources as fast as one AF_PACKET socket
/// sends them; reports what `sipguard events` received.
#[test]
#[ignore]
fn event_flood_delivery() {
    let Some((net, d)) = started(
        "event_flood_delivery",
        "policy: drop\nevents:\n  log: off\n",
    ) else {
        return;
    };
    let mut client = d.events_client(true, u64::MAX);
    let out = client.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("\"src\""))
            .count() as u64
    });
    std::thread::sleep(Duration::from_millis(300));
    let s_if = net.wan_if.clone();
    const FRAMES: u32 = 400_000;
    let elapsed = net.wan.run(move || {
        let idx = sipguard::kernel::attach::ifindex(&s_if).unwrap();
        // SAFETY: plain socket calls on a descriptor we own.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(fd >= 0);
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = idx as i32;
        sll.sll_halen = 6;
        let frames: Vec<Vec<u8>> = (0..65536u32)
            .map(|i| {
                let src = [10, 100, (i >> 8) as u8, i as u8];
                sipguard_tests::frames::v4(src, PBX4.octets())
                    .udp(40000, 5060)
                    .payload(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
                    .build()
            })
            .collect();
        let t0 = Instant::now();
        for i in 0..FRAMES {
            let f = &frames[(i % 65536) as usize];
            unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
        }
        let e = t0.elapsed();
        unsafe { libc::close(fd) };
        e
    });
    let mut last = (u64::MAX, 0, 0);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = ops_stats(&d);
        if now == last {
            break;
        }
        last = now;
    }
    std::thread::sleep(Duration::from_millis(1000));
    let (sent, supp, lost) = ops_stats(&d);
    let dropped = reason_packets(&d.stats_json(), "untrusted");
    let _ = client.kill();
    let _ = client.wait();
    let got = reader.join().unwrap();
    println!(
        "flood: {FRAMES} frames in {elapsed:?} ({:.0} pps), dropped {dropped}; events: sent {sent}, received by `sipguard events` {got} ({:.0}/s), suppressed {supp}, lost {lost}",
        FRAMES as f64 / elapsed.as_secs_f64(),
        got as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(sent + supp + lost, dropped);
}
