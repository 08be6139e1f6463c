//! Packet memory as `sipguard_common::packet::Bytes`: [`Pkt`] reads the
//! frame directly (single-buffer programs, where the whole frame is
//! between `data` and `data_end`); [`MultiBuf`] reads the linear part the
//! same way, and [`Window`] the bytes of a multi-buffer frame the SIP
//! scanner inspects, copied out of its linear part and fragments with
//! `bpf_xdp_load_bytes`.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::xdp_md,
    helpers::generated::{bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use sipguard_common::packet::Bytes;

/// How an XDP program of either build sees its frame.
pub trait Frame: Bytes + Sized {
    fn new(ctx: &XdpContext) -> Self;
    /// [`Frame::new`] with the packet pointers loaded anew (see
    /// [`Pkt::reload`]).
    fn reload(ctx: &XdpContext) -> Self;
    /// The frame inside a `bpf_loop` callback, whose caller measured its
    /// length (`frame_len`) once.
    fn in_loop(ctx: &XdpContext, frame_len: usize) -> Self;
    /// Bytes of the whole frame.
    fn frame_len(&self) -> usize;

    /// What the SIP scanner reads the frame's first `end` bytes through.
    type Scanned: Bytes;
    /// Makes those bytes readable by [`Frame::scanned`] (false: they could
    /// not be, and the scan must not run).
    fn prepare_scan(&self, end: u32) -> bool;
    /// The scanner's view inside its `bpf_loop` callback.
    fn scanned(ctx: &XdpContext, frame_len: usize) -> Option<Self::Scanned>;
}

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

impl Frame for Pkt {
    #[inline(always)]
    fn new(ctx: &XdpContext) -> Self {
        Pkt::new(ctx)
    }
    #[inline(always)]
    fn reload(ctx: &XdpContext) -> Self {
        Pkt::reload(ctx)
    }
    #[inline(always)]
    fn in_loop(ctx: &XdpContext, _frame_len: usize) -> Self {
        Pkt::new(ctx)
    }
    #[inline(always)]
    fn frame_len(&self) -> usize {
        Pkt::frame_len(self)
    }

    type Scanned = Pkt;
    #[inline(always)]
    fn prepare_scan(&self, _end: u32) -> bool {
        true
    }
    #[inline(always)]
    fn scanned(ctx: &XdpContext, _frame_len: usize) -> Option<Pkt> {
        Some(Pkt::new(ctx))
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

/// A multi-buffer frame (`xdp.frags` programs) as the filter and the
/// any-port reader see it: the linear part read as [`Pkt`] reads it, the
/// length that of the whole frame. Those programs read the link, IP and
/// UDP/TCP headers and a request line, which drivers and test runs put in
/// the linear part (at least its first 2 KiB; 3520 bytes in a test run);
/// the SIP scanner reads the rest through [`Window`].
pub struct MultiBuf {
    linear: Pkt,
    ctx: *mut xdp_md,
    len: usize,
}

impl MultiBuf {
    #[inline(always)]
    fn with(ctx: &XdpContext, linear: Pkt, len: usize) -> Self {
        MultiBuf {
            linear,
            ctx: ctx.ctx,
            len,
        }
    }

    /// Copies the frame's first `end` bytes (linear part and fragments)
    /// into this CPU's `WINDOW` buffer for [`Window`]; false when they
    /// cannot be copied (the scan then sees no bytes).
    #[inline(always)]
    pub fn copy_window(&self, end: u32) -> bool {
        let Some(buf) = crate::maps::WINDOW.get_ptr_mut(0) else {
            return false;
        };
        if end == 0 {
            return true;
        }
        // At least 1 as the verifier sees it (the helper refuses a length
        // that may be 0, and 6.1 learns nothing from `n != 0`), at most
        // the buffer's size.
        let n = ((end - 1) & sipguard_common::scan_io::MAX_SCAN_OFF) + 1;
        // SAFETY: `n` <= MAX_SCAN_OFF + 1 < the buffer's size; the helper fails rather than
        // reading past the frame.
        unsafe { bpf_xdp_load_bytes(self.ctx, 0, (*buf).bytes.as_mut_ptr() as *mut c_void, n) == 0 }
    }
}

#[inline(always)]
fn buff_len(ctx: &XdpContext) -> usize {
    // Bounded for the verifier (a frame has at most 17 pages, 69,632
    // bytes): an unbounded length made Debian 6.1's verifier take the
    // multi-buffer inspector to 924,527 instructions.
    const MAX_FRAME_MASK: usize = (1 << 17) - 1;
    // SAFETY: the program's own context.
    (unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize) & MAX_FRAME_MASK
}

impl Frame for MultiBuf {
    #[inline(always)]
    fn new(ctx: &XdpContext) -> Self {
        MultiBuf::with(ctx, Pkt::new(ctx), buff_len(ctx))
    }
    #[inline(always)]
    fn reload(ctx: &XdpContext) -> Self {
        MultiBuf::with(ctx, Pkt::reload(ctx), buff_len(ctx))
    }
    #[inline(always)]
    fn in_loop(ctx: &XdpContext, frame_len: usize) -> Self {
        MultiBuf::with(ctx, Pkt::new(ctx), frame_len)
    }
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.len
    }

    type Scanned = Window;
    #[inline(always)]
    fn prepare_scan(&self, end: u32) -> bool {
        self.copy_window(end)
    }
    #[inline(always)]
    fn scanned(_ctx: &XdpContext, frame_len: usize) -> Option<Window> {
        Window::in_loop(frame_len)
    }
}

impl Bytes for MultiBuf {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }
    #[inline(always)]
    fn read<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.linear.read::<N>(off)
    }
    #[inline(always)]
    fn u64_le(&self, off: usize) -> Option<u64> {
        self.linear.u64_le(off)
    }
    #[inline(always)]
    fn u64x2_le(&self, off: usize) -> Option<(u64, u64)> {
        self.linear.u64x2_le(off)
    }
}

