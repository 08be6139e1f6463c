//! Start-up checks for `sipguard run`: privileges, BPF and XDP support,
//! the maps and helpers the program needs, and bpffs. Each problem is one
//! sentence that says what is missing and what to do, instead of an errno
//! from somewhere inside a load or attach.

use std::path::Path;

use anyhow::{anyhow, Result};

use super::features::{self, kernel_release};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The capability mask from `/proc/self/status` (`CapEff:` in hex).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// `None` when the effective capabilities can load and attach XDP
/// programs; otherwise the sentence to print.
pub fn missing_privileges(cap_eff: u64) -> Option<String> {
    let has = |c: u32| cap_eff & (1u64 << c) != 0;
    let mut missing = Vec::new();
    // Before Linux 5.8 CAP_SYS_ADMIN is what CAP_BPF became.
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "sipguard needs root, or the capabilities CAP_BPF and CAP_NET_ADMIN, to load and attach its XDP program \
         (missing: {}); run it with sudo, or as a service with AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        missing.join(", ")
    ))
}

/// Checks what sipguard needs before anything is loaded. Problems are
/// collected so the user sees all of them at once.
pub fn check(pin_root: &Path) -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(caps) = parse_cap_eff(&status) {
        if let Some(sentence) = missing_privileges(caps) {
            // Every probe below would fail with EPERM: say only this.
            return Err(anyhow!("{sentence}"));
        }
    }
    let release = kernel_release();
    let mut problems = Vec::new();
    // Features only some policies need (learn_registrars): refused by
    // features::require_for on kernels without them.
    for f in features::required() {
        let what = format!("{} ({})", f.name, f.used_for);
        match f.found {
            Ok(true) => {}
            Ok(false) => problems.push(format!(
                "this kernel ({release}) lacks {what} (Linux {}+ has them); upgrade the kernel",
                f.since
            )),
            Err(e) if e.contains("Function not implemented") => {
                problems.push(format!("this kernel ({release}) was built without BPF (CONFIG_BPF_SYSCALL); sipguard needs Linux 5.10+ with BPF and XDP"));
                break;
            }
            Err(e) if e.contains("Operation not permitted") => problems.push(format!(
                "the kernel refused to load a probe for {what} (EPERM): BPF is restricted here \
                 (kernel lockdown, a container without CAP_BPF, or a seccomp filter)"
            )),
            Err(e) => problems.push(format!("probing for {what} failed: {e}")),
        }
    }
    if let Err(e) = super::pins::ensure_bpffs(pin_root) {
        problems.push(format!("{e:#}"));
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(anyhow!("{}", problems[0])),
        _ => Err(anyhow!(
            "this machine cannot run sipguard yet:\n  - {}",
            problems.join("\n  - ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities() {
        let status = "Name:\tsipguard\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(missing_privileges(0x1ff_ffff_ffff), None);
        // CAP_BPF + CAP_NET_ADMIN without CAP_SYS_ADMIN is enough.
        assert_eq!(
            missing_privileges((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)),
            None
        );
        // Older kernels: CAP_SYS_ADMIN stands for CAP_BPF.
        assert_eq!(
            missing_privileges((1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN)),
            None
        );
        let none = missing_privileges(0).unwrap();
        assert!(
            none.contains("missing: CAP_BPF, CAP_NET_ADMIN") && none.contains("sudo"),
            "{none}"
        );
        let no_net = missing_privileges(1 << CAP_BPF).unwrap();
        assert!(no_net.contains("missing: CAP_NET_ADMIN)"), "{no_net}");
        assert_eq!(
            missing_privileges(0).unwrap().lines().count(),
            1,
            "one sentence"
        );
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }
}
