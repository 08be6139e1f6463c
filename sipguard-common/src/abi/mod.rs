//! The contract between the XDP/TC programs and userspace: map names, key
//! and value layouts, the values their fields take, and the pin directory
//! version. `#[repr(C)]` with explicit padding and size asserts, so both
//! sides agree byte for byte. One namespace; the files split it by map.
//!
//! This is the bottom layer of the crate after [`crate::reason`]: the packet
//! parser, the scanners and the verdict take their constants from here,
//! never the other way round.

mod addr;
mod bans;
mod counters;
mod decisions;
mod events;
mod frags;
mod learned;
mod lists;
mod operations;
mod rules;
mod settings;

pub use addr::*;
pub use bans::*;
pub use counters::*;
pub use decisions::*;
pub use events::*;
pub use frags::*;
pub use learned::*;
pub use lists::*;
pub use operations::*;
pub use rules::*;
pub use settings::*;

/// Bumped whenever a map's key/value layout or meaning changes; pins live in
/// `<pin root>/v<MAP_ABI_VERSION>/` so an old daemon never reads a new layout.
/// 2: `INSPECTOR` holds two programs (the any-port reader in slot 1);
/// `Settings` carries source-list hints; the `HINTS` map is new.
/// 3: `DECISIONS_V4`/`DECISIONS_V6` are new, `StateHints` has a
/// `decisions` field, reason 21 (`DropDecision`) counts their drops.
/// 4: `BLOCKED_V4_HOSTS`/`BLOCKED_V6_HOSTS` are new and hold the
/// blocklist's full-length entries (no longer in the tries); `Settings`
/// flags say which of the four blocklist maps may hold entries;
/// `BanEntry` carries the event sampling of its banned drops (32 bytes).
pub const MAP_ABI_VERSION: u32 = 4;

/// Map names as they appear in the object file and under the pin directory.
pub mod map_names {
    pub const SETTINGS: &str = "SETTINGS";
    pub const TRUSTED_V4: &str = "TRUSTED_V4";
    pub const TRUSTED_V6: &str = "TRUSTED_V6";
    pub const BLOCKED_V4: &str = "BLOCKED_V4";
    pub const BLOCKED_V6: &str = "BLOCKED_V6";
    /// The blocklist's /32 and /128 entries (hashes, address -> `ListValue`).
    pub const BLOCKED_V4_HOSTS: &str = "BLOCKED_V4_HOSTS";
    pub const BLOCKED_V6_HOSTS: &str = "BLOCKED_V6_HOSTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const IFACE_SLOTS: &str = "IFACE_SLOTS";
    pub const IFACE_NAMES: &str = "IFACE_NAMES";
    pub const UA_PREFIXES: &str = "UA_PREFIXES";
    pub const EXPECTED_USERS: &str = "EXPECTED_USERS";
    pub const LEARNED_V4: &str = "LEARNED_V4";
    pub const LEARNED_V6: &str = "LEARNED_V6";
    pub const LEARN_CONFIG: &str = "LEARN_CONFIG";
    /// Program array holding the SIP inspector, tail-called by the filter.
    pub const INSPECTOR: &str = "INSPECTOR";
    /// The same for the multi-buffer programs. Not pinned (not in
    /// [`ALL`]): it lives as long as the daemon that filled it.
    pub const INSPECTOR_FRAGS: &str = "INSPECTOR_FRAGS";
    /// Ring buffer of [`super::DropEvent`].
    pub const EVENTS: &str = "EVENTS";
    /// Per-source event sampling state (LRU hash `AddrKey` -> `SampleState`).
    pub const EVENT_SAMPLER: &str = "EVENT_SAMPLER";
    /// Per-CPU `u64` statistics indexed by `STAT_*`.
    pub const OPS_STATS: &str = "OPS_STATS";
    /// Single [`super::OpsSettings`].
    pub const OPS: &str = "OPS";
    /// Active bans (LRU hash `AddrKey` -> `BanEntry`).
    pub const BANS: &str = "BANS";
    /// Drop counts per source and window (LRU hash `AddrKey` -> `BanCount`).
    pub const BAN_COUNTS: &str = "BAN_COUNTS";
    /// First fragments that were dropped (LRU hash `FragKey` -> `u64` time).
    pub const FRAGS: &str = "FRAGS";
    /// Single [`super::StateHints`].
    pub const HINTS: &str = "HINTS";
    /// CrowdSec ban decisions (LPM tries, prefix -> `DecisionEntry`).
    pub const DECISIONS_V4: &str = "DECISIONS_V4";
    pub const DECISIONS_V6: &str = "DECISIONS_V6";
    /// Every map the programs share with userspace, pinned together.
    pub const ALL: [&str; 26] = [
        SETTINGS,
        TRUSTED_V4,
        TRUSTED_V6,
        BLOCKED_V4,
        BLOCKED_V6,
        BLOCKED_V4_HOSTS,
        BLOCKED_V6_HOSTS,
        COUNTERS,
        IFACE_SLOTS,
        IFACE_NAMES,
        LEARNED_V4,
        LEARNED_V6,
        LEARN_CONFIG,
        UA_PREFIXES,
        EXPECTED_USERS,
        INSPECTOR,
        EVENTS,
        EVENT_SAMPLER,
        OPS_STATS,
        OPS,
        BANS,
        BAN_COUNTS,
        FRAGS,
        HINTS,
        DECISIONS_V4,
        DECISIONS_V6,
    ];
}

