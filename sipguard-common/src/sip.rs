//! The SIP inspector (PRODUCT.md step 5): one matcher for the kernel and the
//! host.
//!
//! It is a resumable scanner: [`step`] does a bounded piece of work (the
//! request line, or one header line) and records what it learned in a
//! `#[repr(C)]` [`Scan`]; [`decide`] turns those facts into a [`Reason`].
//! The XDP program drives `step` with `bpf_loop` (the verifier checks one
//! callback instead of an unrolled 1500-byte scan), the host with a plain
//! `for` loop; both stop after [`MAX_STEPS`], so they agree by construction.
//!
//! Only the request line and the header block are read: scanning stops at
//! the empty line, so nothing in a body can ever match. Every step advances
//! the position by at least one byte or finishes, so [`MAX_STEPS`] (larger
//! than [`WINDOW`]) is never the limit that ends a scan.

use crate::{
    abi::{
        sip_method, Settings, SipEventInfo, EVENT_UA_LEN, METHODS, METHOD_INVITE, METHOD_OTHER,
        RULE_EXPECTED_USERS, RULE_NOT_SIP, RULE_SIPVICIOUS, RULE_URI_IP_HOST, RULE_USER_AGENT,
        UA_BYTES, USER_BYTES,
    },
    packet::{Bytes, Flow},
    reason::Reason,
    scan_io::{ld, st, MAX_SCAN_OFF},
};

/// Payload bytes inspected: a whole message in a 1500-byte MTU datagram.
/// The header block of larger messages is judged on what fits (see
/// [`decide`]).
pub const WINDOW: u32 = 1500;
/// Upper bound of `step` calls (bpf_loop's `nr_loops`, the host's loop).
pub const MAX_STEPS: u32 = 1536;

/// Header name bytes read to classify a header line.
const NAME_MAX: u32 = 16;
/// Whitespace skipped between a header's name and colon and after the colon.
pub const WS_MAX: u32 = 32;
/// From/To value bytes read for the fingerprint; longer values never match.
pub const ADDR_MAX: u32 = 96;
/// Request-URI bytes examined per step.
const URI_CHUNK: u32 = 64;
/// 8-byte words searched for a line end per step.
const SKIP_WORDS: u32 = 16;

const fn pack(s: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < s.len() && i < 8 {
        w |= (s[i] as u64) << (8 * i);
        i += 1;
    }
    w
}

/// Bytes 8.. of a name, packed like [`pack`] packs the first 8.
const fn pack_tail(s: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 8;
    while i < s.len() && i < 16 {
        w |= (s[i] as u64) << (8 * (i - 8));
        i += 1;
    }
    w
}

/// (bytes 0-7 packed, bytes 8-15 packed, length) of every method.
const METHOD_KEYS: [(u64, u64, u32); 15] = {
    let mut k = [(0u64, 0u64, 0u32); 15];
    let mut i = 0;
    while i < 15 {
        let m = METHODS[i].as_bytes();
        k[i] = (pack(m), pack_tail(m), m.len() as u32);
        i += 1;
    }
    k
};

// Scan phases.
const PH_START: u32 = 0;
const PH_URI: u32 = 1;
const PH_LINE: u32 = 2;
const PH_SKIP: u32 = 3;
const PH_VALUE: u32 = 4;
pub const PH_DONE: u32 = 5;

// `Scan::flags`.
/// Keepalive (CRLF / NUL padding) or a STUN message on the SIP flow.
pub const F_KEEPALIVE: u32 = 1 << 0;
/// A SIP response (status line): not inspected.
pub const F_RESPONSE: u32 = 1 << 1;
/// The payload is not a SIP request.
pub const F_NOT_SIP: u32 = 1 << 2;
/// The empty line that ends the header block was seen.
pub const F_EOH: u32 = 1 << 3;
/// The bytes ran out (window, frame or datagram) before the empty line.
pub const F_CUT: u32 = 1 << 4;
/// The Request-URI was read to its end.
pub const F_URI_DONE: u32 = 1 << 5;
/// The Request-URI has a user part.
pub const F_HAS_USER: u32 = 1 << 6;
/// The user part is longer than [`USER_BYTES`] (`user_len` stops there).
pub const F_USER_LONG: u32 = 1 << 7;
/// The Request-URI host is an IP literal.
pub const F_IP_HOST: u32 = 1 << 8;
/// A User-Agent header was read.
pub const F_UA: u32 = 1 << 9;
// Request-URI parsing state.
const F_SEG_NONIP: u32 = 1 << 16;
const F_SEG_DOT: u32 = 1 << 17;
const F_SEG_BRACKET: u32 = 1 << 18;
const F_SEG_END: u32 = 1 << 19;
const F_USER_STOP: u32 = 1 << 20;
const F_TEL: u32 = 1 << 21;
const F_IN_HOST: u32 = 1 << 22;
const F_SEG_ANY: u32 = 1 << 23;

// `Addr::flags`.
/// The value was read completely (to its parameters or line end).
pub const A_VALID: u32 = 1 << 0;

