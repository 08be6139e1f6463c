//! The operations side of the map ABI: drop events, automatic bans and
//! fragment tracking. Kept apart from `abi.rs` so the verdict path's layout
//! does not change when these grow. `#[repr(C)]`, explicit padding, size
//! asserts: the kernel and userspace read the same bytes.

/// Map names of the operations maps (pinned next to the policy maps).
pub mod map_names {
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
    pub const ALL: [&str; 8] = [
        EVENTS,
        EVENT_SAMPLER,
        OPS_STATS,
        OPS,
        BANS,
        BAN_COUNTS,
        FRAGS,
        HINTS,
    ];
}

/// Ring buffer size in bytes (power of two, multiple of the page size):
/// 4 MiB holds ~40,000 events, a burst of that many new sources.
pub const EVENTS_BYTES: u32 = 1 << 22;
pub const SAMPLER_ENTRIES: u32 = 65536;
pub const BAN_ENTRIES: u32 = 65536;
pub const FRAG_ENTRIES: u32 = 16384;

/// `OpsSettings::flags`: emit drop events.
pub const OPS_EVENTS: u32 = 1 << 0;
/// Count drops per source and ban sources over the threshold.
pub const OPS_AUTO_BAN: u32 = 1 << 1;
/// Remember dropped first fragments and drop the rest of their datagram.
pub const OPS_FRAGS: u32 = 1 << 2;

/// Indexes of the per-CPU `OPS_STATS` array.
pub const STAT_EVENTS_SENT: u32 = 0;
/// Ring buffer was full: an event that sampling let through was lost.
pub const STAT_EVENTS_LOST: u32 = 1;
/// Events not sent because the source already had one this interval.
pub const STAT_EVENTS_SUPPRESSED: u32 = 2;
pub const STAT_BANS_CREATED: u32 = 3;
pub const STAT_FRAGS_REMEMBERED: u32 = 4;
pub const STAT_SLOTS: u32 = 8;

/// Runtime knobs of the operations features (the `OPS` array's one value).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpsSettings {
    /// `OPS_*` bits.
    pub flags: u32,
    /// Drops within `ban_window_ns` that trigger a ban.
    pub ban_threshold: u32,
    pub ban_window_ns: u64,
    pub ban_ttl_ns: u64,
    /// At most one event per source per this many ns.
    pub event_interval_ns: u64,
    /// IPv6 sources are counted and banned per prefix of this length.
    pub ban_v6_prefix: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<OpsSettings>() == 40);

/// Which kernel-filled source maps may hold entries (the `HINTS` array's
/// one value). A zero field lets the filter skip that map's lookup (and its
/// clock read): a hash lookup per packet for a feature nobody uses. Sticky:
/// set (to 1) by whoever inserts first, the kernel or `sipguard ban`, and
/// never cleared while the maps live, so a skipped lookup is always one
/// that would have missed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StateHints {
    /// `BANS` may hold entries.
    pub bans: u32,
    /// `LEARNED_V4`/`LEARNED_V6` may hold entries.
    pub learned: u32,
}
const _: () = assert!(core::mem::size_of::<StateHints>() == 8);

/// A source address (or a prefix of one, for bans) as a hash key. IPv4 uses
/// the first 4 bytes; the rest is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AddrKey {
    pub addr: [u8; 16],
    /// 4 or 6.
    pub family: u32,
}
const _: () = assert!(core::mem::size_of::<AddrKey>() == 20);

