//! What this kernel can run, found by probing: each feature is tried with a
//! minimal program or map (aya's feature probes, the way libbpf does it),
//! never inferred from the version number, which backports make lie.
//!
//! A policy that needs a missing feature is refused at start and on reload
//! with the feature's name and the first mainline kernel that has it: a
//! half-working filter is worse than a clear error.

use std::sync::OnceLock;

use anyhow::{bail, Result};
use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{is_helper_supported, is_map_supported, is_program_supported, BpfHelper},
};

use crate::policy::config::Config;

/// One kernel feature sipguard uses.
#[derive(Debug, Clone)]
pub struct Feature {
    pub name: &'static str,
    /// The first mainline release that has it.
    pub since: &'static str,
    /// What in sipguard needs it.
    pub used_for: &'static str,
    pub present: bool,
    need: Need,
}

/// Which part of sipguard cannot run without a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The object does not load at all (its maps and the filter).
    Always,
    /// Nothing: used where present (the SIP inspector and the any-port
    /// reader have builds with and without `bpf_loop`).
    Nothing,
    /// `learn_registrars`.
    Learner,
    /// Native XDP on an interface whose MTU a single buffer cannot hold
    /// (decided per interface when attaching, see [`require_multi_buffer`]).
    MultiBuffer,
}

enum Probe {
    Program(ProgramType),
    Map(MapType),
    Helper(ProgramType, BpfHelper),
    /// An XDP program loaded with `BPF_F_XDP_HAS_FRAGS`.
    FragsFlag,
}

/// Every feature, in the order `sipguard check --kernel` prints them: its
/// name, the first mainline release with it, what in sipguard uses it,
/// what cannot run without it, and how to probe it.
#[rustfmt::skip]
const FEATURES: &[(&str, &str, &str, Need, Probe)] = &[
    ("XDP programs", "4.8", "the filter", Need::Always, Probe::Program(ProgramType::Xdp)),
    ("array maps", "3.19", "settings, interface slots", Need::Always, Probe::Map(MapType::Array)),
    ("per-CPU array maps", "4.6", "counters, scanner state", Need::Always, Probe::Map(MapType::PerCpuArray)),
    ("program array maps (tail calls)", "4.2", "the inspector and any-port reader", Need::Always, Probe::Map(MapType::ProgramArray)),
    ("LPM trie maps", "4.11", "trusted and blocked lists, User-Agent list", Need::Always, Probe::Map(MapType::LpmTrie)),
    ("LRU hash maps", "4.10", "bans, fragments, learned registrars", Need::Always, Probe::Map(MapType::LruHash)),
    ("ring buffer maps", "5.8", "drop events", Need::Always, Probe::Map(MapType::RingBuf)),
    ("bpf_ktime_get_boot_ns helper", "5.8", "ban expiry", Need::Always, Probe::Helper(ProgramType::Xdp, BpfHelper::BPF_FUNC_ktime_get_boot_ns)),
    (BPF_LOOP, "5.17", "the SIP inspector and any-port reader under bpf_loop (without it: their bounded builds)", Need::Nothing, Probe::Helper(ProgramType::Xdp, BpfHelper::BPF_FUNC_loop)),
    ("TC classifier programs", "4.1", "learn_registrars (egress learner)", Need::Learner, Probe::Program(ProgramType::SchedClassifier)),
    (MULTI_BUFFER, "5.18", "native XDP above a 3506-byte MTU (jumbo frames), replay of frames above 3520 B", Need::MultiBuffer, Probe::FragsFlag),
    (LOAD_BYTES, "5.18", "reading the fragments of a multi-buffer frame", Need::MultiBuffer, Probe::Helper(ProgramType::Xdp, BpfHelper::BPF_FUNC_xdp_load_bytes)),
];

const MULTI_BUFFER: &str = "XDP multi-buffer (xdp.frags)";
const LOAD_BYTES: &str = "bpf_xdp_load_bytes helper";

const BPF_LOOP: &str = "bpf_loop helper";