/// For every pinned map, the first map ABI version whose map of that name
/// holds the same keys and values with the same meaning as this version's.
/// An upgrade carries a map's content over from an older ABI's pins only
/// from that version on (and only when the kernel reports the same type and
/// sizes). Update it whenever a map's layout or meaning changes.
///
/// Reasons are appended, never renumbered, and `REASON_SLOTS` has been 32
/// since 1, so `COUNTERS` cells keep their meaning. Learned registrar
/// expiries were CLOCK_MONOTONIC before the builds of 2026-12-03 (within
/// ABI 2); carried as CLOCK_BOOTTIME they end early by the time the machine
/// spent suspended, never late.
pub const LAYOUT_SINCE: [(&str, u32); map_names::ALL.len()] = [
    (map_names::SETTINGS, 2),
    (map_names::TRUSTED_V4, 1),
    (map_names::TRUSTED_V6, 1),
    (map_names::BLOCKED_V4, 1),
    (map_names::BLOCKED_V6, 1),
    (map_names::BLOCKED_V4_HOSTS, 4),
    (map_names::BLOCKED_V6_HOSTS, 4),
    (map_names::COUNTERS, 1),
    (map_names::IFACE_SLOTS, 1),
    (map_names::IFACE_NAMES, 1),
    (map_names::LEARNED_V4, 1),
    (map_names::LEARNED_V6, 1),
    (map_names::LEARN_CONFIG, 1),
    (map_names::UA_PREFIXES, 1),
    (map_names::EXPECTED_USERS, 1),
    (map_names::INSPECTOR, 2),
    (map_names::EVENTS, 1),
    (map_names::EVENT_SAMPLER, 1),
    (map_names::OPS_STATS, 1),
    (map_names::OPS, 1),
    (map_names::BANS, 4),
    (map_names::BAN_COUNTS, 1),
    (map_names::FRAGS, 1),
    (map_names::HINTS, 3),
    (map_names::DECISIONS_V4, 3),
    (map_names::DECISIONS_V6, 3),
];

