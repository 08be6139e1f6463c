//! `FRAGS`: first fragments that were dropped, so the rest of their
//! datagram is dropped too.

pub const FRAG_ENTRIES: u32 = 16384;

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
