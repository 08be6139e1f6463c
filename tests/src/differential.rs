//! The differential corpus of the one SIP matcher: random and mutated SIP
//! packets from a fixed seed, each judged by the kernel (BPF_PROG_TEST_RUN
//! on the real object) and by the host (`Policy::evaluate`, the same
//! sipguard-common code in a plain loop). Run by the host tests
//! (tests/tests/differential.rs) and, shorter, inside every kernel of the
//! matrix.

use std::collections::BTreeMap;

use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sipguard::{
    kernel::testrun::{Sandbox, XDP_DROP},
    policy::Policy,
};

use crate::frames::{ip6, v4, v6};

pub const PACKETS: usize = 120_000;
pub const SEED: u64 = 0x5195_6a4d;

pub const METHODS: &[&str] = &[
    "INVITE",
    "REGISTER",
    "OPTIONS",
    "ACK",
    "BYE",
    "CANCEL",
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "INFO",
    "PRACK",
    "UPDATE",
    "REFER",
    "PUBLISH",
    "SUBSCRIBX",
    "FOO",
    "invite",
    "INVITEINVITEINVITE",
    "",
    "OPTIONS ",
];
pub const SCHEMES: &[&str] = &[
    "sip:", "SIP:", "sips:", "tel:", "Sip:", "http:", "", "sipx:",
];
pub const USERS: &[&str] = &[
    "alice",
    "100",
    "+4930123",
    "1000",
    "bob",
    "",
    "alice:pw",
    "a;b=c",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
pub const HOSTS: &[&str] = &[
    "pbx.example",
    "1.1.1.1",
    "198.51.100.1",
    "198.51.100.1:5060",
    "[2001:db8::1]",
    "[2001:db8::1]:5080",
    "123.example",
    "10.0.0",
    "host;transport=udp",
    "a.b.c?x=y",
    "",
    "1.2.3.4.5",
];
pub const VERSIONS: &[&str] = &[
    " SIP/2.0",
    " SIP/2.0",
    " SIP/2.0",
    " SIP/3.0",
    " sip/2.0",
    "",
    " SIP/2.0 ",
];
pub const NAMES: &[&str] = &[
    "User-Agent",
    "user-agent",
    "USER-AGENT",
    "User-Agents",
    "X-User-Agent",
    "User-Agent ",
    "From",
    "from",
    "f",
    "F",
    "To",
    "to",
    "t",
    "T",
    "Via",
    "v",
    "Call-ID",
    "i",
    "Contact",
    "m",
    "Content-Length",
    "l",
    "CSeq",
    "Max-Forwards",
    "Subject",
    "s",
    "Server",
    "A-Very-Long-Header-Name-Indeed",
    "",
    "Content-Type",
];
pub const UAS: &[&str] = &[
    "friendly-scanner",
    "Friendly-Scanner",
    "sipcli/v1.8",
    "sipvicious",
    "SIPVicious 0.3",
    "sundayddr",
    "VaxSIPUserAgent/3.1",
    "pplsip",
    "iWar",
    "sip-scan",
    "smap 0.6",
    "siparmyknife",
    "Yealink SIP-T46S 66.86.0.15",
    "Grandstream GXP2170",
    "Linphone/5.2.5",
    "Asterisk PBX 20.5.0",
    "FreeSWITCH-mod_sofia/1.10",
    "Cisco/SPA504G",
    "",
    "friendly",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "my friendly-scanner",
    "evilscan",
];
pub const ADDRS: &[&str] = &[
    "\"sipvicious\"<sip:100@1.1.1.1>",
    "\"sipvicious\" <sip:100@example.com>",
    "<sip:100@1.1.1.1>",
    "sip:100@1.1.1.1",
    "\"SIPVicious\"<sip:100@1.1.1.1:5060>",
    "<sip:alice@pbx.example>",
    "\"Alice\" <sip:alice@pbx.example>",
    "<sip:bob@pbx.example;transport=udp>",
    "sip:bob@1.1.1.10",
    "\"100\"<sip:100@1.1.1.1>",
    "<sip:100@1.1.1.1>;x=y",
];
pub const WS: &[&str] = &[
    "",
    " ",
    "  ",
    "\t",
    " \t ",
    "                                         ",
];
pub const EOLS: &[&str] = &["\r\n", "\r\n", "\n", "\r"];

pub fn pick<'a>(r: &mut ChaCha8Rng, v: &[&'a str]) -> &'a str {
    v.choose(r).copied().unwrap_or("")
}

