//! The verdict order (README, "What it does": steps 1-5 and 7), over a parsed packet.
//! SIP inspection (step 6) is a separate stage: [`judge`] says when it is
//! needed and the caller runs the inspector, because the kernel must drive
//! it with `bpf_loop` while the host uses a plain loop.

use crate::{
    abi::{Settings, POLICY_INSPECT},
    any_port,
    packet::{self, Bytes, Flow, Link, Stop, IPPROTO_UDP},
    reason::Reason,
};

/// Source address lookups (LPM tries in the kernel, Rust sets on the host).
pub trait SourceLists {
    fn blocked(&self, flow: &Flow) -> bool;
    fn trusted(&self, flow: &Flow) -> bool;
    /// The source is a registrar learned from outbound REGISTER/INVITE and
    /// its entry has not expired.
    fn learned(&self, _flow: &Flow) -> bool {
        false
    }

    /// Automatically or manually banned (kernel state; the host has none).
    #[inline(always)]
    fn banned(&self, _flow: &Flow) -> bool {
        false
    }
}

/// The outcome of the header stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Final: no inspection needed.
    Done(Reason),
    /// Untrusted UDP (or TCP with data) to a SIP port under `inspect`: the SIP
    /// inspector decides, starting at `flow.payload_off`.
    Inspect(Flow),
    /// UDP outside the SIP ports with `any_udp_port` on: SIP only if the
    /// payload starts with a request line ([`any_port_line`]).
    Recognise(Flow),
}

/// Steps 1-4 of the verdict order for an Ethernet frame.
#[inline(always)]
pub fn judge<B: Bytes + ?Sized, L: SourceLists>(
    pkt: &B,
    settings: &Settings,
    lists: &L,
) -> Judgement {
    judge_link(pkt, Link::Ethernet, settings, lists)
}

/// Steps 1-4 for a packet starting with the link header `link` says.
#[inline(always)]
pub fn judge_link<B: Bytes + ?Sized, L: SourceLists>(
    pkt: &B,
    link: Link,
    settings: &Settings,
    lists: &L,
) -> Judgement {
    match quick_step(pkt, link, settings) {
        Quick::NotSipPort => Judgement::Done(Reason::PassNotSipPort),
        q => match parse_after(pkt, link, q) {
            Ok(flow) => match judge_flow(&flow, settings, lists) {
                Judgement::Recognise(flow) => any_port_line(pkt, &flow, settings, lists),
                j => j,
            },
            Err(stop) => Judgement::Done(stop_reason(&stop)),
        },
    }
}

/// What the quick look at a packet found (see [`quick_step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quick {
    /// Settled: UDP/TCP to a port outside the SIP set (and, with
    /// `any_udp_port`, not UDP).
    NotSipPort,
    /// Untagged IPv4 UDP/TCP to a SIP port: the full parse may start at
    /// the IPv4 header.
    Ipv4,
    /// Anything else: the full parse decides.
    Unknown,
}

/// Step 1 before the full parse, shared by the host ([`judge_link`]) and the
/// XDP program. Most traffic on a WAN link is not SIP: untagged IPv4 is
/// read with [`packet::quick_l4`], which answers only where the full parse
/// would agree.
#[inline(always)]
pub fn quick_step<B: Bytes + ?Sized>(pkt: &B, link: Link, settings: &Settings) -> Quick {
    let quick = match link {
        Link::Ethernet => packet::quick_l4(pkt),
        Link::RawIp => None,
    };
    match quick {
        Some((proto, dport, _)) if is_sip_traffic(settings, proto, dport) => Quick::Ipv4,
        // any_udp_port: a first payload byte that cannot start a method
        // settles it here, before the full parse (`any_port_line` would say
        // the same after it).
        Some((proto, _, payload_off)) if any_port_candidate(settings, proto) => {
            match pkt.u8_at(payload_off) {
                Some(b) if any_port::is_token_byte(b) => Quick::Ipv4,
                _ => Quick::NotSipPort,
            }
        }
        Some(_) => Quick::NotSipPort,
        None => Quick::Unknown,
    }
}

/// The full parse after [`quick_step`] (not called for `NotSipPort`).
#[inline(always)]
pub fn parse_after<B: Bytes + ?Sized>(pkt: &B, link: Link, quick: Quick) -> Result<Flow, Stop> {
    match quick {
        Quick::Ipv4 => packet::parse_after_quick(pkt),
        _ => packet::parse_link(pkt, link),
    }
}

