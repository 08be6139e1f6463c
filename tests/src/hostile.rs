//! Hostile frames: every header field that can lie, VLAN and IPv6 extension
//! chains past their bounds, and garbage SIP payloads. Each shape states the
//! class of verdict it must get; [`Expect::reason`] turns the class into the
//! reason for a given source and policy (docs/ROBUSTNESS.md has the table).
//! Used by tests/tests/hostile.rs (BPF_PROG_TEST_RUN) and as fuzz seeds.

use sipguard_common::Reason;

use crate::{
    fixtures::with_u16,
    frames::{ip6, v4, v6, Frame},
    sip,
};

/// What a shape must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The ports cannot be known: pass, counted as `unparsed`, whoever sent it.
    Unparsed,
    /// The destination port read is not a SIP port: pass untouched.
    NotSipPort,
    /// Not UDP/TCP after the IP headers.
    NotUdpTcp,
    /// SIP-port traffic whose lengths lie: the lists still apply first
    /// (blocked drops, trusted passes), any other source is dropped as
    /// `malformed`.
    Lying,
    /// Well-formed headers to a SIP port carrying a clean SIP request (or a
    /// keepalive): judged like any SIP packet (lists, then the untrusted
    /// policy; the inspector passes it).
    Sip,
    /// Well-formed headers to a SIP port whose payload the SIP inspector
    /// judges with this reason (garbage, cut messages, scanner leftovers);
    /// otherwise judged like `Sip`.
    Inspect(Reason),
}

/// Who sent the frame, relative to [`CONFIG`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Trusted,
    Blocked,
    Untrusted,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Trusted, Source::Blocked, Source::Untrusted];

    pub fn v4(self) -> [u8; 4] {
        match self {
            Source::Trusted => [192, 0, 2, 10],
            Source::Blocked => [203, 0, 113, 66],
            Source::Untrusted => [198, 51, 100, 7],
        }
    }

    pub fn v6(self) -> [u8; 16] {
        ip6(match self {
            Source::Trusted => "2001:db8:1::5",
            Source::Blocked => "2001:db8:bad::1",
            Source::Untrusted => "2001:db8:99::7",
        })
    }
}

