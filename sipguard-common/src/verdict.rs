//! The verdict order of PRODUCT.md, steps 1-4 and 7, over a parsed packet.
//! SIP inspection (step 5) is a separate stage: [`judge`] says when it is
//! needed and the caller runs the inspector, because the kernel must drive
//! it with `bpf_loop` while the host uses a plain loop.

use crate::{
    abi::{Settings, POLICY_INSPECT},
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
}

/// The outcome of the header stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Final: no inspection needed.
    Done(Reason),
    /// Untrusted UDP to a SIP port under the `inspect` policy: the SIP
    /// inspector decides, starting at `flow.payload_off`.
    Inspect(Flow),
}

/// Steps 1-4 of the verdict order for an Ethernet frame.
#[inline(always)]
pub fn judge<B: Bytes + ?Sized, L: SourceLists>(pkt: &B, settings: &Settings, lists: &L) -> Judgement {
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
    // Most traffic on a WAN link is not SIP: settle untagged IPv4 before
    // the full parse (quick_l4 answers only where parse would agree).
    let quick = match link {
        Link::Ethernet => packet::quick_l4(pkt),
        Link::RawIp => None,
    };
    let parsed = match quick {
        Some((proto, dport)) => {
            if !is_sip_traffic(settings, proto, dport) {
                return Judgement::Done(Reason::PassNotSipPort);
            }
            packet::parse_after_quick(pkt)
        }
        None => packet::parse_link(pkt, link),
    };
    let flow = match parsed {
        Ok(flow) => flow,
        Err(stop) => {
            return Judgement::Done(match stop {
                Stop::NotIp => Reason::PassNotIp,
                Stop::NotUdpTcp => Reason::PassNotUdpTcp,
                Stop::LaterFragment => Reason::PassFragment,
                Stop::Unparsed => Reason::PassUnparsed,
            })
        }
    };
    judge_flow(&flow, settings, lists)
}

/// Step 1: does this UDP/TCP packet go to a SIP port? The one place that
/// decides it, for the quick path in [`judge`] and for [`judge_flow`].
#[inline(always)]
pub fn is_sip_traffic(settings: &Settings, _proto: u8, dport: u16) -> bool {
    settings.is_sip_port(dport)
}

/// Steps 1-4 for a flow whose headers are already parsed.
#[inline(always)]
pub fn judge_flow<L: SourceLists>(flow: &Flow, settings: &Settings, lists: &L) -> Judgement {
    if !is_sip_traffic(settings, flow.proto, flow.dport) {
        return Judgement::Done(Reason::PassNotSipPort);
    }
    if lists.blocked(flow) {
        return Judgement::Done(Reason::DropBlocked);
    }
    if lists.trusted(flow) {
        return Judgement::Done(Reason::PassTrusted);
    }
    if lists.learned(flow) {
        return Judgement::Done(Reason::PassLearned);
    }
    if flow.malformed {
        return Judgement::Done(Reason::DropMalformed);
    }
    if settings.policy != POLICY_INSPECT {
        return Judgement::Done(Reason::DropUntrusted);
    }
    if flow.proto != IPPROTO_UDP {
        // TCP/TLS segments cannot be reassembled in XDP: only the lists apply.
        return Judgement::Done(Reason::PassUninspectable);
    }
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
    Outcome { reason, drop: would_drop && !monitored, monitored }
}
