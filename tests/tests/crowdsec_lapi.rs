//! The CrowdSec client against Debian's real Local API (offline, on
//! loopback, started and stopped by the test): the decision stream as 1.4.x
//! sends it, a refused key, the API going away and coming back, and
//! sipguard's bans pushed as alerts that another bouncer then pulls.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use ipnet::IpNet;
use sipguard::policy::config::Dur;
use sipguard::policy::sources::crowdsec::{
    bouncer::Bouncer,
    config::{read_secret, CrowdsecConfig, MachineConfig},
    decisions::{Changes, Skip},
    lapi::LapiError,
    signals::{self, BanSignal},
    SCENARIO,
};
use sipguard_tests::crowdsec::{free_loopback_port, LocalApi};

fn now_ns() -> u64 {
    sipguard::kernel::stateful::boot_ns()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn lapi() -> LocalApi {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_loopback_port())
        .parse()
        .unwrap();
    LocalApi::start(listen, None).unwrap()
}

fn config(api: &LocalApi, key_file: std::path::PathBuf, interval: u64) -> CrowdsecConfig {
    CrowdsecConfig {
        url: api.url(),
        api_key_file: key_file,
        interval: Dur(Duration::from_secs(interval)),
        origins: None,
        machine: None,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn nets(v: &[IpNet]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

fn upserted(c: &Changes) -> Vec<String> {
    let v: Vec<IpNet> = c.upsert.iter().map(|b| b.net).collect();
    nets(&v)
}

#[test]
fn decision_stream_from_a_real_local_api() {
    let api = lapi();
    let (_, key_file) = api.add_bouncer("sipguard-a").unwrap();
    let cfg = config(&api, key_file, 10);
    let key = cfg.api_key().unwrap();
    let mut b = Bouncer::new(&cfg, key).unwrap();
    let rt = runtime();

    // Nothing yet: 1.4 sends `null` for both lists.
    let ch = rt.block_on(b.pull(now_ns)).unwrap();
    assert!(ch.is_empty());

    api.add_decision("192.0.2.7", "1h", "ban").unwrap();
    api.add_decision("192.0.2.7", "3h", "ban").unwrap();
    api.add_decision("198.51.100.0/24", "1h", "ban").unwrap();
    api.add_decision("2001:db8:7:1::/64", "1h", "ban").unwrap();
    api.add_decision("2001:db8::99", "1h", "ban").unwrap();
    api.add_decision("203.0.113.5", "1h", "captcha").unwrap();
    api.add_decision("192.0.2.8", "3s", "ban").unwrap();
    let ch = rt.block_on(b.pull(now_ns)).unwrap();
    assert_eq!(
        upserted(&ch),
        vec![
            "192.0.2.7/32",
            "192.0.2.8/32",
            "198.51.100.0/24",
            "2001:db8:7:1::/64",
            "2001:db8::99/128",
        ]
    );
    let host = ch
        .upsert
        .iter()
        .find(|x| x.net == net("192.0.2.7/32"))
        .unwrap();
    let left = host.until_ns.saturating_sub(now_ns());
    assert!(
        left > 2 * 3600 * 1_000_000_000,
        "the 3h decision wins over the 1h one ({left} ns left)"
    );
    assert_eq!(host.origin, "cscli");
    assert_eq!(b.set.skipped.get(&Skip::Type("captcha".into())), Some(&1));
    assert_eq!(b.set.by_origin().get("cscli"), Some(&5));

    // Deleted: both 192.0.2.7 decisions end, the prefix goes.
    api.delete_decision("192.0.2.7").unwrap();
    api.delete_decision("2001:db8:7:1::/64").unwrap();
    let ch = rt.block_on(b.pull(now_ns)).unwrap();
    assert_eq!(nets(&ch.remove), vec!["192.0.2.7/32", "2001:db8:7:1::/64"]);
    assert!(ch.upsert.is_empty());

    // The 3 s decision ends by itself (the host set drops it on its end).
    std::thread::sleep(Duration::from_secs(4));
    let ch = rt.block_on(b.pull(now_ns)).unwrap();
    assert_eq!(nets(&ch.remove), vec!["192.0.2.8/32"]);
    assert_eq!(b.set.len(), 2);
}

#[test]
fn a_refused_key_names_the_url_and_the_403() {
    let api = lapi();
    let dir = api.dir().to_path_buf();
    let key_file = dir.join("wrong.key");
    std::fs::write(&key_file, "0123456789abcdef\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = config(&api, key_file, 10);
    let mut b = Bouncer::new(&cfg, cfg.api_key().unwrap()).unwrap();
    let e = runtime().block_on(b.pull(now_ns)).unwrap_err();
    assert!(matches!(e, LapiError::Refused { status: 403, .. }), "{e}");
    assert!(!e.is_transient());
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{}/v1/decisions/stream", api.url())) && msg.contains("403"),
        "{msg}"
    );
}

#[test]
fn api_away_keeps_what_is_applied_and_resyncs_when_back() {
    let mut api = lapi();
    let (_, key_file) = api.add_bouncer("sipguard-a").unwrap();
    let cfg = config(&api, key_file, 10);
    let mut b = Bouncer::new(&cfg, cfg.api_key().unwrap()).unwrap();
    let rt = runtime();
    api.add_decision("192.0.2.10", "1h", "ban").unwrap();
    api.add_decision("192.0.2.11", "1h", "ban").unwrap();
    rt.block_on(b.pull(now_ns)).unwrap();
    assert_eq!(b.set.len(), 2);

    api.stop();
    let e = rt.block_on(b.pull(now_ns)).unwrap_err();
    assert!(matches!(e, LapiError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&api.url()), "{e}");
    assert_eq!(b.next_wait(), Duration::from_secs(1));
    assert!(rt.block_on(b.pull(now_ns)).is_err());
    assert_eq!(b.next_wait(), Duration::from_secs(2), "backs off");
    assert_eq!(b.set.len(), 2, "what is applied stays");

    // Back, with one decision deleted and one added meanwhile: the first
    // pull after the gap asks for everything and settles both.
    api.run().unwrap();
    api.delete_decision("192.0.2.10").unwrap();
    api.add_decision("192.0.2.12", "1h", "ban").unwrap();
    let ch = rt.block_on(b.pull(now_ns)).unwrap();
    assert_eq!(upserted(&ch), vec!["192.0.2.12/32"]);
    assert_eq!(nets(&ch.remove), vec!["192.0.2.10/32"]);
    assert_eq!(b.next_wait(), Duration::from_secs(10));
    let ch = rt.block_on(b.pull(now_ns)).unwrap();
    assert!(ch.is_empty(), "nothing stuck, nothing repeated: {ch:?}");
}

#[test]
fn bans_pushed_as_alerts_reach_another_bouncer() {
    let api = lapi();
    let password_file = api.add_machine("router-a", "router-a-password").unwrap();
    let (_, key_file) = api.add_bouncer("router-b").unwrap();
    let machine = MachineConfig {
        id: "router-a".into(),
        password_file,
    };
    // The sender runs on its own worker, as in the daemon.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (queue, rx) = signals::queue();
    let password = read_secret(&machine.password_file, "crowdsec.machine.password_file").unwrap();
    let client =
        sipguard::policy::sources::crowdsec::lapi::Lapi::new(&api.url(), Duration::from_secs(5))
            .unwrap();
    let sender = rt.spawn(signals::run(
        client,
        machine.id.clone(),
        password,
        rx,
        queue.counters.clone(),
    ));
    for (src, reason) in [
        ("192.0.2.66/32", "user_agent"),
        ("2001:db8:66::/64", "sipvicious"),
    ] {
        queue.offer(BanSignal {
            source: net(src),
            reason: reason.into(),
            duration: Duration::from_secs(600),
            at: sipguard::serve::events::rfc3339(
                SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64,
            ),
        });
    }
    let cfg = config(&api, key_file, 10);
    let mut b = Bouncer::new(&cfg, cfg.api_key().unwrap()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline && seen.len() < 2 {
        std::thread::sleep(Duration::from_millis(300));
        let ch = rt.block_on(b.pull(now_ns)).unwrap();
        seen.extend(ch.upsert);
    }
    let got: Vec<IpNet> = seen.iter().map(|x| x.net).collect();
    assert_eq!(
        nets(&got),
        vec!["192.0.2.66/32", "2001:db8:66::/64"],
        "{}",
        api.logs()
    );
    for d in &seen {
        assert_eq!(d.origin, "crowdsec");
        let left = d.until_ns.saturating_sub(now_ns()) / 1_000_000_000;
        assert!(
            (580..=600).contains(&left),
            "the ban's duration is the decision's: {left}s"
        );
    }
    let listed = api.decisions_json().unwrap().to_string();
    assert!(
        listed.contains(SCENARIO) && listed.contains("router-a"),
        "{listed}"
    );
    // The API stores the alerts before its answer reaches the sender.
    let sent = || {
        queue
            .counters
            .sent
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sent() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sent(), 2);
    assert_eq!(
        queue
            .counters
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(queue);
    rt.block_on(sender).unwrap();
}
