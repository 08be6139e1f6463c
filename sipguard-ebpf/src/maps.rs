//! The program's maps. Names and value types come from `sipguard_common::abi`
//! so userspace opens exactly these.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{lpm_trie::Key, Array, LpmTrie, LruHashMap, PerCpuArray},
};
use sipguard_common::{
    packet::Flow, verdict::SourceLists, Counter, IfaceName, LearnConfig, LearnedExpiry, ListValue, Settings,
    V4Key, V6Key, COUNTER_ENTRIES, IFACE_SLOTS as SLOTS, LEARNED_ENTRIES, MAX_IFINDEX,
};

#[map(name = "SETTINGS")]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

// LPM tries are not preallocated: max_entries only caps growth, so large
// blocklist feeds fit without costing memory when unused.
#[map(name = "TRUSTED_V4")]
pub static TRUSTED_V4: LpmTrie<V4Key, ListValue> = LpmTrie::with_max_entries(1 << 16, 0);
#[map(name = "TRUSTED_V6")]
pub static TRUSTED_V6: LpmTrie<V6Key, ListValue> = LpmTrie::with_max_entries(1 << 16, 0);
#[map(name = "BLOCKED_V4")]
pub static BLOCKED_V4: LpmTrie<V4Key, ListValue> = LpmTrie::with_max_entries(1 << 22, 0);
#[map(name = "BLOCKED_V6")]
pub static BLOCKED_V6: LpmTrie<V6Key, ListValue> = LpmTrie::with_max_entries(1 << 22, 0);

#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

/// ifindex -> counter slot, written by the daemon when it attaches.
#[map(name = "IFACE_SLOTS")]
pub static IFACE_SLOTS: Array<u32> = Array::with_max_entries(MAX_IFINDEX, 0);

/// slot -> interface name; only userspace reads it (see abi::IfaceName).
#[map(name = "IFACE_NAMES")]
pub static IFACE_NAMES: Array<IfaceName> = Array::with_max_entries(SLOTS, 0);

/// Registrars learned by the TC egress program: address -> expiry (ns).
/// LRU so a flood of outbound REGISTERs cannot fill it for good.
#[map(name = "LEARNED_V4")]
pub static LEARNED_V4: LruHashMap<V4Key, LearnedExpiry> = LruHashMap::with_max_entries(LEARNED_ENTRIES, 0);
#[map(name = "LEARNED_V6")]
pub static LEARNED_V6: LruHashMap<V6Key, LearnedExpiry> = LruHashMap::with_max_entries(LEARNED_ENTRIES, 0);

#[map(name = "LEARN_CONFIG")]
pub static LEARN_CONFIG: Array<LearnConfig> = Array::with_max_entries(1, 0);

pub struct KernelLists;

impl SourceLists for KernelLists {
    #[inline(always)]
    fn blocked(&self, flow: &Flow) -> bool {
        if flow.ipv6 {
            BLOCKED_V6.get(Key::new(128, flow.src)).is_some()
        } else {
            BLOCKED_V4.get(Key::new(32, flow.src_v4())).is_some()
        }
    }

    #[inline(always)]
    fn trusted(&self, flow: &Flow) -> bool {
        if flow.ipv6 {
            TRUSTED_V6.get(Key::new(128, flow.src)).is_some()
        } else {
            TRUSTED_V4.get(Key::new(32, flow.src_v4())).is_some()
        }
    }

    /// One hash lookup and a clock read; expiry is checked here so no
    /// daemon has to sweep for the verdict to be right.
    #[inline(always)]
    fn learned(&self, flow: &Flow) -> bool {
        // SAFETY: the value is copied out at once; LRU entries may be
        // replaced concurrently, a stale read is only one packet's verdict.
        let expiry = unsafe {
            if flow.ipv6 {
                LEARNED_V6.get(flow.src).copied()
            } else {
                LEARNED_V4.get(flow.src_v4()).copied()
            }
        };
        match expiry {
            // SAFETY: helper without arguments.
            Some(e) => e > unsafe { bpf_ktime_get_ns() },
            None => false,
        }
    }

    #[inline(always)]
    fn banned(&self, flow: &Flow) -> bool {
        crate::bans::banned(flow)
    }
}