/// What was learned about a From or To header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Addr {
    /// FNV-1a of the value without whitespace and header parameters (the
    /// tag), so From and To of the same address compare equal.
    pub hash: u32,
    /// FNV-1a of the display name, lowercased, without quotes.
    pub name: u32,
    /// FNV-1a of the URI host (after '@', before a port or parameters).
    pub host: u32,
    pub flags: u32,
}

/// The scanner's state and the facts it collected. `#[repr(C)]`: the XDP
/// program hands a pointer to it to the `bpf_loop` callback.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Frame offset of the next byte to look at.
    pub pos: u32,
    /// Frame offset where inspection stops (exclusive).
    pub end: u32,
    pub phase: u32,
    pub flags: u32,
    pub method: u32,
    pub user_len: u32,
    pub ua_len: u32,
    /// The header [`value`] reads (`HDR_*`).
    pub header: u32,
    /// Scratch for [`addr`].
    pub mode: u32,
    /// Scratch for [`line`] and [`start`]: a packed header name or method.
    pub name: [u64; 2],
    // `user` and `ua` sit at multiples of 8 (checked below): they are
    // cleared and filled a word at a time.
    pub user: [u8; USER_BYTES],
    /// Lowercased first bytes of the User-Agent value.
    pub ua: [u8; UA_BYTES],
    /// Scratch: a length or flag passed through memory (see [`line`]).
    pub aux: u32,
    pub from: Addr,
    pub to: Addr,
}

const _: () = {
    assert!(core::mem::offset_of!(Scan, user).is_multiple_of(8));
    assert!(core::mem::offset_of!(Scan, ua).is_multiple_of(8));
    assert!(core::mem::size_of::<Scan>().is_multiple_of(8));
    assert!(core::mem::align_of::<Scan>() == 8);
};

/// Zeroes `N` words at `p` with one store each. A plain `= [0; N]` becomes
/// a call of a byte-at-a-time `memset` in BPF (one loop iteration, five
/// instructions, per byte).
///
/// # Safety
/// `p` must be valid for writing `N` u64s and aligned to 8.
#[inline(always)]
unsafe fn zero_words<const N: usize>(p: *mut u64) {
    let mut i = 0;
    while i < N {
        // SAFETY: in bounds by the caller's contract; volatile so that the
        // stores are not merged back into a `memset` call.
        unsafe { core::ptr::write_volatile(p.add(i), 0) };
        i += 1;
    }
}

/// Clears a 32-byte array of `Scan` (`user` or `ua`) with four stores.
#[inline(always)]
fn clear32(a: &mut [u8; 32]) {
    // SAFETY: `user` and `ua` are 32 bytes at 8-aligned offsets of an
    // 8-aligned struct (checked at compile time above).
    unsafe { zero_words::<4>(a.as_mut_ptr() as *mut u64) }
}

/// Stores word `i` (0-3) of a 32-byte array of `Scan`.
#[inline(always)]
fn store32(a: &mut [u8; 32], i: usize, v: u64) {
    // SAFETY: as in `clear32`; `i & 3` keeps the store inside the array.
    unsafe { core::ptr::write_volatile((a.as_mut_ptr() as *mut u64).add(i & 3), v.to_le()) }
}

impl Scan {
    /// A scan of the UDP payload of `flow` in a frame of `frame_len` bytes.
    #[inline(always)]
    pub fn new(flow: &Flow, frame_len: usize) -> Scan {
        let (start, end) = Scan::span(flow, frame_len);
        Scan {
            pos: start,
            end,
            phase: PH_START,
            flags: 0,
            method: METHOD_OTHER,
            user_len: 0,
            ua_len: 0,
            header: 0,
            mode: 0,
            name: [0; 2],
            aux: 0,
            from: Addr::default(),
            to: Addr::default(),
            user: [0; USER_BYTES],
            ua: [0; UA_BYTES],
        }
    }

    /// First and end (exclusive) frame offset of the inspected bytes.
    #[inline(always)]
    fn span(flow: &Flow, frame_len: usize) -> (u32, u32) {
        let start = flow.payload_off;
        let mut end = start.saturating_add(flow.payload_len);
        let window_end = start.saturating_add(WINDOW);
        if end > window_end {
            end = window_end;
        }
        if end as usize > frame_len {
            end = frame_len as u32;
        }
        // Headers end long before this (at most ~12.4 KiB with the deepest
        // IPv6 extension chain), so it never cuts a real message.
        if end > MAX_SCAN_OFF {
            end = MAX_SCAN_OFF;
        }
        (start, end)
    }

    /// Makes `self` what [`Scan::new`] returns, in place and a word at a
    /// time: the kernel's scan state is a map value, and building a new
    /// `Scan` and copying it there compiles to byte-at-a-time `memset`
    /// loops (~150 iterations per packet).
    #[inline(always)]
    pub fn reset(&mut self, flow: &Flow, frame_len: usize) {
        // SAFETY: `Scan` is 8-aligned and a multiple of 8 bytes (checked at
        // compile time), and every field is an integer, so all-zero bytes
        // are a valid value.
        unsafe {
            zero_words::<{ core::mem::size_of::<Scan>() / 8 }>(self as *mut Scan as *mut u64)
        };
        // Everything else of `new` is zero; `reset_equals_new` checks it.
        let (start, end) = Scan::span(flow, frame_len);
        self.pos = start;
        self.end = end;
    }

