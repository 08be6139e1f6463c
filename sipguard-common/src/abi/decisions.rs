//! `DECISIONS_V4` and `DECISIONS_V6`: ban decisions of a CrowdSec Local API,
//! one LPM trie entry per prefix (an address is a /32 or /128, a `Range` its
//! own length), each with its end, checked on lookup.

/// Entries per trie at most. LPM tries are not preallocated, so the bound
/// costs nothing until it is used; a full community blocklist plus a
/// fleet's own decisions stays far below it.
pub const DECISION_ENTRIES: u32 = 1 << 20;

/// The value of a decision trie entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DecisionEntry {
    /// CLOCK_BOOTTIME ns (`bpf_ktime_get_boot_ns`) when the longest live
    /// decision for this prefix ends.
    pub expires_ns: u64,
    /// Index into [`DECISION_ORIGINS`] (0: an origin not in the table).
    pub origin: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<DecisionEntry>() == 16);

/// The origins a Local API writes, by the index entries store. The index
/// is ABI (a restarted daemon or `sipguard bans` reads it back): append,
/// never reorder.
pub const DECISION_ORIGINS: [&str; 7] = [
    "other",
    "crowdsec",
    "cscli",
    "CAPI",
    "lists",
    "cscli-import",
    "console",
];

/// The index of an origin name (0 for one the table does not know).
pub fn decision_origin(name: &str) -> u32 {
    let mut i = 1;
    while i < DECISION_ORIGINS.len() {
        if DECISION_ORIGINS[i].eq_ignore_ascii_case(name) {
            return i as u32;
        }
        i += 1;
    }
    0
}

/// The name of an origin index.
pub fn decision_origin_name(index: u32) -> &'static str {
    DECISION_ORIGINS
        .get(index as usize)
        .copied()
        .unwrap_or(DECISION_ORIGINS[0])
}

/// Whether the entry found for a source still drops it at `now_ns`: the
/// one rule the kernel and the host apply to the longest matching prefix.
/// A decision that ends while no daemon can remove it stops on time.
#[inline(always)]
pub fn decision_live(entry: &DecisionEntry, now_ns: u64) -> bool {
    now_ns < entry.expires_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_keep_their_index() {
        assert_eq!(decision_origin("crowdsec"), 1);
        assert_eq!(decision_origin("cscli"), 2);
        assert_eq!(decision_origin("CAPI"), 3);
        assert_eq!(decision_origin("capi"), 3);
        assert_eq!(decision_origin("lists"), 4);
        assert_eq!(decision_origin("somebody"), 0);
        assert_eq!(decision_origin_name(2), "cscli");
        assert_eq!(decision_origin_name(99), "other");
    }

    #[test]
    fn an_entry_drops_until_its_end() {
        let e = DecisionEntry {
            expires_ns: 1_000,
            origin: 2,
            _pad0: 0,
        };
        assert!(decision_live(&e, 999));
        assert!(!decision_live(&e, 1_000));
        assert!(!decision_live(&e, 5_000));
    }
}
