//! The kernel's stateful features on the real object through
//! BPF_PROG_TEST_RUN: automatic bans (threshold, IPv6 /64 grouping, expiry
//! without any daemon), fragment tracking and event sampling. These verdicts
//! depend on earlier packets, so they are not compared with the host's
//! stateless `Policy::evaluate` (which has no bans and passes every later
//! fragment; the fixture table runs with these features off). Needs root.

use std::time::Duration;

use sipguard::{
    kernel::testrun::Sandbox,
    policy::{config::Config, Policy},
    serve::events,
};
use sipguard_common::{
    abi::{self, OpsSettings, OPS_AUTO_BAN, OPS_EVENTS, OPS_FRAGS},
    Reason::{self, *},
};
use sipguard_tests::{
    frames::{ip6, v4, v6},
    require_root, sip,
};

const OTHER4: [u8; 4] = [198, 51, 100, 7];
const OTHER4B: [u8; 4] = [198, 51, 100, 8];
const TRUSTED4: [u8; 4] = [192, 0, 2, 10];
const PBX4: [u8; 4] = [100, 64, 0, 1];

/// A sandbox of the allowlist policy with `ops` on; `None` (the test
/// skips) without root.
fn sandbox(test: &str, ops: OpsSettings) -> Option<Sandbox> {
    if !require_root(test) {
        return None;
    }
    let cfg = Config::parse("policy: drop\ntrusted: [192.0.2.10]\n", "t").unwrap();
    let mut sb = Sandbox::new(&Policy::from_config(&cfg)).expect("loading the program");
    sb.set_ops(ops).unwrap();
    Some(sb)
}

/// A sandbox with drop events on, one per source per `interval_ns`, and
/// its ring buffer.
fn events_sandbox(
    test: &str,
    interval_ns: u64,
) -> Option<(Sandbox, aya::maps::RingBuf<aya::maps::MapData>)> {
    let mut sb = sandbox(
        test,
        OpsSettings {
            flags: OPS_EVENTS,
            event_interval_ns: interval_ns,
            ..Default::default()
        },
    )?;
    let ring = sb.take_events().unwrap();
    Some((sb, ring))
}

fn reason(sb: &mut Sandbox, f: &[u8]) -> Reason {
    sb.run(f).unwrap().reason
}

fn invite4(src: [u8; 4]) -> Vec<u8> {
    v4(src, PBX4)
        .udp(40000, 5060)
        .payload(sip::invite("a", "b", "h", "x"))
        .build()
}

#[test]
fn bans_after_threshold_group_v6_by_64_and_expire_alone() {
    let Some(mut sb) = sandbox(
        "bans_after_threshold_group_v6_by_64_and_expire_alone",
        OpsSettings {
            flags: OPS_AUTO_BAN,
            ban_threshold: 3,
            ban_window_ns: 10_000_000_000,
            ban_ttl_ns: 400_000_000,
            ban_v6_prefix: 64,
            ..Default::default()
        },
    ) else {
        return;
    };
    for _ in 0..3 {
        assert_eq!(reason(&mut sb, &invite4(OTHER4)), DropUntrusted);
    }
    assert_eq!(
        reason(&mut sb, &invite4(OTHER4)),
        DropBanned,
        "banned after 3 drops"
    );
    assert_eq!(
        reason(&mut sb, &invite4(OTHER4B)),
        DropUntrusted,
        "a neighbour is not banned"
    );
    assert_eq!(reason(&mut sb, &invite4(TRUSTED4)), PassTrusted);
    // A non-SIP port stays untouched even for a banned source.
    assert_eq!(
        reason(&mut sb, &v4(OTHER4, PBX4).udp(40000, 53).build()),
        PassNotSipPort
    );
    assert_eq!(sb.ops_stat(abi::STAT_BANS_CREATED).unwrap(), 1);

    let f6 = |a: &str| {
        v6(ip6(a), ip6("2001:db8:f::1"))
            .udp(40000, 5060)
            .payload(b"OPTIONS x")
            .build()
    };
    for _ in 0..3 {
        assert_eq!(reason(&mut sb, &f6("2001:db8:5:6::1")), DropUntrusted);
    }
    assert_eq!(
        reason(&mut sb, &f6("2001:db8:5:6::ffff")),
        DropBanned,
        "same /64"
    );
    assert_eq!(
        reason(&mut sb, &f6("2001:db8:5:7::1")),
        DropUntrusted,
        "other /64"
    );

    // Expiry is the kernel comparing times: no daemon involved.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        reason(&mut sb, &invite4(OTHER4)),
        DropUntrusted,
        "ban expired"
    );
    assert_eq!(
        reason(&mut sb, &f6("2001:db8:5:6::1")),
        DropUntrusted,
        "v6 ban expired"
    );
}

