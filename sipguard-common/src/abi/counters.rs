//! `COUNTERS`, `IFACE_SLOTS`, `IFACE_NAMES`: per-interface, per-reason
//! packet and byte counts.

use crate::reason::REASON_SLOTS;

/// Per-CPU packet and byte counts of one (interface slot, mode, reason) cell.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);

/// Interfaces get a small slot number so counters can live in a flat per-CPU
/// array (inlined lookups) instead of a hash map. Slot 0 collects packets
/// from interfaces the daemon did not register (and BPF_PROG_TEST_RUN).
pub const IFACE_SLOTS: u32 = 16;
/// `IFACE_SLOTS` map size: ifindex -> slot; larger ifindexes use slot 0.
pub const MAX_IFINDEX: u32 = 4096;

/// `IFACE_NAMES` value: the interface name of a slot, NUL-padded. Stored
/// because ifindexes are per network namespace: `stats` may run elsewhere.
pub type IfaceName = [u8; 16];

/// Counters are `[slot][monitor][reason]`; `monitor` = 1 for "would drop"
/// verdicts under monitor mode, so they never mix with real drops.
pub const COUNTER_ENTRIES: u32 = IFACE_SLOTS * 2 * REASON_SLOTS;

#[inline(always)]
pub const fn counter_index(slot: u32, monitored: bool, reason: u32) -> u32 {
    let slot = if slot < IFACE_SLOTS { slot } else { 0 };
    (slot * 2 + monitored as u32) * REASON_SLOTS + (reason & (REASON_SLOTS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_index_is_in_bounds_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for slot in 0..IFACE_SLOTS {
            for m in [false, true] {
                for r in 0..REASON_SLOTS {
                    let i = counter_index(slot, m, r);
                    assert!(i < COUNTER_ENTRIES);
                    assert!(seen.insert(i));
                }
            }
        }
        assert_eq!(
            counter_index(IFACE_SLOTS + 3, false, 1),
            counter_index(0, false, 1)
        );
    }
}
