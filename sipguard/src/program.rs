//! The embedded XDP object and loading it into the kernel with readable
//! errors (a verifier rejection shows the tail of the verifier log).

use anyhow::{anyhow, Context as _, Result};
use aya::{programs::Xdp, Ebpf, EbpfLoader, VerifierLogLevel};
use sipguard_common::PROGRAM_NAME;

/// The object built by build.rs from sipguard-ebpf, embedded once.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipguard"));

/// Name of the empty XDP program in the same object: the benchmark baseline.
pub const EMPTY_PROGRAM_NAME: &str = "empty_pass";

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Encode the reason in the return value (BPF_PROG_TEST_RUN only; the
    /// verifier prunes this path from the attached program).
    pub report_reason: bool,
    /// Print the whole verifier log on rejection, not just its tail.
    pub verbose: bool,
}

/// Loads the object and the XDP program; maps are created, not pinned.
pub fn load(opts: LoadOptions) -> Result<Ebpf> {
    load_object(OBJECT, opts)
}

/// The same for another build of the object (benchmarks compare builds
/// side by side in one run).
pub fn load_object(object: &[u8], opts: LoadOptions) -> Result<Ebpf> {
    let report: u32 = opts.report_reason as u32;
    let mut loader = EbpfLoader::new();
    loader.override_global("REPORT_REASON", &report, true);
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
    Ok(ebpf)
}

/// Loads one program of the object into the kernel (verification).
pub fn load_program(ebpf: &mut Ebpf, name: &str, verbose: bool) -> Result<()> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program '{name}' is missing from the embedded object"))?
        .try_into()
        .context("program has an unexpected type")?;
    prog.load().map_err(|e| verifier_error(name, &e, verbose))
}

fn verifier_error(name: &str, e: &aya::programs::ProgramError, verbose: bool) -> anyhow::Error {
    use aya::programs::ProgramError;
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().collect();
            let shown = if verbose { &lines[..] } else { &lines[lines.len().saturating_sub(20)..] };
            anyhow!(
                "the kernel's verifier rejected XDP program '{name}': {io_error}\n\
                 --- verifier log ({}) ---\n{}\n---\n\
                 This is a bug in sipguard or a kernel too old for it (needs 5.17+); \
                 please report it with the output of `sipguard -v run`.",
                if verbose { "complete" } else { "last 20 lines; -v prints all" },
                shown.join("\n")
            )
        }
        other => anyhow!("cannot load XDP program '{name}': {other}"),
    }
}

pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program '{name}' is missing from the embedded object"))?
        .try_into()
        .context("program has an unexpected type")
}
