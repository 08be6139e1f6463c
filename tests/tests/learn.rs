//! Learned registrars: the XDP side with prefilled LEARNED maps and the TC
//! egress learner through BPF_PROG_TEST_RUN (each row also decided by the
//! shared host code), then end to end in namespaces: a phone behind the
//! router registers, its registrar's INVITE passes, and after the TTL it is
//! dropped again. Needs root.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use sipguard::{
    kernel::{stateful::boot_ns, testrun::Sandbox},
    policy::{config::Config, Policy},
};
use sipguard_common::{
    learn::teaching,
    packet::{Flow, Link},
    verdict::{judge_link, Judgement, SourceLists},
    Reason,
};
use sipguard_tests::{
    addresses::{PHONE4, PROVIDER4 as REGISTRAR, SCANNER4},
    fixtures::drops,
    frames::{ip6, v4, v6},
    harness::{
        traffic::{send_from, Datagram},
        Arrivals, Daemon, Listener, Wan,
    },
    require_root, sip,
};

const CONFIG: &str =
    "policy: drop\nsip_ports: [5060]\ntrusted: [192.0.2.10]\nblocked: [203.0.113.0/24]\n";
const PBX4: [u8; 4] = [100, 64, 0, 1];

/// The host's view: the policy's lists plus learned entries with expiry.
struct HostLists<'a> {
    policy: &'a Policy,
    learned: BTreeMap<IpAddr, u64>,
    now: u64,
}

impl SourceLists for HostLists<'_> {
    fn blocked(&self, f: &Flow) -> bool {
        self.policy.blocked(f)
    }
    fn trusted(&self, f: &Flow) -> bool {
        self.policy.trusted(f)
    }
    fn learned(&self, f: &Flow) -> bool {
        let a = if f.ipv6 {
            IpAddr::from(f.src)
        } else {
            IpAddr::from(f.src_v4())
        };
        self.learned.get(&a).is_some_and(|&e| e > self.now)
    }
}

/// CONFIG's policy and a sandbox running it; `None` (skipped) unless root.
fn config_sandbox(test: &str) -> Option<(Policy, Sandbox)> {
    if !require_root(test) {
        return None;
    }
    let policy = Policy::from_config(&Config::parse(CONFIG, "t").unwrap());
    let sb = Sandbox::new(&policy).unwrap();
    Some((policy, sb))
}

