//! The scanner on whole messages, against the host loop and on every
//! byte position of the word tricks.

use super::{
    decide::{decide, SipLists},
    scan,
    state::{max_steps, window, Scan, Step, F_EOH, F_IP_HOST},
    step,
    words::{bytes_eq, first_mark, is_ws, line_ends, low_bytes, lower, lower_word, name_ends},
};
use crate::{
    abi::{
        method_id, Settings, METHOD_INVITE, METHOD_OTHER, RULE_EXPECTED_USERS, RULE_NOT_SIP,
        RULE_SIPVICIOUS, RULE_URI_IP_HOST, RULE_USER_AGENT, UA_BYTES, USER_BYTES,
    },
    packet::{Flow, NoWords},
    reason::Reason,
};

struct Lists {
    uas: &'static [&'static str],
    users: &'static [&'static str],
}

impl SipLists for Lists {
    fn user_agent_denied(&self, ua: &[u8; UA_BYTES], len: u32) -> bool {
        self.uas
            .iter()
            .any(|p| p.len() as u32 <= len && ua[..p.len()] == *p.as_bytes())
    }
    fn user_expected(&self, user: &[u8; USER_BYTES], len: u32) -> bool {
        self.users
            .iter()
            .any(|u| u.len() as u32 == len && user[..u.len()] == *u.as_bytes())
    }
}

const LISTS: Lists = Lists {
    uas: &["friendly-scanner", "sipcli", "sipvicious"],
    users: &["alice", "+4930123"],
};

fn settings(rules: u32, methods: &[&str]) -> Settings {
    let mut s = Settings::empty();
    s.rules = rules;
    for m in methods {
        s.methods |= 1 << method_id(m).unwrap();
    }
    s
}

const ALL_RULES: u32 =
    RULE_NOT_SIP | RULE_USER_AGENT | RULE_URI_IP_HOST | RULE_EXPECTED_USERS | RULE_SIPVICIOUS;

fn run(msg: &[u8]) -> Scan {
    let flow = Flow::bare_udp_payload([0; 4], msg.len());
    // Every step makes progress, so the step bound is never what ends a scan.
    let mut s = Scan::new(&flow, msg.len());
    let mut steps = 0;
    loop {
        let before = (s.pos, s.phase);
        let r = step(&mut s, msg, &LISTS);
        steps += 1;
        if r == Step::Done {
            break;
        }
        assert!(
            s.pos > before.0 || s.phase != before.1,
            "no progress at {before:?}"
        );
    }
    assert!(steps < max_steps(msg.len()));
    assert_eq!(s, scan(&flow, msg, &LISTS));
    s
}

fn reason(msg: &str, rules: u32, methods: &[&str]) -> Reason {
    decide(&run(msg.as_bytes()), &settings(rules, methods), &LISTS)
}

fn all(msg: &str) -> Reason {
    reason(msg, ALL_RULES, &[])
}

const INVITE: &str = "INVITE sip:alice@pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:bob@pbx.example>;tag=1\r\nTo: <sip:alice@pbx.example>\r\nUser-Agent: Yealink SIP-T46S\r\nContent-Length: 0\r\n\r\n";

#[test]
fn clean_invite_passes_and_facts_are_collected() {
    let s = run(INVITE.as_bytes());
    assert_eq!(s.method, METHOD_INVITE);
    assert_eq!(&s.user[..5], b"alice");
    assert_eq!(s.user_len, 5);
    assert_eq!(&s.ua[..s.ua_len as usize], b"yealink sip-t46s");
    assert!(s.flags & F_EOH != 0 && s.flags & F_IP_HOST == 0);
    assert_eq!(s.sv_from | s.sv_to, 0, "no SIPVicious-like From or To");
    assert_eq!(all(INVITE), Reason::PassInspected);
}

