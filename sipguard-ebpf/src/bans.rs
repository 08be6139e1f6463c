//! Automatic bans, counted and expired in the kernel so they work (and end)
//! without the daemon: a source with `ban_threshold` drops inside
//! `ban_window_ns` is dropped as `DropBanned` until `ban_ttl_ns` later.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap},
};
use sipguard_common::{abi::*, packet::Flow, Reason};

use crate::{
    clock::Clock,
    events::{stat, Addrs, OPS},
};

#[map(name = "BANS")]
pub static BANS: LruHashMap<AddrKey, BanEntry> = LruHashMap::with_max_entries(BAN_ENTRIES, 0);

#[map(name = "BAN_COUNTS")]
pub static BAN_COUNTS: LruHashMap<AddrKey, BanCount> = LruHashMap::with_max_entries(BAN_ENTRIES, 0);

/// See `StateHints`: which kernel-filled maps may hold entries.
#[map(name = "HINTS")]
pub static HINTS: Array<StateHints> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn hints() -> Option<&'static StateHints> {
    HINTS.get(0)
}

/// Marks `BANS` as possibly non-empty; written only when not yet set so
/// the cache line stays shared between CPUs.
#[inline(always)]
fn hint_bans() {
    if let Some(h) = HINTS.get_ptr_mut(0) {
        // SAFETY: a valid map value pointer; every writer stores 1.
        unsafe {
            if (*h).bans == 0 {
                (*h).bans = 1;
            }
        }
    }
}

const DEFAULT_V6_PREFIX: u32 = 64;

#[inline(always)]
fn v6_prefix() -> u32 {
    match OPS.get(0) {
        Some(o) if o.ban_v6_prefix != 0 => o.ban_v6_prefix,
        _ => DEFAULT_V6_PREFIX,
    }
}

/// What the verdict read of the kernel's state for one packet, kept for
/// its drop: the clock (read at most once) and, for a banned source, its
/// `BANS` entry (where its drop events are sampled).
pub struct PacketState {
    pub clock: Clock,
    pub ban: core::cell::Cell<*mut BanEntry>,
}

impl PacketState {
    #[inline(always)]
    pub const fn new() -> Self {
        PacketState {
            clock: Clock::new(),
            ban: core::cell::Cell::new(core::ptr::null_mut()),
        }
    }
}

/// Manual bans apply even when automatic banning is off.
#[inline(always)]
pub fn banned(flow: &Flow, state: &PacketState) -> bool {
    if !hints().is_some_and(|h| h.bans != 0) {
        return false;
    }
    // IPv4 keys ignore the prefix: read the setting only for IPv6.
    let prefix = if flow.ipv6 { v6_prefix() } else { 128 };
    let key = AddrKey::new(flow.ipv6, &flow.src, prefix);
    let Some(b) = BANS.get_ptr_mut(&key) else {
        return false;
    };
    // SAFETY: valid map value pointer.
    let expires = unsafe { (*b).expires_ns };
    // A ban without end (manual) needs no clock.
    if expires == BAN_FOREVER || state.clock.now() < expires {
        state.ban.set(b);
        return true;
    }
    let _ = BANS.remove(&key);
    false
}

/// Counts a drop of `a`'s source; bans it when the threshold is reached.
#[inline(always)]
pub fn note_drop(ops: &OpsSettings, a: &Addrs, reason: Reason, t: u64) {
    // Banned, blocklisted and decided sources are already dropped by their
    // lists (and a fleet's decision must not outlive its deletion as a ban).
    if ops.flags & OPS_AUTO_BAN == 0
        || matches!(
            reason,
            Reason::DropBanned | Reason::DropBlocked | Reason::DropDecision
        )
        || ops.ban_threshold == 0
    {
        return;
    }
    let prefix = if ops.ban_v6_prefix != 0 {
        ops.ban_v6_prefix
    } else {
        DEFAULT_V6_PREFIX
    };
    let key = AddrKey::new(a.ipv6, &a.src, prefix);
    let count = match BAN_COUNTS.get_ptr_mut(&key) {
        Some(c) => unsafe {
            // SAFETY: valid map value pointer; races between CPUs only make
            // a ban come one drop earlier or later.
            if t.wrapping_sub((*c).window_start_ns) > ops.ban_window_ns {
                (*c).window_start_ns = t;
                (*c).count = 1;
            } else {
                (*c).count += 1;
            }
            (*c).count
        },
        None => {
            let _ = BAN_COUNTS.insert(
                &key,
                &BanCount {
                    window_start_ns: t,
                    count: 1,
                    _pad0: 0,
                },
                0,
            );
            1
        }
    };
    if count >= ops.ban_threshold {
        let entry = BanEntry::new(t.saturating_add(ops.ban_ttl_ns), BAN_AUTO, count);
        hint_bans();
        let _ = BANS.insert(&key, &entry, 0);
        let _ = BAN_COUNTS.remove(&key);
        stat(STAT_BANS_CREATED);
    }
}
