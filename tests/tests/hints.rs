//! The lookup hints on the real object: the kernel skips a source list
//! when `Settings` (IPv4 /16 bitmaps, IPv6 flags, written with the lists)
//! or the sticky `HINTS` bits (bans, learned registrars) say it would miss.
//! A skipped lookup must never change a verdict: every reload below is
//! checked against the host's `Policy::evaluate`, which has no hints.
//! Needs root.

use std::net::IpAddr;

use sipguard::{
    kernel::testrun::Sandbox,
    policy::{config::Config, Policy},
};
use sipguard_common::Reason::{self, *};
use sipguard_tests::{
    frames::{ip6, v4, v6},
    require_root, sip,
};

const PBX4: [u8; 4] = [100, 64, 0, 1];

fn policy(yaml: &str) -> Policy {
    Policy::from_config(&Config::parse(yaml, "hints test").unwrap())
}

fn invite4(src: [u8; 4]) -> Vec<u8> {
    v4(src, PBX4)
        .udp(40000, 5060)
        .payload(sip::invite("a", "b", "h", "x"))
        .build()
}

fn invite6(src: &str) -> Vec<u8> {
    v6(ip6(src), ip6("2001:db8:f::1"))
        .udp(40000, 5060)
        .payload(sip::invite("a", "b", "h", "x"))
        .build()
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("blocked /24 member", invite4([203, 0, 113, 9])),
        ("same /16, outside the /24", invite4([203, 0, 7, 1])),
        ("inside a blocked /8", invite4([10, 200, 1, 1])),
        ("just outside the /8", invite4([11, 0, 0, 1])),
        ("trusted /32", invite4([192, 0, 2, 10])),
        ("trusted /32's neighbour", invite4([192, 0, 2, 11])),
        ("inside a trusted /12", invite4([172, 20, 1, 1])),
        ("blocked v6 /48", invite6("2001:db8:bad::7")),
        ("trusted v6 /32", invite6("2001:db8:1::7")),
        ("other v6", invite6("2001:db9::1")),
    ]
}

/// Kernel and host agree on every frame; returns the kernel's reasons.
/// A sandbox under `policy: drop` and nothing else; `None` (the test
/// skips) without root.
fn plain_drop_sandbox(test: &str) -> Option<Sandbox> {
    if !require_root(test) {
        return None;
    }
    Some(Sandbox::new(&policy("policy: drop\n")).unwrap())
}

fn check(sb: &mut Sandbox, p: &Policy, what: &str) -> Vec<Reason> {
    frames()
        .into_iter()
        .map(|(name, f)| {
            let k = sb.run(&f).unwrap().reason;
            assert_eq!(k, p.evaluate(&f).reason, "{what}: {name}");
            k
        })
        .collect()
}

#[test]
fn reloads_that_fill_and_empty_the_lists_keep_the_verdict() {
    if !require_root("reloads_that_fill_and_empty_the_lists_keep_the_verdict") {
        return;
    }
    let full = policy(
        "policy: drop\n\
         trusted: [192.0.2.10, 172.16.0.0/12, \"2001:db8:1::/48\"]\n\
         blocked: [203.0.113.0/24, 10.0.0.0/8, \"2001:db8:bad::/48\"]\n",
    );
    let empty = policy("policy: drop\n");
    let moved = policy(
        "policy: drop\n\
         trusted: [192.0.2.11]\n\
         blocked: [203.0.7.0/24, 11.0.0.0/8]\n",
    );
    let mut sb = Sandbox::new(&empty).unwrap();
    let r = check(&mut sb, &empty, "empty");
    assert!(r.iter().all(|r| *r == DropUntrusted), "{r:?}");
    // Applies `p` as a reload does and checks every frame after it.
    let reload = |sb: &mut Sandbox, p: &Policy, what: &str| {
        sb.apply(p).unwrap();
        check(sb, p, what)
    };
    let r = reload(&mut sb, &full, "filled");
    assert_eq!(
        r,
        [
            DropBlocked,
            DropUntrusted,
            DropBlocked,
            DropUntrusted,
            PassTrusted,
            DropUntrusted,
            PassTrusted,
            DropBlocked,
            PassTrusted,
            DropUntrusted
        ]
    );
    reload(&mut sb, &empty, "emptied again");
    let r = reload(&mut sb, &moved, "moved to neighbours");
    assert_eq!(
        &r[..6],
        [
            DropUntrusted,
            DropBlocked,
            DropUntrusted,
            DropBlocked,
            DropUntrusted,
            PassTrusted
        ]
    );
    reload(&mut sb, &full, "back to full");
}

