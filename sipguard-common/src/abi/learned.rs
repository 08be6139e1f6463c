//! `LEARNED_*` and `LEARN_CONFIG`: registrars the TC egress program learns
//! from outbound REGISTER and INVITE.

/// Entries of each `LEARNED_*` LRU map (addresses phones registered to).
pub const LEARNED_ENTRIES: u32 = 4096;

/// The single value of `LEARN_CONFIG`: how long a REGISTER or INVITE keeps
/// its destination trusted; 0 turns learning off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnConfig {
    pub ttl_ns: u64,
}

/// `LEARNED_*` value: until when (CLOCK_BOOTTIME ns, `bpf_ktime_get_boot_ns`,
/// the clock of bans and events too) the address is trusted.
pub type LearnedExpiry = u64;