#[test]
fn bans_off_means_no_bans() {
    let Some(mut sb) = sandbox(
        "bans_off_means_no_bans",
        OpsSettings {
            flags: OPS_EVENTS,
            ban_threshold: 1,
            ban_window_ns: u64::MAX,
            ban_ttl_ns: u64::MAX,
            ..Default::default()
        },
    ) else {
        return;
    };
    for _ in 0..5 {
        assert_eq!(reason(&mut sb, &invite4(OTHER4)), DropUntrusted);
    }
}

#[test]
fn later_fragments_of_dropped_datagrams_are_dropped() {
    let Some(mut sb) = sandbox(
        "later_fragments_of_dropped_datagrams_are_dropped",
        OpsSettings {
            flags: OPS_FRAGS,
            ..Default::default()
        },
    ) else {
        return;
    };
    let f4 = |src, id, frag| {
        v4(src, PBX4)
            .udp(40000, 5060)
            .payload(b"INVITE sip:x SIP/2.0\r\n")
            .ip_id(id)
            .frag(frag)
            .build()
    };
    assert_eq!(
        reason(&mut sb, &f4(OTHER4, 77, 0x2000)),
        DropUntrusted,
        "first fragment"
    );
    assert_eq!(
        reason(&mut sb, &f4(OTHER4, 77, 0x2000 | 185)),
        DropFragment,
        "middle fragment"
    );
    assert_eq!(
        reason(&mut sb, &f4(OTHER4, 77, 370)),
        DropFragment,
        "last fragment"
    );
    assert_eq!(
        reason(&mut sb, &f4(OTHER4, 78, 185)),
        PassFragment,
        "other datagram"
    );
    assert_eq!(reason(&mut sb, &f4(TRUSTED4, 79, 0x2000)), PassTrusted);
    assert_eq!(
        reason(&mut sb, &f4(TRUSTED4, 79, 185)),
        PassFragment,
        "trusted datagram's rest passes"
    );
    // Same id from another source is another datagram.
    assert_eq!(reason(&mut sb, &f4(OTHER4B, 77, 185)), PassFragment);

    let o6 = ip6("2001:db8:99::7");
    let f6 = |body: Vec<u8>| {
        v6(o6, ip6("2001:db8:f::1"))
            .udp(40000, 5060)
            .payload(b"x")
            .ext(44, body)
            .build()
    };
    assert_eq!(reason(&mut sb, &f6(vec![0, 1, 0, 0, 0, 9])), DropUntrusted);
    assert_eq!(
        reason(&mut sb, &f6(vec![0x05, 0x01, 0, 0, 0, 9])),
        DropFragment
    );
    assert_eq!(
        reason(&mut sb, &f6(vec![0x05, 0x00, 0, 0, 0, 10])),
        PassFragment
    );

    // With tracking off every later fragment passes.
    sb.set_ops(OpsSettings::default()).unwrap();
    assert_eq!(reason(&mut sb, &f4(OTHER4, 77, 185)), PassFragment);
}

#[test]
fn events_are_sampled_per_source_and_carry_the_suppressed_count() {
    let Some((mut sb, mut ring)) = events_sandbox(
        "events_are_sampled_per_source_and_carry_the_suppressed_count",
        300_000_000,
    ) else {
        return;
    };
    for _ in 0..5 {
        reason(&mut sb, &invite4(OTHER4));
    }
    reason(&mut sb, &invite4(OTHER4B));
    reason(&mut sb, &invite4(TRUSTED4)); // a pass: no event
    let got = drain(&mut ring);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].src, "198.51.100.7");
    assert_eq!(got[0].reason, "untrusted");
    assert_eq!(got[0].action, "drop");
    assert_eq!(
        (got[0].sport, got[0].dport, got[0].protocol.as_str()),
        (40000, 5060, "udp")
    );
    assert_eq!(got[1].src, "198.51.100.8");
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_SUPPRESSED).unwrap(), 4);
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_SENT).unwrap(), 2);
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_LOST).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(350));
    reason(&mut sb, &invite4(OTHER4));
    let item = ring.next().expect("an event after the interval");
    let ev = events::Event::from_raw(&events::decode(&item).unwrap());
    assert_eq!(
        ev.suppressed, 4,
        "carries the count suppressed since the last event"
    );
    // Event time is wall time, close to now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        now.abs_diff(ev.time_unix_ns) < 5_000_000_000,
        "{} vs {now}",
        ev.time_unix_ns
    );
}

