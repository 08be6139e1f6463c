//! The kernel matrix: real Debian kernels booted under qemu (software
//! emulation), each running the in-VM suite (`tests/src/bin/vm_suite.rs`:
//! every fixture case through one load of the real programs) and reporting
//! back on the serial console. One test per kernel; a kernel that rejects a
//! program or disagrees on one row fails its test here.
//!
//! The x86_64 rows run debug builds of this workspace; the arm64 row runs
//! the release build for aarch64 that `cargo xtask package --arch arm64`
//! packages (cross-built with Debian's cross gcc), under qemu-system-aarch64.
//!
//! Needs qemu, the kernels (and the arm64 busybox) from
//! `scripts/vm-kernels.sh` and, for arm64, the cross toolchain (all
//! installed by `scripts/setup.sh --tests`). Without them the tests skip
//! loudly, except under CI, where a missing piece is a failure.

use std::{
    path::PathBuf,
    process::Command,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use sipguard_tests::vm::{self, Arch, Initramfs, Kernel};

/// A VM that has not powered off by then is stuck.
const TIMEOUT: Duration = Duration::from_secs(600);
const MEMORY_MB: u32 = 2048;

/// The in-VM steps, run by /init in name order.
const STEPS: &[(&str, &str)] = &[
    ("10-fixtures", "#!/bin/sh\nexec vm_suite fixtures\n"),
    ("20-replay", "#!/bin/sh\nexec vm_suite replay\n"),
    ("30-e2e", "#!/bin/sh\nexec vm_suite e2e\n"),
];
/// The steps of a foreign architecture's row: fixtures and replay. The
/// end-to-end part would need that architecture's iproute2 and veth module
/// and another load of every program under an emulated CPU, while the
/// kernel's XDP attach and networking are not architecture code.
const FOREIGN_STEPS: usize = 2;
/// With `SIPGUARD_MATRIX_VERIFIER_ONLY` set, each VM only loads the programs
/// and reports the verifier's figures, checked against the budget: about a
/// minute per kernel instead of several, for tuning the programs.
const VERIFIER_ONLY_STEPS: &[(&str, &str)] =
    &[("10-verifier", "#!/bin/sh\nexec vm_suite verifier\n")];
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

/// The steps a row of `arch` runs.
fn steps(arch: Arch) -> &'static [(&'static str, &'static str)] {
    if std::env::var_os("SIPGUARD_MATRIX_VERIFIER_ONLY").is_some() {
        VERIFIER_ONLY_STEPS
    } else if Arch::host() == Some(arch) {
        STEPS
    } else {
        &STEPS[..FOREIGN_STEPS]
    }
}

/// The binaries a guest of `arch` runs, built once per architecture: debug
/// builds for the host's, the packaged release build otherwise.
fn binaries(arch: Arch) -> &'static Binaries {
    static NATIVE: OnceLock<Binaries> = OnceLock::new();
    static CROSS: OnceLock<Binaries> = OnceLock::new();
    if Arch::host() == Some(arch) {
        return NATIVE.get_or_init(|| Binaries {
            vm_suite: vm::workspace_bin("sipguard-tests", "vm_suite").expect("building vm_suite"),
            sipguard: sipguard_tests::sipguard_bin(),
        });
    }
    CROSS.get_or_init(|| {
        let start = Instant::now();
        // sipguard first: its build is the package's, whose crates the
        // vm_suite build then reuses.
        let sipguard =
            vm::cross_bin(arch, "sipguard", "sipguard").expect("cross-building sipguard");
        let vm_suite =
            vm::cross_bin(arch, "sipguard-tests", "vm_suite").expect("cross-building vm_suite");
        eprintln!(
            "cross build for {}: {:.0} s",
            arch.triple(),
            start.elapsed().as_secs_f64()
        );
        let object = std::fs::read(&sipguard.ebpf_object).expect("reading the eBPF object");
        for built in [&sipguard, &vm_suite] {
            check_cross_binary(arch, &built.exe, &object);
        }
        Binaries {
            vm_suite: vm_suite.exe,
            sipguard: sipguard.exe,
        }
    })
}

/// A cross-built binary must be for the guest's CPU and embed, byte for
/// byte, the eBPF object of the packaged binary's build: the fixtures then
/// run what the package ships. (That object's code is the host build's;
/// its BTF names the architecture's kernel bindings, docs/KERNELS.md.)
fn check_cross_binary(arch: Arch, bin: &std::path::Path, object: &[u8]) {
    let bytes = std::fs::read(bin).expect("reading a cross-built binary");
    // ELFCLASS64 at 4, e_machine at 18 (EM_AARCH64 = 183, EM_X86_64 = 62).
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    let want = match arch {
        Arch::Aarch64 => 183,
        Arch::X86_64 => 62,
    };
    assert!(
        bytes.starts_with(b"\x7fELF") && bytes[4] == 2 && machine == want,
        "{} is not a 64-bit {} executable (e_machine {machine})",
        bin.display(),
        arch.name()
    );
    assert!(
        bytes.windows(object.len()).any(|w| w == object),
        "{} does not embed the packaged build's eBPF object ({} bytes)",
        bin.display(),
        object.len()
    );
}

