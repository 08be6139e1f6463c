//! The kernel matrix: real Debian kernels booted under qemu (software
//! emulation), each running the in-VM suite (`tests/src/bin/vm_suite.rs`:
//! every fixture case through one load of the real programs) and reporting
//! back on the serial console. One test per kernel; a kernel that rejects a
//! program or disagrees on one row fails its test here.
//!
//! Needs `qemu-system-x86_64` and the kernels from `scripts/vm-kernels.sh`
//! (both installed by `scripts/setup.sh --tests`). Without them the tests
//! skip loudly, except under CI, where a missing piece is a failure.

use std::{
    path::PathBuf,
    process::Command,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use sipguard_tests::vm::{self, Arch, Initramfs, Kernel};

/// The busybox that /init and the shell steps run on (busybox-static).
const BUSYBOX: &str = "/bin/busybox";
/// A VM that has not powered off by then is stuck.
const TIMEOUT: Duration = Duration::from_secs(600);
const MEMORY_MB: u32 = 2048;

/// The in-VM steps, run by /init in name order.
const STEPS: &[(&str, &str)] = &[
    ("10-fixtures", "#!/bin/sh\nexec vm_suite fixtures\n"),
    ("20-replay", "#!/bin/sh\nexec vm_suite replay\n"),
    ("30-e2e", "#!/bin/sh\nexec vm_suite e2e\n"),
];
/// With `SIPGUARD_MATRIX_VERIFIER_ONLY` set, each VM only loads the programs
/// and reports the verifier's figures, checked against the budget: about a
/// minute per kernel instead of several, for tuning the programs.
const VERIFIER_ONLY_STEPS: &[(&str, &str)] =
    &[("10-verifier", "#!/bin/sh\nexec vm_suite verifier\n")];

fn steps() -> &'static [(&'static str, &'static str)] {
    if std::env::var_os("SIPGUARD_MATRIX_VERIFIER_ONLY").is_some() {
        VERIFIER_ONLY_STEPS
    } else {
        STEPS
    }
}
/// iproute2 for network namespaces (busybox's ip has none).
const IPROUTE2: &str = "/usr/bin/ip";

/// Half the verifier's 1M processed-instruction limit: the headroom every
/// program keeps on every kernel, so one more feature cannot push a
/// distribution kernel into rejecting the filter.
const VERIFIER_BUDGET: u64 = 500_000;

struct Binaries {
    vm_suite: PathBuf,
    sipguard: PathBuf,
}

fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| Binaries {
        vm_suite: vm::workspace_bin("sipguard-tests", "vm_suite").expect("building vm_suite"),
        sipguard: sipguard_tests::sipguard_bin(),
    })
}

/// The kernel of `name`, or None after a loud skip (a failure under CI).
fn available(arch: Arch, name: &str) -> Option<Kernel> {
    let missing = if Command::new(format!("qemu-system-{}", arch.name()))
        .arg("--version")
        .output()
        .is_err()
    {
        Some(format!("qemu-system-{} is not installed", arch.name()))
    } else if !std::path::Path::new(BUSYBOX).is_file() {
        Some(format!("{BUSYBOX} is missing (busybox-static)"))
    } else if !std::path::Path::new(IPROUTE2).is_file() {
        Some(format!("{IPROUTE2} is missing (iproute2)"))
    } else {
        match Kernel::find(arch, name) {
            Ok(k) => return Some(k),
            Err(e) => Some(format!("{e:#}")),
        }
    };
    let why = missing.expect("a reason");
    if std::env::var_os("CI").is_some() {
        panic!("kernel {name}: {why} (scripts/setup.sh --tests installs it)");
    }
    eprintln!("\n*** SKIPPED kernel {name}: {why} ***\n");
    None
}

fn initramfs(kernel: &Kernel) -> PathBuf {
    let bins = binaries();
    let mut img = Initramfs::new();
    img.file("bin/busybox", BUSYBOX.as_ref(), 0o755)
        .expect("busybox");
    img.bytes("init", 0o755, include_bytes!("../vm/init").to_vec());
    img.executable("usr/local/bin/vm_suite", &bins.vm_suite)
        .expect("vm_suite");
    img.executable("usr/local/bin/sipguard", &bins.sipguard)
        .expect("sipguard");
    img.executable("usr/local/bin/ip", IPROUTE2.as_ref())
        .expect("ip");
    img.dir("sys/fs/bpf");
    let mut order = String::new();
    for m in kernel.modules().expect("module list") {
        img.file(
            &format!("modules/{m}"),
            &kernel.dir.join("modules").join(&m),
            0o644,
        )
        .expect("module");
        order.push_str(&m);
        order.push('\n');
    }
    img.bytes("modules/order", 0o644, order.into_bytes());
    for (name, script) in steps() {
        img.bytes(&format!("steps/{name}"), 0o755, script.as_bytes().to_vec());
    }
    let out = kernel.dir.join("initramfs.cpio");
    img.write(&out).expect("writing the initramfs");
    out
}

fn run_kernel(name: &str) {
    let Some(arch) = Arch::host() else {
        eprintln!("\n*** SKIPPED kernel {name}: no VM set for this host architecture ***\n");
        return;
    };
    let Some(kernel) = available(arch, name) else {
        return;
    };
    // Emulated CPUs are slow: one VM at a time keeps each within its timeout
    // on two cores.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let initrd = initramfs(&kernel);
    let run = vm::boot(&kernel, &initrd, MEMORY_MB, TIMEOUT).expect("booting qemu");
    let results = run.results();
    eprintln!(
        "kernel {name} ({}): {:.0} s, {} result lines",
        kernel.package,
        run.elapsed.as_secs_f64(),
        results.len()
    );
    let failures: Vec<&str> = results
        .iter()
        .copied()
        .filter(|r| {
            r.contains("result=fail") || (r.starts_with("step ") && !r.contains(" exit=0 "))
        })
        .collect();
    assert!(
        !run.timed_out,
        "kernel {name}: no power-off within {TIMEOUT:?}; last console lines:\n{}",
        run.tail(40)
    );
    assert!(
        results.contains(&"done"),
        "kernel {name}: the VM stopped before its suite finished; last console lines:\n{}",
        run.tail(40)
    );
    assert!(
        failures.is_empty(),
        "kernel {name}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    check_verifier_budget(name, &results);
    for (step, _) in steps() {
        assert!(
            results
                .iter()
                .any(|r| r.starts_with(&format!("step name={step} exit=0 "))),
            "kernel {name}: step {step} did not report success"
        );
    }
}

#[test]
fn kernel_5_10() {
    run_kernel("5.10");
}

#[test]
fn kernel_6_1() {
    run_kernel("6.1");
}

#[test]
fn kernel_6_12() {
    run_kernel("6.12");
}

/// Every reported count must be within the budget.
fn check_verifier_budget(kernel: &str, results: &[&str]) {
    let mut over = Vec::new();
    for r in results.iter().filter(|r| r.starts_with("verifier ")) {
        let field = |k: &str| {
            r.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or("")
        };
        let prog = field("prog=");
        // Kernels before 5.16 do not report the count; not-loaded programs
        // are the scanners on a kernel without bpf_loop.
        let Ok(insns) = field("insns=").parse::<u64>() else {
            continue;
        };
        if insns > VERIFIER_BUDGET {
            over.push(format!(
                "{prog}: {insns} processed instructions > {VERIFIER_BUDGET}"
            ));
        }
    }
    assert!(
        over.is_empty(),
        "kernel {kernel}: over the verifier budget:\n{}",
        over.join("\n")
    );
}
