//! The rules: turn a finished scan's facts into a [`Reason`], and into what
//! an event reports about it.

use super::state::{
    Scan, F_EOH, F_HAS_USER, F_IP_HOST, F_KEEPALIVE, F_NOT_SIP, F_RESPONSE, F_STREAM, F_UA_DENIED,
    F_URI_DONE, F_USER_LONG, PH_START,
};
use crate::{
    abi::{
        sip_method, Settings, SipEventInfo, EVENT_UA_LEN, METHODS, METHOD_INVITE,
        RULE_EXPECTED_USERS, RULE_NOT_SIP, RULE_SIPVICIOUS, RULE_URI_IP_HOST, RULE_USER_AGENT,
        UA_BYTES, USER_BYTES,
    },
    reason::Reason,
};

/// Lookups of the configured lists (BPF maps in the kernel, Rust
/// collections on the host). The scanner asks about each User-Agent as it
/// reads it; [`decide`] about the Request-URI user.
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
/// rule passes as [`Reason::PassPartial`]. A TCP segment that does not
/// start with a request (the rest of a message, TLS, anything else) passes
/// as [`Reason::PassUninspectable`]: XDP sees segments, not the stream.
#[inline(always)]
pub fn decide<L: SipLists>(s: &Scan, settings: &Settings, lists: &L) -> Reason {
    let f = s.flags;
    let rules = settings.rules;
    if f & (F_KEEPALIVE | F_RESPONSE) != 0 {
        return Reason::PassInspected;
    }
    if f & F_NOT_SIP != 0 {
        if f & F_STREAM != 0 {
            return Reason::PassUninspectable;
        }
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
    // Both judged per header occurrence while scanning (see `step`).
    if rules & RULE_USER_AGENT != 0 && f & F_UA_DENIED != 0 {
        return Reason::DropUserAgent;
    }
    if rules & RULE_SIPVICIOUS != 0 && s.sv_from & s.sv_to != 0 {
        return Reason::DropSipVicious;
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