/// The kernel of `name`, or None after a loud skip (a failure under CI).
fn available(arch: Arch, name: &str) -> Option<Kernel> {
    let busybox = arch.busybox();
    let foreign = Arch::host() != Some(arch);
    let missing = if Command::new(arch.qemu()).arg("--version").output().is_err() {
        Some(format!("{} is not installed", arch.qemu()))
    } else if !busybox.is_file() {
        Some(format!(
            "{} is missing (busybox-static{})",
            busybox.display(),
            if foreign {
                format!(
                    " for {}: scripts/vm-kernels.sh {}",
                    arch.name(),
                    arch.name()
                )
            } else {
                String::new()
            }
        ))
    } else if !foreign && !std::path::Path::new(IPROUTE2).is_file() {
        Some(format!("{IPROUTE2} is missing (iproute2)"))
    } else if let Some(why) = foreign.then(|| vm::cross_toolchain_missing(arch)).flatten() {
        Some(why)
    } else {
        match Kernel::find(arch, name) {
            Ok(k) => return Some(k),
            Err(e) => Some(format!("{e:#}")),
        }
    };
    let why = missing.expect("a reason");
    if std::env::var_os("CI").is_some() {
        panic!(
            "kernel {} {name}: {why} (scripts/setup.sh --tests installs it)",
            arch.name()
        );
    }
    eprintln!("\n*** SKIPPED kernel {} {name}: {why} ***\n", arch.name());
    None
}

fn initramfs(kernel: &Kernel) -> PathBuf {
    let arch = kernel.arch;
    let bins = binaries(arch);
    let mut img = Initramfs::new(arch);
    img.file("bin/busybox", &arch.busybox(), 0o755)
        .expect("busybox");
    img.bytes("init", 0o755, include_bytes!("../vm/init").to_vec());
    img.executable("usr/local/bin/vm_suite", &bins.vm_suite)
        .expect("vm_suite");
    img.executable("usr/local/bin/sipguard", &bins.sipguard)
        .expect("sipguard");
    if steps(arch).len() == STEPS.len() {
        img.executable("usr/local/bin/ip", IPROUTE2.as_ref())
            .expect("ip");
    }
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
    for (name, script) in steps(arch) {
        img.bytes(&format!("steps/{name}"), 0o755, script.as_bytes().to_vec());
    }
    let out = kernel.dir.join("initramfs.cpio");
    img.write(&out).expect("writing the initramfs");
    out
}

fn run_kernel(arch: Arch, name: &str) {
    let Some(kernel) = available(arch, name) else {
        return;
    };
    // Built before taking a turn: a cross build overlaps another row's VM.
    binaries(arch);
    // Emulated CPUs are slow: one VM at a time keeps each within its timeout
    // on two cores.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let initrd = initramfs(&kernel);
    let run = vm::boot(&kernel, &initrd, MEMORY_MB, TIMEOUT).expect("booting qemu");
    let results = run.results();
    let row = kernel.row();
    eprintln!(
        "kernel {row} ({}): {:.0} s, {} result lines",
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
        "kernel {row}: no power-off within {TIMEOUT:?}; last console lines:\n{}",
        run.tail(40)
    );
    assert!(
        results.contains(&"done"),
        "kernel {row}: the VM stopped before its suite finished; last console lines:\n{}",
        run.tail(40)
    );
    assert!(
        failures.is_empty(),
        "kernel {row}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    check_verifier_budget(name, &results);
    check_guest(arch, &row, &results);
    for (step, _) in steps(arch) {
        assert!(
            results
                .iter()
                .any(|r| r.starts_with(&format!("step name={step} exit=0 "))),
            "kernel {row}: step {step} did not report success"
        );
    }
}

/// One test per row, so a failing kernel is named by the test harness.
macro_rules! kernel_row {
    ($(#[$doc:meta])* $name:ident, $arch:expr, $row:literal) => {
        $(#[$doc])*
        #[test]
        fn $name() {
            run_kernel($arch, $row);
        }
    };
}

kernel_row!(kernel_5_10, Arch::X86_64, "5.10");
kernel_row!(kernel_6_1, Arch::X86_64, "6.1");
kernel_row!(kernel_6_12, Arch::X86_64, "6.12");
kernel_row!(
    /// arm64 (Debian's 6.12 on an emulated Cortex-A72): the arm64 JIT, and the
    /// word loads the arm64 build selects, on the packaged binary.
    kernel_arm64_6_12,
    Arch::Aarch64,
    "6.12"
);

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

/// The guest ran the CPU the row names, the programs' machine code came
/// from that architecture's JIT (an interpreted program reports 0 bytes),
/// and the scanner was on the word loads both x86-64 and arm64 select.
fn check_guest(arch: Arch, row: &str, results: &[&str]) {
    let machine = format!("machine={}", arch.name());
    assert!(
        results
            .iter()
            .any(|r| r.starts_with("kernel release=") && r.ends_with(&machine)),
        "kernel {row}: the guest did not report {machine}"
    );
    assert!(
        results
            .iter()
            .any(|r| r.starts_with("load result=pass") && r.ends_with(" word_loads=true")),
        "kernel {row}: the programs were not loaded with word loads"
    );
    let mut jited = 0;
    for r in results.iter().filter(|r| r.starts_with("verifier ")) {
        let Some(bytes) = r.split_whitespace().find_map(|w| w.strip_prefix("jited=")) else {
            continue; // not loaded on this kernel
        };
        assert_ne!(bytes, "0", "kernel {row}: not JIT-compiled: {r}");
        jited += 1;
    }
    assert!(jited > 0, "kernel {row}: no program reported its JIT size");
}
