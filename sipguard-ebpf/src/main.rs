//! The sipguard XDP program: parses each frame with the shared logic in
//! `sipguard-common`, looks the source up in the trusted and blocked tries,
//! counts the verdict per interface and reason, and passes or drops.
#![no_std]
#![no_main]

mod learn;
mod maps;
mod pkt;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use sipguard_common::{
    counter_index,
    packet::Link,
    verdict::{judge_link, outcome, Judgement, Outcome},
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
    let reason = match judge_link(&pkt, link, settings, &KernelLists) {
        Judgement::Done(reason) => reason,
        // The SIP inspector is not in this build yet: untrusted UDP under
        // `inspect` passes, counted as such.
        Judgement::Inspect(_) => Reason::PassInspected,
    };
    let out = outcome(reason, settings);
    count(ctx, &pkt, &out);
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
