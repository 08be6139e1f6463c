//! The TC egress program: outbound UDP REGISTER/INVITE to a SIP port make
//! their destination a learned registrar for `LEARN_CONFIG.ttl_ns`. It
//! never changes or drops a packet. Verified on its own, apart from XDP.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use sipguard_common::{learn::teaching, packet::Link};

use crate::{
    maps::{LEARNED_V4, LEARNED_V6, LEARN_CONFIG, SETTINGS},
    pkt::Pkt,
};

/// Headers (VLAN, PPPoE, IPv6 extension headers) plus the method: more
/// than the parser ever reads before the payload's first 9 bytes.
const PULL: u32 = 256;

#[classifier]
pub fn sipguard_learn(ctx: TcContext) -> i32 {
    learn(&ctx, Link::Ethernet);
    TC_ACT_OK
}

/// For devices without an Ethernet header (tun, ppp).
#[classifier]
pub fn sipguard_learn_rawip(ctx: TcContext) -> i32 {
    learn(&ctx, Link::RawIp);
    TC_ACT_OK
}

#[inline(always)]
fn learn(ctx: &TcContext, link: Link) {
    let Some(cfg) = LEARN_CONFIG.get(0) else {
        return;
    };
    let ttl = cfg.ttl_ns;
    if ttl == 0 {
        return;
    }
    let Some(settings) = SETTINGS.get(0) else {
        return;
    };
    // A non-linear skb keeps part of the headers out of direct reach.
    let len = ctx.len();
    let _ = ctx.pull_data(if len < PULL { len } else { PULL });
    let pkt = Pkt::from_range(ctx.data(), ctx.data_end());
    let Some((flow, _)) = teaching(&pkt, link, settings) else {
        return;
    };
    let expiry = crate::clock::now() + ttl;
    if let Some(h) = crate::bans::HINTS.get_ptr_mut(0) {
        // SAFETY: a valid map value pointer; every writer stores 1. Set
        // before the insert so the entry is never skipped by the filter.
        unsafe {
            if (*h).learned == 0 {
                (*h).learned = 1;
            }
        }
    }
    if flow.ipv6 {
        let _ = LEARNED_V6.insert(flow.dst, expiry, 0);
    } else {
        let _ = LEARNED_V4.insert(
            [flow.dst[0], flow.dst[1], flow.dst[2], flow.dst[3]],
            expiry,
            0,
        );
    }
}