#[test]
fn learned_sources_pass_until_expiry() {
    let Some((policy, mut sb)) = config_sandbox("learned_sources_pass_until_expiry") else {
        return;
    };
    let now = boot_ns();
    let min = 60_000_000_000;
    let learned: BTreeMap<IpAddr, u64> = [
        ("198.51.100.7", now + min),
        ("198.51.100.8", now - 1_000_000_000),
        ("2001:db8:77::7", now + min),
        ("203.0.113.5", now + min),
        ("192.0.2.10", now + min),
    ]
    .into_iter()
    .map(|(a, e)| (a.parse().unwrap(), e))
    .collect();
    for (a, e) in &learned {
        sb.set_learned(*a, *e).unwrap();
    }
    let invite = sip::invite("1000", "100", "pbx.example", "Test/1.0");
    // (name, source, PBX port, reason) of an INVITE.
    use Reason::*;
    let mut rows: Vec<(&str, Vec<u8>, Reason)> = [
        ("learned v4", [198, 51, 100, 7], 5060, PassLearned),
        ("expired v4", [198, 51, 100, 8], 5060, DropUntrusted),
        ("never learned", [198, 51, 100, 9], 5060, DropUntrusted),
        ("blocked beats learned", [203, 0, 113, 5], 5060, DropBlocked),
        ("trusted before learned", [192, 0, 2, 10], 5060, PassTrusted),
        (
            "learned, not a SIP port",
            [198, 51, 100, 7],
            80,
            PassNotSipPort,
        ),
    ]
    .into_iter()
    .map(|(name, src, dport, want)| {
        let frame = v4(src, PBX4).udp(5060, dport).payload(&invite).build();
        (name, frame, want)
    })
    .collect();
    rows.push((
        "learned v6",
        v6(ip6("2001:db8:77::7"), ip6("2001:db8:f::1"))
            .udp(5060, 5060)
            .payload(&invite)
            .build(),
        Reason::PassLearned,
    ));
    rows.push((
        "learned over TCP",
        v4([198, 51, 100, 7], PBX4).tcp(5060, 5060).build(),
        Reason::PassLearned,
    ));
    let host = HostLists {
        policy: &policy,
        learned,
        now: boot_ns(),
    };
    let mut failures = Vec::new();
    for (name, frame, want) in &rows {
        let before = sb.counter(*want, false).unwrap().packets;
        let k = sb.run(frame).unwrap();
        let h = match judge_link(frame.as_slice(), Link::Ethernet, &policy.settings, &host) {
            Judgement::Done(r) => r,
            Judgement::Inspect(_) => Reason::PassInspected,
            // judge_link settles any-port flows itself.
            Judgement::Recognise(_) => unreachable!("judge_link returned Recognise"),
        };
        let after = sb.counter(*want, false).unwrap().packets;
        if k.reason != *want || h != *want || after != before + 1 || (k.action == 1) != drops(*want)
        {
            failures.push(format!(
                "{name}: kernel {:?} (action {}), host {h:?}, want {want:?}, counter +{}",
                k.reason,
                k.action,
                after - before
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn egress_learner_matches_host_decision() {
    let Some((policy, mut sb)) = config_sandbox("egress_learner_matches_host_decision") else {
        return;
    };
    let ttl = 5_000_000_000u64;
    sb.set_learn_ttl(ttl).unwrap();
    let phone = [10, 0, 0, 2];
    // A datagram from the phone to 198.51.100.`host`, port `dport`.
    let udp_out = |host: u8, dport: u16, payload: &[u8]| {
        v4(phone, [198, 51, 100, host])
            .udp(5060, dport)
            .payload(payload)
            .build()
    };
    let reg = |host: u8| {
        udp_out(
            host,
            5060,
            b"REGISTER sip:provider.example SIP/2.0\r\nVia: x\r\n\r\n",
        )
    };
    let rows: Vec<(&str, Vec<u8>, bool)> = vec![
        ("REGISTER", reg(20), true),
        (
            "INVITE",
            udp_out(21, 5060, &sip::invite("100", "200", "p.example", "Phone/1")),
            true,
        ),
        ("OPTIONS", udp_out(22, 5060, &sip::svmap_options()), false),
        (
            "REGISTER to a non-SIP port",
            udp_out(23, 8080, b"REGISTER sip:x SIP/2.0\r\n"),
            false,
        ),
        (
            "REGISTERX",
            udp_out(24, 5060, b"REGISTERX sip:x SIP/2.0\r\n"),
            false,
        ),
        ("cut after REGISTER", udp_out(25, 5060, b"REGISTER"), false),
        (
            "lower case",
            udp_out(26, 5060, b"register sip:x SIP/2.0\r\n"),
            false,
        ),
        (
            "REGISTER over TCP",
            v4(phone, [198, 51, 100, 27])
                .tcp(5060, 5060)
                .payload(b"REGISTER sip:x SIP/2.0\r\n")
                .build(),
            false,
        ),
        (
            "VLAN REGISTER",
            v4(phone, [198, 51, 100, 28])
                .vlan(0x8100)
                .udp(5060, 5060)
                .payload(b"REGISTER sip:x SIP/2.0\r\n")
                .build(),
            true,
        ),
        (
            "PPPoE INVITE",
            v4(phone, [198, 51, 100, 29])
                .pppoe()
                .udp(5060, 5060)
                .payload(b"INVITE sip:x SIP/2.0\r\n")
                .build(),
            true,
        ),
        (
            "IPv6 REGISTER",
            v6(ip6("2001:db8:10::2"), ip6("2001:db8:77::20"))
                .udp(5060, 5060)
                .payload(b"REGISTER sip:x SIP/2.0\r\n")
                .build(),
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (name, frame, want) in &rows {
        let before = sb.learned().unwrap();
        let t0 = boot_ns();
        assert_eq!(
            sb.run_learner(frame).unwrap(),
            0,
            "{name}: TC action must be TC_ACT_OK"
        );
        let t1 = boot_ns();
        let after = sb.learned().unwrap();
        let new: Vec<_> = after.iter().filter(|e| !before.contains(e)).collect();
        let host = teaching(frame.as_slice(), Link::Ethernet, &policy.settings).is_some();
        let kernel = !new.is_empty();
        if kernel != *want || host != *want {
            failures.push(format!(
                "{name}: kernel learned {new:?}, host says {host}, want {want}"
            ));
        }
        for (_, exp) in new {
            if *exp < t0 + ttl || *exp > t1 + ttl {
                failures.push(format!(
                    "{name}: expiry {exp} outside [{}, {}]",
                    t0 + ttl,
                    t1 + ttl
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A second REGISTER refreshes the expiry; TTL 0 (learning off) learns nothing.
    let expiry_of_20 = |sb: &Sandbox| {
        let a: IpAddr = "198.51.100.20".parse().unwrap();
        sb.learned()
            .unwrap()
            .into_iter()
            .find(|(l, _)| *l == a)
            .unwrap()
            .1
    };
    let first = expiry_of_20(&sb);
    std::thread::sleep(Duration::from_millis(20));
    sb.run_learner(&reg(20)).unwrap();
    let second = expiry_of_20(&sb);
    assert!(second >= first + 20_000_000, "refresh: {first} -> {second}");
    sb.set_learn_ttl(0).unwrap();
    let n = sb.learned().unwrap().len();
    sb.run_learner(&reg(30)).unwrap();
    assert_eq!(
        sb.learned().unwrap().len(),
        n,
        "learning off must learn nothing"
    );

    // With any_udp_port a REGISTER to any UDP port teaches (the inbound
    // side judges SIP there too); OPTIONS and TCP still do not.
    let any =
        Policy::from_config(&Config::parse(&format!("{CONFIG}any_udp_port: true\n"), "t").unwrap());
    let mut sb = Sandbox::new(&any).unwrap();
    sb.set_learn_ttl(ttl).unwrap();
    for (name, frame, want) in [
        (
            "REGISTER to 8080",
            udp_out(40, 8080, b"REGISTER sip:x SIP/2.0\r\n"),
            true,
        ),
        (
            "OPTIONS to 8080",
            udp_out(41, 8080, &sip::svmap_options()),
            false,
        ),
        (
            "REGISTER over TCP to 8080",
            v4(phone, [198, 51, 100, 42])
                .tcp(5060, 8080)
                .payload(b"REGISTER sip:x SIP/2.0\r\n")
                .build(),
            false,
        ),
    ] {
        let before = sb.learned().unwrap().len();
        sb.run_learner(&frame).unwrap();
        let kernel = sb.learned().unwrap().len() > before;
        let host = teaching(frame.as_slice(), Link::Ethernet, &any.settings).is_some();
        assert_eq!((kernel, host), (want, want), "{name}");
    }
}

// ------------------------------------------------------------ end to end

/// INVITEs from the registrar and the scanner to the phone; what arrived.
fn invites_to_phone(net: &Wan, n: usize) -> Arrivals {
    let phone = SocketAddr::new(PHONE4.into(), 5060);
    let listener = Listener::bind(&net.lan().phone, &[phone]);
    let mut datagrams = Vec::new();
    for src in [REGISTRAR, SCANNER4] {
        for i in 0..n {
            datagrams.push(Datagram {
                from: SocketAddr::new(src.into(), 5060),
                to: phone,
                payload: sip::invite(&format!("c{i}"), "100", &PHONE4.to_string(), "Provider/1"),
            });
        }
    }
    send_from(&net.wan, datagrams);
    listener.collect()
}

fn register(net: &Wan) {
    let reg = net.wan.run(|| {
        let s = UdpSocket::bind((REGISTRAR, 5060)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    });
    net.lan().phone.run(|| {
        let s = UdpSocket::bind((PHONE4, 5062)).unwrap();
        let msg = format!(
            "REGISTER sip:{REGISTRAR} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE4}:5062;branch=z9hG4bK1\r\nFrom: <sip:100@{REGISTRAR}>;tag=1\r\n\
             To: <sip:100@{REGISTRAR}>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@{PHONE4}:5062>\r\nContent-Length: 0\r\n\r\n"
        );
        s.send_to(msg.as_bytes(), (REGISTRAR, 5060)).unwrap();
    });
    let mut buf = [0u8; 2048];
    let (n, _) = reg
        .recv_from(&mut buf)
        .expect("the registrar gets the REGISTER (egress is never dropped)");
    assert!(buf[..n].starts_with(b"REGISTER "));
}

#[test]
fn registrar_learned_from_register_passes_then_expires() {
    if !require_root("registrar_learned_from_register_passes_then_expires") {
        return;
    }
    let net = Wan::with_lan();
    let cfg =
        net.config("policy: drop\nsip_ports: [5060]\nlearn_registrars: {enabled: true, ttl: 2}\n");
    let mut d = Daemon::start(&net.pbx, &cfg, &[]);
    d.wait_for_log("learning registrars from", Duration::from_secs(5));

    let got = invites_to_phone(&net, 5);
    assert_eq!(got.from(REGISTRAR), 0, "not learned yet: {got:?}");
    assert_eq!(got.from(SCANNER4), 0, "{got:?}");

    register(&net);
    let registered = Instant::now();
    let out = d.cli(&["trusted", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = t["learned"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == REGISTRAR.to_string())
        .cloned();
    let entry = entry.unwrap_or_else(|| panic!("registrar not listed: {t}"));
    let left = entry["expires_in_ms"].as_u64().unwrap();
    assert!(left > 1000 && left <= 2000, "expiry {left} ms");
    let human = String::from_utf8_lossy(&d.cli(&["trusted"]).stdout).into_owned();
    assert!(
        human.contains(&REGISTRAR.to_string()) && human.contains("expires in"),
        "{human}"
    );

    let got = invites_to_phone(&net, 5);
    assert!(
        registered.elapsed() < Duration::from_millis(1800),
        "too slow to test before expiry"
    );
    assert_eq!(got.from(REGISTRAR), 5, "learned registrar: {got:?}");
    assert_eq!(got.from(SCANNER4), 0, "{got:?}");
    let stats = d.stats_json();
    assert_eq!(stats["learned"]["active"], 1, "{stats}");
    assert_eq!(stats["reasons"]["learned_trusted"]["packets"], 5, "{stats}");

    // After the TTL, with no new REGISTER, the registrar is dropped again.
    std::thread::sleep(Duration::from_millis(2200).saturating_sub(registered.elapsed()));
    let got = invites_to_phone(&net, 5);
    assert_eq!(got.from(REGISTRAR), 0, "expired: {got:?}");
    let stats = d.stats_json();
    assert_eq!(stats["learned"]["active"], 0, "{stats}");
    assert_eq!(stats["learned"]["expired"], 1, "{stats}");
    assert!(d.stop().success());
}
