//! The embedded XDP object and loading it into the kernel with readable
//! errors (a verifier rejection shows the tail of the verifier log).

use anyhow::{anyhow, Context as _, Result};
use aya::{programs::Xdp, Ebpf, EbpfLoader, VerifierLogLevel};
use sipguard_common::PROGRAM_NAME;

/// The object built by build.rs from sipguard-ebpf, embedded once.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipguard"));

/// Name of the empty XDP program in the same object: the benchmark baseline.
pub const EMPTY_PROGRAM_NAME: &str = "empty_pass";

/// Whether the SIP scanner reads one 8-byte load per word: only where the
/// CPU does unaligned loads (x86-64 and arm64 kernels let the verifier
/// accept misaligned packet loads; strict-alignment ones refuse them). The
/// daemon runs on the machine whose kernel loads the program, so the
/// architecture it was built for is the kernel's.
pub const WORD_LOADS_ON_THIS_CPU: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Encode the reason in the return value (BPF_PROG_TEST_RUN only; the
    /// verifier prunes this path from the attached program).
    pub report_reason: bool,
    /// Print the whole verifier log on rejection, not just its tail.
    pub verbose: bool,
    /// Keep the SIP scanner on byte loads even where the CPU does unaligned
    /// 8-byte loads: the path strict-alignment routers run (tests).
    pub byte_loads_only: bool,
    /// Which builds of the inspector and the any-port reader to install
    /// (tests run each).
    pub scanners: crate::kernel::features::Scanners,
}

