//! `BANS` and `BAN_COUNTS`: sources banned automatically (drops over a
//! threshold) or by hand, and their drop counts.

pub const BAN_ENTRIES: u32 = 65536;

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
    /// Event sampling of the banned drops, kept here rather than in
    /// `EVENT_SAMPLER` so a banned packet costs one hash lookup, not two:
    /// when the ban's last drop event was sent (0: none yet) ...
    pub event_ns: u64,
    /// ... and its drops not reported since, carried by its next event.
    pub suppressed: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<BanEntry>() == 32);

impl BanEntry {
    /// A ban until `expires_ns`, no event sent for it yet.
    pub const fn new(expires_ns: u64, origin: u32, count: u32) -> BanEntry {
        BanEntry {
            expires_ns,
            origin,
            count,
            event_ns: 0,
            suppressed: 0,
            _pad0: 0,
        }
    }
}
