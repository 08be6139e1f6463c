//! Random payloads straight into the shared SIP matcher (host side), under
//! the inspect policy and its monitor variant: every scan ends within the
//! step bound the kernel's bpf_loop uses, and its verdict is one the
//! inspector may give. The scan with word reads (8 bytes at a time) must
//! equal the scan of the same bytes without them (every word path falls
//! back to its byte-at-a-time loop).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipguard_common::{
    packet::{Flow, NoWords},
    sip::{self, max_steps, Scan, Step},
    Reason,
};
use sipguard_fuzz::policies;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    // policies() index 1 is `policy: inspect`, 3 its monitor variant.
    let policy = &policies()[if sel & 1 == 0 { 1 } else { 3 }];
    let flow = Flow::bare_udp_payload([198, 51, 100, 7], msg.len());
    let mut scan = Scan::new(&flow, msg.len());
    for _ in 0..max_steps(msg.len()) {
        if sip::step(&mut scan, msg, policy) == Step::Done {
            break;
        }
    }
    assert_eq!(
        scan,
        sip::scan(&flow, &NoWords(msg), policy),
        "word and byte scans differ"
    );
    let r = sip::decide(&scan, &policy.settings, policy);
    assert!(
        matches!(
            r,
            Reason::PassInspected
                | Reason::PassPartial
                | Reason::DropMethod
                | Reason::DropUserAgent
                | Reason::DropUriIpHost
                | Reason::DropUnknownUser
                | Reason::DropSipVicious
                | Reason::DropNotSip
        ),
        "inspector verdict {r:?}"
    );
});
