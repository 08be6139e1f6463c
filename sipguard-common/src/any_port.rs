//! SIP on any UDP port: is this datagram a SIP request? A request starts
//! with its request line (RFC 3261 §7.1): `Method SP Request-URI SP
//! SIP-Version CRLF`. Phones' NAT pinholes and port-forwarded PBXs take SIP
//! on ports nobody configured, so with `any_udp_port` the filter asks this
//! of every UDP payload outside the SIP port set; what answers yes is then
//! judged like traffic to a SIP port.
//!
//! Two stages so non-SIP UDP pays little: [`may_start_request`] looks at the
//! first byte (the filter does it inline: DNS, RTP, QUIC long headers,
//! WireGuard and most binary protocols stop there), [`is_request_line`]
//! reads the line (in the kernel a tail-called program of its own, so its
//! bounded loop is verified once and not once per filter state).

use crate::{
    packet::{Bytes, Flow},
    scan_io::{ld, st, MAX_SCAN_OFF},
};

/// Longest method token accepted; the standard ones are at most 9 bytes.
pub const MAX_METHOD: u32 = 32;
/// Method, space and Request-URI must end within this many bytes of the
/// payload start; longer first lines are not recognised (the bound keeps
/// the loop verifiable and the cost for non-SIP payloads small).
pub const MAX_REQUEST_LINE: u32 = 256;

// Byte classes, one table lookup per byte.
const TOKEN: u8 = 1;
const VISIBLE: u8 = 2;

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0x21;
    while c < 0x7f {
        t[c] = VISIBLE;
        let b = c as u8;
        // RFC 3261 `token`: alphanum / "-" / "." / "!" / "%" / "*" / "_" /
        // "+" / "`" / "'" / "~".
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            t[c] |= TOKEN;
        }
        c += 1;
    }
    t
}

static CLASS: [u8; 256] = classes();

/// `b` may be a byte of a method token.
#[inline(always)]
pub fn is_token_byte(b: u8) -> bool {
    CLASS[b as usize] & TOKEN != 0
}

/// Where the payload of `flow` ends inside a frame of `frame_len` bytes:
/// the request line must lie in the UDP payload, never in a trailer.
#[inline(always)]
fn payload_end(flow: &Flow, frame_len: usize) -> u32 {
    let end = flow.payload_off.saturating_add(flow.payload_len);
    if end as usize > frame_len {
        frame_len as u32
    } else {
        end
    }
}

/// The first payload byte can start a method token. Necessary for
/// [`is_request_line`], and all the filter itself reads.
#[inline(always)]
pub fn may_start_request<B: Bytes + ?Sized>(pkt: &B, flow: &Flow) -> bool {
    let off = flow.payload_off;
    if off >= payload_end(flow, pkt.len()) {
        return false;
    }
    match pkt.u8_at(off as usize) {
        Some(b) => is_token_byte(b),
        None => false,
    }
}

/// Bytes of the line [`step`] reads per call.
pub const BYTES_PER_STEP: u32 = 16;
/// Calls of [`step`] that cover [`MAX_REQUEST_LINE`] bytes.
pub const LINE_STEPS: u32 = MAX_REQUEST_LINE / BYTES_PER_STEP;

/// [`Line::result`] while the line is being read.
pub const RUNNING: u32 = 0;
pub const REQUEST: u32 = 1;
pub const NOT_REQUEST: u32 = 2;

/// The reader's state. The kernel keeps it in a per-CPU map value and
/// drives [`step`] with `bpf_loop`, for the reason the SIP scanner does:
/// a loop over known constants makes the verifier walk every iteration
/// and every exit separately; map values read back as unknown, so the
/// callback is verified once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// Frame offset of the payload's first byte.
    pub start: u32,
    /// Next byte to read.
    pub pos: u32,
    /// Method and URI bytes lie before this (payload end or the bound).
    pub limit: u32,
    /// End of the payload inside the frame: the version may reach it.
    pub end: u32,
    /// 1 once the method and its space were read.
    pub in_uri: u32,
    /// [`RUNNING`], [`REQUEST`] or [`NOT_REQUEST`].
    pub result: u32,
}
const _: () = assert!(core::mem::size_of::<Line>() == 24);

impl Line {
    #[inline(always)]
    pub fn new(flow: &Flow, frame_len: usize) -> Line {
        let start = flow.payload_off;
        let end = payload_end(flow, frame_len);
        let bound = start.saturating_add(MAX_REQUEST_LINE);
        Line {
            start,
            pos: start,
            limit: if bound < end { bound } else { end },
            end,
            in_uri: 0,
            result: RUNNING,
        }
    }
}