/// Loads like [`load`], but every map is opened from `pin_dir/<NAME>` when
/// a pin exists (adopting the maps of a running or killed daemon, entries
/// and counters included) and created and pinned there otherwise.
pub fn load_pinned(opts: LoadOptions, pin_dir: &std::path::Path) -> Result<Ebpf> {
    let paths: Vec<(&'static str, std::path::PathBuf)> = sipguard_common::map_names::ALL
        .iter()
        .map(|n| (*n, pin_dir.join(n)))
        .collect();
    let mut loader = EbpfLoader::new();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    load_with(loader, OBJECT, opts)
}

/// Loads the object and the XDP program; maps are created, not pinned.
pub fn load(opts: LoadOptions) -> Result<Ebpf> {
    load_with(EbpfLoader::new(), OBJECT, opts)
}

/// The same for another build of the object (benchmarks compare builds
/// side by side in one run).
pub fn load_object(object: &[u8], opts: LoadOptions) -> Result<Ebpf> {
    load_with(EbpfLoader::new(), object, opts)
}

fn load_with(mut loader: EbpfLoader<'_>, object: &[u8], opts: LoadOptions) -> Result<Ebpf> {
    static ON: u32 = 1;
    static OFF: u32 = 0;
    loader.override_global(
        "REPORT_REASON",
        if opts.report_reason { &ON } else { &OFF },
        true,
    );
    // Older builds lack the global.
    static WORD_LOADS: u32 = WORD_LOADS_ON_THIS_CPU as u32;
    loader.override_global(
        "WORD_LOADS",
        if opts.byte_loads_only {
            &OFF
        } else {
            &WORD_LOADS
        },
        false,
    );
    if opts.verbose {
        loader.verifier_log_level(VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS);
    }
    let mut ebpf = loader.load(object).map_err(|e| {
        anyhow!(
            "cannot load the sipguard eBPF object: {e}\n\
             hint: this needs root (CAP_BPF, CAP_NET_ADMIN) and a kernel with BPF enabled"
        )
    })?;
    load_program(&mut ebpf, PROGRAM_NAME, opts.verbose)?;
    install_tail_programs(&mut ebpf, opts)?;
    Ok(ebpf)
}

/// Loads the SIP inspector and the any-port reader and puts them in the
/// program array the filter tail-calls. Each has two builds of the same
/// shared step (`features::Scanners` says which is tried first); a build
/// the verifier refuses gives way to the next, with a warning naming it.
///
/// Both are always installed: the any-port reader is only reached when
/// `any_udp_port` is on, so a reload can switch the option without
/// loading anything.
fn install_tail_programs(ebpf: &mut Ebpf, opts: LoadOptions) -> Result<()> {
    use sipguard_common::{ANY_PORT_SLOT, INSPECTOR_SLOT};
    let (inspector, any_port) = crate::kernel::features::scanner_builds(opts.scanners);
    install_first(ebpf, &inspector, INSPECTOR_SLOT, opts.verbose)?;
    if ebpf.program(any_port[0]).is_none() {
        // Only older objects given to `load_object` (benchmark
        // comparisons) lack it; the embedded one always has both.
        log::warn!(
            "this object has no {}: any_udp_port would pass as uninspectable",
            any_port[0]
        );
        return Ok(());
    }
    install_first(ebpf, &any_port, ANY_PORT_SLOT, opts.verbose)
}

/// Installs the first of `builds` the verifier accepts in `slot`.
fn install_first(ebpf: &mut Ebpf, builds: &[&str], slot: u32, verbose: bool) -> Result<()> {
    let Some((last, earlier)) = builds.split_last() else {
        anyhow::bail!("no build to install in slot {slot}");
    };
    for name in earlier {
        if ebpf.program(name).is_none() {
            continue; // an older object (benchmark comparisons)
        }
        match install(ebpf, name, slot, verbose) {
            Ok(()) => return Ok(()),
            Err(e) => {
                let first = format!("{e:#}");
                let first = first.lines().next().unwrap_or_default().to_string();
                log::warn!("{first}; installing {last} in its place");
            }
        }
    }
    install(ebpf, last, slot, verbose)
}

/// Loads the multi-buffer (`xdp.frags`) build of the entry point `name`
/// (`sipguard_frags` or `sipguard_rawip_frags`) and, the first time, the
/// multi-buffer inspector and any-port reader into `INSPECTOR_FRAGS`.
/// Loaded only where an interface or a replayed frame needs them: each
/// costs a verification. Refused, naming the feature, on kernels without.
pub fn load_frags(ebpf: &mut Ebpf, name: &str, verbose: bool) -> Result<()> {
    use sipguard_common::{
        map_names::INSPECTOR_FRAGS, ANY_PORT_PROGRAM_NAME_FRAGS, ANY_PORT_SLOT, INSPECTOR_SLOT,
        INSPECT_PROGRAM_NAME_FRAGS,
    };
    if xdp_program(ebpf, name)?.fd().is_ok() {
        return Ok(());
    }
    anyhow::ensure!(
        crate::kernel::features::has_multi_buffer(),
        "{name} needs XDP multi-buffer (xdp.frags, Linux 5.18+), which this kernel ({}) lacks",
        crate::kernel::features::kernel_release()
    );
    if xdp_program(ebpf, INSPECT_PROGRAM_NAME_FRAGS)?.fd().is_err() {
        install_in(
            ebpf,
            INSPECTOR_FRAGS,
            INSPECT_PROGRAM_NAME_FRAGS,
            INSPECTOR_SLOT,
            verbose,
        )?;
        install_in(
            ebpf,
            INSPECTOR_FRAGS,
            ANY_PORT_PROGRAM_NAME_FRAGS,
            ANY_PORT_SLOT,
            verbose,
        )?;
    }
    load_program(ebpf, name, verbose)
}

/// Loads program `name` and puts it in `slot` of the INSPECTOR program
/// array.
fn install(ebpf: &mut Ebpf, name: &str, slot: u32, verbose: bool) -> Result<()> {
    install_in(
        ebpf,
        sipguard_common::map_names::INSPECTOR,
        name,
        slot,
        verbose,
    )
}

fn install_in(ebpf: &mut Ebpf, array: &str, name: &str, slot: u32, verbose: bool) -> Result<()> {
    use aya::maps::ProgramArray;
    load_program(ebpf, name, verbose)?;
    let fd = xdp_program(ebpf, name)?.fd()?.try_clone()?;
    let map = map_mut(ebpf, array)?;
    let mut programs: ProgramArray<&mut aya::maps::MapData> = ProgramArray::try_from(map)?;
    programs
        .set(slot, &fd, 0)
        .with_context(|| format!("installing {name} in slot {slot} of the {array} program array"))
}

/// Takes map `name` out of a loaded object (pin it first if it must outlive
/// the object).
pub fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("map {name} is missing from the eBPF object"))
}

