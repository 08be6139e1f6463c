//! Why a packet passed or was dropped: one enum for kernel and userspace, the
//! index of the per-CPU counter array (as in Cilium's drop reasons).

/// Every verdict carries exactly one reason. The numeric values are part of
/// the map ABI ([`crate::MAP_ABI_VERSION`]): append, never renumber.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not IPv4/IPv6 (ARP, LLDP, ...).
    PassNotIp = 0,
    /// IP, but neither UDP nor TCP.
    PassNotUdpTcp = 1,
    /// UDP/TCP to a port outside the SIP port set.
    PassNotSipPort = 2,
    /// Source is in the trusted list.
    PassTrusted = 3,
    /// Source was learned as the registrar of a phone behind the router.
    PassLearned = 4,
    /// Untrusted source, `inspect` policy, nothing matched.
    PassInspected = 5,
    /// Headers could not be parsed far enough to know the destination port
    /// (truncated frame, too many VLAN tags or IPv6 extension headers).
    PassUnparsed = 6,
    /// Non-first IP fragment: no UDP header to judge by.
    PassFragment = 7,
    /// Untrusted source, `inspect` policy, but TCP/TLS cannot be inspected.
    PassUninspectable = 8,
    /// Source is in the blocklist (static or feed).
    DropBlocked = 9,
    /// Source is automatically banned.
    DropBanned = 10,
    /// Untrusted source under the allowlist-only (`drop`) policy.
    DropUntrusted = 11,
    /// SIP-port traffic whose headers lie (UDP length, IP lengths).
    DropMalformed = 12,
    /// SIP method not accepted from untrusted sources.
    DropMethod = 13,
    /// User-Agent matches a scanner signature.
    DropUserAgent = 14,
    /// Request-URI host is an IP literal (direct-IP call).
    DropUriIpHost = 15,
    /// INVITE to a Request-URI user that is not an expected account.
    DropUnknownUser = 16,
    /// SIPVicious fingerprint (From equal to To, its display name or host).
    DropSipVicious = 17,
    /// Later fragment of a datagram whose first fragment was dropped.
    DropFragment = 18,
    /// Untrusted, inspect policy, and the payload is not a SIP request
    /// (garbage, or a request line that does not parse).
    DropNotSip = 19,
    /// Untrusted, inspect policy, no rule matched, but the header block did
    /// not end inside the inspected bytes (message larger than the 1500-byte
    /// window, truncated frame, first IP fragment, unterminated headers).
    PassPartial = 20,
    /// Source is covered by a ban decision of a CrowdSec Local API that has
    /// not ended.
    DropDecision = 21,
}

/// Size of the reason dimension of the counter array (room to grow).
pub const REASON_SLOTS: u32 = 32;

impl Reason {
    pub const ALL: [Reason; 22] = [
        Reason::PassNotIp,
        Reason::PassNotUdpTcp,
        Reason::PassNotSipPort,
        Reason::PassTrusted,
        Reason::PassLearned,
        Reason::PassInspected,
        Reason::PassUnparsed,
        Reason::PassFragment,
        Reason::PassUninspectable,
        Reason::DropBlocked,
        Reason::DropBanned,
        Reason::DropUntrusted,
        Reason::DropMalformed,
        Reason::DropMethod,
        Reason::DropUserAgent,
        Reason::DropUriIpHost,
        Reason::DropUnknownUser,
        Reason::DropSipVicious,
        Reason::DropFragment,
        Reason::DropNotSip,
        Reason::PassPartial,
        Reason::DropDecision,
    ];

