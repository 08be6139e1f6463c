//! The sipguard XDP program: parses each frame with the shared logic in
//! `sipguard-common`, looks the source up in the trusted and blocked tries,
//! counts the verdict per interface and reason, and passes or drops.
#![no_std]
#![no_main]

mod bans;
mod events;
mod frags;
mod learn;
mod maps;
mod pkt;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use sipguard_common::{
    counter_index,
    ops::SipEventInfo,
    packet::{self, Link, Stop},
    verdict::{judge_flow, outcome, parse_after, quick_step, stop_reason, Judgement, Outcome, Quick},
    Reason, MAX_IFINDEX,
};

use crate::{maps::*, pkt::Pkt};

/// Set to 1 at load time by BPF_PROG_TEST_RUN users (`sipguard replay`,
/// tests): the reason is then encoded in the return value. `.rodata`, so
/// the verifier removes that path from the program the daemon attaches.
#[unsafe(no_mangle)]
static REPORT_REASON: u32 = 0;

#[xdp]
pub fn sipguard(ctx: XdpContext) -> u32 {
    filter(&ctx, Link::Ethernet)
}

/// Attached by the daemon to interfaces whose packets carry no Ethernet
/// header (ARPHRD_NONE, ARPHRD_PPP, ...): generic XDP hands it the IP header
/// at data[0]. A separate entry point so the Ethernet path pays nothing.
#[xdp]
pub fn sipguard_rawip(ctx: XdpContext) -> u32 {
    filter(&ctx, Link::RawIp)
}

#[inline(always)]
fn filter(ctx: &XdpContext, link: Link) -> u32 {
    // No settings means no SIP ports: everything passes untouched.
    let Some(settings) = SETTINGS.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let pkt = Pkt::new(ctx);
    let quick = quick_step(&pkt, link, settings);
    if quick == Quick::NotSipPort {
        return finish(ctx, &pkt, outcome(Reason::PassNotSipPort, settings));
    }
    let parsed = parse_after(&pkt, link, quick);
    let judgement = match &parsed {
        Ok(flow) => judge_flow(flow, settings, &KernelLists),
        Err(Stop::LaterFragment(k)) => Judgement::Done(frags::later(k)),
        Err(stop) => Judgement::Done(stop_reason(stop)),
    };
    let reason = match judgement {
        Judgement::Done(reason) => reason,
        // The SIP inspector is not in this build yet: untrusted UDP under
        // `inspect` passes, counted as such.
        Judgement::Inspect(_) => Reason::PassInspected,
    };
    let out = outcome(reason, settings);
    if reason.is_drop() {
        on_drop(ctx, &parsed, &out, &SipEventInfo::NONE);
    }
    finish(ctx, &pkt, out)
}

/// Counts the outcome and returns its action.
#[inline(always)]
fn finish(ctx: &XdpContext, pkt: &Pkt, out: Outcome) -> u32 {
    count(ctx, pkt, &out);
    let action = if out.drop { xdp_action::XDP_DROP } else { xdp_action::XDP_PASS };
    // SAFETY: reading a plain static; volatile so it is not const-folded.
    if unsafe { core::ptr::read_volatile(&REPORT_REASON) } != 0 {
        return action | (out.reason as u32) << 8 | (out.monitored as u32) << 16;
    }
    action
}

/// Does nothing: the baseline that benchmarks divide by.
#[xdp]
pub fn empty_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Events, ban counting and fragment memory for a dropped (or would-drop)
/// packet. The SIP inspector passes what it learned in `sip`.
#[inline(always)]
fn on_drop(ctx: &XdpContext, parsed: &Result<packet::Flow, Stop>, out: &Outcome, sip: &SipEventInfo) {
    let Some(ops) = events::OPS.get(0) else { return };
    if ops.flags == 0 {
        return;
    }
    let Some(a) = events::addrs(parsed) else { return };
    let t = events::now();
    if let Ok(flow) = parsed {
        frags::remember(ops, flow, t);
    }
    bans::note_drop(ops, &a, out.reason, t);
    if ops.flags & sipguard_common::ops::OPS_EVENTS != 0 {
        events::emit(ctx, ops, &a, out, sip, t);
    }
}

#[inline(always)]
fn count(ctx: &XdpContext, pkt: &Pkt, out: &Outcome) {
    let ifindex = ctx.ingress_ifindex() as u32;
    let slot = if ifindex < MAX_IFINDEX {
        IFACE_SLOTS.get(ifindex).copied().unwrap_or(0)
    } else {
        0
    };
    let idx = counter_index(slot, out.monitored, out.reason as u32);
    if let Some(c) = COUNTERS.get_ptr_mut(idx) {
        // Per-CPU values: no other writer, no atomics needed.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += pkt.frame_len() as u64;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