impl Probe {
    /// Whether this kernel has it; an error when the probe could not even
    /// ask (no BPF at all, no privileges).
    fn ask(&self) -> Result<bool, String> {
        let why = |e: &dyn std::fmt::Display| format!("{e:#}");
        match self {
            Probe::Program(t) => is_program_supported(*t).map_err(|e| why(&e)),
            Probe::Map(t) => is_map_supported(*t).map_err(|e| why(&e)),
            Probe::Helper(t, h) => is_helper_supported(*t, *h).map_err(|e| why(&e)),
            Probe::FragsFlag => frags_flag_accepted(),
        }
    }
}

/// Loads `r0 = XDP_PASS; exit` as XDP with `BPF_F_XDP_HAS_FRAGS`: kernels
/// before 5.18 refuse the unknown flag with EINVAL. aya's probes take no
/// program flags, hence the bare `bpf(BPF_PROG_LOAD)`.
fn frags_flag_accepted() -> Result<bool, String> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
    let insns: [u64; 2] = [
        u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]),
        u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let license = c"GPL";
    // The union bpf_attr up to `prog_flags` (offset 44), the rest zero.
    let mut attr = [0u32; 12];
    attr[0] = BPF_PROG_TYPE_XDP;
    attr[1] = insns.len() as u32;
    let insns_ptr = insns.as_ptr() as u64;
    let license_ptr = license.as_ptr() as u64;
    attr[2] = insns_ptr as u32;
    attr[3] = (insns_ptr >> 32) as u32;
    attr[4] = license_ptr as u32;
    attr[5] = (license_ptr >> 32) as u32;
    attr[11] = BPF_F_XDP_HAS_FRAGS;
    // SAFETY: `attr` is a valid bpf_attr prefix whose pointers outlive the
    // call; a returned fd is closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: the fd the kernel just returned.
        unsafe { libc::close(fd as i32) };
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) => Ok(false),
        _ => Err(format!("loading a probe program: {err}")),
    }
}

fn run(probe: &Probe) -> bool {
    // A probe that cannot even ask counts as missing; preflight reports
    // privileges and BPF itself, from [`required`].
    probe.ask().unwrap_or(false)
}

/// A feature the object cannot load without, as [`required`] probes it.
pub struct Required {
    pub name: &'static str,
    pub since: &'static str,
    pub used_for: &'static str,
    /// The probe's answer, or why it could not ask.
    pub found: Result<bool, String>,
}

/// Probes, one at a time as the caller iterates (not cached), each feature
/// the object cannot load without, keeping why a probe could not ask.
pub fn required() -> impl Iterator<Item = Required> {
    FEATURES
        .iter()
        .filter(|(_, _, _, need, _)| *need == Need::Always)
        .map(|(name, since, used_for, _, p)| Required {
            name,
            since,
            used_for,
            found: p.ask(),
        })
}

/// Probes every feature (once per process).
pub fn probe() -> &'static [Feature] {
    static FOUND: OnceLock<Vec<Feature>> = OnceLock::new();
    FOUND.get_or_init(|| {
        FEATURES
            .iter()
            .map(|(name, since, used_for, need, p)| Feature {
                name,
                since,
                used_for,
                need: *need,
                present: run(p),
            })
            .collect()
    })
}

fn present(name: &str) -> bool {
    probe().iter().any(|f| f.name == name && f.present)
}

/// Whether the `bpf_loop` builds of the SIP inspector and the any-port
/// reader can load here.
pub fn has_bpf_loop() -> bool {
    present(BPF_LOOP)
}

/// Which builds of the SIP inspector and the any-port reader a load
/// installs. Both builds of each run the same shared step the same number
/// of times, so they give the same verdicts; they differ in what the
/// verifier has to prove.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scanners {
    /// What the daemon runs: the inspector that calls its step (a global
    /// function, verified once on its own) in a loop with a constant bound,
    /// the `bpf_loop` build (the same global step in a callback) in its
    /// stead if this kernel's verifier refuses it; the any-port reader
    /// under `bpf_loop` where the kernel has the helper, the bounded one
    /// otherwise or if refused. Measured on 6.18 the bounded inspector is
    /// the faster one (one call per step, not two).
    #[default]
    Auto,
    /// Both builds that step under `bpf_loop` (tests; fails without it).
    BpfLoop,
    /// Both builds that step in a loop with a constant bound: what kernels
    /// before 5.17 run (tests).
    Bounded,
}