/// The reason for a packet whose parsing stopped early. Later fragments
/// pass here; the kernel's fragment tracking may turn them into
/// `DropFragment` (state the host does not have).
#[inline(always)]
pub fn stop_reason(stop: &Stop) -> Reason {
    match stop {
        Stop::NotIp => Reason::PassNotIp,
        Stop::NotUdpTcp => Reason::PassNotUdpTcp,
        Stop::LaterFragment(_) => Reason::PassFragment,
        Stop::Unparsed => Reason::PassUnparsed,
    }
}

/// Step 1: does this UDP/TCP packet go to a SIP port? The one place that
/// decides it, for the quick path in [`judge`] and for [`judge_flow`].
#[inline(always)]
pub fn is_sip_traffic(settings: &Settings, _proto: u8, dport: u16) -> bool {
    settings.is_sip_port(dport)
}

/// UDP outside the SIP ports that `any_udp_port` asks to look at.
#[inline(always)]
pub fn any_port_candidate(settings: &Settings, proto: u8) -> bool {
    proto == IPPROTO_UDP && settings.any_udp_port()
}

/// Steps 1-5 for a flow whose headers are already parsed.
#[inline(always)]
pub fn judge_flow<L: SourceLists>(flow: &Flow, settings: &Settings, lists: &L) -> Judgement {
    if !is_sip_traffic(settings, flow.proto, flow.dport) {
        if any_port_candidate(settings, flow.proto) {
            return Judgement::Recognise(*flow);
        }
        return Judgement::Done(Reason::PassNotSipPort);
    }
    judge_sip(flow, settings, lists)
}

/// `any_udp_port`, second stage: a payload starting with a SIP request line
/// is judged like SIP-port traffic (steps 2-5); anything else passes as not
/// SIP, whatever its source. The host reads the line here; the kernel
/// drives [`any_port::step`] with `bpf_loop` and calls [`any_port_verdict`].
#[inline(always)]
pub fn any_port_line<B: Bytes + ?Sized, L: SourceLists>(
    pkt: &B,
    flow: &Flow,
    settings: &Settings,
    lists: &L,
) -> Judgement {
    any_port_verdict(any_port::is_request_line(pkt, flow), flow, settings, lists)
}

/// The second stage once the request line has been read.
#[inline(always)]
pub fn any_port_verdict<L: SourceLists>(
    request: bool,
    flow: &Flow,
    settings: &Settings,
    lists: &L,
) -> Judgement {
    if request {
        judge_sip(flow, settings, lists)
    } else {
        Judgement::Done(Reason::PassNotSipPort)
    }
}

/// Steps 2-5 for a flow known to carry SIP: blocked, trusted or learned,
/// banned, then the untrusted policy.
#[inline(always)]
pub fn judge_sip<L: SourceLists>(flow: &Flow, settings: &Settings, lists: &L) -> Judgement {
    if lists.blocked(flow) {
        return Judgement::Done(Reason::DropBlocked);
    }
    // Trusted and learned before banned: an automatic ban (IPv6 grouped by
    // /64) caught by a scanner next to a provider must never cut off the
    // provider.
    if lists.trusted(flow) {
        return Judgement::Done(Reason::PassTrusted);
    }
    if lists.learned(flow) {
        return Judgement::Done(Reason::PassLearned);
    }
    if lists.banned(flow) {
        return Judgement::Done(Reason::DropBanned);
    }
    if flow.malformed {
        return Judgement::Done(Reason::DropMalformed);
    }
    if settings.policy != POLICY_INSPECT {
        return Judgement::Done(Reason::DropUntrusted);
    }
    if flow.proto != IPPROTO_UDP && flow.payload_len == 0 {
        // A TCP segment without data (handshake, ACK, FIN) starts no request.
        return Judgement::Done(Reason::PassUninspectable);
    }
    // TCP segments too: XDP cannot reassemble a stream, but a request
    // almost always starts a segment; the inspector passes the segments
    // that do not start one.
    Judgement::Inspect(*flow)
}

/// The action taken for a reason under the current mode (step 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reason: Reason,
    /// The packet is dropped.
    pub drop: bool,
    /// Monitor mode turned a drop into a pass ("would drop").
    pub monitored: bool,
}

#[inline(always)]
pub fn outcome(reason: Reason, settings: &Settings) -> Outcome {
    let would_drop = reason.is_drop();
    let monitored = would_drop && settings.monitor();
    Outcome {
        reason,
        drop: would_drop && !monitored,
        monitored,
    }
}
