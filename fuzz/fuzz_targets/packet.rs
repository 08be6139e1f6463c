//! Random frames through the shared parser and verdict logic (host side):
//! no panic, and every verdict keeps the invariants in `check_host`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipguard_fuzz::{check_host, policies, split};

fuzz_target!(|data: &[u8]| {
    if let Some((i, frame)) = split(data) {
        check_host(frame, &policies()[i]);
    }
});