/// Bytes of the `WINDOW` buffer: every offset the scanner reads
/// (`MAX_SCAN_OFF`), plus the widest read past the last one.
pub const WINDOW_BYTES: usize = sipguard_common::scan_io::MAX_SCAN_OFF as usize + 1 + 64;

#[repr(C)]
pub struct WindowBuf {
    pub bytes: [u8; WINDOW_BYTES],
}

/// The first bytes of a multi-buffer frame, copied by
/// [`MultiBuf::copy_window`] up to the end of what the SIP scanner
/// inspects, read at the frame's own offsets: one helper call per packet
/// instead of one per read, and map-value reads the verifier bounds with a
/// mask.
pub struct Window {
    buf: *const u8,
    /// The whole frame's length.
    len: usize,
    words: bool,
}

impl Window {
    /// This CPU's copy, filled by [`MultiBuf::copy_window`] before the
    /// scan's `bpf_loop` (which does not run when it failed).
    #[inline(always)]
    pub fn in_loop(frame_len: usize) -> Option<Self> {
        let buf = crate::maps::WINDOW.get_ptr(0)?;
        Some(Window {
            // SAFETY: a pointer into this CPU's map value.
            buf: unsafe { (*buf).bytes.as_ptr() },
            len: frame_len,
            words: word_loads(),
        })
    }

    /// The address of offset `off` in the copy. Not checked against
    /// the bytes copied: the scanner, the only reader, never reads past its end,
    /// which is where the copy ends, and the masked offset keeps every read
    /// inside the buffer whatever it holds. (A bound compared with another
    /// unknown value teaches the verifier nothing and doubles its work.)
    #[inline(always)]
    fn at(&self, off: usize) -> Option<usize> {
        if off > MAX_OFF {
            return None;
        }
        Some(self.buf as usize + (off & MAX_OFF))
    }
}

impl Bytes for Window {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn read<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let p = self.at(off)?;
        // SAFETY: the masked offset plus N stays inside the map value.
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }

    #[inline(always)]
    fn u64_le(&self, off: usize) -> Option<u64> {
        if !self.words {
            return self.read::<8>(off).map(u64::from_le_bytes);
        }
        let p = self.at(off)?;
        // SAFETY: as in `read`; unaligned loads are allowed (`WORD_LOADS`).
        Some(unsafe { load_u64(p) })
    }

    #[inline(always)]
    fn u64x2_le(&self, off: usize) -> Option<(u64, u64)> {
        if !self.words {
            return Some((self.u64_le(off)?, self.u64_le(off + 8)?));
        }
        let p = self.at(off)?;
        // SAFETY: as in `u64_le`.
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
