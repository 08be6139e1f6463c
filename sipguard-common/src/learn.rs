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

/// `REGISTER ` or `INVITE ` at `off`. Byte by byte: an array comparison
/// can compile to a memcmp call the verifier refuses, and no loop keeps
/// the kernel's work fixed.
#[inline(always)]
pub fn request_method<B: Bytes + ?Sized>(pkt: &B, off: usize) -> Option<Teaching> {
    let b = pkt.read::<7>(off)?;
    if b[0] == b'I'
        && b[1] == b'N'
        && b[2] == b'V'
        && b[3] == b'I'
        && b[4] == b'T'
        && b[5] == b'E'
        && b[6] == b' '
    {
        return Some(Teaching::Invite);
    }
    if b[0] == b'R'
        && b[1] == b'E'
        && b[2] == b'G'
        && b[3] == b'I'
        && b[4] == b'S'
        && b[5] == b'T'
        && b[6] == b'E'
    {
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
