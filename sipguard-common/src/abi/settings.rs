//! `SETTINGS`: the policy the filter and the inspector apply, and the
//! source-list hints that let the kernel skip lookups that would miss.

/// Untrusted sources on a SIP port are dropped (allowlist only).
pub const POLICY_DROP: u32 = 0;
/// Untrusted sources on a SIP port are inspected (SIP rules).
pub const POLICY_INSPECT: u32 = 1;

/// Evaluate and count, but pass everything.
pub const FLAG_MONITOR: u32 = 1 << 0;
/// UDP to ports outside `sip_ports` is judged as SIP when its payload starts
/// with a SIP request line (`crate::any_port`); otherwise it passes untouched.
pub const FLAG_ANY_UDP_PORT: u32 = 1 << 8;

/// `BLOCKED_V6` may hold entries: without it the kernel skips that lookup.
/// Set by userspace (`PolicyMaps`) from the lists it writes; bits from
/// 1 << 16 up are the source-list hints.
pub const FLAG_BLOCKED_V6: u32 = 1 << 16;
/// `TRUSTED_V6` may hold entries.
pub const FLAG_TRUSTED_V6: u32 = 1 << 17;
/// `BLOCKED_V4` (the trie) may hold entries. The full-length entries of the
/// blocklist live in `BLOCKED_V4_HOSTS` / `BLOCKED_V6_HOSTS` instead, so a
/// blocklist of addresses only never walks a trie.
pub const FLAG_BLOCKED_V4: u32 = 1 << 18;
/// `BLOCKED_V4_HOSTS` may hold entries.
pub const FLAG_BLOCKED_V4_HOSTS: u32 = 1 << 19;
/// `BLOCKED_V6_HOSTS` may hold entries.
pub const FLAG_BLOCKED_V6_HOSTS: u32 = 1 << 20;
/// Every source-list hint flag.
pub const FLAGS_LIST_HINTS: u32 = FLAG_BLOCKED_V6
    | FLAG_TRUSTED_V6
    | FLAG_BLOCKED_V4
    | FLAG_BLOCKED_V4_HOSTS
    | FLAG_BLOCKED_V6_HOSTS;

/// Number of 64-bit words in the destination port bitmap (65536 bits).
pub const PORT_WORDS: usize = 1024;
/// Words of an IPv4 /16 bitmap (one bit per /16, 65536 bits).
pub const V4_16_WORDS: usize = 1024;

/// Entries of a [`SmallV4`] list.
pub const SMALL_V4: usize = 8;

/// A short IPv4 list (most allowlists: a provider's few proxies) kept in
/// `SETTINGS` itself: eight mask-and-compare steps cost less than one LPM
/// trie walk (a helper call). When `exhaustive` is 1 it is the whole list
/// and the kernel never asks the trie; longer lists set it to 0.
/// Addresses and masks are in memory order (`u32::from_ne_bytes` of the
/// address bytes), as the kernel reads them from the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmallV4 {
    pub exhaustive: u32,
    pub _pad: u32,
    /// Unused slots hold mask 0 and net 1: `x & 0 == 1` never holds.
    pub net: [u32; SMALL_V4],
    pub mask: [u32; SMALL_V4],
}
const _: () = assert!(core::mem::size_of::<SmallV4>() == 8 + 8 * SMALL_V4);

impl SmallV4 {
    /// The empty list, complete: matches nothing.
    pub const EMPTY: SmallV4 = SmallV4 {
        exhaustive: 1,
        _pad: 0,
        net: [1; SMALL_V4],
        mask: [0; SMALL_V4],
    };

    /// Not the whole list: the trie decides.
    pub const PARTIAL: SmallV4 = SmallV4 {
        exhaustive: 0,
        ..SmallV4::EMPTY
    };

    /// The list of `(prefix length, network)` entries, complete when it has
    /// at most [`SMALL_V4`] of them.
    pub fn from_entries<'a>(entries: impl ExactSizeIterator<Item = &'a (u32, [u8; 4])>) -> Self {
        if entries.len() > SMALL_V4 {
            return SmallV4::PARTIAL;
        }
        let mut l = SmallV4::EMPTY;
        for (i, (len, net)) in entries.enumerate() {
            let len = (*len).min(32);
            let mask_be: u32 = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let mask = u32::from_ne_bytes(mask_be.to_be_bytes());
            l.mask[i] = mask;
            l.net[i] = u32::from_ne_bytes(*net) & mask;
        }
        l
    }

    #[inline(always)]
    pub fn is_exhaustive(&self) -> bool {
        self.exhaustive != 0
    }

    /// Some entry contains `a`. Every slot is compared (no early exit, no
    /// length): straight-line code for the verifier and the CPU.
    #[inline(always)]
    pub fn matches(&self, a: [u8; 4]) -> bool {
        let x = u32::from_ne_bytes(a);
        let mut hit = false;
        let mut i = 0;
        while i < SMALL_V4 {
            hit |= x & self.mask[i] == self.net[i];
            i += 1;
        }
        hit
    }
}