/// Mostly one of the first `good` entries (well-formed), sometimes any.
pub fn mostly<'a>(r: &mut ChaCha8Rng, v: &[&'a str], good: usize) -> &'a str {
    if r.gen_bool(0.85) {
        pick(r, &v[..good])
    } else {
        pick(r, v)
    }
}

pub fn message(r: &mut ChaCha8Rng) -> Vec<u8> {
    let eol = if r.gen_bool(0.9) {
        pick(r, &EOLS[..3])
    } else {
        pick(r, EOLS)
    };
    let mut s = String::new();
    match r.gen_range(0..20) {
        0 => return b"\r\n\r\n".to_vec(),
        1 => return (0..r.gen_range(0..64)).map(|_| r.gen()).collect(),
        2 => s.push_str("SIP/2.0 200 OK"),
        _ => {
            let user = pick(r, USERS);
            let at = if user.is_empty() { "" } else { "@" };
            let (method, scheme, version) = (
                mostly(r, METHODS, 14),
                mostly(r, SCHEMES, 5),
                mostly(r, VERSIONS, 1),
            );
            s.push_str(&format!(
                "{method} {scheme}{user}{at}{}{version}",
                pick(r, HOSTS)
            ));
        }
    }
    s.push_str(eol);
    let same = r.gen_bool(0.3);
    let addr = pick(r, ADDRS);
    for _ in 0..r.gen_range(0..14) {
        // Often a header a rule reads (the first 14 names), so requests
        // repeat them, in any order and spelling.
        let name = if r.gen_bool(0.3) {
            pick(r, &NAMES[..14])
        } else {
            pick(r, NAMES)
        };
        let lname = name.trim().to_ascii_lowercase();
        let value = match lname.as_str() {
            "user-agent" | "user-agents" | "x-user-agent" | "server" => pick(r, UAS).to_string(),
            "from" | "f" => format!("{addr};tag={}", r.gen::<u16>()),
            "to" | "t" => {
                if same {
                    addr.to_string()
                } else {
                    pick(r, ADDRS).to_string()
                }
            }
            "via" | "v" => format!(
                "SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK-{}{}",
                r.gen::<u32>(),
                "x".repeat(r.gen_range(0..3) * 300)
            ),
            _ => format!("{}", r.gen::<u32>()),
        };
        let colon = if r.gen_bool(0.95) { ":" } else { "" };
        // Sometimes the value starts on a folded continuation line.
        let after = if r.gen_bool(0.05) {
            format!("{}{eol}{}", pick(r, WS), pick(r, &WS[1..]))
        } else {
            pick(r, WS).to_string()
        };
        s.push_str(&format!(
            "{name}{}{colon}{after}{value}{eol}",
            if r.gen_bool(0.1) { pick(r, WS) } else { "" },
        ));
    }
    if r.gen_bool(0.8) {
        s.push_str(eol);
    }
    if r.gen_bool(0.3) {
        s.push_str(&format!(
            "v=0{eol}User-Agent: friendly-scanner{eol}From: \"sipvicious\"<sip:100@1.1.1.1>{eol}"
        ));
    }
    if r.gen_bool(0.03) {
        // A jumbo message: the rest lies past a single XDP buffer (in the
        // fragments of a multi-buffer frame), often past the 9000-byte
        // window too.
        let pad = "j".repeat(r.gen_range(3000..11000));
        s = s.replacen(eol, &format!("{eol}X-Jumbo: {pad}{eol}"), 1);
    }
    if r.gen_bool(0.05) {
        let pad = "p".repeat(r.gen_range(1000..2400));
        s = s.replacen(
            eol,
            &format!("{eol}X-Pad: {pad}{eol}"),
            if r.gen_bool(0.5) { 1 } else { 2 },
        );
    }
    s.into_bytes()
}

