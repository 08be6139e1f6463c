//! The program's maps. Names and value types come from `sipguard_common::abi`
//! so userspace opens exactly these.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray},
};
use sipguard_common::{
    decision_live,
    packet::Flow,
    sip::{Scan, SipLists},
    verdict::SourceLists,
    Counter, DecisionEntry, IfaceName, LearnConfig, LearnedExpiry, ListValue, Settings, SmallV4,
    UaKey, UserKey, V4Key, V6Key, BLOCKED_V4_HOSTS_ENTRIES, BLOCKED_V6_HOSTS_ENTRIES,
    COUNTER_ENTRIES, DECISION_ENTRIES, FLAG_BLOCKED_V4, FLAG_BLOCKED_V4_HOSTS, FLAG_BLOCKED_V6,
    FLAG_BLOCKED_V6_HOSTS, FLAG_TRUSTED_V6, IFACE_SLOTS as SLOTS, LEARNED_ENTRIES,
    MAX_EXPECTED_USERS, MAX_IFINDEX, MAX_UA_PREFIXES, UA_BYTES, USER_BYTES,
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

/// The blocklist's /32 and /128 entries: an exact match is the longest
/// prefix there is, so a hit decides with one hash lookup. Not
/// preallocated (entries are allocated as they are added; the buckets are
/// allocated at creation, see `BLOCKED_V4_HOSTS_ENTRIES`).
#[map(name = "BLOCKED_V4_HOSTS")]
pub static BLOCKED_V4_HOSTS: HashMap<V4Key, ListValue> =
    HashMap::with_max_entries(BLOCKED_V4_HOSTS_ENTRIES, BPF_F_NO_PREALLOC);
#[map(name = "BLOCKED_V6_HOSTS")]
pub static BLOCKED_V6_HOSTS: HashMap<V6Key, ListValue> =
    HashMap::with_max_entries(BLOCKED_V6_HOSTS_ENTRIES, BPF_F_NO_PREALLOC);

/// CrowdSec ban decisions, written by the daemon's bouncer; each entry's
/// end is checked here (`decided`), so none outlives its decision.
#[map(name = "DECISIONS_V4")]
pub static DECISIONS_V4: LpmTrie<V4Key, DecisionEntry> =
    LpmTrie::with_max_entries(DECISION_ENTRIES, 0);
#[map(name = "DECISIONS_V6")]
pub static DECISIONS_V6: LpmTrie<V6Key, DecisionEntry> =
    LpmTrie::with_max_entries(DECISION_ENTRIES, 0);

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
pub static LEARNED_V4: LruHashMap<V4Key, LearnedExpiry> =
    LruHashMap::with_max_entries(LEARNED_ENTRIES, 0);
#[map(name = "LEARNED_V6")]
pub static LEARNED_V6: LruHashMap<V6Key, LearnedExpiry> =
    LruHashMap::with_max_entries(LEARNED_ENTRIES, 0);

#[map(name = "LEARN_CONFIG")]
pub static LEARN_CONFIG: Array<LearnConfig> = Array::with_max_entries(1, 0);

/// Scanner User-Agent prefixes: prefix length = prefix bytes * 8.
#[map(name = "UA_PREFIXES")]
pub static UA_PREFIXES: LpmTrie<UaKey, ListValue> = LpmTrie::with_max_entries(MAX_UA_PREFIXES, 0);

/// Request-URI users INVITEs may go to (when the rule is on).
#[map(name = "EXPECTED_USERS")]
pub static EXPECTED_USERS: HashMap<UserKey, ListValue> =
    HashMap::with_max_entries(MAX_EXPECTED_USERS, 0);

/// The SIP scanner's state for the packet being inspected on this CPU.
#[map(name = "SCAN")]
pub static SCAN: PerCpuArray<Scan> = PerCpuArray::with_max_entries(1, 0);

/// What the multi-buffer inspector scans, copied out of the frame
/// (`pkt::Window`).
#[map(name = "WINDOW")]
pub static WINDOW: PerCpuArray<crate::pkt::WindowBuf> = PerCpuArray::with_max_entries(1, 0);

/// The request-line reader's state (`any_udp_port`) on this CPU.
#[map(name = "LINE")]
pub static LINE: PerCpuArray<sipguard_common::any_port::Line> = PerCpuArray::with_max_entries(1, 0);

/// The inspector's step count for the packet being inspected on this CPU,
/// read back from here so that every count (none, a standard frame's, a
/// jumbo frame's) reaches `bpf_loop` as one unknown value: held in a
/// register, each would take the rest of the program through the verifier
/// once more.
#[map(name = "STEPS")]
pub static STEPS: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The flow handed from the filter to the tail-called inspector.
#[map(name = "INSPECT_FLOW")]
pub static INSPECT_FLOW: PerCpuArray<sipguard_common::packet::Flow> =
    PerCpuArray::with_max_entries(1, 0);

/// Slot `INSPECTOR_SLOT` holds `sipguard_inspect`, `ANY_PORT_SLOT`
/// `sipguard_anyport`; filled by userspace.
#[map(name = "INSPECTOR")]
pub static INSPECTOR: ProgramArray = ProgramArray::with_max_entries(sipguard_common::TAIL_SLOTS, 0);

/// The same slots for the multi-buffer (`xdp.frags`) programs, which the
/// kernel does not let share a program array with single-buffer ones.
#[map(name = "INSPECTOR_FRAGS")]
pub static INSPECTOR_FRAGS: ProgramArray =
    ProgramArray::with_max_entries(sipguard_common::TAIL_SLOTS, 0);

/// The kernel's source lists. Each lookup is skipped when a hint says it
/// would miss: the IPv4 /16 bitmaps and IPv6 flags in `Settings` (kept by
/// userspace with the tries) and the sticky `HINTS` bits (set by whoever
/// fills the learned and ban maps).
pub struct KernelLists<'a> {
    pub settings: &'a Settings,
    pub state: crate::bans::PacketState,
}

