//! Non-first fragments carry no UDP header, so their port is unknown. Policy:
//! when a first fragment is dropped its datagram (source, destination, IP id)
//! is remembered, and later fragments of that datagram are dropped
//! (`DropFragment`); every other later fragment passes (`PassFragment`) so
//! legitimate fragmented traffic to non-SIP ports is untouched.

use aya_ebpf::{macros::map, maps::LruHashMap};
use sipguard_common::{abi::*, packet::Flow, Reason};

use crate::events::{stat, OPS};

#[map(name = "FRAGS")]
pub static FRAGS: LruHashMap<FragKey, u64> = LruHashMap::with_max_entries(FRAG_ENTRIES, 0);

#[inline(always)]
pub fn later(k: &FragKey) -> Reason {
    let on = matches!(OPS.get(0), Some(o) if o.flags & OPS_FRAGS != 0);
    if on && FRAGS.get_ptr(k).is_some() {
        Reason::DropFragment
    } else {
        Reason::PassFragment
    }
}

#[inline(always)]
pub fn remember(ops: &OpsSettings, flow: &Flow, t: u64) {
    if ops.flags & OPS_FRAGS == 0 || !flow.first_fragment {
        return;
    }
    let k = FragKey {
        src: flow.src,
        dst: flow.dst,
        id: flow.frag_id,
        family: if flow.ipv6 { 6 } else { 4 },
    };
    let _ = FRAGS.insert(&k, &t, 0);
    stat(STAT_FRAGS_REMEMBERED);
}
