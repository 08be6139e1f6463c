//! The first stage: keepalives, STUN and responses, then the request line
//! (method, Request-URI user and host, `SIP/2.0`).

use super::{
    state::{
        clear32, finish, Scan, Step, F_CUT, F_HAS_USER, F_IN_HOST, F_IP_HOST, F_KEEPALIVE,
        F_NOT_SIP, F_RESPONSE, F_SEG_ANY, F_SEG_BRACKET, F_SEG_DOT, F_SEG_END, F_SEG_NONIP,
        F_STREAM, F_TEL, F_URI_DONE, F_USER_LONG, F_USER_STOP, PH_LINE, PH_URI,
    },
    words::{at, lower, pack, pack_tail, rd},
};
use crate::{
    abi::{METHODS, METHOD_OTHER, USER_BYTES},
    packet::Bytes,
    scan_io::{ld, st},
};

/// Request-URI bytes examined per step.
pub(super) const URI_CHUNK: u32 = 64;

/// (bytes 0-7 packed, bytes 8-15 packed, length) of every method.
pub(super) const METHOD_KEYS: [(u64, u64, u32); 15] = {
    let mut k = [(0u64, 0u64, 0u32); 15];
    let mut i = 0;
    while i < 15 {
        let m = METHODS[i].as_bytes();
        k[i] = (pack(m), pack_tail(m), m.len() as u32);
        i += 1;
    }
    k
};

/// Keepalives, STUN, responses, then the method and the URI scheme.
#[inline(always)]
pub(super) fn start<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
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
    if s.flags & F_STREAM != 0 && (b0 == b'\r' || b0 == b'\n') {
        // A stream ignores CRLFs before a start line (RFC 3261 7.5): skip
        // up to 8 per step, then start again after them. Only CRLFs to the
        // end: a keepalive (RFC 5626 double-CRLF ping).
        let mut i = 1;
        while i < 8 {
            match at(pkt, s, p + i) {
                None => return finish(s, F_KEEPALIVE),
                Some(b) if b == b'\r' || b == b'\n' => {}
                Some(_) => break,
            }
            i += 1;
        }
        s.pos = p + i;
        return Step::Continue;
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
pub(super) fn uri<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
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
pub(super) fn uri_end<B: Bytes + ?Sized>(s: &mut Scan, pkt: &B) -> Step {
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
