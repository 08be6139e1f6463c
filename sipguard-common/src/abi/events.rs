//! `EVENTS` and `EVENT_SAMPLER`: drop events for userspace, at most one per
//! source and interval.

use super::UA_BYTES;

/// Ring buffer size in bytes (power of two, multiple of the page size):
/// 4 MiB holds ~40,000 events, a burst of that many new sources.
pub const EVENTS_BYTES: u32 = 1 << 22;
pub const SAMPLER_ENTRIES: u32 = 65536;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SampleState {
    pub last_ns: u64,
    /// Events suppressed since the last one sent; carried by the next one.
    pub suppressed: u64,
}
const _: () = assert!(core::mem::size_of::<SampleState>() == 16);

/// `DropEvent::action`.
pub const ACTION_DROP: u8 = 1;
pub const ACTION_WOULD_DROP: u8 = 2;

/// Bytes of User-Agent carried by an event.
pub const EVENT_UA_LEN: usize = 32;

pub mod sip_method {
    //! Method ids in events: the inspector's ids ([`crate::abi::METHODS`]),
    //! with 0 for "no SIP seen" and [`OTHER`] for a token not in the table.
    pub const UNKNOWN: u8 = 0;
    pub const INVITE: u8 = crate::abi::METHOD_INVITE as u8;
    pub const OTHER: u8 = 255;
    pub fn name(m: u8) -> &'static str {
        match m {
            OTHER => "other",
            _ => crate::abi::METHODS.get(m as usize).copied().unwrap_or(""),
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
}

// `SipEventInfo::from_scan` copies the inspector's User-Agent bytes whole.
const _: () = assert!(UA_BYTES == EVENT_UA_LEN);

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
