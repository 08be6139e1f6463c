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
}
const _: () = assert!(core::mem::size_of::<BanEntry>() == 16);