pub fn mutate(r: &mut ChaCha8Rng, m: &mut Vec<u8>) {
    const SPECIAL: &[u8] = b"\r\n :;@<>\"\t[].0-";
    for _ in 0..r.gen_range(1..6) {
        if m.is_empty() {
            m.push(r.gen());
            continue;
        }
        let i = r.gen_range(0..m.len());
        match r.gen_range(0..6) {
            0 => m[i] = r.gen(),
            1 => m[i] = *SPECIAL.choose(r).unwrap_or(&b' '),
            2 => m.insert(i, *SPECIAL.choose(r).unwrap_or(&b' ')),
            3 => {
                m.remove(i);
            }
            4 => m.truncate(i),
            _ => m[i] ^= 0x20,
        }
    }
}

pub fn frame(r: &mut ChaCha8Rng, payload: &[u8]) -> Vec<u8> {
    frame_to(r, payload, 5060)
}

pub fn frame_to(r: &mut ChaCha8Rng, payload: &[u8], dport: u16) -> Vec<u8> {
    let src4 = [198, 51, 100, r.gen_range(1..250)];
    let kind = r.gen_range(0..10);
    let sport = r.gen();
    let from_v6 = || v6(ip6("2001:db8:99::7"), ip6("2001:db8:f::1"));
    let from_v4 = |src| v4(src, [100, 64, 0, 1]);
    let mut f = match kind {
        0 => from_v6().udp(sport, dport).payload(payload).build(),
        1 => from_v4(src4)
            .udp(sport, dport)
            .payload(payload)
            .vlan(0x8100)
            .build(),
        2 => from_v4(src4)
            .udp(sport, dport)
            .payload(payload)
            .frag(0x2000)
            .build(),
        3 => from_v4([192, 0, 2, 10])
            .udp(sport, dport)
            .payload(payload)
            .build(),
        // SIP over TCP: a segment that starts with the message.
        4 => from_v4(src4).tcp(sport, dport).payload(payload).build(),
        5 => from_v6().tcp(sport, dport).payload(payload).build(),
        _ => from_v4(src4).udp(sport, dport).payload(payload).build(),
    };
    if r.gen_bool(0.02) {
        // A frame cut short: the IP length lies.
        let n = r.gen_range(14..=f.len());
        f.truncate(n);
    }
    f
}

/// The policy of the SIP-port corpus: every inspection rule on.
pub const SIP_CONFIG: &str = "policy: inspect\ntrusted: [192.0.2.10]\ninspect:\n  extra_user_agents: [evilscan]\n  drop_methods: [MESSAGE]\n  \
         drop_ip_uri: true\n  expected_users: [alice, \"100\", \"+4930123\"]\n";
/// Every outcome the SIP-port corpus must reach, at least once per 2,400
/// packets, or the test proves less than it claims.
pub const SIP_REASONS: &[&str] = &[
    "inspected_clean",
    "inspected_partial",
    "user_agent",
    "sipvicious",
    "method",
    "uri_ip_host",
    "unknown_user",
    "not_sip",
    "trusted",
    "malformed",
    "uninspectable",
];
pub const SIP_MIN_SHARE: usize = 2400;

