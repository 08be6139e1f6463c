//! Header lines: classify the name, read the User-Agent and From/To values
//! the rules look at, skip the rest to the line end, stop at the empty line.

use super::{
    decide::SipLists,
    state::{
        clear32, finish, store32, Addr, Scan, Step, A_VALID, F_CUT, F_EOH, F_FOLDED, F_UA,
        F_UA_DENIED, PH_CHECK, PH_LINE, PH_READ, PH_SKIP, PH_VALUE,
    },
    words::{
        at, bytes_eq, first_mark, is_ws, line_ends, low_bytes, lower, lower_word, name_ends, pack,
        word, words2,
    },
};
use crate::{
    abi::UA_BYTES,
    packet::Bytes,
    scan_io::{ld, st},
};

/// Header name bytes read to classify a header line.
pub(super) const NAME_MAX: u32 = 16;
/// Whitespace skipped between a header's name and colon and after the colon.
pub const WS_MAX: u32 = 32;
/// From/To value bytes read for the fingerprint; longer values never match.
pub const ADDR_MAX: u32 = 96;

/// 8-byte words searched for a line end per step.
pub(super) const SKIP_WORDS: u32 = 16;

pub(super) const HDR_OTHER: u32 = 0;
pub(super) const HDR_UA: u32 = 1;
pub(super) const HDR_FROM: u32 = 2;
pub(super) const HDR_TO: u32 = 3;

/// Start of a header line: the end of the header block, or the header
/// name. Headers the rules look at continue in [`value`]; others are
/// skipped to the line end right away.
#[inline(always)]
pub(super) fn line<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
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

/// Whitespace, the colon and whitespace before the value of a User-Agent,
/// From or To header. The value is read in the next step ([`read`]) and
/// judged in the one after ([`check`]): each step starts from state read
/// back from memory, so the kernel's verifier checks what follows once, not
/// once for each way out of the loop before it.
#[inline(always)]
pub(super) fn value<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
    let mut q = ld(&s.pos);
    let mut colon = s.flags & F_FOLDED != 0;
    s.flags &= !F_FOLDED;
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
    // Not a header after all, or more whitespace than any sender uses:
    // on to the line end.
    s.phase = if colon && k < WS_MAX {
        PH_READ
    } else {
        PH_SKIP
    };
    Step::Continue
}

/// The value of a User-Agent, From or To header, unless the line ends
/// right after the colon and the next line continues it: obsolete line
/// folding (RFC 3261 LWS), where the value starts on that next line and
/// [`value`] goes on from there.
#[inline(always)]
pub(super) fn read<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
    let q = ld(&s.pos);
    let fold = match at(pkt, s, q) {
        Some(b'\r') if at(pkt, s, q + 1) == Some(b'\n') => 2,
        Some(b'\n') => 1,
        _ => 0,
    };
    if fold != 0 && at(pkt, s, q + fold).is_some_and(is_ws) {
        st(&mut s.pos, q + fold);
        s.flags |= F_FOLDED;
        s.phase = PH_VALUE;
        return Step::Continue;
    }
    s.phase = PH_CHECK;
    // Re-read: the bounds the checks above taught the verifier about `q`
    // differ per path, and paths that differ do not merge.
    let q = ld(&s.pos);
    if s.header == HDR_UA {
        if s.flags & F_UA_DENIED == 0 {
            user_agent(s, pkt, q);
        }
    } else {
        s.addr = addr(s, pkt, q);
    }
    Step::Continue
}

/// Judges the value [`read`] read, each occurrence on its own: a denied
/// User-Agent sets a sticky flag, a SIPVicious-like From or To its bit (see
/// [`Scan::sv_from`]), so no header of the same name before or after it can
/// hide it. Then on to the line end.
#[inline(always)]
pub(super) fn check<L: SipLists>(s: &mut Scan, lists: &L) -> Step {
    s.phase = PH_SKIP;
    let kind = s.header;
    if kind == HDR_UA {
        if s.flags & F_UA_DENIED == 0 && lists.user_agent_denied(&s.ua, s.ua_len) {
            s.flags |= F_UA_DENIED;
        }
        return Step::Continue;
    }
    let a = s.addr;
    if a.flags & A_VALID != 0 && (a.name == SV_NAME_HASH || a.host == SV_HOST_HASH) {
        let bit = 1u64 << (a.hash & 63);
        if kind == HDR_FROM {
            s.sv_from |= bit;
        } else {
            s.sv_to |= bit;
        }
    }
    Step::Continue
}

#[inline(always)]
pub(super) fn user_agent<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B, q: u32) {
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

pub(super) const FNV_OFFSET: u32 = 0x811c_9dc5;
pub(super) const FNV_PRIME: u32 = 0x0100_0193;

pub(super) const fn fnv(bytes: &[u8]) -> u32 {
    let mut h = FNV_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u32).wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

/// FNV-1a of the SIPVicious display name and host, as `addr` hashes them.
pub const SV_NAME_HASH: u32 = fnv(b"sipvicious");
pub const SV_HOST_HASH: u32 = fnv(b"1.1.1.1");

// Where in a From/To value [`addr`] is.
pub(super) const AD_NAME: u32 = 0;
pub(super) const AD_URI: u32 = 1;
pub(super) const AD_HOST: u32 = 2;
pub(super) const AD_REST: u32 = 3;
pub(super) const AD_ANGLE: u32 = 4;

/// From/To: hashes of the address without whitespace and header
/// parameters (the tag differs between From and To), of the display name
/// (lowercased, quotes removed) and of the URI host. Hashes keep the
/// per-byte work free of matchers whose progress the verifier would have to
/// track; [`decide`] compares them.
#[inline(always)]
pub(super) fn addr<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B, q: u32) -> Addr {
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
pub(super) fn mode(s: &Scan) -> u32 {
    // SAFETY: reads a field of a live struct.
    unsafe { core::ptr::read_volatile(&s.mode) }
}

#[inline(always)]
pub(super) fn set_mode(s: &mut Scan, m: u32) {
    // SAFETY: writes a field of a live struct.
    unsafe { core::ptr::write_volatile(&mut s.mode, m) }
}

/// Finds the end of the current line: 8 bytes at a time while whole words
/// fit, then byte by byte.
#[inline(always)]
pub(super) fn skip<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
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
