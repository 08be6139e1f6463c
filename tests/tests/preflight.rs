//! Start-up checks through the real binary: missing privileges and a pin
//! root off bpffs give one readable line before anything is loaded; a real
//! verifier rejection is formatted with its tail and what to do. Needs root
//! (to drop privileges to nobody, and for the kernel's verifier).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use sipguard::kernel::program::verifier_message;
use sipguard_tests::{harness::netns::unique, require_root, sipguard_bin};

fn valid_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/valid/readme-example.yaml")
}

/// `--pin-root ROOT run -c <a valid config> --iface sgnone0`, an interface
/// that does not exist: start-up fails at the first check that does.
fn run_args(pin_root: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--pin-root".into(), pin_root.into(), "run".into()];
    a.extend(["-c".into(), valid_config().into()]);
    a.extend(["--iface".into(), "sgnone0".into()]);
    a
}

/// A pin root on bpffs that no one else uses.
fn bpffs_pin_root() -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/sg-test-{}", unique("pf")))
}

fn one_line_error(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn unprivileged_run_says_what_is_missing() {
    if !require_root("unprivileged_run_says_what_is_missing") {
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(sipguard_bin())
        .args(run_args(&bpffs_pin_root()))
        .env("RUST_LOG", "info")
        .output()
        .expect("setpriv");
    let err = one_line_error(&out);
    assert!(
        err.starts_with(
            "sipguard: sipguard needs root, or the capabilities CAP_BPF and CAP_NET_ADMIN"
        ) && err.contains("missing: CAP_BPF, CAP_NET_ADMIN"),
        "{err}"
    );
}

#[test]
fn pin_root_off_bpffs_is_refused_before_loading() {
    if !require_root("pin_root_off_bpffs_is_refused_before_loading") {
        return;
    }
    let root = std::env::temp_dir().join(unique("pf"));
    let out = Command::new(sipguard_bin())
        .args(run_args(&root))
        .output()
        .expect("sipguard");
    let err = one_line_error(&out);
    assert!(
        err.contains("is not on a BPF filesystem") && err.contains("mount -t bpf bpf"),
        "{err}"
    );
    assert!(!root.exists(), "nothing created");
}

#[test]
fn privileged_preflight_passes_and_the_interface_is_checked() {
    if !require_root("privileged_preflight_passes_and_the_interface_is_checked") {
        return;
    }
    let out = Command::new(sipguard_bin())
        .args(run_args(&bpffs_pin_root()))
        .output()
        .expect("sipguard");
    let err = one_line_error(&out);
    assert!(err.contains("interface 'sgnone0' does not exist"), "{err}");
}

/// Loads a one-instruction XDP program (`exit` with r0 never set) with the
/// raw bpf(2) syscall; the kernel's verifier rejects it and returns its log.
fn rejected_program_log() -> (i32, String) {
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        _rest: [u64; 8],
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    let insns: [u64; 1] = [0x95]; // BPF_JMP | BPF_EXIT
    let license = b"GPL\0";
    let mut log = vec![0u8; 64 * 1024];
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: 1,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points at live buffers for the duration of the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    if fd >= 0 {
        // SAFETY: closing the fd we were just given.
        unsafe { libc::close(fd as i32) };
    }
    assert!(fd < 0, "the kernel accepted a program that never sets r0");
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    (errno, String::from_utf8_lossy(&log[..end]).into_owned())
}

#[test]
fn a_real_verifier_rejection_is_readable() {
    if !require_root("a_real_verifier_rejection_is_readable") {
        return;
    }
    let (errno, log) = rejected_program_log();
    assert_eq!(errno, libc::EACCES, "log:\n{log}");
    assert!(log.contains("R0 !read_ok"), "kernel log:\n{log}");
    let err = std::io::Error::from_raw_os_error(errno).to_string();
    let m = verifier_message("sipguard", &err, &log, false, "6.18");
    assert!(
        m.contains("rejected XDP program 'sipguard': Permission denied"),
        "{m}"
    );
    assert!(
        m.contains("R0 !read_ok"),
        "the rejection line is in the tail:\n{m}"
    );
    assert!(m.contains("What to do"), "{m}");
    eprintln!("{m}");
}