    #[inline(always)]
    pub fn done(&self) -> bool {
        self.phase == PH_DONE
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    Done,
}

/// The byte at `off`, or `None` at or past the end of the inspected bytes.
#[inline(always)]
fn at<B: Bytes + ?Sized>(pkt: &B, s: &Scan, off: u32) -> Option<u8> {
    // `end` is re-read every time: a cached copy would carry what each
    // earlier comparison taught the verifier about it, and paths that learnt
    // different things would not merge.
    if off >= ld(&s.end) {
        return None;
    }
    pkt.u8_at((off & MAX_SCAN_OFF) as usize)
}

/// `N` bytes at `off` if they all lie before the end of the inspected bytes.
#[inline(always)]
fn rd<const N: usize, B: Bytes + ?Sized>(pkt: &B, s: &Scan, off: u32) -> Option<[u8; N]> {
    let end = ld(&s.end);
    if off >= end || end - off < N as u32 {
        return None;
    }
    pkt.read::<N>((off & MAX_SCAN_OFF) as usize)
}

/// The 8 bytes at `off` as a little-endian word if they all lie before the
/// end of the inspected bytes.
#[inline(always)]
fn word<B: Bytes + ?Sized>(pkt: &B, s: &Scan, off: u32) -> Option<u64> {
    let end = ld(&s.end);
    if off >= end || end - off < 8 {
        return None;
    }
    pkt.u64_le((off & MAX_SCAN_OFF) as usize)
}

/// The 16 bytes at `off` as two little-endian words if they all lie before
/// the end of the inspected bytes.
#[inline(always)]
fn words2<B: Bytes + ?Sized>(pkt: &B, s: &Scan, off: u32) -> Option<(u64, u64)> {
    let end = ld(&s.end);
    if off >= end || end - off < 16 {
        return None;
    }
    pkt.u64x2_le((off & MAX_SCAN_OFF) as usize)
}

/// `b` in every byte of a word.
#[inline(always)]
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101u64.wrapping_mul(b as u64)
}

/// The high bit of each byte of `v` that is zero. Exact for the lowest
/// zero byte; above it a borrow can mark a byte that is not zero, so only
/// the lowest mark is used (also of an or of several such masks: each
/// mask's lowest mark is exact, so the lowest of all is).
#[inline(always)]
const fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(0x0101_0101_0101_0101) & !v & 0x8080_8080_8080_8080
}

/// Marks (see [`zero_bytes`]) of the bytes of `v` equal to `b`.
#[inline(always)]
const fn bytes_eq(v: u64, b: u8) -> u64 {
    zero_bytes(v ^ splat(b))
}

/// Index (0-7) of the lowest marked byte of a non-zero mask, without a
/// count-trailing-zeros instruction: isolate the mark, move it to bit 8k,
/// and let the multiplication carry byte 7-k of the constant (= k) to the
/// top byte.
#[inline(always)]
const fn first_mark(z: u64) -> u32 {
    let low = (z & z.wrapping_neg()) >> 7;
    (low.wrapping_mul(0x0001_0203_0405_0607) >> 56) as u32 & 7
}

/// The low `n` bytes of a word (`n` at most 7).
#[inline(always)]
const fn low_bytes(v: u64, n: u32) -> u64 {
    v & ((1u64 << ((8 * n) & 63)) - 1)
}

/// Marks of the bytes that end a header name: ':', space, tab, CR, LF.
#[inline(always)]
const fn name_ends(v: u64) -> u64 {
    bytes_eq(v, b':')
        | bytes_eq(v, b' ')
        | bytes_eq(v, b'\t')
        | bytes_eq(v, b'\r')
        | bytes_eq(v, b'\n')
}

/// Marks of CR and LF bytes.
#[inline(always)]
const fn line_ends(v: u64) -> u64 {
    bytes_eq(v, b'\r') | bytes_eq(v, b'\n')
}

/// [`lower`] of every byte of a word.
#[inline(always)]
const fn lower_word(v: u64) -> u64 {
    // Per byte, on its low 7 bits (so no carry crosses bytes): the high
    // bit of `+ 0x3f` is set from 'A' up, of `+ 0x25` from '['; a byte
    // with its own high bit set is no letter.
    let h = v & 0x7f7f_7f7f_7f7f_7f7f;
    let upper = h.wrapping_add(splat(0x80 - b'A')) & !h.wrapping_add(splat(0x80 - b'[')) & !v;
    v | ((upper & 0x8080_8080_8080_8080) >> 2)
}

#[inline(always)]
const fn lower(b: u8) -> u8 {
    if b >= b'A' && b <= b'Z' {
        b + 32
    } else {
        b
    }
}

#[inline(always)]
const fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

#[inline(always)]
fn finish(s: &mut Scan, flags: u32) -> Step {
    s.flags |= flags;
    s.phase = PH_DONE;
    Step::Done
}