#[test]
fn user_agent_rules() {
    let m = |ua: &str| INVITE.replace("Yealink SIP-T46S", ua);
    assert_eq!(all(&m("friendly-scanner")), Reason::DropUserAgent);
    assert_eq!(all(&m("Friendly-Scanner 1.0")), Reason::DropUserAgent);
    assert_eq!(all(&m("SIPCLI/v1.8")), Reason::DropUserAgent);
    assert_eq!(all(&m("my friendly-scanner")), Reason::PassInspected);
    let lf = m("sipcli").replace("User-Agent: ", "user-agent:\t  ");
    assert_eq!(all(&lf), Reason::DropUserAgent);
    assert_eq!(
        all(&m("sipcli").replace("User-Agent: ", "USER-AGENT :")),
        Reason::DropUserAgent
    );
    // Rule off.
    assert_eq!(reason(&m("sipcli"), 0, &[]), Reason::PassInspected);
    // In the body: never.
    let body = INVITE.replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Length: 30\r\n\r\nUser-Agent: friendly-scanner\r\n",
    );
    assert_eq!(all(&body), Reason::PassInspected);
    // Bare LF line ends.
    assert_eq!(
        all(&m("sipvicious").replace("\r\n", "\n")),
        Reason::DropUserAgent
    );
    assert_eq!(all(&INVITE.replace("\r\n", "\n")), Reason::PassInspected);
    // A header whose name merely starts like one that matters.
    assert_eq!(
        all(&m("sipcli").replace("User-Agent:", "User-Agents:")),
        Reason::PassInspected
    );
    assert_eq!(
        all(&m("sipcli").replace("User-Agent:", "X-User-Agent:")),
        Reason::PassInspected
    );
}

#[test]
fn sipvicious_fingerprint() {
    let sv = "OPTIONS sip:100@pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK-1;rport\r\nMax-Forwards: 70\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\nFrom: \"sipvicious\"<sip:100@1.1.1.1>;tag=6331\r\nUser-Agent: something-else\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(all(sv), Reason::DropSipVicious);
    assert_eq!(
        reason(sv, ALL_RULES & !RULE_SIPVICIOUS, &[]),
        Reason::PassInspected
    );
    // Compact forms.
    let compact = sv.replace("To:", "t:").replace("From:", "f:");
    assert_eq!(all(&compact), Reason::DropSipVicious);
    // Only the host.
    let host = sv.replace("\"sipvicious\"", "\"100\"");
    assert_eq!(all(&host), Reason::DropSipVicious);
    // Only the name.
    let name = sv.replace("1.1.1.1", "example.com");
    assert_eq!(all(&name), Reason::DropSipVicious);
    // A REGISTER has From == To legitimately.
    let reg = "REGISTER sip:pbx.example SIP/2.0\r\nFrom: \"Alice\" <sip:alice@pbx.example>;tag=9\r\nTo: \"Alice\" <sip:alice@pbx.example>\r\n\r\n";
    assert_eq!(all(reg), Reason::PassInspected);
    // From != To with a 1.1.1.1 host.
    let diff = sv.replace(
        "To: \"sipvicious\"<sip:100@1.1.1.1>",
        "To: <sip:200@1.1.1.1>",
    );
    assert_eq!(all(&diff), Reason::PassInspected);
    let near = sv
        .replace("1.1.1.1", "1.1.1.10")
        .replace("\"sipvicious\"", "");
    assert_eq!(all(&near), Reason::PassInspected);
}

#[test]
fn methods_uri_and_users() {
    assert_eq!(reason(INVITE, ALL_RULES, &["INVITE"]), Reason::DropMethod);
    assert_eq!(
        reason(INVITE, ALL_RULES, &["OPTIONS", "MESSAGE"]),
        Reason::PassInspected
    );
    let sub = "SUBSCRIBE sip:alice@pbx.example SIP/2.0\r\n\r\n";
    assert_eq!(run(sub.as_bytes()).method, method_id("SUBSCRIBE").unwrap());
    assert_eq!(reason(sub, ALL_RULES, &["SUBSCRIBE"]), Reason::DropMethod);
    assert_eq!(
        run(b"SUBSCRIBX sip:a@b SIP/2.0\r\n\r\n").method,
        METHOD_OTHER
    );
    let ip = INVITE.replace(
        "sip:alice@pbx.example SIP",
        "sip:alice@192.0.2.7:5060;transport=udp SIP",
    );
    assert_eq!(all(&ip), Reason::DropUriIpHost);
    assert_eq!(
        reason(&ip, ALL_RULES & !RULE_URI_IP_HOST, &[]),
        Reason::PassInspected
    );
    let ip6 = INVITE.replace("sip:alice@pbx.example SIP", "sip:alice@[2001:db8::1] SIP");
    assert_eq!(all(&ip6), Reason::DropUriIpHost);
    let nouser = INVITE.replace("sip:alice@pbx.example SIP", "sip:192.0.2.7 SIP");
    assert_eq!(
        reason(&nouser, RULE_URI_IP_HOST, &[]),
        Reason::DropUriIpHost
    );
    assert_eq!(
        reason(&nouser, RULE_EXPECTED_USERS, &[]),
        Reason::DropUnknownUser
    );
    let numeric_name = INVITE.replace("pbx.example SIP", "123.example SIP");
    assert_eq!(all(&numeric_name), Reason::PassInspected);
    let other = INVITE.replace("sip:alice@", "sip:100@");
    assert_eq!(all(&other), Reason::DropUnknownUser);
    let num = INVITE.replace("sip:alice@", "SIP:+4930123@");
    assert_eq!(all(&num), Reason::PassInspected);
    let pw = INVITE.replace("sip:alice@", "sip:alice:secret@");
    assert_eq!(all(&pw), Reason::PassInspected);
    let long = INVITE.replace("sip:alice@", &format!("sip:{}@", "a".repeat(40)));
    assert_eq!(all(&long), Reason::DropUnknownUser);
    // Unknown users only matter for INVITE.
    assert_eq!(
        all(&other.replace("INVITE sip", "OPTIONS sip")),
        Reason::PassInspected
    );
    let tel = INVITE.replace("sip:alice@pbx.example", "tel:+4930123");
    assert_eq!(all(&tel), Reason::PassInspected);
}