#[test]
fn entries_added_without_a_policy_are_never_skipped() {
    let Some(mut sb) = plain_drop_sandbox("entries_added_without_a_policy_are_never_skipped")
    else {
        return;
    };
    let f = invite4([198, 18, 0, 5]);
    assert_eq!(sb.run(&f).unwrap().reason, DropUntrusted);
    // The benchmark's (and large lists') path: straight into the trie.
    sb.maps_mut()
        .insert_blocked_v4([(32, [198, 18, 0, 5]), (24, [198, 19, 3, 0])])
        .unwrap();
    assert_eq!(sb.run(&f).unwrap().reason, DropBlocked);
    assert_eq!(
        sb.run(&invite4([198, 19, 3, 200])).unwrap().reason,
        DropBlocked
    );
    assert_eq!(
        sb.run(&invite4([198, 18, 0, 6])).unwrap().reason,
        DropUntrusted
    );
}

#[test]
fn manual_bans_and_learned_registrars_work_with_their_features_off() {
    // A fresh sandbox: no automatic bans, no learning, nothing in either
    // map yet, so the filter skips both lookups until an entry appears.
    let Some(mut sb) =
        plain_drop_sandbox("manual_bans_and_learned_registrars_work_with_their_features_off")
    else {
        return;
    };
    let a = invite4([198, 51, 100, 66]);
    let b = invite6("2001:db8:77::1");
    assert_eq!(sb.run(&a).unwrap().reason, DropUntrusted);
    assert_eq!(sb.run(&b).unwrap().reason, DropUntrusted);
    sb.ban(IpAddr::from([198, 51, 100, 66])).unwrap();
    assert_eq!(sb.run(&a).unwrap().reason, DropBanned);
    assert_eq!(sb.run(&b).unwrap().reason, DropUntrusted);
    sb.ban("2001:db8:77::9".parse().unwrap()).unwrap();
    assert_eq!(sb.run(&b).unwrap().reason, DropBanned, "same /64");

    let c = invite4([198, 51, 100, 67]);
    assert_eq!(sb.run(&c).unwrap().reason, DropUntrusted);
    let far = sipguard::kernel::stateful::boot_ns() + 3_600_000_000_000;
    sb.set_learned(IpAddr::from([198, 51, 100, 67]), far)
        .unwrap();
    assert_eq!(sb.run(&c).unwrap().reason, PassLearned);
}

/// Short IPv4 lists (up to `SMALL_V4` entries) are matched from `Settings`
/// without the tries; longer ones go to the tries. Crossing the limit both
/// ways in reloads, and a direct insert into a short list, keep every
/// verdict equal to the host's.
#[test]
fn short_and_long_lists_switch_between_settings_and_tries() {
    if !require_root("short_and_long_lists_switch_between_settings_and_tries") {
        return;
    }
    let list = |n: usize| -> String {
        let mut v = vec!["192.0.2.10".to_string(), "172.16.0.0/12".to_string()];
        v.extend((0..n.saturating_sub(2)).map(|i| format!("198.18.{i}.0/24")));
        v.join(", ")
    };
    let small = sipguard_common::SMALL_V4;
    let with = |t: usize, b: usize| {
        policy(&format!(
            "policy: drop\ntrusted: [{}]\nblocked: [203.0.113.0/24, 10.0.0.0/8{}]\n",
            list(t),
            (0..b.saturating_sub(2))
                .map(|i| format!(", 198.19.{i}.1"))
                .collect::<String>()
        ))
    };
    let mut sb = Sandbox::new(&with(small, small)).unwrap();
    for (t, b) in [
        (small, small),
        (small + 1, small),
        (small, small + 1),
        (small + 20, small + 20),
        (2, 2),
        (small + 1, small + 1),
        (small, small),
    ] {
        let p = with(t, b);
        sb.apply(&p).unwrap();
        let r = check(&mut sb, &p, &format!("{t} trusted, {b} blocked entries"));
        assert_eq!(r[0], DropBlocked, "{t}/{b}");
        assert_eq!(r[4], PassTrusted, "{t}/{b}");
        assert_eq!(r[6], PassTrusted, "{t}/{b}");
        let last = v4([198, 18, (t.max(3) - 3) as u8, 77], PBX4)
            .udp(40000, 5060)
            .payload(sip::invite("a", "b", "h", "x"))
            .build();
        let k = sb.run(&last).unwrap().reason;
        assert_eq!(k, p.evaluate(&last).reason, "{t}/{b}: last trusted entry");
        assert_eq!(
            k,
            if t > 2 { PassTrusted } else { DropUntrusted },
            "{t}/{b}"
        );
    }
    // A direct insert next to a short list: the trie decides from then on.
    let p = with(2, 2);
    sb.apply(&p).unwrap();
    sb.maps_mut()
        .insert_blocked_v4([(32, [192, 0, 2, 99])])
        .unwrap();
    let f = invite4([192, 0, 2, 99]);
    assert_eq!(sb.run(&f).unwrap().reason, DropBlocked);
}

