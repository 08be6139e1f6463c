//! Learned registrars: which outbound packets teach the filter that their
//! destination is the registrar (or proxy) of a phone behind the router.
//! The TC egress program and the host run this same code.

use crate::{
    abi::Settings,
    packet::{self, Bytes, Flow, Link, IPPROTO_UDP},
};

/// The outbound requests that teach an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Teaching {
    Register,
    Invite,
}

/// Seven bytes as one number (little-endian, top byte zero), to compare a
/// method with a constant in one instruction: an array comparison can
/// compile to a memcmp call the verifier refuses, and no loop keeps the
/// kernel's work fixed.
#[inline(always)]
const fn word7(b: [u8; 7]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], 0])
}

const INVITE_SP: u64 = word7(*b"INVITE ");
const REGISTE: u64 = word7(*b"REGISTE");

/// `REGISTER ` or `INVITE ` at `off`.
#[inline(always)]
pub fn request_method<B: Bytes + ?Sized>(pkt: &B, off: usize) -> Option<Teaching> {
    let w = word7(pkt.read::<7>(off)?);
    if w == INVITE_SP {
        return Some(Teaching::Invite);
    }
    if w == REGISTE {
        let t = pkt.read::<2>(off + 7)?;
        if t[0] == b'R' && t[1] == b' ' {
            return Some(Teaching::Register);
        }
    }
    None
}

/// An outbound packet that teaches its destination: a well-formed UDP
/// REGISTER or INVITE to a SIP port (to any port with `any_udp_port`, whose
/// inbound side judges SIP on any port too). TCP is left out: a phone's TCP/TLS
/// connection is its own pinhole, and segments need not start a message.
#[inline(always)]
pub fn teaching<B: Bytes + ?Sized>(
    pkt: &B,
    link: Link,
    settings: &Settings,
) -> Option<(Flow, Teaching)> {
    let flow = packet::parse_link(pkt, link).ok()?;
    if flow.proto != IPPROTO_UDP
        || flow.malformed
        || !(settings.is_sip_port(flow.dport) || settings.any_udp_port())
        || flow.payload_len < 7
    {
        return None;
    }
    let t = request_method(pkt, flow.payload_off as usize)?;
    if t == Teaching::Register && flow.payload_len < 9 {
        return None;
    }
    Some((flow, t))
}