/// The first map ABI version with `name`'s current layout (see
/// [`LAYOUT_SINCE`]); `None` for a name that is not a pinned map.
pub fn layout_since(name: &str) -> Option<u32> {
    LAYOUT_SINCE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

/// The SIP inspector: an XDP program of its own, reached by tail call
/// through the `INSPECTOR` program array (slot [`INSPECTOR_SLOT`]) so the
/// verifier checks it once, with a fresh stack, instead of once per state
/// the header stage can end in.
pub const INSPECT_PROGRAM_NAME: &str = "sipguard_inspect";
/// The same inspector without `bpf_loop`, for kernels before 5.17; the
/// loader puts one of the two in slot [`INSPECTOR_SLOT`].
pub const INSPECT_BOUNDED_PROGRAM_NAME: &str = "sipguard_inspect_bounded";
pub const INSPECTOR_SLOT: u32 = 0;

/// SIP on any UDP port: the program that reads the request line of UDP
/// outside the SIP ports (`FLAG_ANY_UDP_PORT`), tail-called by the filter
/// through the same program array, slot [`ANY_PORT_SLOT`].
pub const ANY_PORT_PROGRAM_NAME: &str = "sipguard_anyport";
/// The same reader without `bpf_loop`, for kernels before 5.17; the loader
/// puts one of the two in slot [`ANY_PORT_SLOT`].
pub const ANY_PORT_BOUNDED_PROGRAM_NAME: &str = "sipguard_anyport_bounded";
pub const ANY_PORT_SLOT: u32 = 1;
/// Entries of the `INSPECTOR` program array.
pub const TAIL_SLOTS: u32 = 2;

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "sipguard";

/// The same filter for interfaces without an Ethernet header (tun, ppp,
/// wireguard): under generic XDP their packets start at the IP header.
pub const PROGRAM_NAME_RAW_IP: &str = "sipguard_rawip";

/// The multi-buffer (`xdp.frags`, Linux 5.18+) builds of the programs
/// above, for native XDP on links whose frames do not fit one buffer
/// ([`SINGLE_BUFFER_FRAME`]); they tail-call through `INSPECTOR_FRAGS`.
pub const PROGRAM_NAME_FRAGS: &str = "sipguard_frags";
pub const PROGRAM_NAME_RAW_IP_FRAGS: &str = "sipguard_rawip_frags";
pub const INSPECT_PROGRAM_NAME_FRAGS: &str = "sipguard_inspect_frags";
pub const ANY_PORT_PROGRAM_NAME_FRAGS: &str = "sipguard_anyport_frags";

/// The largest frame a single-buffer XDP program is given on x86-64 and
/// arm64 with 4 KiB pages (PAGE_SIZE - XDP headroom - skb_shared_info):
/// the most BPF_PROG_TEST_RUN takes for it, and, less the link header, the
/// largest MTU drivers accept it on in native mode.
pub const SINGLE_BUFFER_FRAME: usize = 3520;

/// TC egress programs that learn registrars (Ethernet and raw IP).
pub const LEARN_PROGRAM_NAME: &str = "sipguard_learn";
pub const LEARN_PROGRAM_NAME_RAW_IP: &str = "sipguard_learn_rawip";

#[cfg(feature = "user")]
mod pod {
    macro_rules! pod {
        ($($t:ident),* $(,)?) => {
            // SAFETY: each is plain #[repr(C)] data, without padding or with
            // explicit padding fields, and without pointers.
            $(unsafe impl aya::Pod for super::$t {})*
        };
    }
    pod!(
        UserKey,
        Settings,
        SmallV4,
        Counter,
        LearnConfig,
        OpsSettings,
        DecisionEntry,
        StateHints,
        AddrKey,
        SampleState,
        BanCount,
        BanEntry,
        FragKey,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_map_has_its_layout_version() {
        for (i, name) in map_names::ALL.iter().enumerate() {
            assert_eq!(LAYOUT_SINCE[i].0, *name, "LAYOUT_SINCE follows ALL");
            let v = layout_since(name).unwrap();
            assert!((1..=MAP_ABI_VERSION).contains(&v), "{name}: {v}");
        }
        assert_eq!(layout_since("SCAN"), None);
        assert_eq!(layout_since(map_names::BANS), Some(4));
        assert_eq!(layout_since(map_names::DECISIONS_V4), Some(3));
    }
}