/// The inspector and any-port builds a load tries, in order: the first the
/// verifier accepts is installed.
pub fn scanner_builds(scanners: Scanners) -> (Vec<&'static str>, Vec<&'static str>) {
    use sipguard_common::{
        ANY_PORT_BOUNDED_PROGRAM_NAME as PORT_BOUNDED, ANY_PORT_PROGRAM_NAME as PORT_LOOP,
        INSPECT_BOUNDED_PROGRAM_NAME as INSPECT_BOUNDED, INSPECT_PROGRAM_NAME as INSPECT_LOOP,
    };
    match scanners {
        Scanners::Auto if has_bpf_loop() => (
            vec![INSPECT_BOUNDED, INSPECT_LOOP],
            vec![PORT_LOOP, PORT_BOUNDED],
        ),
        Scanners::BpfLoop => (vec![INSPECT_LOOP], vec![PORT_LOOP]),
        Scanners::Auto | Scanners::Bounded => (vec![INSPECT_BOUNDED], vec![PORT_BOUNDED]),
    }
}

/// Whether the multi-buffer builds of the programs can load here.
pub fn has_multi_buffer() -> bool {
    present(MULTI_BUFFER) && present(LOAD_BYTES)
}

/// Why native XDP on `iface` (MTU `mtu`) cannot run on a kernel without
/// multi-buffer XDP, naming the feature and the release that has it.
pub fn multi_buffer_missing(iface: &str, mtu: u32) -> String {
    let limit = crate::kernel::attach::SINGLE_BUFFER_MTU;
    format!(
        "{iface}: MTU {mtu} is above the {limit} bytes a single-buffer XDP program takes in native mode; \
         that needs the {MULTI_BUFFER} (Linux 5.18+), which this kernel ({}) lacks: \
         use xdp_mode: skb (or auto), or an MTU of at most {limit}",
        kernel_release(),
    )
}

/// The missing features a policy needs, as (what needs it, feature).
pub fn missing_for(cfg: &Config) -> Vec<(&'static str, &'static Feature)> {
    probe()
        .iter()
        .filter(|f| !f.present)
        .filter_map(|f| match f.need {
            Need::Always => Some(("sipguard", f)),
            Need::Nothing => None,
            Need::Learner => cfg
                .learn_registrars
                .enabled
                .then_some(("learn_registrars", f)),
            Need::MultiBuffer => None,
        })
        .collect()
}

/// Refuses a policy this kernel cannot run in full.
pub fn require_for(cfg: &Config) -> Result<()> {
    let missing = missing_for(cfg);
    if missing.is_empty() {
        return Ok(());
    }
    let release = kernel_release();
    let lines: Vec<String> = missing
        .iter()
        .map(|(what, f)| {
            format!(
                "{what} needs the {} (Linux {}+), which this kernel ({release}) lacks",
                f.name, f.since
            )
        })
        .collect();
    bail!(
        "this kernel cannot run the configured policy:\n  {}\n(`sipguard check --kernel` lists what this kernel supports)",
        lines.join("\n  ")
    )
}

/// The report of `sipguard check --kernel`.
pub fn report() -> String {
    let mut out = format!("kernel {}:\n", kernel_release());
    for f in probe() {
        out.push_str(&format!(
            "  {:<4} {:<34} Linux {:<5} {}\n",
            if f.present { "yes" } else { "NO" },
            f.name,
            f.since,
            f.used_for
        ));
    }
    let (inspector, reader) = scanner_builds(Scanners::Auto);
    let how = |name: &str| {
        if name.ends_with("_bounded") {
            "a loop with a constant bound"
        } else {
            "bpf_loop"
        }
    };
    let builds = |names: &[&str]| {
        let mut text = format!("{} (steps under {})", names[0], how(names[0]));
        if let Some(next) = names.get(1) {
            text.push_str(&format!(", else {next}"));
        }
        text
    };
    out.push_str(&format!(
        "SIP inspector: {}; any-port reader: {}\n",
        builds(&inspector),
        builds(&reader)
    ));
    out
}

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