/// Map `name` of a loaded object, borrowed.
pub fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("map {name} is missing from the eBPF object"))
}

/// Loads one program of the object into the kernel (verification).
pub fn load_program(ebpf: &mut Ebpf, name: &str, verbose: bool) -> Result<()> {
    xdp_program(ebpf, name)?
        .load()
        .map_err(|e| verifier_error(name, &e, verbose))
}

fn verifier_error(name: &str, e: &aya::programs::ProgramError, verbose: bool) -> anyhow::Error {
    use aya::programs::ProgramError;
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            anyhow!(
                "{}",
                verifier_message(
                    name,
                    &io_error.to_string(),
                    &verifier_log.to_string(),
                    verbose,
                    release.trim()
                )
            )
        }
        other => anyhow!("cannot load XDP program '{name}': {other}"),
    }
}

/// Lines of the verifier log shown without `-v`: the rejection is at the end.
pub const VERIFIER_TAIL: usize = 20;

/// The message for a verifier rejection: the tail of the log (all of it
/// with `-v`), then what to do.
pub fn verifier_message(name: &str, error: &str, log: &str, verbose: bool, kernel: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown = if verbose {
        &lines[..]
    } else {
        &lines[lines.len().saturating_sub(VERIFIER_TAIL)..]
    };
    let which = if verbose || shown.len() == lines.len() {
        format!("complete, {} lines", lines.len())
    } else {
        format!(
            "last {} of {} lines; `sipguard -v run` prints all",
            shown.len(),
            lines.len()
        )
    };
    let body = if lines.is_empty() {
        "(the kernel returned no log)".to_string()
    } else {
        shown.join("\n")
    };
    format!(
        "the kernel's verifier rejected XDP program '{name}': {error}\n\
         --- verifier log ({which}) ---\n{body}\n---\n\
         What to do: sipguard needs Linux 5.10 or newer (this kernel: {kernel}; `sipguard check --kernel` shows what it lacks); on an older kernel, upgrade it. \
         On a newer one this is a bug in sipguard: please report it with the output of `sipguard -v run`."
    )
}

pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program '{name}' is missing from the embedded object"))?
        .try_into()
        .context("program has an unexpected type")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(n: usize) -> String {
        (1..=n)
            .map(|i| format!("{i}: (b7) r0 = {i}\n"))
            .collect::<String>()
            + "R0 !read_ok\nprocessed 42 insns\n"
    }

    #[test]
    fn rejection_shows_the_tail_and_what_to_do() {
        let m = verifier_message(
            "sipguard",
            "Permission denied (os error 13)",
            &log_of(100),
            false,
            "6.18.0",
        );
        assert!(
            m.contains("rejected XDP program 'sipguard': Permission denied"),
            "{m}"
        );
        assert!(
            m.contains("last 20 of 102 lines; `sipguard -v run` prints all"),
            "{m}"
        );
        assert!(
            m.contains("R0 !read_ok\nprocessed 42 insns\n---"),
            "the end of the log is shown: {m}"
        );
        assert!(
            m.contains("100: (b7)") && !m.contains("\n80: (b7)"),
            "only the tail: {m}"
        );
        assert!(
            m.contains("What to do") && m.contains("6.18.0") && m.contains("sipguard -v run"),
            "{m}"
        );
    }

    #[test]
    fn verbose_shows_everything() {
        let m = verifier_message("sipguard", "e", &log_of(100), true, "6.18.0");
        assert!(
            m.contains("complete, 102 lines") && m.contains("\n1: (b7) r0 = 1\n"),
            "{m}"
        );
        let short = verifier_message("sipguard", "e", &log_of(3), false, "6.18.0");
        assert!(short.contains("complete, 5 lines"), "{short}");
        let empty = verifier_message("sipguard", "e", "", false, "6.18.0");
        assert!(empty.contains("no log"), "{empty}");
    }
}