/// One bounded piece of work. Call until it returns [`Step::Done`], at most
/// [`MAX_STEPS`] times.
#[inline(always)]
pub fn step<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
    match s.phase {
        PH_START => start(s, pkt),
        PH_URI => uri(s, pkt),
        PH_LINE => line(s, pkt),
        PH_SKIP => skip(s, pkt),
        PH_VALUE => value(s, pkt),
        _ => Step::Done,
    }
}

/// Runs a whole scan the way the host does (the kernel uses `bpf_loop`).
pub fn scan<B: Bytes + ?Sized>(flow: &Flow, pkt: &B) -> Scan {
    let mut s = Scan::new(flow, pkt.len());
    for _ in 0..MAX_STEPS {
        if step(&mut s, pkt) == Step::Done {
            break;
        }
    }
    s
}

/// Keepalives, STUN, responses, then the method and the URI scheme.
#[inline(always)]
fn start<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
    let p = s.pos;
    let Some(b0) = at(pkt, s, p) else {
        // An empty datagram is a keepalive some phones send.
        return finish(s, F_KEEPALIVE);
    };
    // STUN (RFC 5389) on the SIP flow: RFC 5626 keepalives.
    if b0 & 0xc0 == 0 && p + 20 <= s.end {
        if let Some(c) = rd::<4, B>(pkt, s, p + 4) {
            if c[0] == 0x21 && c[1] == 0x12 && c[2] == 0xa4 && c[3] == 0x42 {
                return finish(s, F_KEEPALIVE);
            }
        }
    }
    if b0 == b'\r' || b0 == b'\n' || b0 == 0 || b0 == b' ' {
        // RFC 5626 CRLF keepalives and NUL-padded vendor keepalives.
        let mut i = 0;
        while i < 8 {
            match at(pkt, s, p + i) {
                None => return finish(s, F_KEEPALIVE),
                Some(b) if b == b'\r' || b == b'\n' || b == 0 || b == b' ' => {}
                Some(_) => break,
            }
            i += 1;
        }
        return finish(s, F_NOT_SIP);
    }
    if b0 == b'S' {
        if let Some(v) = rd::<8, B>(pkt, s, p) {
            if v[1] == b'I'
                && v[2] == b'P'
                && v[3] == b'/'
                && v[4] == b'2'
                && v[5] == b'.'
                && v[6] == b'0'
                && v[7] == b' '
            {
                return finish(s, F_RESPONSE);
            }
        }
    }
    // Method: an upper-case token followed by one space.
    let mut word = 0u64;
    let mut tail = 0u64;
    let mut len = 0u32;
    let mut ended = false;
    while len < 16 {
        let Some(b) = at(pkt, s, p + len) else {
            return finish(s, F_CUT);
        };
        if b == b' ' {
            ended = true;
            break;
        }
        if !b.is_ascii_uppercase() {
            return finish(s, F_NOT_SIP);
        }
        if len < 8 {
            word |= (b as u64) << (8 * len);
        } else {
            tail |= (b as u64) << (8 * (len - 8));
        }
        len += 1;
    }
    if !ended || len == 0 {
        return finish(s, F_NOT_SIP);
    }
    // Through memory, so the ways out of the loop merge (see `line`).
    st(&mut s.aux, len);
    // SAFETY: fields of a live struct.
    unsafe {
        core::ptr::write_volatile(&mut s.name[0], word);
        core::ptr::write_volatile(&mut s.name[1], tail);
    }
    let len = ld(&s.aux);
    // SAFETY: as above.
    let (word, tail) = unsafe {
        (
            core::ptr::read_volatile(&s.name[0]),
            core::ptr::read_volatile(&s.name[1]),
        )
    };
    let mut id = METHOD_OTHER;
    let mut i = 1;
    while i < METHOD_KEYS.len() {
        if METHOD_KEYS[i].0 == word && METHOD_KEYS[i].1 == tail && METHOD_KEYS[i].2 == len {
            id = i as u32;
        }
        i += 1;
    }
    s.method = id;
    let u = p + len + 1;
    // Scheme, case-insensitive: sip:, sips:, tel:.
    let (Some(a), Some(b), Some(c), Some(d)) = (
        at(pkt, s, u),
        at(pkt, s, u + 1),
        at(pkt, s, u + 2),
        at(pkt, s, u + 3),
    ) else {
        s.pos = u;
        s.phase = PH_URI;
        return finish(s, F_CUT);
    };
    let (a, b, c, d) = (lower(a), lower(b), lower(c), lower(d));
    if a == b's' && b == b'i' && c == b'p' && d == b':' {
        s.pos = u + 4;
    } else if a == b's' && b == b'i' && c == b'p' && d == b's' && at(pkt, s, u + 4) == Some(b':') {
        s.pos = u + 5;
    } else if a == b't' && b == b'e' && c == b'l' && d == b':' {
        s.pos = u + 4;
        s.flags |= F_TEL;
    } else {
        return finish(s, F_NOT_SIP);
    }
    s.phase = PH_URI;
    Step::Continue
}