/// The single value of the `SETTINGS` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `POLICY_DROP` or `POLICY_INSPECT`.
    pub policy: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Rule enables for the SIP inspector ([`super::RULE_NOT_SIP`] and the other `RULE_*`).
    pub rules: u32,
    /// SIP methods dropped from untrusted sources: bit `i` for method id
    /// `i` of [`super::METHODS`].
    pub methods: u32,
    /// Destination ports (UDP and TCP) that carry SIP: bit `p` set for port `p`.
    pub sip_ports: [u64; PORT_WORDS],
    /// Bit `a << 8 | b` set when some `BLOCKED_V4` entry overlaps
    /// `a.b.0.0/16`. A clear bit means the trie lookup would miss, so the
    /// kernel skips it: an LPM walk costs several times this one load.
    /// Kept by `PolicyMaps` in step with the trie (set before entries are
    /// added, cleared only with the settings that drop them).
    pub blocked_v4_16: [u64; V4_16_WORDS],
    /// The same for `TRUSTED_V4`.
    pub trusted_v4_16: [u64; V4_16_WORDS],
    /// `BLOCKED_V4` when it has at most [`SMALL_V4`] entries.
    pub small_blocked_v4: SmallV4,
    /// `TRUSTED_V4` when it has at most [`SMALL_V4`] entries.
    pub small_trusted_v4: SmallV4,
}
const _: () = assert!(
    core::mem::size_of::<Settings>()
        == 16 + 8 * (PORT_WORDS + 2 * V4_16_WORDS) + 2 * core::mem::size_of::<SmallV4>()
);

impl Settings {
    pub const fn empty() -> Self {
        Settings {
            policy: POLICY_DROP,
            flags: 0,
            rules: 0,
            methods: 0,
            sip_ports: [0; PORT_WORDS],
            blocked_v4_16: [0; V4_16_WORDS],
            trusted_v4_16: [0; V4_16_WORDS],
            small_blocked_v4: SmallV4::EMPTY,
            small_trusted_v4: SmallV4::EMPTY,
        }
    }

    /// Might `BLOCKED_V4` hold an entry matching `src`? `false` is certain.
    #[inline(always)]
    pub fn may_block_v4(&self, src: [u8; 4]) -> bool {
        v4_16_bit(&self.blocked_v4_16, src)
    }

    /// Might `TRUSTED_V4` hold an entry matching `src`? `false` is certain.
    #[inline(always)]
    pub fn may_trust_v4(&self, src: [u8; 4]) -> bool {
        v4_16_bit(&self.trusted_v4_16, src)
    }

    /// Clears the source-list hints (bitmaps and `FLAGS_LIST_HINTS`).
    pub fn clear_list_hints(&mut self) {
        self.flags &= !FLAGS_LIST_HINTS;
        self.blocked_v4_16 = [0; V4_16_WORDS];
        self.trusted_v4_16 = [0; V4_16_WORDS];
        self.small_blocked_v4 = SmallV4::EMPTY;
        self.small_trusted_v4 = SmallV4::EMPTY;
    }

    /// Marks the /16s an IPv4 blocklist entry `net/len` overlaps. The
    /// short-list copy no longer describes the trie: callers that know the
    /// whole list set `small_blocked_v4` afterwards.
    pub fn hint_blocked_v4(&mut self, len: u32, net: [u8; 4]) {
        mark_v4_16(&mut self.blocked_v4_16, len, net);
        self.small_blocked_v4 = SmallV4::PARTIAL;
    }

    /// Marks the /16s an IPv4 allowlist entry `net/len` overlaps (and, as
    /// above, leaves the trie to decide).
    pub fn hint_trusted_v4(&mut self, len: u32, net: [u8; 4]) {
        mark_v4_16(&mut self.trusted_v4_16, len, net);
        self.small_trusted_v4 = SmallV4::PARTIAL;
    }

