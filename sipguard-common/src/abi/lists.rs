//! Keys and values of the source lists (`TRUSTED_*`, `BLOCKED_*`) and of the
//! SIP rule lists (`UA_PREFIXES`, `EXPECTED_USERS`). The inspector keeps
//! exactly as many User-Agent and user bytes as these keys hold.

/// Request-URI user bytes kept (expected-user keys have at most this many).
pub const USER_BYTES: usize = 32;
/// User-Agent bytes kept, lowercased (scanner prefixes have at most this many).
pub const UA_BYTES: usize = 32;

/// Value in the trusted and blocked LPM tries. Reserved for the origin of an
/// entry (static config, feed, DNS name) so counters can be attributed later.
pub type ListValue = u32;

/// Key data of the IPv4 LPM tries (address in network byte order).
pub type V4Key = [u8; 4];
/// Key data of the IPv6 LPM tries (address in network byte order).
pub type V6Key = [u8; 16];

/// Capacity of `BLOCKED_V4_HOSTS`, the exact-match hash of the blocklist's
/// /32 entries: one hash lookup instead of an LPM walk of ~20 dependent
/// loads. A hash allocates its buckets (16 bytes each) when it is created,
/// whatever it holds, so this is also its fixed cost: 16 MiB. Entries are
/// allocated as they arrive (no preallocation); /32s beyond this many stay
/// in the trie, which answers the same.
pub const BLOCKED_V4_HOSTS_ENTRIES: u32 = 1 << 20;
/// Capacity of `BLOCKED_V6_HOSTS` (the /128 entries): 1 MiB of buckets.
pub const BLOCKED_V6_HOSTS_ENTRIES: u32 = 1 << 16;

/// Key data of the `UA_PREFIXES` LPM trie: a lowercased User-Agent prefix,
/// zero padded; the trie's prefix length is its length in bits, so one
/// lookup with the first bytes of a User-Agent finds any listed prefix.
pub type UaKey = [u8; UA_BYTES];
/// Maximum scanner prefixes.
pub const MAX_UA_PREFIXES: u32 = 1024;
/// Maximum expected users.
pub const MAX_EXPECTED_USERS: u32 = 16384;

/// Key of the `EXPECTED_USERS` hash: a Request-URI user, zero padded, with
/// its length (so "ab" and "ab\0" differ).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey {
    pub len: u32,
    pub user: [u8; USER_BYTES],
}
const _: () = assert!(core::mem::size_of::<UserKey>() == 4 + USER_BYTES);