#[test]
fn not_sip_keepalive_response() {
    assert_eq!(all(""), Reason::PassInspected);
    assert_eq!(all("\r\n\r\n"), Reason::PassInspected);
    assert_eq!(all("\0\0\0\0"), Reason::PassInspected);
    assert_eq!(
        all("SIP/2.0 200 OK\r\nUser-Agent: sipcli\r\n\r\n"),
        Reason::PassInspected
    );
    assert_eq!(all("GET / HTTP/1.1\r\n\r\n"), Reason::DropNotSip);
    assert_eq!(all("hello"), Reason::DropNotSip);
    assert_eq!(all("\r\n\r\n\r\n\r\nINVITE"), Reason::DropNotSip);
    assert_eq!(all("INVITE http://x SIP/2.0\r\n\r\n"), Reason::DropNotSip);
    assert_eq!(all("INVITE sip:a@b SIP/3.0\r\n\r\n"), Reason::DropNotSip);
    assert_eq!(all("INVITE sip:a@b\r\n\r\n"), Reason::DropNotSip);
    assert_eq!(reason("hello", 0, &[]), Reason::PassInspected);
    let mut stun = vec![0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([7u8; 12]);
    assert_eq!(
        decide(&run(&stun), &settings(ALL_RULES, &[]), &LISTS),
        Reason::PassInspected
    );
}

#[test]
fn partial_messages() {
    // Cut before the end of the headers, nothing matched: partial.
    let cut = &INVITE[..INVITE.find("User-Agent").unwrap()];
    assert_eq!(all(cut), Reason::PassPartial);
    // Cut after the User-Agent: judged on what was seen.
    let m = INVITE.replace("Yealink SIP-T46S", "sipcli");
    assert_eq!(
        all(&m[..m.find("Content-Length").unwrap()]),
        Reason::DropUserAgent
    );
    assert_eq!(all("INV"), Reason::PassPartial);
    // Every prefix of every message gets some verdict without panicking.
    for msg in [INVITE, &m] {
        for n in 0..msg.len() {
            let _ = all(&msg[..n]);
        }
    }
    // Beyond the window the User-Agent is not seen: 1500 payload bytes of
    // a frame of up to 1518 bytes, 9000 of a larger one.
    assert_eq!(all(&ua_at(1400)), Reason::DropUserAgent);
    assert_eq!(ua_at(1495).len(), 1517);
    assert_eq!(all(&ua_at(1495)), Reason::PassPartial);
    assert_eq!(all(&ua_at(8900)), Reason::DropUserAgent);
    assert_eq!(all(&ua_at(8995)), Reason::PassPartial);
    let pad = format!("X-Pad: {}\r\n", "p".repeat(1500));
    let early = m.replace("Content-Length: 0\r\n", &pad);
    assert_eq!(all(&early), Reason::DropUserAgent);
}

/// An INVITE whose `User-Agent: sipcli` line starts at byte `at`.
fn ua_at(at: usize) -> String {
    let head = "INVITE sip:alice@example.com SIP/2.0\r\n";
    let pad = "p".repeat(at - head.len() - "X-Pad: \r\n".len());
    format!("{head}X-Pad: {pad}\r\nUser-Agent: sipcli\r\n\r\n")
}

#[test]
fn window_by_frame_size() {
    assert_eq!(window(60), 1500);
    assert_eq!(window(1518), 1500);
    assert_eq!(window(1519), 9000);
    assert_eq!(window(9018), 9000);
    assert_eq!(max_steps(1518), 2560);
    assert_eq!(max_steps(1519), 15360);
}

/// A word with byte `i` = `b` and every other byte `fill`.
fn word_with(fill: u8, i: usize, b: u8) -> u64 {
    let mut a = [fill; 8];
    a[i] = b;
    u64::from_le_bytes(a)
}

#[test]
fn word_helpers_at_every_byte_position() {
    let name_end = |b: u8| b == b':' || is_ws(b) || b == b'\r' || b == b'\n';
    for fill in [b'a', b'A', b'-', 0x00, 0x01, 0x3b, 0xff, 0x80] {
        if name_end(fill) {
            continue;
        }
        for i in 0..8 {
            for b in 0..=255u8 {
                let v = word_with(fill, i, b);
                let m = name_ends(v);
                assert_eq!(m != 0, name_end(b), "name_ends {v:#x}");
                if m != 0 {
                    assert_eq!(first_mark(m), i as u32, "{v:#x}");
                }
                let m = line_ends(v);
                assert_eq!(m != 0, b == b'\r' || b == b'\n', "line_ends {v:#x}");
                if m != 0 {
                    assert_eq!(first_mark(m), i as u32);
                }
                let m = bytes_eq(v, b);
                assert!(m != 0);
                if b != fill {
                    assert_eq!(first_mark(m), i as u32);
                }
                let want = u64::from_le_bytes(v.to_le_bytes().map(lower));
                assert_eq!(lower_word(v), want, "lower_word {v:#x}");
                for n in 0..8u32 {
                    let mut a = v.to_le_bytes();
                    a[n as usize..].fill(0);
                    assert_eq!(low_bytes(v, n), u64::from_le_bytes(a));
                }
            }
        }
    }
    // With several ends in a word the lowest one counts, whatever the
    // bytes above it (a borrow can mark bytes above the first end).
    for i in 0..8 {
        for j in i + 1..8 {
            for b in 0..=255u8 {
                let mut a = [b'x'; 8];
                a[i] = b':';
                a[j] = b;
                if i + 1 < j {
                    a[i + 1] = 0x01;
                }
                let v = u64::from_le_bytes(a);
                assert_eq!(first_mark(name_ends(v)), i as u32, "{a:?}");
                a[i] = b'\n';
                let v = u64::from_le_bytes(a);
                assert_eq!(first_mark(line_ends(v)), i as u32, "{a:?}");
            }
        }
    }
}

#[test]
fn reset_equals_new() {
    let msg = INVITE.replace("Yealink", "sipcli");
    let flow = Flow::bare_udp_payload([0; 4], msg.len());
    let mut s = scan(&flow, msg.as_bytes(), &LISTS);
    s.name = [!0; 2];
    s.mode = !0;
    s.aux = !0;
    assert_ne!(s, Scan::new(&flow, msg.len()));
    let other = Flow::bare_udp_payload([0; 4], 77);
    s.reset(&other, 90);
    assert_eq!(s, Scan::new(&other, 90));
}

/// Header lines in every spelling the rules know, and near misses.
const NAMES: &[&str] = &[
    "User-Agent",
    "user-agent",
    "USER-AGENT",
    "uSeR-aGeNt",
    "User-Agent ",
    "User-Agent\t",
    "User-Agents",
    "X-User-Agent",
    "User-Agen",
    "From",
    "from",
    "FROM",
    "f",
    "F",
    "From ",
    "To",
    "to",
    "TO",
    "t",
    "T",
    "To\t ",
    "v",
    "i",
    "m",
    "l",
    "Via",
    "Call-ID",
    "CSeq",
    "Content-Length",
    "Max-Forwards",
    "X-Pad-0123456789",
    "X-Pad-01234567890",
    "X-Pad-0123",
    "Accept-Encoding",
    "Accept-Language",
    "",
    " folded",
];
const VALUES: &[&str] = &[
    "friendly-scanner",
    "Yealink SIP-T46S 66.86.0.15",
    "SIPCLI/v1.8",
    "\"sipvicious\"<sip:100@1.1.1.1>;tag=1",
    "<sip:alice@pbx.example>",
    "",
    "  \t x",
    "A-very-long-user-agent-string-that-goes-on-and-on/1.0",
    "ab\rcd",
    "VaxSIPUserAgent/3.1",
];

fn agree(msg: &[u8]) {
    let flow = Flow::bare_udp_payload([0; 4], msg.len());
    let words = scan(&flow, msg, &LISTS);
    let bytes = scan(&flow, &NoWords(msg), &LISTS);
    assert_eq!(words, bytes, "{:?}", String::from_utf8_lossy(msg));
}

#[test]
fn words_and_bytes_agree() {
    let mut msgs = Vec::new();
    for (k, name) in NAMES.iter().enumerate() {
        for (j, value) in VALUES.iter().enumerate() {
            for sep in [":", ": ", " : ", ":\t", ":  ", "\r\n"] {
                let line = format!("{name}{sep}{value}");
                let eol = if (k + j) % 3 == 0 { "\n" } else { "\r\n" };
                let m = INVITE.replace("User-Agent: Yealink SIP-T46S", &line);
                msgs.push(m.replace("\r\n", eol));
                msgs.push(format!("INVITE sip:a@b SIP/2.0\r\n{line}\r\n\r\n"));
            }
        }
    }
    for m in &msgs {
        agree(m.as_bytes());
    }
    // Every cut of some of them: the bytes end at every position of a
    // word and of a name.
    for m in msgs.iter().step_by(7) {
        for n in 0..m.len() {
            agree(&m.as_bytes()[..n]);
        }
    }
    // Random edits with the bytes the scanner cares about.
    let alphabet = b":\r\n \t-aAzZ@;<>\"\x00\x01\x80\xffuUfFtT";
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let base = &msgs[next() as usize % msgs.len()];
        let mut m = base.as_bytes().to_vec();
        for _ in 0..1 + next() % 4 {
            let at = next() as usize % m.len();
            let b = alphabet[next() as usize % alphabet.len()];
            match next() % 3 {
                0 => m[at] = b,
                1 => m.insert(at, b),
                _ => {
                    m.remove(at);
                }
            }
            if m.is_empty() {
                break;
            }
        }
        agree(&m);
    }
}