/// Request-URI: user part (up to '@'), host (IP literal or not), then
/// " SIP/2.0" and the line end.
#[inline(always)]
fn uri<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
    // The running state is loaded and stored volatile on every byte: in
    // the kernel it lives in a map value, which the verifier treats as
    // unknown, so it does not fork a state per combination of flags,
    // lengths and position (see `addr`).
    let mut i = 0;
    while i < URI_CHUNK {
        let pos = ld(&s.pos);
        let Some(b) = at(pkt, s, pos) else {
            return finish(s, F_CUT);
        };
        if b == b' ' {
            return uri_end(s, pkt);
        }
        if b == b'\r' || b == b'\n' {
            return finish(s, F_NOT_SIP);
        }
        st(&mut s.pos, pos + 1);
        i += 1;
        let mut f = ld(&s.flags);
        if b == b'@' && f & F_IN_HOST == 0 {
            // What was collected is the user; the host starts now.
            f |= F_HAS_USER | F_IN_HOST;
            f &= !(F_SEG_NONIP | F_SEG_DOT | F_SEG_BRACKET | F_SEG_END | F_SEG_ANY);
            st(&mut s.flags, f);
            continue;
        }
        if f & F_IN_HOST == 0 {
            if b == b':' {
                // "user:password@host", or "host:port" if no '@' follows.
                f |= F_USER_STOP;
            } else if f & F_USER_STOP == 0 {
                let n = ld(&s.user_len);
                if n < USER_BYTES as u32 {
                    s.user[(n as usize) & (USER_BYTES - 1)] = b;
                    st(&mut s.user_len, n + 1);
                } else {
                    f |= F_USER_LONG;
                }
            }
        }
        // Host segment: ends at a port, parameters or headers.
        if f & F_SEG_END == 0 {
            if b == b'[' && f & F_SEG_ANY == 0 {
                f |= F_SEG_BRACKET | F_SEG_END;
            } else if b == b':' || b == b';' || b == b'?' {
                f |= F_SEG_END;
            } else {
                if b == b'.' {
                    f |= F_SEG_DOT;
                } else if !b.is_ascii_digit() {
                    f |= F_SEG_NONIP;
                }
                f |= F_SEG_ANY;
            }
        }
        st(&mut s.flags, f);
    }
    Step::Continue
}

#[inline(always)]
fn uri_end<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
    let f = s.flags;
    if f & F_HAS_USER == 0 {
        // No '@': what was collected was the host (or a tel: number).
        if f & F_TEL != 0 {
            s.flags |= F_HAS_USER;
        } else {
            s.user_len = 0;
            clear32(&mut s.user);
            s.flags &= !F_USER_LONG;
        }
    }
    if f & F_TEL == 0
        && (f & F_SEG_BRACKET != 0
            || (f & F_SEG_ANY != 0 && f & F_SEG_DOT != 0 && f & F_SEG_NONIP == 0))
    {
        s.flags |= F_IP_HOST;
    }
    s.flags |= F_URI_DONE;
    // " SIP/2.0" then CRLF or LF.
    let p = s.pos;
    let v = [b' ', b'S', b'I', b'P', b'/', b'2', b'.', b'0'];
    let mut i = 0;
    while i < 8 {
        match at(pkt, s, p + i as u32) {
            None => return finish(s, F_CUT),
            Some(b) if b == v[i] => {}
            Some(_) => return finish(s, F_NOT_SIP),
        }
        i += 1;
    }
    let mut q = p + 8;
    if at(pkt, s, q) == Some(b'\r') {
        q += 1;
    }
    match at(pkt, s, q) {
        None => finish(s, F_CUT),
        Some(b'\n') => {
            s.pos = q + 1;
            s.phase = PH_LINE;
            Step::Continue
        }
        Some(_) => finish(s, F_NOT_SIP),
    }
}

const HDR_OTHER: u32 = 0;
const HDR_UA: u32 = 1;
const HDR_FROM: u32 = 2;
const HDR_TO: u32 = 3;

