//! `sipguard check --kernel` on this machine's kernel: every feature is
//! probed and named, the inspector this kernel gets is named, and a policy
//! this kernel can run is accepted. The kernel matrix (kernel_matrix.rs)
//! checks the same on a kernel that lacks bpf_loop. Needs root (probes
//! load programs).

use std::process::Command;

use sipguard_tests::{require_root, sipguard_bin};

#[test]
fn check_kernel_lists_every_probed_feature() {
    if !require_root("check_kernel_lists_every_probed_feature") {
        return;
    }
    let out = Command::new(sipguard_bin())
        .args(["check", "--kernel", "-c"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/valid/embedded-default.yaml"
        ))
        .output()
        .expect("running sipguard check --kernel");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}:\n{text}", out.status);
    for f in sipguard::kernel::features::probe() {
        let line = text
            .lines()
            .find(|l| l.contains(f.name))
            .unwrap_or_else(|| panic!("{} missing from:\n{text}", f.name));
        assert!(line.contains(f.since), "{line}");
        let mark = if f.present { "yes" } else { "NO" };
        assert!(
            line.trim_start().starts_with(mark),
            "{line}: probe said {mark}"
        );
    }
    // This machine's kernel (6.18) has bpf_loop.
    assert!(
        text.lines().any(|l| l
            == "SIP inspector: sipguard_inspect_bounded (steps under a loop with a constant bound), \
                else sipguard_inspect; \
                any-port reader: sipguard_anyport (steps under bpf_loop), else sipguard_anyport_bounded"),
        "{text}"
    );
    assert!(
        text.contains("this kernel can run the configured policy"),
        "{text}"
    );
}
