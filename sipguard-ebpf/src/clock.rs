//! The one clock of every time stamp the programs keep: ban expiries and
//! drop counting windows, event sampling and event times, learned
//! registrars' expiries. CLOCK_BOOTTIME (`bpf_ktime_get_boot_ns`, kernel
//! 5.8, below the 5.10 floor): it keeps counting through suspend, so an
//! expiry set before a suspend is not stretched by it. Userspace reads
//! CLOCK_BOOTTIME too when it writes or shows these values.

use aya_ebpf::helpers::bpf_ktime_get_boot_ns;

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_boot_ns() }
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