/// The lists the shapes are judged against; a policy line is appended.
pub const CONFIG: &str = "\
sip_ports: [5060, 5061, \"5080-5082\"]
trusted: [192.0.2.10, \"2001:db8:1::/48\"]
blocked: [203.0.113.0/24, \"2001:db8:bad::/48\"]
";

impl Expect {
    /// The reason for this class, source and untrusted policy.
    pub fn reason(self, src: Source, inspect: bool) -> Reason {
        match self {
            Expect::Unparsed => Reason::PassUnparsed,
            Expect::NotSipPort => Reason::PassNotSipPort,
            Expect::NotUdpTcp => Reason::PassNotUdpTcp,
            Expect::Lying | Expect::Sip | Expect::Inspect(_) => match src {
                Source::Blocked => Reason::DropBlocked,
                Source::Trusted => Reason::PassTrusted,
                Source::Untrusted if self == Expect::Lying => Reason::DropMalformed,
                Source::Untrusted if !inspect => Reason::DropUntrusted,
                Source::Untrusted => match self {
                    Expect::Inspect(r) => r,
                    _ => Reason::PassInspected,
                },
            },
        }
    }
}

pub struct Shape {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub expect: Expect,
}

const PBX4: [u8; 4] = [100, 64, 0, 1];

fn pbx6() -> [u8; 16] {
    ip6("2001:db8:f::1")
}

fn set16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

// Offsets in an untagged frame.
const V4_IHL: usize = 14;
const V4_TOTAL: usize = 16;
const V4_UDP_LEN: usize = 14 + 20 + 4;
const V6_PAYLOAD: usize = 18;
const V6_UDP_LEN: usize = 14 + 40 + 4;

/// An INVITE of `n` bytes in total: the sample padded with an SDP line.
fn invite_of_len(n: usize) -> Vec<u8> {
    let mut m = sip::invite("alice", "bob", "pbx.example", "Yealink SIP-T46S 66.86.0.15");
    while m.len() < n {
        m.extend_from_slice(b"a=x-pad:0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
    }
    m.truncate(n);
    m
}

/// Every hostile shape, sent from `src`.
pub fn shapes(src: Source) -> Vec<Shape> {
    let s4 = src.v4();
    let s6 = src.v6();
    let inv = sip::invite("alice", "bob", "pbx.example", "Yealink SIP-T46S 66.86.0.15");
    let f4 = || v4(s4, PBX4).udp(40000, 5060).payload(&inv);
    let f6 = || v6(s6, pbx6()).udp(40000, 5060).payload(&inv);
    let udp4 = |p: &[u8]| v4(s4, PBX4).udp(40000, 5060).payload(p).build();
    let patched = |f: Frame, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = f.build();
        edit(&mut b);
        b
    };
    // The INVITE with its first IPv4 byte (version and IHL) set to `b`.
    let version_ihl = |b: u8| patched(f4(), &|f| f[V4_IHL] = b);
    let mut v: Vec<Shape> = Vec::new();
    let mut add = |name: &'static str, frame: Vec<u8>, expect: Expect| {
        v.push(Shape {
            name,
            frame,
            expect,
        })
    };

    // IPv4 IHL and total length.
    add("v4 IHL 0", version_ihl(0x40), Expect::Unparsed);
    add("v4 IHL 4 (< 20 bytes)", version_ihl(0x44), Expect::Unparsed);
    add(
        "v4 IHL 15 with total length 28",
        patched(v4(s4, PBX4).udp(40000, 5060), &|b| b[V4_IHL] = 0x4f),
        Expect::Unparsed,
    );
    add(
        "v4 IHL 15, total length agrees, frame ends at byte 42",
        patched(v4(s4, PBX4).udp(40000, 5060), &|b| {
            b[V4_IHL] = 0x4f;
            set16(b, V4_TOTAL, 68);
        }),
        Expect::Unparsed,
    );
    // The UDP header is read 4 bytes late: dport is the (zero) checksum.
    add(
        "v4 IHL 6 without options",
        version_ihl(0x46),
        Expect::NotSipPort,
    );
    add("v4 version 5", version_ihl(0x55), Expect::Unparsed);
    add(
        "v4 total length 0",
        with_u16(f4(), V4_TOTAL, 0),
        Expect::Unparsed,
    );
    add(
        "v4 total length 19 (< IHL)",
        with_u16(f4(), V4_TOTAL, 19),
        Expect::Unparsed,
    );
    add(
        "v4 total length 20 (no room for UDP)",
        with_u16(f4(), V4_TOTAL, 20),
        Expect::Lying,
    );
    add(
        "v4 total length 24 (half a UDP header)",
        with_u16(f4(), V4_TOTAL, 24),
        Expect::Lying,
    );
    add(
        "v4 total length beyond the frame",
        with_u16(f4(), V4_TOTAL, 1500),
        Expect::Lying,
    );
    add(
        "v4 total length 65535",
        with_u16(f4(), V4_TOTAL, 65535),
        Expect::Lying,
    );
    add(
        "v4 total length shorter than the UDP length",
        with_u16(f4(), V4_TOTAL, 20 + 8 + 10),
        Expect::Lying,
    );
    add(
        "v4 TCP data offset 0",
        patched(v4(s4, PBX4).tcp(40000, 5060).payload(&inv), &|b| {
            b[14 + 20 + 12] = 0
        }),
        Expect::Lying,
    );
    add(
        "v4 TCP data offset past the segment",
        patched(v4(s4, PBX4).tcp(40000, 5060), &|b| b[14 + 20 + 12] = 0xf0),
        Expect::Lying,
    );

    // UDP length.
    add("UDP length 0", with_u16(f4(), V4_UDP_LEN, 0), Expect::Lying);
    add("UDP length 7", with_u16(f4(), V4_UDP_LEN, 7), Expect::Lying);
    add(
        "UDP length 65535",
        with_u16(f4(), V4_UDP_LEN, 65535),
        Expect::Lying,
    );
    add(
        "UDP length 1 past the IP payload",
        patched(f4(), &|b| {
            let l = u16::from_be_bytes([b[V4_UDP_LEN], b[V4_UDP_LEN + 1]]);
            set16(b, V4_UDP_LEN, l + 1)
        }),
        Expect::Lying,
    );
    // Bytes after the datagram inside the IP payload: trailing, not a lie.
    add(
        "UDP length shorter than the payload",
        with_u16(f4(), V4_UDP_LEN, 8 + 10),
        Expect::Inspect(Reason::PassPartial),
    );
    add(
        "UDP length 8 with payload after it",
        with_u16(f4(), V4_UDP_LEN, 8),
        Expect::Sip,
    );
    add("zero-length UDP payload", udp4(b""), Expect::Sip);

    // IPv6 payload length.
    add(
        "v6 payload length 0",
        with_u16(f6(), V6_PAYLOAD, 0),
        Expect::Lying,
    );
    add(
        "v6 payload length 4 (half a UDP header)",
        with_u16(f6(), V6_PAYLOAD, 4),
        Expect::Lying,
    );
    add(
        "v6 payload length beyond the frame",
        with_u16(f6(), V6_PAYLOAD, 1500),
        Expect::Lying,
    );
    add(
        "v6 payload length 65535",
        with_u16(f6(), V6_PAYLOAD, 65535),
        Expect::Lying,
    );
    add(
        "v6 payload length shorter than its extension headers",
        with_u16(f6().ext(0, vec![]), V6_PAYLOAD, 4),
        Expect::Unparsed,
    );
    add(
        "v6 UDP length beyond the payload length",
        with_u16(f6(), V6_UDP_LEN, 4000),
        Expect::Lying,
    );
    add(
        "v6 UDP length 0",
        with_u16(f6(), V6_UDP_LEN, 0),
        Expect::Lying,
    );
    add(
        "v6 version 4",
        patched(f6(), &|b| b[14] = 0x40),
        Expect::Unparsed,
    );

    // IPv6 extension header chains.
    let chain = |n: usize| (0..n).fold(f6(), |f, _| f.ext(60, vec![])).build();
    add("v6 6 extension headers (the bound)", chain(6), Expect::Sip);
    add("v6 7 extension headers", chain(7), Expect::Unparsed);
    add("v6 16 extension headers", chain(16), Expect::Unparsed);
    add(
        "v6 6 mixed extension headers then a fragment header",
        f6().ext(0, vec![])
            .ext(43, vec![0; 6])
            .ext(60, vec![])
            .ext(51, vec![0; 10])
            .ext(60, vec![])
            .ext(60, vec![])
            .ext(44, vec![0; 6])
            .build(),
        Expect::Unparsed,
    );
    add(
        "v6 hop-by-hop length past the frame",
        patched(f6().ext(0, vec![]), &|b| b[14 + 40 + 1] = 255),
        Expect::Unparsed,
    );
    add(
        "v6 AH length past the frame",
        patched(f6().ext(51, vec![0; 10]), &|b| b[14 + 40 + 1] = 255),
        Expect::Unparsed,
    );
    add(
        "v6 frame ends inside a fragment header",
        {
            let b = f6().ext(44, vec![0; 6]).build();
            b[..14 + 40 + 3].to_vec()
        },
        Expect::Unparsed,
    );
    add(
        "v6 No Next Header",
        v6(s6, pbx6()).proto(59).payload(&inv).build(),
        Expect::NotUdpTcp,
    );
    add(
        "v6 extension chain ending in ICMPv6",
        v6(s6, pbx6())
            .ext(0, vec![])
            .proto(58)
            .payload([128, 0, 0, 0])
            .build(),
        Expect::NotUdpTcp,
    );

    // VLAN stacks.
    add(
        "3 VLAN tags",
        f4().vlan(0x88a8).vlan(0x8100).vlan(0x8100).build(),
        Expect::Unparsed,
    );
    add(
        "4 VLAN tags",
        f4().vlan(0x88a8)
            .vlan(0x88a8)
            .vlan(0x8100)
            .vlan(0x8100)
            .build(),
        Expect::Unparsed,
    );
    add(
        "8 VLAN tags",
        (0..8).fold(f4(), |f, _| f.vlan(0x8100)).build(),
        Expect::Unparsed,
    );
    add(
        "2 VLAN tags, both 802.1ad",
        f4().vlan(0x88a8).vlan(0x88a8).build(),
        Expect::Sip,
    );
    add(
        "2 VLAN tags then IPv6 with extension headers",
        f6().vlan(0x88a8)
            .vlan(0x8100)
            .ext(0, vec![])
            .ext(60, vec![])
            .build(),
        Expect::Sip,
    );
    add(
        "frame ends inside a VLAN tag",
        f4().vlan(0x8100).build()[..16].to_vec(),
        Expect::Unparsed,
    );

    // Payloads: the headers are right, the SIP message is hostile.
    let not_sip = Expect::Inspect(Reason::DropNotSip);
    add(
        "1-byte payload",
        udp4(b"I"),
        Expect::Inspect(Reason::PassPartial),
    );
    add("1-byte NUL payload", udp4(&[0]), Expect::Sip);
    add("512 NUL bytes", udp4(&[0; 512]), not_sip);
    add(
        "non-UTF-8 bytes",
        udp4(&(0x80..=0xffu8).cycle().take(600).collect::<Vec<u8>>()),
        not_sip,
    );
    add(
        "INVITE with NUL in the request line",
        udp4(&{
            let mut m = inv.clone();
            m[6] = 0;
            m
        }),
        not_sip,
    );
    add(
        "INVITE with NUL and 0xff in User-Agent",
        udp4(&replace(&inv, b"Yealink", b"\0\xffsip\xfe")),
        Expect::Sip,
    );
    add("header lines without a colon", udp4(b"INVITE sip:100@pbx.example SIP/2.0\r\nVia SIP/2.0/UDP 1.2.3.4\r\nUser-Agent friendly-scanner\r\nFrom\r\n\r\n"), Expect::Sip);
    add(
        "bare LF line endings",
        udp4(&replace(&inv, b"\r\n", b"\n")),
        Expect::Sip,
    );
    add(
        "request line only, no line end",
        udp4(b"OPTIONS sip:100@198.51.100.1 SIP/2.0"),
        Expect::Inspect(Reason::PassPartial),
    );
    add(
        "scanner OPTIONS cut inside User-Agent (lengths agree)",
        udp4(cut_in(&sip::svmap_options(), b"friendly-sc")),
        Expect::Inspect(Reason::DropSipVicious),
    );
    // The datagram was cut after the headers were written: the lengths
    // still count the missing bytes.
    add(
        "INVITE cut inside User-Agent (lengths claim more)",
        {
            let b = f4().build();
            let at = find(&b, b"User-Agent: Yeal")
                .map(|i| i + 16)
                .unwrap_or(b.len());
            b[..at].to_vec()
        },
        Expect::Lying,
    );
    add("1400 bytes of 0xff", udp4(&[0xff; 1400]), not_sip);

    // Big frames: BPF_PROG_TEST_RUN shows a program without multi-buffer
    // support only the first 3520 bytes (tests/tests/hostile.rs has the
    // 9000-byte case), so this is the largest frame it sees whole.
    add(
        "3520-byte frame (largest linear test frame)",
        udp4(&invite_of_len(3520 - 42)),
        Expect::Sip,
    );
    add(
        "3520-byte frame, UDP length claims 9000",
        patched(
            v4(s4, PBX4)
                .udp(40000, 5060)
                .payload(invite_of_len(3520 - 42)),
            &|b| {
                set16(b, V4_UDP_LEN, 9000 - 34);
            },
        ),
        Expect::Lying,
    );
    v
}

/// A 9000-byte jumbo INVITE (what a 9000-MTU link delivers whole).
pub fn jumbo_9000(src: Source) -> Vec<u8> {
    v4(src.v4(), PBX4)
        .udp(40000, 5060)
        .payload(invite_of_len(9000 - 42))
        .build()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// `msg` up to and including `marker` (the rest of the message is lost).
fn cut_in<'a>(msg: &'a [u8], marker: &[u8]) -> &'a [u8] {
    match find(msg, marker) {
        Some(i) => &msg[..i + marker.len()],
        None => msg,
    }
}