#[inline(always)]
fn settle(l: &mut Line, request: bool) -> Step {
    st(&mut l.result, if request { REQUEST } else { NOT_REQUEST });
    Step::Done
}

/// Reads up to [`BYTES_PER_STEP`] bytes of the request line. Every field
/// is loaded and stored through memory (see [`Line`]).
#[inline(always)]
pub fn step<B: Bytes + ?Sized>(l: &mut Line, pkt: &B) -> Step {
    if ld(&l.result) != RUNNING {
        return Step::Done;
    }
    let mut j = 0;
    while j < BYTES_PER_STEP {
        let p = ld(&l.pos);
        if p >= ld(&l.limit) {
            return settle(l, false);
        }
        // `limit` <= `end` <= frame length; the mask only bounds the
        // offset for the verifier.
        let Some(c) = pkt.u8_at((p & MAX_SCAN_OFF) as usize) else {
            return settle(l, false);
        };
        let in_uri = ld(&l.in_uri) != 0;
        if c == b' ' {
            let end = ld(&l.end);
            if in_uri {
                return settle(l, is_version(pkt, p + 1, end));
            }
            // The method is start..p, never empty: the first byte is a
            // token byte (may_start_request).
            if p == ld(&l.start) || !has_scheme(pkt, p + 1, end) {
                return settle(l, false);
            }
            st(&mut l.in_uri, 1);
        } else {
            let need = if in_uri { VISIBLE } else { TOKEN };
            if CLASS[c as usize] & need == 0 || (!in_uri && p - ld(&l.start) >= MAX_METHOD) {
                return settle(l, false);
            }
        }
        st(&mut l.pos, p + 1);
        j += 1;
    }
    Step::Continue
}

/// What one call of [`step`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    Done,
}

/// The payload of `flow` starts with `TOKEN SP URI SP SIP/2.0` and a CR or
/// LF. The URI must start with `sip:`, `sips:` or `tel:` and be printable;
/// scheme and version compare case-insensitively (RFC 3261 §19.1.1, §7.1).
/// The host's driver; the kernel runs [`step`] under `bpf_loop` with the
/// same bound and reads [`Line::result`].
pub fn is_request_line<B: Bytes + ?Sized>(pkt: &B, flow: &Flow) -> bool {
    if !may_start_request(pkt, flow) {
        return false;
    }
    let mut l = Line::new(flow, pkt.len());
    for _ in 0..LINE_STEPS {
        if step(&mut l, pkt) == Step::Done {
            break;
        }
    }
    l.result == REQUEST
}

/// `N` bytes at `off` if they end by `end`.
#[inline(always)]
fn read<const N: usize, B: Bytes + ?Sized>(pkt: &B, off: u32, end: u32) -> Option<[u8; N]> {
    if off >= end || end - off < N as u32 {
        return None;
    }
    pkt.read::<N>(off as usize)
}

/// `sip:`, `sips:` or `tel:` at `off`.
#[inline(always)]
fn has_scheme<B: Bytes + ?Sized>(pkt: &B, off: u32, end: u32) -> bool {
    let Some(s) = read::<5, B>(pkt, off, end) else {
        return false;
    };
    let (a, b, c, d) = (s[0] | 0x20, s[1] | 0x20, s[2] | 0x20, s[3]);
    (a == b's' && b == b'i' && c == b'p' && (d == b':' || ((d | 0x20) == b's' && s[4] == b':')))
        || (a == b't' && b == b'e' && c == b'l' && d == b':')
}

