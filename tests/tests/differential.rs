//! Differential test of the one SIP matcher (the corpus:
//! `sipguard_tests::differential`): every kernel verdict on the real object
//! must equal the host's. Needs root.

use sipguard::{
    kernel::{features::Scanners, testrun::Sandbox},
    policy::{config::Config, Policy},
};
use sipguard_tests::{
    differential::{self, Outcome, PACKETS, SEED},
    require_root,
};

#[test]
fn kernel_and_host_agree_on_random_sip() {
    if require_root("kernel_and_host_agree_on_random_sip") {
        agree_on_random_sip(Build::Daemon, PACKETS);
    }
}

/// The inspector built without bpf_loop (what kernels before 5.17 run)
/// against the same host code and the same corpus.
#[test]
fn kernel_without_bpf_loop_and_host_agree_on_random_sip() {
    if require_root("kernel_without_bpf_loop_and_host_agree_on_random_sip") {
        agree_on_random_sip(Build::WithoutBpfLoop, PACKETS);
    }
}

/// The scanner's byte-load path (`WORD_LOADS` = 0), which strict-alignment
/// CPUs run, against the same host code.
#[test]
fn kernel_byte_loads_and_host_agree_on_random_sip() {
    if require_root("kernel_byte_loads_and_host_agree_on_random_sip") {
        // The switch reaches the kernel: `.rodata` is frozen, so the verifier
        // prunes the other load path and the programs differ.
        let policy = Policy::from_config(&Config::embedded_default().expect("default"));
        let count = |sb: Sandbox| {
            sb.verified_instructions_of(sipguard_common::INSPECT_BOUNDED_PROGRAM_NAME)
                .expect("prog info")
                .expect("count")
        };
        let words = count(Sandbox::new(&policy).expect("load"));
        let bytes = count(Sandbox::byte_loads_only(&policy).expect("load"));
        eprintln!("inspector verified: word loads {words}, byte loads {bytes} instructions");
        assert_ne!(words, bytes, "WORD_LOADS did not change the inspector");
        agree_on_random_sip(Build::ByteLoadsOnly, PACKETS / 4);
    }
}

fn assert_agree(what: &str, out: &Outcome, reasons: &[&str], share: usize) {
    eprintln!(
        "{what}: {} packets (seed {SEED:#x}), {} mismatches; verdicts: {:?}",
        out.packets, out.mismatches, out.seen
    );
    assert_eq!(
        out.mismatches,
        0,
        "kernel and host disagree:\n{}",
        out.shown.join("\n")
    );
    let rare = out.too_rare(reasons, share);
    assert!(rare.is_empty(), "{}", rare.join("\n"));
}

/// Which build of the inspector a corpus runs against.
#[derive(Debug, Clone, Copy)]
enum Build {
    /// The builds the daemon installs.
    Daemon,
    WithoutBpfLoop,
    ByteLoadsOnly,
}

fn agree_on_random_sip(build: Build, packets: usize) {
    let cfg = Config::parse(differential::SIP_CONFIG, "differential").expect("config");
    let policy = Policy::from_config(&cfg);
    let mut sb = match build {
        Build::Daemon => Sandbox::new(&policy),
        Build::WithoutBpfLoop => Sandbox::with_scanners(&policy, Scanners::Bounded),
        Build::ByteLoadsOnly => Sandbox::byte_loads_only(&policy),
    }
    .expect("loading the eBPF object (root, BPF)");
    let start = std::time::Instant::now();
    let out = differential::random_sip(&mut sb, &policy, packets);
    eprintln!("in {:.1?}", start.elapsed());
    assert_agree(
        &format!("differential ({build:?})"),
        &out,
        differential::SIP_REASONS,
        differential::SIP_MIN_SHARE,
    );
}

/// `any_udp_port`: the same generator aimed at random ports outside the SIP
/// set, plus random binary payloads.
#[test]
fn kernel_and_host_agree_on_any_port() {
    if require_root("kernel_and_host_agree_on_any_port") {
        agree_on_any_port(
            Sandbox::new,
            differential::ANY_PORT_CONFIG,
            differential::ANY_PORT_REASONS,
        );
    }
}

/// The any-port reader built without bpf_loop (what kernels before 5.17
/// run), under the inspector and alone.
#[test]
fn kernel_bounded_any_port_and_host_agree() {
    if require_root("kernel_bounded_any_port_and_host_agree") {
        for (config, reasons) in [
            (
                differential::ANY_PORT_CONFIG,
                differential::ANY_PORT_REASONS,
            ),
            (
                differential::ANY_PORT_DROP_CONFIG,
                differential::ANY_PORT_DROP_REASONS,
            ),
        ] {
            agree_on_any_port(
                |p| Sandbox::with_scanners(p, Scanners::Bounded),
                config,
                reasons,
            );
        }
    }
}

fn agree_on_any_port(load: fn(&Policy) -> anyhow::Result<Sandbox>, config: &str, reasons: &[&str]) {
    const N: usize = 30_000;
    let cfg = Config::parse(config, "differential any-port").expect("config");
    let policy = Policy::from_config(&cfg);
    let mut sb = load(&policy).expect("loading the eBPF object (root, BPF)");
    let out = differential::any_port(&mut sb, &policy, N);
    assert_agree(
        &format!("differential any-port ({config:?})"),
        &out,
        reasons,
        differential::ANY_PORT_MIN_SHARE,
    );
}