impl<'a> KernelLists<'a> {
    #[inline(always)]
    pub const fn new(settings: &'a Settings) -> Self {
        KernelLists {
            settings,
            state: crate::bans::PacketState::new(),
        }
    }
}

/// One source list in the kernel: its tries, the exact-match hashes of
/// its full-length entries (the blocklist has them), and the hints saying
/// which of them may hold entries.
struct ListMaps<'a> {
    v4: &'a LpmTrie<V4Key, ListValue>,
    v6: &'a LpmTrie<V6Key, ListValue>,
    hosts: Option<(&'a HashMap<V4Key, ListValue>, &'a HashMap<V6Key, ListValue>)>,
    v4_used: bool,
    v6_used: bool,
    v4_hosts_used: bool,
    v6_hosts_used: bool,
    small: &'a SmallV4,
}

impl ListMaps<'_> {
    /// Is the source in the list? IPv4: the short copy in `SETTINGS` when
    /// it is the whole list, else the /16 hint; then the host hash (a hit
    /// decides: nothing is longer than a full-length prefix, and the list
    /// is membership only), then the trie of the shorter prefixes.
    #[inline(always)]
    fn holds(&self, flow: &Flow, may_hold_v4: impl Fn([u8; 4]) -> bool) -> bool {
        if flow.ipv6 {
            if let Some((_, h6)) = self.hosts {
                // SAFETY: the value is only tested for presence.
                if self.v6_hosts_used && unsafe { h6.get(&flow.src) }.is_some() {
                    return true;
                }
            }
            self.v6_used && self.v6.get(Key::new(128, flow.src)).is_some()
        } else {
            let src = flow.src_v4();
            if self.small.is_exhaustive() {
                return self.small.matches(src);
            }
            if !may_hold_v4(src) {
                return false;
            }
            if let Some((h4, _)) = self.hosts {
                // SAFETY: as above.
                if self.v4_hosts_used && unsafe { h4.get(&src) }.is_some() {
                    return true;
                }
            }
            self.v4_used && self.v4.get(Key::new(32, src)).is_some()
        }
    }
}

impl SourceLists for KernelLists<'_> {
    #[inline(always)]
    fn blocked(&self, flow: &Flow) -> bool {
        let s = self.settings;
        ListMaps {
            v4: &BLOCKED_V4,
            v6: &BLOCKED_V6,
            hosts: Some((&BLOCKED_V4_HOSTS, &BLOCKED_V6_HOSTS)),
            v4_used: s.flags & FLAG_BLOCKED_V4 != 0,
            v6_used: s.flags & FLAG_BLOCKED_V6 != 0,
            v4_hosts_used: s.flags & FLAG_BLOCKED_V4_HOSTS != 0,
            v6_hosts_used: s.flags & FLAG_BLOCKED_V6_HOSTS != 0,
            small: &s.small_blocked_v4,
        }
        .holds(flow, |src| s.may_block_v4(src))
    }

    #[inline(always)]
    fn trusted(&self, flow: &Flow) -> bool {
        let s = self.settings;
        // Allowlists are short (the copy in `SETTINGS` answers) or a few
        // provider ranges: no host hash.
        ListMaps {
            v4: &TRUSTED_V4,
            v6: &TRUSTED_V6,
            hosts: None,
            v4_used: true,
            v6_used: s.flags & FLAG_TRUSTED_V6 != 0,
            v4_hosts_used: false,
            v6_hosts_used: false,
            small: &s.small_trusted_v4,
        }
        .holds(flow, |src| s.may_trust_v4(src))
    }

    /// One hash lookup and a clock read; expiry is checked here so no
    /// daemon has to sweep for the verdict to be right.
    #[inline(always)]
    fn learned(&self, flow: &Flow) -> bool {
        if !crate::bans::hints().is_some_and(|h| h.learned != 0) {
            return false;
        }
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
            Some(e) => e > crate::clock::now(),
            None => false,
        }
    }

    #[inline(always)]
    fn banned(&self, flow: &Flow) -> bool {
        crate::bans::banned(flow, &self.state)
    }

    /// One trie walk and the clock (read once per packet), skipped while
    /// the daemon never wrote a decision.
    #[inline(always)]
    fn decided(&self, flow: &Flow) -> bool {
        if !crate::bans::hints().is_some_and(|h| h.decisions != 0) {
            return false;
        }
        let entry = if flow.ipv6 {
            DECISIONS_V6.get(Key::new(128, flow.src))
        } else {
            DECISIONS_V4.get(Key::new(32, flow.src_v4()))
        };
        match entry {
            Some(e) => decision_live(e, self.state.clock.now()),
            None => false,
        }
    }
}

impl SipLists for KernelLists<'_> {
    #[inline(always)]
    fn user_agent_denied(&self, ua: &[u8; UA_BYTES], len: u32) -> bool {
        let len = if len > UA_BYTES as u32 {
            UA_BYTES as u32
        } else {
            len
        };
        UA_PREFIXES.get(Key::new(len * 8, *ua)).is_some()
    }

    #[inline(always)]
    fn user_expected(&self, user: &[u8; USER_BYTES], len: u32) -> bool {
        let key = UserKey { len, user: *user };
        // SAFETY: the value is only tested for presence.
        unsafe { EXPECTED_USERS.get(&key).is_some() }
    }
}
