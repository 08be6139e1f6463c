//! The scanner's state: what [`super::step`] has read so far and the facts
//! it collected, in a `#[repr(C)]` struct the kernel keeps in a map value.

use crate::{
    abi::{METHOD_OTHER, UA_BYTES, USER_BYTES},
    packet::{Flow, IPPROTO_TCP},
    scan_io::MAX_SCAN_OFF,
};

/// Payload bytes inspected in a frame of at most [`STANDARD_FRAME`] bytes:
/// a whole message in a 1500-byte MTU datagram. The header block of larger
/// messages is judged on what fits (see [`super::decide`]).
pub const WINDOW: u32 = 1500;
/// Upper bound of `step` calls for [`WINDOW`] (bpf_loop's `nr_loops`, the
/// host's loop). A line of a header a rule reads takes five steps (name,
/// colon, value, check, line end) and at least three bytes (`t:` and LF);
/// every other step advances by a byte or more. So no scan of [`WINDOW`]
/// bytes needs more than 5/3 of it.
pub const MAX_STEPS: u32 = 2560;
/// The largest frame inspected with [`WINDOW`]: a 1500-byte MTU Ethernet
/// frame with a VLAN tag. Larger frames come from jumbo or multi-buffer
/// links (or generic XDP on them) and get [`JUMBO_WINDOW`].
pub const STANDARD_FRAME: usize = 1518;
/// Payload bytes inspected in a larger frame: a whole message in a
/// 9000-byte MTU datagram (8972 bytes of UDP payload over IPv4).
pub const JUMBO_WINDOW: u32 = 9000;
/// [`MAX_STEPS`] for [`JUMBO_WINDOW`]: at least 5/3 of it.
pub const JUMBO_MAX_STEPS: u32 = 15360;

const _: () = assert!(MAX_STEPS * 3 >= WINDOW * 5 && JUMBO_MAX_STEPS * 3 >= JUMBO_WINDOW * 5);

/// The payload bytes inspected in a frame of `frame_len` bytes; the host
/// and the kernel both call it, so they read the same bytes of a frame.
#[inline(always)]
pub fn window(frame_len: usize) -> u32 {
    by_frame(frame_len, WINDOW, JUMBO_WINDOW)
}

/// The step bound for a frame of `frame_len` bytes (see [`MAX_STEPS`]).
#[inline(always)]
pub fn max_steps(frame_len: usize) -> u32 {
    by_frame(frame_len, MAX_STEPS, JUMBO_MAX_STEPS)
}

#[inline(always)]
fn by_frame(frame_len: usize, standard: u32, jumbo: u32) -> u32 {
    if frame_len <= STANDARD_FRAME {
        standard
    } else {
        jumbo
    }
}

// Scan phases.
pub(super) const PH_START: u32 = 0;
pub(super) const PH_URI: u32 = 1;
pub(super) const PH_LINE: u32 = 2;
pub(super) const PH_SKIP: u32 = 3;
pub(super) const PH_VALUE: u32 = 4;
pub const PH_DONE: u32 = 5;
pub(super) const PH_READ: u32 = 6;
pub(super) const PH_CHECK: u32 = 7;

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
/// A User-Agent value started with a denied prefix. Sticky: once set, later
/// User-Agent headers are not read, so `ua` keeps the one that matched.
pub const F_UA_DENIED: u32 = 1 << 10;
/// The payload is a TCP segment: CRLFs before the request line are skipped
/// (RFC 3261 7.5), and a segment that does not start a request passes
/// uninspected (see [`super::decide`]).
pub const F_STREAM: u32 = 1 << 11;
// Request-URI parsing state.
pub(super) const F_SEG_NONIP: u32 = 1 << 16;
pub(super) const F_SEG_DOT: u32 = 1 << 17;
pub(super) const F_SEG_BRACKET: u32 = 1 << 18;
pub(super) const F_SEG_END: u32 = 1 << 19;
pub(super) const F_USER_STOP: u32 = 1 << 20;
pub(super) const F_TEL: u32 = 1 << 21;
pub(super) const F_IN_HOST: u32 = 1 << 22;
pub(super) const F_SEG_ANY: u32 = 1 << 23;
/// `value` resumes after a folded line: the colon was seen.
pub(super) const F_FOLDED: u32 = 1 << 24;

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
    /// The header `value` reads (`HDR_*`).
    pub header: u32,
    /// Scratch for `addr`.
    pub mode: u32,
    /// Scratch for `line` and `start`: a packed header name or method.
    pub name: [u64; 2],
    // `user` and `ua` sit at multiples of 8 (checked below): they are
    // cleared and filled a word at a time.
    pub user: [u8; USER_BYTES],
    /// Lowercased first bytes of the User-Agent value.
    pub ua: [u8; UA_BYTES],
    /// Scratch: a length or flag passed through memory (see [`line`]).
    pub aux: u32,
    /// The From or To value just read, for the step that checks it.
    pub addr: Addr,
    /// One bit (the low 6 bits of [`Addr::hash`]) per completely read From
    /// value that carries the SIPVicious name or host; `sv_to` the same for
    /// To. Every occurrence of either header sets its bit, so a request
    /// whose duplicates hide the fingerprint among harmless values still
    /// has `sv_from & sv_to != 0`.
    pub sv_from: u64,
    pub sv_to: u64,
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
pub(super) unsafe fn zero_words<const N: usize>(p: *mut u64) {
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
pub(super) fn clear32(a: &mut [u8; 32]) {
    // SAFETY: `user` and `ua` are 32 bytes at 8-aligned offsets of an
    // 8-aligned struct (checked at compile time above).
    unsafe { zero_words::<4>(a.as_mut_ptr() as *mut u64) }
}

/// Stores word `i` (0-3) of a 32-byte array of `Scan`.
#[inline(always)]
pub(super) fn store32(a: &mut [u8; 32], i: usize, v: u64) {
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
            flags: Scan::stream_flag(flow),
            method: METHOD_OTHER,
            user_len: 0,
            ua_len: 0,
            header: 0,
            mode: 0,
            name: [0; 2],
            aux: 0,
            addr: Addr {
                hash: 0,
                name: 0,
                host: 0,
                flags: 0,
            },
            sv_from: 0,
            sv_to: 0,
            user: [0; USER_BYTES],
            ua: [0; UA_BYTES],
        }
    }

    /// First and end (exclusive) frame offset of the inspected bytes.
    #[inline(always)]
    fn span(flow: &Flow, frame_len: usize) -> (u32, u32) {
        let start = flow.payload_off;
        let mut end = start.saturating_add(flow.payload_len);
        let window_end = start.saturating_add(window(frame_len));
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
        self.flags = Scan::stream_flag(flow);
    }

    #[inline(always)]
    fn stream_flag(flow: &Flow) -> u32 {
        if flow.proto == IPPROTO_TCP {
            F_STREAM
        } else {
            0
        }
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

#[inline(always)]
pub(super) fn finish(s: &mut Scan, flags: u32) -> Step {
    s.flags |= flags;
    s.phase = PH_DONE;
    Step::Done
}
