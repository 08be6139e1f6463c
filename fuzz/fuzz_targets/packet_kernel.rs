//! Differential: the same frames through the real XDP program with
//! BPF_PROG_TEST_RUN and through the host logic; the verdicts must be equal.
//! Needs root (BPF); without it every input is skipped after one warning.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use sipguard::kernel::testrun::{Sandbox, XDP_DROP};
use sipguard_fuzz::{check_host, policies, split};

/// BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
const MIN_FRAME: usize = 14;
/// Largest frame the kernel takes into the linear area for a program
/// without multi-buffer support (4096 - headroom - skb_shared_info); bigger
/// ones are refused, so they are not compared.
const MAX_FRAME: usize = 3000;

fn sandboxes() -> Option<&'static Mutex<Vec<Sandbox>>> {
    static S: OnceLock<Option<Mutex<Vec<Sandbox>>>> = OnceLock::new();
    S.get_or_init(|| {
        let all: Result<Vec<Sandbox>, _> = policies().iter().map(Sandbox::new).collect();
        match all {
            Ok(v) => Some(Mutex::new(v)),
            Err(e) => {
                eprintln!("packet_kernel: cannot load the XDP object ({e:#}); skipping every input (run as root)");
                None
            }
        }
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some((i, frame)) = split(data) else {
        return;
    };
    let host = check_host(frame, &policies()[i]);
    if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
        return;
    }
    let Some(sb) = sandboxes() else { return };
    let mut sb = sb.lock().unwrap_or_else(|p| p.into_inner());
    let k = sb[i]
        .run(frame)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e:#}", frame.len()));
    assert_eq!(
        (k.reason, k.action == XDP_DROP, k.monitored),
        (host.reason, host.drop, host.monitored),
        "kernel and host disagree"
    );
});