    #[inline(always)]
    pub fn is_sip_port(&self, port: u16) -> bool {
        let word = (port >> 6) as usize & (PORT_WORDS - 1);
        self.sip_ports[word] & (1u64 << (port & 63)) != 0
    }

    pub fn set_sip_port(&mut self, port: u16) {
        self.sip_ports[(port >> 6) as usize] |= 1u64 << (port & 63);
    }

    #[inline(always)]
    pub const fn monitor(&self) -> bool {
        self.flags & FLAG_MONITOR != 0
    }

    #[inline(always)]
    pub const fn any_udp_port(&self) -> bool {
        self.flags & FLAG_ANY_UDP_PORT != 0
    }
}

#[inline(always)]
fn v4_16_bit(bits: &[u64; V4_16_WORDS], a: [u8; 4]) -> bool {
    let i = (a[0] as usize) << 8 | a[1] as usize;
    bits[(i >> 6) & (V4_16_WORDS - 1)] & (1u64 << (i & 63)) != 0
}

/// Sets the bit of every /16 that `net/len` overlaps: one for /16 and
/// longer, 2^(16-len) for shorter prefixes (all of them for /0).
fn mark_v4_16(bits: &mut [u64; V4_16_WORDS], len: u32, net: [u8; 4]) {
    let top = (net[0] as u32) << 8 | net[1] as u32;
    let (first, count) = if len >= 16 {
        (top, 1)
    } else {
        let span = 1u32 << (16 - len);
        (top & !(span - 1), span)
    };
    for i in first..first + count {
        bits[(i >> 6) as usize] |= 1u64 << (i & 63);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_v4_matches_like_a_prefix_list() {
        let entries = [
            (32, [192, 0, 2, 10]),
            (24, [198, 51, 100, 0]),
            (0, [0, 0, 0, 0]),
        ];
        let one = SmallV4::from_entries(entries[..2].iter());
        assert!(one.is_exhaustive());
        assert!(one.matches([192, 0, 2, 10]));
        assert!(!one.matches([192, 0, 2, 11]));
        assert!(one.matches([198, 51, 100, 255]));
        assert!(!one.matches([198, 51, 101, 1]));
        assert!(!SmallV4::EMPTY.matches([0, 0, 0, 0]));
        assert!(!SmallV4::EMPTY.matches([0, 0, 0, 1]));
        let all = SmallV4::from_entries(entries.iter());
        assert!(all.matches([8, 8, 8, 8]));
        // Bits below the prefix in the configured network are ignored.
        let sloppy = SmallV4::from_entries([(24, [198, 51, 100, 77])].iter());
        assert!(sloppy.matches([198, 51, 100, 1]));
        let nine: Vec<(u32, [u8; 4])> = (0..9).map(|i| (32, [10, 0, 0, i])).collect();
        assert!(!SmallV4::from_entries(nine.iter()).is_exhaustive());
        let eight = SmallV4::from_entries(nine[..8].iter());
        assert!(
            eight.is_exhaustive() && eight.matches([10, 0, 0, 7]) && !eight.matches([10, 0, 0, 8])
        );
    }

    #[test]
    fn port_bitmap_round_trip() {
        let mut s = Settings::empty();
        for p in [0u16, 1, 63, 64, 5060, 5061, 65535] {
            assert!(!s.is_sip_port(p));
            s.set_sip_port(p);
            assert!(s.is_sip_port(p));
        }
        assert!(!s.is_sip_port(5062));
    }

    #[test]
    fn v4_16_hints_cover_exactly_the_overlapped_16s() {
        let mut s = Settings::empty();
        assert!(!s.may_block_v4([203, 0, 113, 9]));
        s.hint_blocked_v4(24, [203, 0, 113, 0]);
        assert!(s.may_block_v4([203, 0, 113, 9]));
        assert!(s.may_block_v4([203, 0, 1, 1]));
        assert!(!s.may_block_v4([203, 1, 113, 9]));
        assert!(!s.may_trust_v4([203, 0, 113, 9]));
        s.hint_trusted_v4(12, [10, 16, 0, 0]);
        for b in 16..32 {
            assert!(s.may_trust_v4([10, b, 0, 1]));
        }
        assert!(!s.may_trust_v4([10, 15, 255, 255]));
        assert!(!s.may_trust_v4([10, 32, 0, 0]));
        s.hint_blocked_v4(0, [0, 0, 0, 0]);
        assert!(s.blocked_v4_16.iter().all(|w| *w == u64::MAX));
        s.clear_list_hints();
        assert_eq!(s, Settings::empty());
    }
}