#[test]
fn long_and_odd_lines() {
    let long = INVITE.replace("Via: ", &format!("Via: {}", "v".repeat(900)));
    assert_eq!(
        all(&long.replace("Yealink SIP-T46S", "sipcli")),
        Reason::DropUserAgent
    );
    let folded = INVITE.replace("Content-Length", " folded\r\nContent-Length");
    assert_eq!(all(&folded), Reason::PassInspected);
    let many = INVITE
        .replace("Content-Length", &"a:\r\n".repeat(300))
        .replace("Yealink SIP-T46S", "sipcli");
    assert_eq!(all(&many), Reason::DropUserAgent);
    let ws = INVITE.replace(
        "User-Agent: Yealink SIP-T46S",
        &format!("User-Agent:{}sipcli", " ".repeat(40)),
    );
    assert_eq!(all(&ws), Reason::PassInspected);
}

/// Every occurrence of a header a rule reads counts, in either order; the
/// event keeps the User-Agent that matched.
#[test]
fn repeated_headers_each_count() {
    let ua = |a: &str, b: &str| {
        INVITE.replace(
            "User-Agent: Yealink SIP-T46S\r\n",
            &format!("User-Agent: {a}\r\nUser-Agent: {b}\r\n"),
        )
    };
    for m in [
        ua("friendly-scanner", "Yealink"),
        ua("Yealink", "friendly-scanner"),
    ] {
        assert_eq!(all(&m), Reason::DropUserAgent, "{m}");
        let s = run(m.as_bytes());
        assert_eq!(&s.ua[..s.ua_len as usize], b"friendly-scanner");
    }
    assert_eq!(all(&ua("Yealink", "Polycom")), Reason::PassInspected);
    let sv_from = "From: \"sipvicious\"<sip:100@1.1.1.1>;tag=1\r\n";
    let sv_to = "To: \"sipvicious\"<sip:100@1.1.1.1>\r\n";
    let with = |extra: &str| INVITE.replace("User-Agent:", &format!("{extra}User-Agent:"));
    assert_eq!(
        all(&with(&format!("{sv_from}{sv_to}"))),
        Reason::DropSipVicious,
        "the harmless From and To come first"
    );
    assert_eq!(
        all(&INVITE.replacen("From:", &format!("{sv_from}{sv_to}From:"), 1)),
        Reason::DropSipVicious,
        "the harmless From and To come last"
    );
    assert_eq!(all(&with(sv_from)), Reason::PassInspected);
}

/// A value that starts on a folded continuation line is read from there.
#[test]
fn folded_value_is_read() {
    for fold in [
        "User-Agent:\r\n friendly-scanner",
        "User-Agent: \r\n\t friendly-scanner",
        "User-Agent:\n friendly-scanner",
    ] {
        let m = INVITE.replace("User-Agent: Yealink SIP-T46S", fold);
        assert_eq!(all(&m), Reason::DropUserAgent, "{m:?}");
    }
    // An empty value before the empty line is no fold.
    let m = INVITE.replace(
        "User-Agent: Yealink SIP-T46S\r\nContent-Length: 0\r\n",
        "User-Agent:\r\n",
    );
    assert_eq!(all(&m), Reason::PassInspected);
}
