//! What the SIP scanner ([`crate::sip`]) and the any-port recogniser
//! ([`crate::any_port`]) both need to touch their state and the packet in
//! a way the verifier accepts and does not fork on.

/// Frame offsets the scanners read stay below this (`sip::Scan::new` cuts
/// its window there; the request line starts where the headers end, long
/// before), so masking with it changes nothing but lets the verifier bound
/// a packet pointer that the compiler computed before the range check.
pub const MAX_SCAN_OFF: u32 = 0x3fff;

/// Loads and stores of scanner state through memory: in the kernel the
/// state lives in a map value, and volatile access keeps the verifier from
/// tracking (and forking on) each value.
#[inline(always)]
pub fn ld(x: &u32) -> u32 {
    // SAFETY: reads a field of a live struct.
    unsafe { core::ptr::read_volatile(x) }
}

#[inline(always)]
pub fn st(x: &mut u32, v: u32) {
    // SAFETY: writes a field of a live struct.
    unsafe { core::ptr::write_volatile(x, v) }
}