#[test]
fn inspected_drops_carry_method_and_user_agent_in_events() {
    if !require_root("inspected_drops_carry_method_and_user_agent_in_events") {
        return;
    }
    let cfg = Config::parse("policy: inspect\ntrusted: [192.0.2.10]\n", "t").unwrap();
    let mut sb = Sandbox::new(&Policy::from_config(&cfg)).expect("loading the program");
    sb.set_ops(OpsSettings {
        flags: OPS_EVENTS,
        event_interval_ns: 1,
        ..Default::default()
    })
    .unwrap();
    let mut ring = sb.take_events().unwrap();
    let scanner = v4(OTHER4, PBX4)
        .udp(5060, 5060)
        .payload(sip::svmap_options())
        .build();
    assert_eq!(reason(&mut sb, &scanner), DropUserAgent);
    let phone = v4(OTHER4B, PBX4)
        .udp(5060, 5060)
        .payload(sip::invite("a", "100", "h", "Yealink SIP-T46S"))
        .build();
    assert_eq!(
        reason(&mut sb, &phone),
        PassInspected,
        "a clean INVITE makes no event"
    );
    let ev = {
        let item = ring.next().expect("an event for the scanner");
        events::Event::from_raw(&events::decode(&item).unwrap())
    };
    assert_eq!(ev.reason, "user_agent");
    assert_eq!(ev.method.as_deref(), Some("OPTIONS"));
    assert_eq!(ev.user_agent.as_deref(), Some("friendly-scanner"));
    assert!(ring.next().is_none(), "only the drop makes an event");
}

/// Drains the ring: every event in it, decoded.
fn drain(ring: &mut aya::maps::RingBuf<aya::maps::MapData>) -> Vec<events::Event> {
    let mut got = Vec::new();
    while let Some(item) = ring.next() {
        got.push(events::Event::from_raw(&events::decode(&item).unwrap()));
    }
    got
}

#[test]
fn banned_drops_are_sampled_per_ban_in_its_entry() {
    // An interval no test outlasts: what "later" is comes from rewriting
    // the entry's last event time, not from waiting.
    const INTERVAL_NS: u64 = 60_000_000_000;
    let Some((mut sb, mut ring)) =
        events_sandbox("banned_drops_are_sampled_per_ban_in_its_entry", INTERVAL_NS)
    else {
        return;
    };
    let a = std::net::IpAddr::from(OTHER4);
    sb.ban(a).unwrap();
    sb.ban(std::net::IpAddr::from(OTHER4B)).unwrap();
    sb.ban("2001:db8:66::1".parse().unwrap()).unwrap();
    for _ in 0..5 {
        assert_eq!(reason(&mut sb, &invite4(OTHER4)), DropBanned);
    }
    let got = drain(&mut ring);
    assert_eq!(got.len(), 1, "one event for five banned drops: {got:?}");
    assert_eq!(
        (
            got[0].src.as_str(),
            got[0].reason.as_str(),
            got[0].suppressed
        ),
        ("198.51.100.7", "banned", 0)
    );
    let e = sb.ban_entry(a).unwrap().expect("the ban");
    assert_eq!(e.suppressed, 4, "the four others are held in the ban");
    assert_ne!(e.event_ns, 0);
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_SENT).unwrap(), 1);
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_SUPPRESSED).unwrap(), 4);

    // Another ban gets its own event.
    assert_eq!(reason(&mut sb, &invite4(OTHER4B)), DropBanned);
    assert_eq!(drain(&mut ring).len(), 1);

    // IPv6 bans cover a /64: its sources share the ban's sampling.
    let f6 = |src: &str| {
        v6(ip6(src), ip6("2001:db8:f::1"))
            .udp(40000, 5060)
            .payload(sip::invite("a", "b", "h", "x"))
            .build()
    };
    assert_eq!(reason(&mut sb, &f6("2001:db8:66::1")), DropBanned);
    assert_eq!(reason(&mut sb, &f6("2001:db8:66::2")), DropBanned);
    let got = drain(&mut ring);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].src, "2001:db8:66::1");

    // Its interval over (the last event long ago): the next drop sends the
    // event, carrying the four held back.
    // (Boot times are CLOCK_BOOTTIME: the machine has been up for longer
    // than an interval, or the rewritten time would be in the future.)
    let now = sipguard::kernel::stateful::boot_ns();
    assert!(now > 2 * INTERVAL_NS, "up for only {now} ns");
    let long_ago = now - INTERVAL_NS - 1_000_000_000;
    sb.set_ban(
        a,
        abi::BanEntry {
            event_ns: long_ago,
            ..e
        },
    )
    .unwrap();
    assert_eq!(reason(&mut sb, &invite4(OTHER4)), DropBanned);
    let got = drain(&mut ring);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].reason.as_str(), got[0].suppressed), ("banned", 4));
    assert_eq!(sb.ban_entry(a).unwrap().unwrap().suppressed, 0);
    // Every drop is one of sent, suppressed or lost.
    assert_eq!(
        sb.ops_stat(abi::STAT_EVENTS_SENT).unwrap()
            + sb.ops_stat(abi::STAT_EVENTS_SUPPRESSED).unwrap()
            + sb.ops_stat(abi::STAT_EVENTS_LOST).unwrap(),
        sb.counter(DropBanned, false).unwrap().packets
    );
    assert_eq!(sb.counter(DropBanned, false).unwrap().packets, 9);
}