/// (entries of BLOCKED_V4, BLOCKED_V4_HOSTS, BLOCKED_V6, BLOCKED_V6_HOSTS)
/// and the blocklist map flags of `SETTINGS`.
fn blocklist_maps(sb: &mut Sandbox) -> ([usize; 4], u32) {
    use sipguard_common::{
        FLAG_BLOCKED_V4, FLAG_BLOCKED_V4_HOSTS, FLAG_BLOCKED_V6, FLAG_BLOCKED_V6_HOSTS,
    };
    let m = sb.maps_mut();
    let hosts = m
        .blocked_hosts
        .as_ref()
        .expect("this build has host hashes");
    let counts = [
        m.blocked_v4.keys().count(),
        hosts.v4.keys().count(),
        m.blocked_v6.keys().count(),
        hosts.v6.keys().count(),
    ];
    let flags = m.settings.get(&0, 0).unwrap().flags
        & (FLAG_BLOCKED_V4 | FLAG_BLOCKED_V4_HOSTS | FLAG_BLOCKED_V6 | FLAG_BLOCKED_V6_HOSTS);
    (counts, flags)
}

#[test]
fn host_entries_live_in_the_hashes_across_reloads() {
    use sipguard_common::{
        FLAG_BLOCKED_V4, FLAG_BLOCKED_V4_HOSTS, FLAG_BLOCKED_V6, FLAG_BLOCKED_V6_HOSTS,
    };
    if !require_root("host_entries_live_in_the_hashes_across_reloads") {
        return;
    }
    // Nine hosts: more than the short copy in SETTINGS holds, so the maps
    // answer.
    let hosts: String = (1..=9).map(|i| format!(", 203.0.113.{i}")).collect();
    let mixed = policy(&format!(
        "policy: drop\nblocked: [10.0.0.0/8, \"2001:db8:bad::7\", \"2001:db8:bad::/48\"{hosts}]\n"
    ));
    let nets_only = policy("policy: drop\nblocked: [10.0.0.0/8, 203.0.113.0/24]\n");
    let hosts_only = policy(&format!(
        "policy: drop\nblocked: [\"2001:db8:bad::7\"{hosts}]\n"
    ));
    let mut sb = Sandbox::new(&mixed).unwrap();
    let host = invite4([203, 0, 113, 9]);
    let beside = invite4([203, 0, 113, 10]);
    let v6_host = invite6("2001:db8:bad::7");
    let run = |sb: &mut Sandbox, p: &Policy, f: &[u8]| {
        let k = sb.run(f).unwrap().reason;
        assert_eq!(k, p.evaluate(f).reason);
        k
    };
    assert_eq!(
        blocklist_maps(&mut sb),
        (
            [1, 9, 1, 1],
            FLAG_BLOCKED_V4 | FLAG_BLOCKED_V4_HOSTS | FLAG_BLOCKED_V6 | FLAG_BLOCKED_V6_HOSTS
        )
    );
    assert_eq!(run(&mut sb, &mixed, &host), DropBlocked);
    assert_eq!(run(&mut sb, &mixed, &beside), DropUntrusted);
    assert_eq!(run(&mut sb, &mixed, &v6_host), DropBlocked);
    check(&mut sb, &mixed, "mixed");

    sb.apply(&nets_only).unwrap();
    assert_eq!(blocklist_maps(&mut sb), ([2, 0, 0, 0], FLAG_BLOCKED_V4));
    assert_eq!(run(&mut sb, &nets_only, &beside), DropBlocked);
    assert_eq!(run(&mut sb, &nets_only, &v6_host), DropUntrusted);
    check(&mut sb, &nets_only, "nets only");

    sb.apply(&hosts_only).unwrap();
    assert_eq!(
        blocklist_maps(&mut sb),
        ([0, 9, 0, 1], FLAG_BLOCKED_V4_HOSTS | FLAG_BLOCKED_V6_HOSTS)
    );
    assert_eq!(run(&mut sb, &hosts_only, &host), DropBlocked);
    assert_eq!(run(&mut sb, &hosts_only, &beside), DropUntrusted);
    assert_eq!(run(&mut sb, &hosts_only, &v6_host), DropBlocked);
    check(&mut sb, &hosts_only, "hosts only");
}
