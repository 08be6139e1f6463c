//! Packet memory as `sipguard_common::packet::Bytes`.

use aya_ebpf::programs::XdpContext;
use sipguard_common::packet::Bytes;

/// Offsets above this are refused before any pointer arithmetic, so the
/// verifier can bound `data + off` (it tracks packet ranges up to 0xffff).
const MAX_OFF: usize = 0x3fff;

pub struct Pkt {
    start: usize,
    end: usize,
}

impl Pkt {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Pkt {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }

    /// Packet memory of a TC program (`skb->data` .. `skb->data_end`).
    #[inline(always)]
    pub fn from_range(start: usize, end: usize) -> Self {
        Pkt { start, end }
    }

    #[inline(always)]
    pub fn frame_len(&self) -> usize {
        self.end - self.start
    }
}

impl Bytes for Pkt {
    #[inline(always)]
    fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline(always)]
    fn read<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off > MAX_OFF {
            return None;
        }
        let p = self.start + off;
        // For one byte the compiler turns `p + 1 > end` into `p >= end`,
        // from which the verifier (kernel 6.18) derives no readable range.
        // Reading the length through a volatile load keeps `p + n > end`.
        let n = if N == 1 {
            // SAFETY: reads a local.
            unsafe { core::ptr::read_volatile(&N) }
        } else {
            N
        };
        if p + n > self.end {
            return None;
        }
        // SAFETY: [p, p+N) was just checked to lie inside the frame.
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }
}
