//! Bounded reads of the inspected bytes and the word-at-a-time byte tricks
//! (eight bytes compared, lowercased or searched per instruction sequence).

use super::state::Scan;
use crate::{
    packet::Bytes,
    scan_io::{ld, MAX_SCAN_OFF},
};

pub(super) const fn pack(s: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < s.len() && i < 8 {
        w |= (s[i] as u64) << (8 * i);
        i += 1;
    }
    w
}

/// Bytes 8.. of a name, packed like [`pack`] packs the first 8.
pub(super) const fn pack_tail(s: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 8;
    while i < s.len() && i < 16 {
        w |= (s[i] as u64) << (8 * (i - 8));
        i += 1;
    }
    w
}

/// The byte at `off`, or `None` at or past the end of the inspected bytes.
#[inline(always)]
pub(super) fn at<B: Bytes + ?Sized>(pkt: &B, s: &Scan, off: u32) -> Option<u8> {
    // `end` is re-read every time: a cached copy would carry what each
    // earlier comparison taught the verifier about it, and paths that learnt
    // different things would not merge.
    if off >= ld(&s.end) {
        return None;
    }
    pkt.u8_at((off & MAX_SCAN_OFF) as usize)
}

/// `N` bytes at `off` if they all lie before the end of the inspected bytes.
#[inline(always)]
pub(super) fn rd<const N: usize, B: Bytes + ?Sized>(
    pkt: &B,
    s: &Scan,
    off: u32,
) -> Option<[u8; N]> {
    let end = ld(&s.end);
    if off >= end || end - off < N as u32 {
        return None;
    }
    pkt.read::<N>((off & MAX_SCAN_OFF) as usize)
}

/// The 8 bytes at `off` as a little-endian word if they all lie before the
/// end of the inspected bytes.
#[inline(always)]
pub(super) fn word<B: Bytes + ?Sized>(pkt: &B, s: &Scan, off: u32) -> Option<u64> {
    let end = ld(&s.end);
    if off >= end || end - off < 8 {
        return None;
    }
    pkt.u64_le((off & MAX_SCAN_OFF) as usize)
}

/// The 16 bytes at `off` as two little-endian words if they all lie before
/// the end of the inspected bytes.
#[inline(always)]
pub(super) fn words2<B: Bytes + ?Sized>(pkt: &B, s: &Scan, off: u32) -> Option<(u64, u64)> {
    let end = ld(&s.end);
    if off >= end || end - off < 16 {
        return None;
    }
    pkt.u64x2_le((off & MAX_SCAN_OFF) as usize)
}

/// `b` in every byte of a word.
#[inline(always)]
pub(super) const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101u64.wrapping_mul(b as u64)
}

/// The high bit of each byte of `v` that is zero. Exact for the lowest
/// zero byte; above it a borrow can mark a byte that is not zero, so only
/// the lowest mark is used (also of an or of several such masks: each
/// mask's lowest mark is exact, so the lowest of all is).
#[inline(always)]
pub(super) const fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(0x0101_0101_0101_0101) & !v & 0x8080_8080_8080_8080
}

/// Marks (see [`zero_bytes`]) of the bytes of `v` equal to `b`.
#[inline(always)]
pub(super) const fn bytes_eq(v: u64, b: u8) -> u64 {
    zero_bytes(v ^ splat(b))
}

/// Index (0-7) of the lowest marked byte of a non-zero mask, without a
/// count-trailing-zeros instruction: isolate the mark, move it to bit 8k,
/// and let the multiplication carry byte 7-k of the constant (= k) to the
/// top byte.
#[inline(always)]
pub(super) const fn first_mark(z: u64) -> u32 {
    let low = (z & z.wrapping_neg()) >> 7;
    (low.wrapping_mul(0x0001_0203_0405_0607) >> 56) as u32 & 7
}

/// The low `n` bytes of a word (`n` at most 7).
#[inline(always)]
pub(super) const fn low_bytes(v: u64, n: u32) -> u64 {
    v & ((1u64 << ((8 * n) & 63)) - 1)
}

/// Marks of the bytes that end a header name: ':', space, tab, CR, LF.
#[inline(always)]
pub(super) const fn name_ends(v: u64) -> u64 {
    bytes_eq(v, b':')
        | bytes_eq(v, b' ')
        | bytes_eq(v, b'\t')
        | bytes_eq(v, b'\r')
        | bytes_eq(v, b'\n')
}

/// Marks of CR and LF bytes.
#[inline(always)]
pub(super) const fn line_ends(v: u64) -> u64 {
    bytes_eq(v, b'\r') | bytes_eq(v, b'\n')
}

/// [`lower`] of every byte of a word.
#[inline(always)]
pub(super) const fn lower_word(v: u64) -> u64 {
    // Per byte, on its low 7 bits (so no carry crosses bytes): the high
    // bit of `+ 0x3f` is set from 'A' up, of `+ 0x25` from '['; a byte
    // with its own high bit set is no letter.
    let h = v & 0x7f7f_7f7f_7f7f_7f7f;
    let upper = h.wrapping_add(splat(0x80 - b'A')) & !h.wrapping_add(splat(0x80 - b'[')) & !v;
    v | ((upper & 0x8080_8080_8080_8080) >> 2)
}

#[inline(always)]
pub(super) const fn lower(b: u8) -> u8 {
    if b >= b'A' && b <= b'Z' {
        b + 32
    } else {
        b
    }
}

#[inline(always)]
pub(super) const fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}
