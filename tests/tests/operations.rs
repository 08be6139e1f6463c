//! End-to-end tests of the operations features with the real daemon in
//! network namespaces: drop events, bans, feeds reloaded under traffic,
//! surviving SIGKILL, SIGTERM behaviour, metrics. Needs root.

use std::{
    io::{Read as _, Write as _},
    time::{Duration, Instant},
};

use sipguard_tests::{
    lab::{wait_path, Lab, OTHER, OTHER2, PROVIDER, SCANNER},
    require_root,
};

const MS: Duration = Duration::from_millis(1);

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn stats(lab: &Lab) -> serde_json::Value {
    serde_json::from_str(&lab.cli_ok(&["stats", "--json"])).unwrap()
}

fn reason_packets(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["reasons"][reason]["packets"].as_u64().unwrap_or(0)
}

#[test]
fn drop_events_reach_the_log_and_the_events_client() {
    if !require_root("drop_events_reach_the_log_and_the_events_client") {
        return;
    }
    let mut lab = Lab::new("ev");
    lab.write_config(&format!("policy: drop\ntrusted: [{PROVIDER}]\nblocked: [{OTHER}]\nevents:\n  interval: 1s\n"));
    lab.start();
    let meta = std::fs::metadata(&lab.sock).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "events socket must be root-only");

    let mut json = lab.events_client(true, 2);
    let mut text = lab.events_client(false, 1);
    std::thread::sleep(Duration::from_millis(300));
    let rx = lab.receiver(5060);
    lab.send(PROVIDER, 5060, 5, MS);
    lab.send(SCANNER, 5060, 10, Duration::ZERO);
    lab.send(OTHER, 5060, 3, Duration::ZERO);
    assert_eq!(rx.wait_for(PROVIDER, 5, Duration::from_secs(2)), 5);

    let out = Lab::read_all(&mut json);
    assert!(json.wait().unwrap().success());
    let evs = json_lines(&out);
    assert_eq!(evs.len(), 2, "{out}");
    let scan = evs.iter().find(|e| e["src"] == SCANNER).unwrap_or_else(|| panic!("no event for the scanner: {out}"));
    assert_eq!(scan["reason"], "untrusted");
    assert_eq!(scan["action"], "drop");
    assert_eq!(scan["dport"], 5060);
    assert_eq!(scan["protocol"], "udp");
    assert_eq!(scan["interface"], lab.r_if.as_str());
    let blk = evs.iter().find(|e| e["src"] == OTHER).unwrap_or_else(|| panic!("no event for the blocked source: {out}"));
    assert_eq!(blk["reason"], "blocked");
    let t = Lab::read_all(&mut text);
    assert!(t.contains("drop untrusted udp 10.99.0.2:") && t.contains("-> 10.99.0.1:5060"), "{t}");

    // The daemon logs them readably, and sampling held the rest back.
    lab.wait_log("drop blocked udp 10.99.0.4", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(1100));
    lab.send(SCANNER, 5060, 1, Duration::ZERO);
    lab.wait_log("(+9 suppressed)", Duration::from_secs(2));

    // Every drop is accounted for: sent, suppressed or lost.
    let m = lab.cli_ok(&["stats", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&m).unwrap();
    let drops = s["dropped"].as_u64().unwrap();
    assert_eq!(drops, 14, "{m}");
    let (sent, supp, lost) = ops_stats(&lab);
    assert_eq!(sent + supp + lost, drops, "sent {sent} suppressed {supp} lost {lost}");
    assert_eq!(lost, 0);
}

fn ops_stats(lab: &Lab) -> (u64, u64, u64) {
    let dir = lab.pin_dir();
    let m = sipguard::ops::read_stats(&sipguard::ops::stats_pinned(&dir).unwrap()).unwrap();
    (m.events_sent, m.events_suppressed, m.events_lost)
}

#[test]
fn bans_after_n_drops_expire_after_the_ttl_and_obey_the_cli() {
    if !require_root("bans_after_n_drops_expire_after_the_ttl_and_obey_the_cli") {
        return;
    }
    let mut lab = Lab::new("ban");
    lab.write_config(&format!(
        "policy: drop\ntrusted: [{PROVIDER}]\nbans:\n  enabled: true\n  threshold: 5\n  window: 10s\n  ttl: 2s\n"
    ));
    lab.start();
    lab.send(SCANNER, 5060, 5, MS);
    let bans: serde_json::Value = serde_json::from_str(&lab.cli_ok(&["bans", "--json"])).unwrap();
    let b = bans.as_array().unwrap();
    assert_eq!(b.len(), 1, "{bans}");
    assert_eq!(b[0]["source"], SCANNER);
    assert_eq!(b[0]["origin"], "auto");
    assert!(b[0]["remaining_secs"].as_u64().unwrap() <= 2);
    lab.send(SCANNER, 5060, 3, MS);
    assert_eq!(reason_packets(&stats(&lab), "banned"), 3);
    assert_eq!(reason_packets(&stats(&lab), "untrusted"), 5);

    // Manual bans, even of a trusted source, and unban.
    let rx = lab.receiver(5060);
    lab.cli_ok(&["ban", PROVIDER, "--for", "1h"]);
    lab.cli_ok(&["ban", OTHER]);
    let t = lab.cli_ok(&["bans"]);
    assert!(t.contains(PROVIDER) && t.contains("manual") && t.contains("forever") && t.contains("3 active"), "{t}");
    lab.send(PROVIDER, 5060, 2, MS);
    lab.cli_ok(&["unban", PROVIDER]);
    lab.send(PROVIDER, 5060, 2, MS);
    assert_eq!(rx.wait_for(PROVIDER, 2, Duration::from_secs(2)), 2, "only the packets after unban arrive");
    assert_eq!(reason_packets(&stats(&lab), "banned"), 5);
    let o = lab.cli(&["unban", PROVIDER]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not banned"));

    // The automatic ban ends by itself after its TTL.
    std::thread::sleep(Duration::from_millis(2100));
    let bans: serde_json::Value = serde_json::from_str(&lab.cli_ok(&["bans", "--json"])).unwrap();
    assert_eq!(bans.as_array().unwrap().len(), 1, "only the manual ban of {OTHER} is left: {bans}");
    lab.send(SCANNER, 5060, 1, MS);
    let s = stats(&lab);
    assert_eq!(reason_packets(&s, "banned"), 5, "no ban after the TTL");
    assert_eq!(reason_packets(&s, "untrusted"), 6);
}

#[test]
fn metrics_are_served_over_http() {
    if !require_root("metrics_are_served_over_http") {
        return;
    }
    let mut lab = Lab::new("met");
    lab.write_config(&format!("policy: drop\ntrusted: [{PROVIDER}]\nmetrics:\n  listen: 127.0.0.1:9560\n"));
    lab.start();
    lab.send(SCANNER, 5060, 4, MS);
    lab.send(PROVIDER, 5060, 2, MS);
    lab.cli_ok(&["ban", OTHER2, "--for", "10m"]);
    let body = lab.router.run(|| {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9560").unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let r_if = &lab.r_if;
    for want in [
        format!("sipguard_packets_total{{interface=\"{r_if}\",reason=\"untrusted\",action=\"drop\"}} 4"),
        format!("sipguard_packets_total{{interface=\"{r_if}\",reason=\"trusted\",action=\"pass\"}} 2"),
        "sipguard_active_bans 1".to_string(),
        "sipguard_events_lost_total 0".to_string(),
        "sipguard_events_suppressed_total 3".to_string(),
        "sipguard_build_info{version=".to_string(),
    ] {
        assert!(body.contains(&want), "missing {want}:\n{body}");
    }
}