/// Start of a header line: the end of the header block, or the header
/// name. Headers the rules look at continue in [`value`]; others are
/// skipped to the line end right away.
#[inline(always)]
fn line<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
    let p = s.pos;
    let Some(b0) = at(pkt, s, p) else {
        return finish(s, F_CUT);
    };
    if b0 == b'\n' {
        return finish(s, F_EOH);
    }
    if b0 == b'\r' {
        match at(pkt, s, p + 1) {
            Some(b'\n') => return finish(s, F_EOH),
            None => return finish(s, F_CUT),
            Some(_) => {}
        }
    }
    // Name, lowercased, packed into two words. Setting bit 5 lowercases
    // letters without a branch (a branch per byte would give the verifier
    // 2^16 paths to tell apart). Other bytes change too, but none of them
    // becomes a byte of the names compared below: '-' keeps its value and
    // CR ends the name.
    let (mut w0, mut w1, mut n, mut ended) = (0u64, 0u64, 0u32, false);
    if let Some((a, b)) = words2(pkt, s, p) {
        // All NAME_MAX bytes are there: find the end of the name in two
        // words instead of byte by byte.
        const L: u64 = 0x2020_2020_2020_2020;
        let (e0, e1) = (name_ends(a), name_ends(b));
        if e0 != 0 {
            n = first_mark(e0);
            w0 = low_bytes(a | L, n);
            ended = true;
        } else if e1 != 0 {
            let k = first_mark(e1);
            n = 8 + k;
            w0 = a | L;
            w1 = low_bytes(b | L, k);
            ended = true;
        } else {
            n = NAME_MAX;
            w0 = a | L;
            w1 = b | L;
        }
    } else {
        while n < NAME_MAX {
            let Some(b) = at(pkt, s, p + n) else {
                return finish(s, F_CUT);
            };
            if b == b':' || is_ws(b) || b == b'\r' || b == b'\n' {
                ended = true;
                break;
            }
            let l = (b | 0x20) as u64;
            if n < 8 {
                w0 |= l << (8 * n);
            } else {
                w1 |= l << (8 * (n - 8));
            }
            n += 1;
        }
    }
    // A line starting with ':' or whitespace (a folded continuation) still
    // consumes its first byte.
    st(&mut s.pos, if n > 0 { p + n } else { p + 1 });
    // The name goes through memory: each way out of the loop has its own
    // length and byte pattern, and comparing those registers would make the
    // verifier follow every one of them separately through the rest of the
    // step. Values read back from the map are unknown to it, so they merge.
    st(&mut s.aux, if ended { n } else { 0 });
    // SAFETY: fields of a live struct.
    unsafe {
        core::ptr::write_volatile(&mut s.name[0], w0);
        core::ptr::write_volatile(&mut s.name[1], w1);
    }
    let n = ld(&s.aux);
    // SAFETY: as above.
    let (w0, w1) = unsafe {
        (
            core::ptr::read_volatile(&s.name[0]),
            core::ptr::read_volatile(&s.name[1]),
        )
    };
    let mut kind = HDR_OTHER;
    if n == 10 && w0 == pack(b"user-age") && w1 == pack(b"nt") {
        kind = HDR_UA;
    } else if (n == 4 && w0 == pack(b"from")) || (n == 1 && w0 == pack(b"f")) {
        kind = HDR_FROM;
    } else if (n == 2 && w0 == pack(b"to")) || (n == 1 && w0 == pack(b"t")) {
        kind = HDR_TO;
    }
    if kind == HDR_OTHER {
        s.phase = PH_SKIP;
        return skip(s, pkt);
    }
    s.header = kind;
    s.phase = PH_VALUE;
    Step::Continue
}

/// Whitespace, the colon, whitespace, then the value of a User-Agent, From
/// or To header; then on to the line end.
#[inline(always)]
fn value<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
    let mut q = ld(&s.pos);
    let mut colon = false;
    let mut k = 0;
    while k < WS_MAX {
        match at(pkt, s, q) {
            None => return finish(s, F_CUT),
            Some(b':') if !colon => colon = true,
            Some(b) if is_ws(b) => {}
            Some(_) => break,
        }
        q += 1;
        k += 1;
    }
    st(&mut s.pos, q);
    s.phase = PH_SKIP;
    // Through memory, so the ways out of the loop merge (see `line`).
    st(&mut s.aux, (colon && k < WS_MAX) as u32);
    if ld(&s.aux) == 0 {
        // Not a header after all, or more whitespace than any sender uses.
        return Step::Continue;
    }
    let kind = s.header;
    let q = ld(&s.pos);
    if kind == HDR_UA {
        user_agent(s, pkt, q);
    } else {
        let a = addr(s, pkt, q);
        if kind == HDR_FROM {
            s.from = a;
        } else {
            s.to = a;
        }
    }
    Step::Continue
}

