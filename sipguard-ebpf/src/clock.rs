//! The one clock of every time stamp the programs keep: ban expiries and
//! drop counting windows, event sampling and event times, learned
//! registrars' expiries. CLOCK_BOOTTIME (`bpf_ktime_get_boot_ns`, kernel
//! 5.8, below the 5.10 floor): it keeps counting through suspend, so an
//! expiry set before a suspend is not stretched by it. Userspace reads
//! CLOCK_BOOTTIME too when it writes or shows these values.
//!
//! Read at most once per tick on each CPU: reading the clock source cost a
//! flood's banned packet about as much as its ban lookup, while
//! `bpf_jiffies64` is a load the verifier inlines. Within a tick every
//! packet gets the boot time of the tick's first read, so times here are
//! at most one tick (1-10 ms) behind, and a ban or decision ends at most one
//! tick late. A suspend does not stretch that: the tick count moves on at
//! resume, and the first packet after it reads the clock source again.

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_boot_ns},
    macros::map,
    maps::PerCpuArray,
};

/// The boot time of this CPU's last clock read and the tick count then.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TickTime {
    jiffies: u64,
    boot_ns: u64,
}

/// Per-CPU scratch, not state: not pinned.
#[map(name = "CLOCK_CACHE")]
static CLOCK_CACHE: PerCpuArray<TickTime> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helpers without arguments; a per-CPU value, and the programs
    // do not nest on one CPU.
    unsafe {
        let j = bpf_jiffies64();
        let Some(c) = CLOCK_CACHE.get_ptr_mut(0) else {
            return bpf_ktime_get_boot_ns();
        };
        if (*c).jiffies == j && (*c).boot_ns != 0 {
            return (*c).boot_ns;
        }
        let t = bpf_ktime_get_boot_ns();
        (*c).jiffies = j;
        (*c).boot_ns = t;
        t
    }
}

/// The boot clock read at most once per packet: a banned source's packet
/// needs it for the ban's expiry and again for its drop's event sampling.
pub struct Clock(core::cell::Cell<u64>);

impl Clock {
    #[inline(always)]
    pub const fn new() -> Self {
        Clock(core::cell::Cell::new(0))
    }

    #[inline(always)]
    pub fn now(&self) -> u64 {
        let t = self.0.get();
        if t != 0 {
            return t;
        }
        let t = now();
        self.0.set(t);
        t
    }
}