impl AddrKey {
    /// The key of `addr`; IPv6 addresses are cut to `v6_prefix` bits.
    #[inline(always)]
    pub fn new(ipv6: bool, addr: &[u8; 16], v6_prefix: u32) -> AddrKey {
        if !ipv6 {
            // Not `[0; 16]` then 4 bytes: see `packet::v4_in_16`.
            return AddrKey {
                addr: crate::packet::v4_in_16([addr[0], addr[1], addr[2], addr[3]]),
                family: 4,
            };
        }
        let mut k = AddrKey {
            addr: [0; 16],
            family: 6,
        };
        let prefix = if v6_prefix > 128 { 128 } else { v6_prefix };
        let mut i = 0;
        while i < 16 {
            let bit = (i * 8) as u32;
            let m: u8 = if prefix >= bit + 8 {
                0xff
            } else if prefix <= bit {
                0
            } else {
                0xffu8 << (8 - (prefix - bit))
            };
            k.addr[i] = addr[i] & m;
            i += 1;
        }
        k
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SampleState {
    pub last_ns: u64,
    /// Events suppressed since the last one sent; carried by the next one.
    pub suppressed: u64,
}
const _: () = assert!(core::mem::size_of::<SampleState>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BanCount {
    pub window_start_ns: u64,
    pub count: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<BanCount>() == 16);

/// A ban made by the kernel (threshold reached).
pub const BAN_AUTO: u32 = 1;
/// A ban made with `sipguard ban`.
pub const BAN_MANUAL: u32 = 2;
/// `expires_ns` of a ban without end.
pub const BAN_FOREVER: u64 = u64::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BanEntry {
    /// CLOCK_BOOTTIME ns (`bpf_ktime_get_boot_ns`) when the ban ends.
    pub expires_ns: u64,
    /// `BAN_AUTO` or `BAN_MANUAL`.
    pub origin: u32,
    /// Drops counted when an automatic ban was made.
    pub count: u32,
}
const _: () = assert!(core::mem::size_of::<BanEntry>() == 16);

/// A datagram: source, destination and IP identification (IPv4's 16 bits or
/// the IPv6 fragment header's 32).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub family: u32,
}
const _: () = assert!(core::mem::size_of::<FragKey>() == 40);

/// `DropEvent::action`.
pub const ACTION_DROP: u8 = 1;
pub const ACTION_WOULD_DROP: u8 = 2;

/// Bytes of User-Agent carried by an event.
pub const EVENT_UA_LEN: usize = 32;

pub mod sip_method {
    //! Method ids in events: the inspector's ids ([`crate::sip::METHODS`]),
    //! with 0 for "no SIP seen" and [`OTHER`] for a token not in the table.
    pub const UNKNOWN: u8 = 0;
    pub const INVITE: u8 = crate::sip::METHOD_INVITE as u8;
    pub const OTHER: u8 = 255;
    pub fn name(m: u8) -> &'static str {
        match m {
            OTHER => "other",
            _ => crate::sip::METHODS.get(m as usize).copied().unwrap_or(""),
        }
    }
}

/// What the SIP inspector learned about a dropped packet, for its event.
/// The header stage leaves it empty ([`SipEventInfo::NONE`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipEventInfo {
    pub method: u8,
    /// Valid bytes in `user_agent`.
    pub ua_len: u8,
    pub user_agent: [u8; EVENT_UA_LEN],
}

impl SipEventInfo {
    pub const NONE: SipEventInfo = SipEventInfo {
        method: 0,
        ua_len: 0,
        user_agent: [0; EVENT_UA_LEN],
    };

    /// What a finished scan saw: the method and the first bytes of the
    /// User-Agent (lower-cased, as the inspector keeps them).
    #[inline(always)]
    pub fn from_scan(s: &crate::sip::Scan) -> SipEventInfo {
        let method = if s.method != 0 && (s.method as usize) < crate::sip::METHODS.len() {
            s.method as u8
        } else if s.ua_len > 0 {
            sip_method::OTHER
        } else {
            sip_method::UNKNOWN
        };
        let ua_len = if (s.ua_len as usize) < EVENT_UA_LEN {
            s.ua_len as u8
        } else {
            EVENT_UA_LEN as u8
        };
        SipEventInfo {
            method,
            ua_len,
            user_agent: s.ua,
        }
    }
}

const _: () = assert!(crate::sip::UA_BYTES == EVENT_UA_LEN);

/// One drop (or would-drop) event in the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// CLOCK_BOOTTIME ns; userspace converts it to wall time.
    pub time_ns: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ifindex: u32,
    /// `Reason` as u32.
    pub reason: u32,
    /// Drops of this source not reported since its last event: held back
    /// by sampling, or lost to a full ring buffer.
    pub suppressed: u32,
    /// 0 for later fragments (no L4 header).
    pub sport: u16,
    pub dport: u16,
    /// 4 or 6.
    pub family: u8,
    pub proto: u8,
    /// `ACTION_DROP` or `ACTION_WOULD_DROP`.
    pub action: u8,
    pub sip_method: u8,
    pub ua_len: u8,
    pub _pad0: [u8; 3],
    pub user_agent: [u8; EVENT_UA_LEN],
}
const _: () = assert!(core::mem::size_of::<DropEvent>() == 96);
const _: () = assert!(core::mem::align_of::<DropEvent>() <= 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data with explicit padding, no pointers.
    unsafe impl aya::Pod for super::OpsSettings {}
    unsafe impl aya::Pod for super::StateHints {}
    unsafe impl aya::Pod for super::AddrKey {}
    unsafe impl aya::Pod for super::SampleState {}
    unsafe impl aya::Pod for super::BanCount {}
    unsafe impl aya::Pod for super::BanEntry {}
    unsafe impl aya::Pod for super::FragKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_keys_are_cut_to_the_prefix() {
        let a = [
            0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let k = AddrKey::new(true, &a, 64);
        assert_eq!(
            k.addr,
            [0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(AddrKey::new(true, &a, 128).addr, a);
        assert_eq!(AddrKey::new(true, &a, 12).addr[..2], [0x20, 0x00]);
        assert_eq!(AddrKey::new(true, &a, 0).addr, [0; 16]);
        let k4 = AddrKey::new(false, &a, 64);
        assert_eq!(k4.addr[..4], a[..4]);
        assert_eq!(k4.addr[4..], [0; 12]);
        assert_eq!(k4.family, 4);
    }
}
