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
    stats["reasons"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["reason"] == reason))
        .and_then(|r| r["packets"].as_u64())
        .unwrap_or(0)
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