/// The any-port corpus: random ports outside the SIP set.
pub const ANY_PORT_CONFIG: &str = "policy: inspect\nany_udp_port: true\ntrusted: [192.0.2.10]\n";
pub const ANY_PORT_REASONS: &[&str] = &["not_sip_port", "trusted", "inspected_clean", "user_agent"];
/// The same corpus under `policy: drop`: the any-port reader alone.
pub const ANY_PORT_DROP_CONFIG: &str = "policy: drop\nany_udp_port: true\ntrusted: [192.0.2.10]\n";
pub const ANY_PORT_DROP_REASONS: &[&str] = &["not_sip_port", "trusted", "untrusted"];
/// At least once per 600 packets (50 in 30,000).
pub const ANY_PORT_MIN_SHARE: usize = 600;

/// What a corpus run gave.
pub struct Outcome {
    pub packets: usize,
    /// The first mismatches in full.
    pub shown: Vec<String>,
    pub mismatches: usize,
    pub seen: BTreeMap<&'static str, usize>,
}

impl Outcome {
    fn empty(packets: usize) -> Outcome {
        Outcome {
            packets,
            shown: Vec::new(),
            mismatches: 0,
            seen: BTreeMap::new(),
        }
    }

    /// The reasons of `want` seen fewer than `packets / share` times.
    pub fn too_rare(&self, want: &[&str], share: usize) -> Vec<String> {
        want.iter()
            .filter(|r| self.seen.get(**r).copied().unwrap_or(0) <= self.packets / share)
            .map(|r| format!("too few '{r}' verdicts: {:?}", self.seen))
            .collect()
    }
}

fn judge(
    sb: &mut Sandbox,
    policy: &Policy,
    out: &mut Outcome,
    f: &[u8],
    what: impl FnOnce() -> String,
) {
    let k = sb.run(f).expect("test run");
    let h = policy.evaluate(f);
    *out.seen.entry(k.reason.name()).or_default() += 1;
    if k.reason != h.reason || (k.action == XDP_DROP) != h.drop {
        if out.shown.len() < 10 {
            out.shown.push(format!(
                "{}: kernel {:?} host {:?}",
                what(),
                k.reason,
                h.reason
            ));
        }
        out.mismatches += 1;
    }
}

/// `packets` SIP-port packets of the corpus through `sb` and the host.
pub fn random_sip(sb: &mut Sandbox, policy: &Policy, packets: usize) -> Outcome {
    // Frames above a single buffer need a multi-buffer test run (5.18+).
    let max_message = if sipguard::kernel::features::has_multi_buffer() {
        12_000
    } else {
        3000
    };
    let mut r = ChaCha8Rng::seed_from_u64(SEED);
    let mut out = Outcome::empty(packets);
    for i in 0..packets {
        let mut m = message(&mut r);
        if r.gen_bool(0.4) {
            mutate(&mut r, &mut m);
        }
        m.truncate(max_message);
        let f = frame(&mut r, &m);
        judge(sb, policy, &mut out, &f, || {
            format!("#{i}\n{}", String::from_utf8_lossy(&m).escape_debug())
        });
    }
    out
}

/// `packets` packets to random ports outside the SIP set, plus random
/// binary payloads. The kernel reads the request line in its own
/// tail-called program (with or without `bpf_loop`), the host in a plain
/// loop.
pub fn any_port(sb: &mut Sandbox, policy: &Policy, packets: usize) -> Outcome {
    let mut r = ChaCha8Rng::seed_from_u64(SEED ^ 0xa11);
    let mut out = Outcome::empty(packets);
    for i in 0..packets {
        let mut m = if r.gen_bool(0.2) {
            let n = r.gen_range(0..200);
            (0..n).map(|_| r.gen()).collect()
        } else {
            message(&mut r)
        };
        if r.gen_bool(0.4) {
            mutate(&mut r, &mut m);
        }
        m.truncate(3000);
        let port = loop {
            let p: u16 = r.gen_range(1..=u16::MAX);
            if !(5060..=5061).contains(&p) {
                break p;
            }
        };
        let f = frame_to(&mut r, &m, port);
        judge(sb, policy, &mut out, &f, || {
            format!(
                "#{i} to port {port}\n{}",
                String::from_utf8_lossy(&m).escape_debug()
            )
        });
    }
    out
}
