//! The SIP inspector (step 6 of the verdict order): one matcher for the
//! kernel and the host.
//!
//! It is a resumable scanner: [`step`] does a bounded piece of work (the
//! request line, or one header line) and records what it learned in a
//! `#[repr(C)]` [`Scan`]; [`decide`] turns those facts into a [`Reason`](crate::reason::Reason).
//! The XDP program drives `step` with `bpf_loop` (the verifier checks one
//! callback instead of an unrolled 1500-byte scan) or, on kernels without
//! it, in a loop with a constant bound around a global function (checked
//! once too); the host with a plain `for` loop. All stop after
//! [`MAX_STEPS`], so they agree by construction.
//!
//! Only the request line and the header block are read: scanning stops at
//! the empty line, so nothing in a body can ever match. Steps that do not
//! advance the position are bounded per header line (see [`MAX_STEPS`]),
//! so that bound is never the limit that ends a scan.

mod decide;
mod headers;
mod request_line;
mod state;
#[cfg(test)]
mod tests;
mod words;

pub use decide::{decide, SipLists};
pub use headers::{ADDR_MAX, SV_HOST_HASH, SV_NAME_HASH, WS_MAX};
pub use state::{
    max_steps, window, Addr, Scan, Step, A_VALID, F_CUT, F_EOH, F_HAS_USER, F_IP_HOST, F_KEEPALIVE,
    F_NOT_SIP, F_RESPONSE, F_UA, F_UA_DENIED, F_URI_DONE, F_USER_LONG, JUMBO_MAX_STEPS,
    JUMBO_WINDOW, MAX_STEPS, PH_DONE, STANDARD_FRAME, WINDOW,
};

use self::{
    headers::{check, line, read, skip, value},
    request_line::{start, uri},
    state::{PH_CHECK, PH_LINE, PH_READ, PH_SKIP, PH_START, PH_URI, PH_VALUE},
};
use crate::packet::{Bytes, Flow};

/// One bounded piece of work. Call until it returns [`Step::Done`], at most
/// [`max_steps`] times. `lists` judges each User-Agent value as it is read:
/// a request may carry several, and any one of them that matches counts.
#[inline(always)]
pub fn step<B: Bytes + ?Sized, L: SipLists>(s: &mut Scan, pkt: &B, lists: &L) -> Step {
    match s.phase {
        PH_START => start(s, pkt),
        PH_URI => uri(s, pkt),
        PH_LINE => line(s, pkt),
        PH_SKIP => skip(s, pkt),
        PH_VALUE => value(s, pkt),
        PH_READ => read(s, pkt),
        PH_CHECK => check(s, lists),
        _ => Step::Done,
    }
}

/// Runs a whole scan the way the host does.
pub fn scan<B: Bytes + ?Sized, L: SipLists>(flow: &Flow, pkt: &B, lists: &L) -> Scan {
    let mut s = Scan::new(flow, pkt.len());
    for _ in 0..max_steps(pkt.len()) {
        if step(&mut s, pkt, lists) == Step::Done {
            break;
        }
    }
    s
}
