//! `OPS`, `OPS_STATS`, `HINTS`: switches and statistics of the operations
//! features (events, bans, fragment tracking) and which kernel-filled maps
//! may hold entries.

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
/// Events not sent because their CPU had sent `events_per_second` in the
/// current second.
pub const STAT_EVENTS_OVER_BUDGET: u32 = 5;
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
    /// At most this many drop events per second from each CPU, whatever
    /// the number of sources (0: no limit). Per CPU because a shared count
    /// would be a contended atomic on every event; a source whose event
    /// the limit held back has it counted in its next one, as a suppressed
    /// drop. Was padding (always 0) before: an older daemon's settings
    /// mean no limit.
    pub events_per_second: u32,
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
    /// `DECISIONS_V4`/`DECISIONS_V6` may hold entries (set by the daemon
    /// before its first decision).
    pub decisions: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<StateHints>() == 16);