#[inline(always)]
fn user_agent<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B, q: u32) {
    s.flags |= F_UA;
    clear32(&mut s.ua);
    let mut n = 0u32;
    // A word at a time while whole words are there.
    let mut i = 0;
    while i < UA_BYTES / 8 {
        let Some(v) = word(pkt, s, q + n) else {
            break;
        };
        let l = lower_word(v);
        let e = line_ends(v);
        if e != 0 {
            let k = first_mark(e);
            store32(&mut s.ua, i, low_bytes(l, k));
            s.ua_len = n + k;
            return;
        }
        store32(&mut s.ua, i, l);
        n += 8;
        i += 1;
    }
    while n < UA_BYTES as u32 {
        match at(pkt, s, q + n) {
            Some(b) if b != b'\r' && b != b'\n' => {
                s.ua[(n as usize) & (UA_BYTES - 1)] = lower(b);
            }
            _ => break,
        }
        n += 1;
    }
    s.ua_len = n;
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

const fn fnv(bytes: &[u8]) -> u32 {
    let mut h = FNV_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u32).wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

/// FNV-1a of the SIPVicious display name and host, as [`addr`] hashes them.
pub const SV_NAME_HASH: u32 = fnv(b"sipvicious");
pub const SV_HOST_HASH: u32 = fnv(b"1.1.1.1");

// Where in a From/To value [`addr`] is.
const AD_NAME: u32 = 0;
const AD_URI: u32 = 1;
const AD_HOST: u32 = 2;
const AD_REST: u32 = 3;
const AD_ANGLE: u32 = 4;

/// From/To: hashes of the address without whitespace and header
/// parameters (the tag differs between From and To), of the display name
/// (lowercased, quotes removed) and of the URI host. Hashes keep the
/// per-byte work free of matchers whose progress the verifier would have to
/// track; [`decide`] compares them.
#[inline(always)]
fn addr<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B, q: u32) -> Addr {
    let mut a = Addr {
        hash: FNV_OFFSET,
        name: FNV_OFFSET,
        host: FNV_OFFSET,
        flags: 0,
    };
    // The part of the value being read (AD_*, plus AD_ANGLE inside <>)
    // lives in the scan state and is accessed volatile: in the kernel that
    // is a map value, which the verifier treats as unknown, so the loop
    // does not fork a verifier state per combination of part and position.
    set_mode(s, AD_NAME);
    let mut n = 0u32;
    while n < ADDR_MAX {
        let b = match at(pkt, s, q + n) {
            Some(b) if b != b'\r' && b != b'\n' => b,
            Some(_) => {
                a.flags |= A_VALID;
                break;
            }
            // Cut by the end of the inspected bytes: not the whole value.
            None => break,
        };
        let m = mode(s);
        if b == b';' && m & AD_ANGLE == 0 {
            a.flags |= A_VALID;
            break;
        }
        n += 1;
        if is_ws(b) {
            continue;
        }
        a.hash = (a.hash ^ b as u32).wrapping_mul(FNV_PRIME);
        let part = m & !AD_ANGLE;
        if b == b'<' {
            set_mode(s, AD_URI | AD_ANGLE);
        } else if b == b'>' {
            set_mode(s, AD_REST);
        } else if b == b'@' && part <= AD_URI {
            set_mode(s, AD_HOST | (m & AD_ANGLE));
        } else if part == AD_HOST {
            if b == b':' || b == b';' {
                set_mode(s, AD_REST | (m & AD_ANGLE));
            } else {
                a.host = (a.host ^ b as u32).wrapping_mul(FNV_PRIME);
            }
        } else if part == AD_NAME && b != b'"' {
            a.name = (a.name ^ lower(b) as u32).wrapping_mul(FNV_PRIME);
        }
    }
    a
}

#[inline(always)]
fn mode(s: &Scan) -> u32 {
    // SAFETY: reads a field of a live struct.
    unsafe { core::ptr::read_volatile(&s.mode) }
}

#[inline(always)]
fn set_mode(s: &mut Scan, m: u32) {
    // SAFETY: writes a field of a live struct.
    unsafe { core::ptr::write_volatile(&mut s.mode, m) }
}

/// Finds the end of the current line: 8 bytes at a time while whole words
/// fit, then byte by byte.
#[inline(always)]
fn skip<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
    // 16 bytes per iteration (one bounds check, two loads) while they are
    // there, the position kept in a register.
    let mut p = ld(&s.pos);
    let mut i = 0;
    while i < SKIP_WORDS / 2 {
        let Some((a, b)) = words2(pkt, s, p) else {
            break;
        };
        let (za, zb) = (bytes_eq(a, b'\n'), bytes_eq(b, b'\n'));
        if za | zb != 0 {
            let k = if za != 0 {
                first_mark(za)
            } else {
                8 + first_mark(zb)
            };
            st(&mut s.pos, p + k + 1);
            s.phase = PH_LINE;
            return Step::Continue;
        }
        p += 16;
        i += 1;
    }
    st(&mut s.pos, p);
    if i == SKIP_WORDS / 2 {
        return Step::Continue;
    }
    // Fewer than 16 bytes left: a word, then byte by byte.
    let mut w = 0;
    while w < SKIP_WORDS {
        let p = ld(&s.pos);
        if let Some(v) = word(pkt, s, p) {
            let v = v ^ 0x0a0a_0a0a_0a0a_0a0a;
            // High bit of each byte that was '\n' (exact for the lowest
            // one; a borrow can only mark bytes above it).
            let z = v.wrapping_sub(0x0101_0101_0101_0101) & !v & 0x8080_8080_8080_8080;
            if z == 0 {
                st(&mut s.pos, p + 8);
                w += 1;
                continue;
            }
            // Index of the lowest marked byte without a count-trailing-zeros
            // instruction: isolate it, move it to bit 8k, and let the
            // multiplication carry byte 7-k of the constant (= k) to the top.
            let low = (z & z.wrapping_neg()) >> 7;
            let k = (low.wrapping_mul(0x0001_0203_0405_0607) >> 56) as u32;
            st(&mut s.pos, p + (k & 7) + 1);
            s.phase = PH_LINE;
            return Step::Continue;
        }
        // Fewer than 8 bytes left: byte by byte.
        let mut i = 0;
        while i < 8 {
            let q = ld(&s.pos);
            match at(pkt, s, q) {
                None => return finish(s, F_CUT),
                Some(b'\n') => {
                    st(&mut s.pos, q + 1);
                    s.phase = PH_LINE;
                    return Step::Continue;
                }
                Some(_) => st(&mut s.pos, q + 1),
            }
            i += 1;
        }
        w += 1;
    }
    Step::Continue
}