/// `SIP/2.0` followed by CR or LF at `off`.
#[inline(always)]
fn is_version<B: Bytes + ?Sized>(pkt: &B, off: u32, end: u32) -> bool {
    let Some(v) = read::<8, B>(pkt, off, end) else {
        return false;
    };
    // Byte by byte: an array comparison may become a memcmp call the
    // verifier rejects.
    (v[0] | 0x20) == b's'
        && (v[1] | 0x20) == b'i'
        && (v[2] | 0x20) == b'p'
        && v[3] == b'/'
        && v[4] == b'2'
        && v[5] == b'.'
        && v[6] == b'0'
        && (v[7] == b'\r' || v[7] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow_at(off: usize, len: usize) -> Flow {
        let mut f = Flow::bare_udp_payload([192, 0, 2, 1], len);
        f.payload_off = off as u32;
        f
    }

    fn yes(s: &[u8]) -> bool {
        is_request_line(s, &flow_at(0, s.len()))
    }

    #[test]
    fn requests_are_recognised() {
        for s in [
            &b"INVITE sip:100@198.51.100.1 SIP/2.0\r\nVia: x\r\n\r\n"[..],
            b"OPTIONS sip:100@1.1.1.1 SIP/2.0\r\n",
            b"REGISTER sips:example.com SIP/2.0\n",
            b"X-CUSTOM tel:+15551234 sip/2.0\r\n",
            b"ACK sip:a SIP/2.0\r\n",
            b"invite SIP:100@x SIP/2.0\r\n",
        ] {
            assert!(yes(s), "{}", String::from_utf8_lossy(s));
        }
        let m = "A".repeat(MAX_METHOD as usize);
        assert!(yes(format!("{m} sip:x SIP/2.0\r\n").as_bytes()));
        // The longest accepted line: method + SP + URI end at the bound.
        let uri = "a".repeat(MAX_REQUEST_LINE as usize - 7 - 4 - 1);
        let line = format!("INVITE sip:{uri} SIP/2.0\r\n");
        assert_eq!(
            line.find(" SIP/2.0").unwrap(),
            MAX_REQUEST_LINE as usize - 1
        );
        assert!(yes(line.as_bytes()));
    }

    #[test]
    fn other_payloads_are_not() {
        let long_uri = format!(
            "INVITE sip:{} SIP/2.0\r\n",
            "a".repeat(MAX_REQUEST_LINE as usize)
        );
        let just_too_long = format!(
            "INVITE sip:{} SIP/2.0\r\n",
            "a".repeat(MAX_REQUEST_LINE as usize - 7 - 4)
        );
        let long_method = format!("{} sip:x SIP/2.0\r\n", "A".repeat(MAX_METHOD as usize + 1));
        for s in [
            &b""[..],
            b"\x12\x34\x01\x00\x00\x01", // DNS
            b"\x80\x00\x00\x01",         // RTP
            b"SIP/2.0 200 OK\r\n",       // a response, not a request
            b"GET / HTTP/1.1\r\n",
            b"INVITE  sip:x SIP/2.0\r\n",
            b" INVITE sip:x SIP/2.0\r\n",
            b"INVITE sip:x SIP/2.0", // cut before the line end
            b"INVITE sip:x SIP/2.1\r\n",
            b"INVITE nocolon SIP/2.0\r\n",
            b"INVITE http://x SIP/2.0\r\n",
            b"INVITE sipx SIP/2.0\r\n",
            b"INVITE sips SIP/2.0\r\n",
            b"INVITE sip:x\tSIP/2.0\r\n",
            b"INV(TE sip:x SIP/2.0\r\n",
            b"INVITE sip:x\x7f SIP/2.0\r\n",
            b"\r\n\r\n", // keep-alive
            long_uri.as_bytes(),
            just_too_long.as_bytes(),
            long_method.as_bytes(),
        ] {
            assert!(!yes(s), "{}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn offset_and_payload_end_are_honoured() {
        let line = b"BYE sip:a@b SIP/2.0\r\n";
        let mut f = vec![0u8; 42];
        f.extend(line);
        assert!(is_request_line(&f[..], &flow_at(42, line.len())));
        assert!(!is_request_line(&f[..], &flow_at(41, line.len() + 1)));
        // The CRLF lies past the UDP payload (in a trailer): not a request.
        assert!(!is_request_line(&f[..], &flow_at(42, line.len() - 2)));
        // A UDP length larger than the frame: the frame end bounds the read.
        assert!(is_request_line(&f[..], &flow_at(42, 4000)));
        assert!(!is_request_line(&f[..f.len() - 2], &flow_at(42, 4000)));
    }

    #[test]
    fn first_byte_check_agrees() {
        for b in 0..=255u8 {
            let mut s = vec![b];
            s.extend(b"NVITE sip:x SIP/2.0\r\n");
            let first = may_start_request(&s[..], &flow_at(0, s.len()));
            assert_eq!(first, CLASS[b as usize] & TOKEN != 0, "byte {b:#x}");
            assert_eq!(yes(&s), first, "byte {b:#x}");
        }
        assert!(!may_start_request(&b"I"[..], &flow_at(0, 0)));
    }
}
