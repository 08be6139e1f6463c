//! Packet memory as `sipguard_common::packet::Bytes`.

use aya_ebpf::programs::XdpContext;
use sipguard_common::packet::Bytes;

/// Offsets above this are refused before any pointer arithmetic, so the
/// verifier can bound `data + off` (it tracks packet ranges up to 0xffff).
const MAX_OFF: usize = 0x3fff;

pub struct Pkt {
    start: usize,
    end: usize,
    /// `WORD_LOADS`, read once per `Pkt` instead of once per word.
    words: bool,
}

impl Pkt {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Pkt {
            start: ctx.data(),
            end: ctx.data_end(),
            words: word_loads(),
        }
    }

    /// [`Pkt::new`] with the packet pointers loaded from the context again
    /// rather than reused: pointers that went through bounds checks carry
    /// ranges the verifier compares when it prunes, fresh ones none.
    #[inline(always)]
    pub fn reload(ctx: &XdpContext) -> Self {
        // SAFETY: `ctx.ctx` is the program's context pointer; volatile so
        // the compiler does not reuse the earlier loads.
        let (start, end) = unsafe {
            (
                core::ptr::read_volatile(&(*ctx.ctx).data) as usize,
                core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize,
            )
        };
        Pkt {
            start,
            end,
            words: word_loads(),
        }
    }

    /// Packet memory of a TC program (`skb->data` .. `skb->data_end`).
    #[inline(always)]
    pub fn from_range(start: usize, end: usize) -> Self {
        Pkt {
            start,
            end,
            words: word_loads(),
        }
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

    #[inline(always)]
    fn u64_le(&self, off: usize) -> Option<u64> {
        if !self.words {
            return self.read::<8>(off).map(u64::from_le_bytes);
        }
        if off > MAX_OFF {
            return None;
        }
        let p = self.start + off;
        if p + 8 > self.end {
            return None;
        }
        // SAFETY: [p, p+8) was just checked to lie inside the frame.
        Some(unsafe { load_u64(p) })
    }

    #[inline(always)]
    fn u64x2_le(&self, off: usize) -> Option<(u64, u64)> {
        if !self.words {
            return Some((self.u64_le(off)?, self.u64_le(off + 8)?));
        }
        if off > MAX_OFF {
            return None;
        }
        let p = self.start + off;
        if p + 16 > self.end {
            return None;
        }
        // SAFETY: [p, p+16) was just checked to lie inside the frame.
        Some(unsafe { (load_u64(p), load_u64(p + 8)) })
    }
}

/// One 8-byte load. `read_unaligned` would compile to eight byte loads,
/// shifts and ors: the BPF backend assumes strict alignment, and the flag
/// that lifts that also misaligns stack accesses, which the verifier always
/// rejects. The asm is only the load.
///
/// # Safety
/// `[p, p+8)` must lie inside the packet (checked against `data_end` so the
/// verifier sees it), and unaligned loads must be allowed (`WORD_LOADS`).
#[inline(always)]
unsafe fn load_u64(p: usize) -> u64 {
    let v: u64;
    // SAFETY: by the caller's contract.
    unsafe {
        core::arch::asm!(
            "{v} = *(u64 *)({p} + 0)",
            p = in(reg) p,
            v = lateout(reg) v,
            options(readonly, nostack, preserves_flags),
        );
    }
    v
}

#[inline(always)]
fn word_loads() -> bool {
    // SAFETY: reading a plain static; volatile so it is not const-folded
    // (the verifier knows the loaded value and prunes the path that is off).
    unsafe { core::ptr::read_volatile(&WORD_LOADS) != 0 }
}

/// Set to 1 at load time where the CPU handles unaligned loads and the
/// verifier therefore accepts them on packet memory (x86-64, arm64):
/// `Bytes::u64_le` is then one 8-byte load instead of eight byte loads.
/// `.rodata`, so the verifier removes the path that is off; strict-alignment
/// CPUs (e.g. MIPS routers) keep the byte loads and still load the program.
#[unsafe(no_mangle)]
static WORD_LOADS: u32 = 0;