/// Lookups of the configured lists (BPF maps in the kernel, Rust
/// collections on the host).
pub trait SipLists {
    /// The User-Agent (lowercased first `len` bytes) starts with a scanner
    /// prefix.
    fn user_agent_denied(&self, ua: &[u8; UA_BYTES], len: u32) -> bool;
    /// The Request-URI user (`len` bytes, zero padded) is an expected user.
    fn user_expected(&self, user: &[u8; USER_BYTES], len: u32) -> bool;
}

/// The verdict for a finished (or bounded-out) scan. First match wins:
/// not SIP, User-Agent, SIPVicious fingerprint, method, IP-literal host,
/// unknown user. Rules are judged on what was seen; a message whose
/// header block did not end inside the inspected bytes and matched no
/// rule passes as [`Reason::PassPartial`].
#[inline(always)]
pub fn decide<L: SipLists>(s: &Scan, settings: &Settings, lists: &L) -> Reason {
    let f = s.flags;
    let rules = settings.rules;
    if f & (F_KEEPALIVE | F_RESPONSE) != 0 {
        return Reason::PassInspected;
    }
    if f & F_NOT_SIP != 0 {
        return if rules & RULE_NOT_SIP != 0 {
            Reason::DropNotSip
        } else {
            Reason::PassInspected
        };
    }
    if s.phase == PH_START {
        // Cut inside the method token: nothing known.
        return Reason::PassPartial;
    }
    if rules & RULE_USER_AGENT != 0 && f & F_UA != 0 && lists.user_agent_denied(&s.ua, s.ua_len) {
        return Reason::DropUserAgent;
    }
    if rules & RULE_SIPVICIOUS != 0 {
        let (a, b) = (s.from, s.to);
        if a.flags & b.flags & A_VALID != 0
            && a.hash == b.hash
            && (a.name == SV_NAME_HASH || b.name == SV_NAME_HASH || a.host == SV_HOST_HASH)
        {
            return Reason::DropSipVicious;
        }
    }
    if s.method < 32 && settings.methods & (1u32 << s.method) != 0 {
        return Reason::DropMethod;
    }
    if f & F_URI_DONE != 0 {
        if rules & RULE_URI_IP_HOST != 0 && f & F_IP_HOST != 0 {
            return Reason::DropUriIpHost;
        }
        if rules & RULE_EXPECTED_USERS != 0
            && s.method == METHOD_INVITE
            && (f & F_HAS_USER == 0
                || f & F_USER_LONG != 0
                || !lists.user_expected(&s.user, s.user_len))
        {
            return Reason::DropUnknownUser;
        }
    }
    if f & F_EOH == 0 {
        return Reason::PassPartial;
    }
    Reason::PassInspected
}

/// The event of a dropped packet carries what its scan saw. Here and not in
/// the ABI: the ABI is below the scanner and does not know `Scan`.
impl SipEventInfo {
    /// What a finished scan saw: the method and the first bytes of the
    /// User-Agent (lower-cased, as the inspector keeps them).
    #[inline(always)]
    pub fn from_scan(s: &Scan) -> SipEventInfo {
        let method = if s.method != 0 && (s.method as usize) < METHODS.len() {
            s.method as u8
        } else if s.ua_len > 0 {
            sip_method::OTHER
        } else {
            sip_method::UNKNOWN
        };
        let ua_len = if (s.ua_len as usize) < EVENT_UA_LEN {
            s.ua_len as u8
        } else {
            EVENT_UA_LEN as u8
        };
        SipEventInfo {
            method,
            ua_len,
            user_agent: s.ua,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::method_id;

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
            let r = step(&mut s, msg);
            steps += 1;
            if r == Step::Done {
                break;
            }
            assert!(
                s.pos > before.0 || s.phase != before.1,
                "no progress at {before:?}"
            );
        }
        assert!(steps < MAX_STEPS);
        assert_eq!(s, scan(&flow, msg));
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
        assert_ne!(s.from.hash, s.to.hash);
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
        // Beyond the window the User-Agent is not seen.
        let pad = format!("X-Pad: {}\r\n", "p".repeat(1500));
        let big = m.replace("User-Agent:", &format!("{pad}User-Agent:"));
        assert_eq!(all(&big), Reason::PassPartial);
        let early = m.replace("Content-Length: 0\r\n", &pad);
        assert_eq!(all(&early), Reason::DropUserAgent);
    }

    /// The same bytes without word reads: every scanner path falls back to
    /// its byte-at-a-time loop (the code the word paths replaced).
    struct NoWords<'a>(&'a [u8]);

    impl Bytes for NoWords<'_> {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn read<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
            self.0.read::<N>(off)
        }
        fn u64_le(&self, _off: usize) -> Option<u64> {
            None
        }
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
        let mut s = scan(&flow, msg.as_bytes());
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
        let words = scan(&flow, msg);
        let bytes = scan(&flow, &NoWords(msg));
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
}