    /// The verdict a reason stands for. A `match` without a wildcard, so a
    /// new variant does not compile until someone says what it does (a
    /// range of values would silently pass a drop appended after
    /// `PassPartial`).
    #[inline(always)]
    pub const fn is_drop(self) -> bool {
        match self {
            Reason::PassNotIp
            | Reason::PassNotUdpTcp
            | Reason::PassNotSipPort
            | Reason::PassTrusted
            | Reason::PassLearned
            | Reason::PassInspected
            | Reason::PassUnparsed
            | Reason::PassFragment
            | Reason::PassUninspectable
            | Reason::PassPartial => false,
            Reason::DropBlocked
            | Reason::DropBanned
            | Reason::DropUntrusted
            | Reason::DropMalformed
            | Reason::DropMethod
            | Reason::DropUserAgent
            | Reason::DropUriIpHost
            | Reason::DropUnknownUser
            | Reason::DropSipVicious
            | Reason::DropFragment
            | Reason::DropNotSip
            | Reason::DropDecision => true,
        }
    }

    pub fn from_u32(v: u32) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| *r as u32 == v)
    }

    /// Stable snake_case name used in CLI output, JSON and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "not_ip",
            Reason::PassNotUdpTcp => "not_udp_tcp",
            Reason::PassNotSipPort => "not_sip_port",
            Reason::PassTrusted => "trusted",
            Reason::PassLearned => "learned_trusted",
            Reason::PassInspected => "inspected_clean",
            Reason::PassUnparsed => "unparsed",
            Reason::PassFragment => "fragment",
            Reason::PassUninspectable => "uninspectable",
            Reason::DropBlocked => "blocked",
            Reason::DropBanned => "banned",
            Reason::DropUntrusted => "untrusted",
            Reason::DropMalformed => "malformed",
            Reason::DropMethod => "method",
            Reason::DropUserAgent => "user_agent",
            Reason::DropUriIpHost => "uri_ip_host",
            Reason::DropUnknownUser => "unknown_user",
            Reason::DropSipVicious => "sipvicious",
            Reason::DropFragment => "fragment_of_dropped",
            Reason::DropNotSip => "not_sip",
            Reason::PassPartial => "inspected_partial",
            Reason::DropDecision => "decision",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_complete_and_in_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32);
            assert_eq!(Reason::from_u32(i as u32), Some(*r));
        }
        assert!(Reason::ALL.len() as u32 <= REASON_SLOTS);
        assert_eq!(Reason::from_u32(Reason::ALL.len() as u32), None);
    }

    /// Each reason's action, by counter value, written out: the ABI says
    /// what a counter index means to a reader of the map, so this table is
    /// checked against the code and not computed from it.
    #[test]
    fn every_reason_has_its_pinned_action() {
        const PASS: bool = false;
        const DROP: bool = true;
        let pinned: [(u32, &str, bool); 22] = [
            (0, "not_ip", PASS),
            (1, "not_udp_tcp", PASS),
            (2, "not_sip_port", PASS),
            (3, "trusted", PASS),
            (4, "learned_trusted", PASS),
            (5, "inspected_clean", PASS),
            (6, "unparsed", PASS),
            (7, "fragment", PASS),
            (8, "uninspectable", PASS),
            (9, "blocked", DROP),
            (10, "banned", DROP),
            (11, "untrusted", DROP),
            (12, "malformed", DROP),
            (13, "method", DROP),
            (14, "user_agent", DROP),
            (15, "uri_ip_host", DROP),
            (16, "unknown_user", DROP),
            (17, "sipvicious", DROP),
            (18, "fragment_of_dropped", DROP),
            (19, "not_sip", DROP),
            (20, "inspected_partial", PASS),
            (21, "decision", DROP),
        ];
        assert_eq!(pinned.len(), Reason::ALL.len());
        for (value, name, drop) in pinned {
            let r = Reason::from_u32(value).expect("pinned value is a reason");
            assert_eq!(r.name(), name, "reason {value}");
            assert_eq!(r.is_drop(), drop, "reason {value} ({name})");
        }
    }

    #[test]
    fn names_are_unique() {
        for a in Reason::ALL {
            for b in Reason::ALL {
                if a != b {
                    assert_ne!(a.name(), b.name());
                }
            }
        }
    }
}