#[test]
fn events_over_the_per_cpu_budget_are_counted_and_carried_by_their_source() {
    let test = "events_over_the_per_cpu_budget_are_counted_and_carried_by_their_source";
    let Some(mut sb) = sandbox(
        test,
        OpsSettings {
            flags: OPS_EVENTS,
            event_interval_ns: 400_000_000,
            events_per_second: 3,
            ..Default::default()
        },
    ) else {
        return;
    };
    let mut ring = sb.take_events().unwrap();
    // Five sources, one drop each, in one second: three events, two held.
    // BPF_PROG_TEST_RUN runs on the calling thread's CPU; pinned so all five
    // meet one CPU's budget.
    pin_to_one_cpu();
    let sources: Vec<[u8; 4]> = (1..=5).map(|i| [198, 51, 100, 20 + i]).collect();
    for s in &sources {
        assert_eq!(reason(&mut sb, &invite4(*s)), DropUntrusted);
    }
    let got = drain(&mut ring);
    assert_eq!(
        got.iter().map(|e| e.src.as_str()).collect::<Vec<_>>(),
        ["198.51.100.21", "198.51.100.22", "198.51.100.23"]
    );
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_SENT).unwrap(), 3);
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_OVER_BUDGET).unwrap(), 2);
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_SUPPRESSED).unwrap(), 0);
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_LOST).unwrap(), 0);
    // A held source is sampled as if sent: within its interval a drop is
    // suppressed, not retried against the budget.
    reason(&mut sb, &invite4(sources[4]));
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_SUPPRESSED).unwrap(), 1);
    assert!(drain(&mut ring).is_empty());
    // A second later the budget is back; the held source's next event
    // carries its two unreported drops.
    std::thread::sleep(Duration::from_millis(1_050));
    reason(&mut sb, &invite4(sources[4]));
    let got = drain(&mut ring);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].src, "198.51.100.25");
    assert_eq!(
        got[0].suppressed, 2,
        "the held event and the suppressed drop"
    );
    let counted = [
        abi::STAT_EVENTS_SENT,
        abi::STAT_EVENTS_SUPPRESSED,
        abi::STAT_EVENTS_OVER_BUDGET,
        abi::STAT_EVENTS_LOST,
    ]
    .iter()
    .map(|i| sb.ops_stat(*i).unwrap())
    .sum::<u64>();
    assert_eq!(counted, 7, "one count per drop");
}

#[test]
fn no_budget_means_every_due_event_is_sent() {
    let Some((mut sb, mut ring)) =
        events_sandbox("no_budget_means_every_due_event_is_sent", 60_000_000_000)
    else {
        return;
    };
    pin_to_one_cpu();
    for i in 0..300u32 {
        reason(&mut sb, &invite4([198, 18, (i >> 8) as u8, i as u8]));
    }
    assert_eq!(drain(&mut ring).len(), 300);
    assert_eq!(sb.ops_stat(abi::STAT_EVENTS_OVER_BUDGET).unwrap(), 0);
}

/// Pins the calling thread to the first CPU it may run on.
fn pin_to_one_cpu() {
    // SAFETY: plain libc calls on a zeroed cpu_set_t owned here.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|c| libc::CPU_ISSET(*c, &set))
            .expect("a CPU to run on");
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(first, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}
