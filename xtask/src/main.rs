//! `cargo xtask <command>`: developer tasks.
//!
//! - `build-ebpf [--out DIR]`: build the XDP object on its own (same
//!   definition as the daemon's build script) and print its path.
//! - `lab [ARGS]`: run the namespace lab (tests/tests/lab.rs: SIPVicious
//!   against SIPp and Kamailio through sipguard) one scenario at a time and
//!   print its reports; ARGS go to the test binary (a name filter,
//!   `--include-ignored`, ...). Needs root.
//! - `bench [--flood] [--quick] [--out DIR]`: per-packet cost of the XDP
//!   program by packet class, and with `--flood` the veth flood against
//!   iptables/nftables (release build of the `bench` binary in the tests
//!   crate; needs root; `-- --help` lists the options).
//! - `package [--arch amd64|arm64] [--version-suffix S]`: the Debian package
//!   and a tarball under target/package/ (package.rs, docs/INSTALL.md).

mod package;

use std::{env, path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build-ebpf") => build_ebpf(&args[1..]),
        Some("lab") => lab(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("package") => package::main(&workspace_root(), &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask build-ebpf [--out DIR] | cargo xtask bench [--flood] [--quick] | cargo xtask lab [TEST-BINARY-ARGS] | cargo xtask package [--arch amd64|arm64]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    // `cargo run` sets the variable at run time too; the value compiled in
    // can name another checkout when a target directory was copied from
    // there (cargo then does not rebuild xtask), and every command would
    // run in that other workspace.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn build_ebpf(args: &[String]) -> anyhow::Result<()> {
    let root = workspace_root();
    let out = match args {
        [] => root.join("target").join("ebpf"),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => anyhow::bail!("unexpected arguments {args:?} (usage: build-ebpf [--out DIR])"),
    };
    std::fs::create_dir_all(&out)?;
    // aya-build speaks the build-script protocol: give it the environment a
    // build script would have for this host.
    // SAFETY: single-threaded at this point.
    unsafe {
        env::set_var("OUT_DIR", &out);
        env::set_var(
            "CARGO_CFG_TARGET_ENDIAN",
            if cfg!(target_endian = "big") {
                "big"
            } else {
                "little"
            },
        );
        env::set_var("CARGO_CFG_TARGET_ARCH", env::consts::ARCH);
    }
    xtask::build_ebpf(&root)?;
    let obj = out.join(xtask::EBPF_OBJECT);
    anyhow::ensure!(
        obj.is_file(),
        "build finished but {} is missing",
        obj.display()
    );
    println!("{}", obj.display());
    Ok(())
}

/// Runs `cargo ARGS EXTRA` (ARGS split at spaces) in the workspace root,
/// with the cargo that runs xtask; unless it succeeds, an error saying
/// `what` failed, then `hint`.
fn cargo_in_workspace(args: &str, extra: &[String], what: &str, hint: &str) -> anyhow::Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args(args.split(' '))
        .args(extra)
        .status()?;
    anyhow::ensure!(status.success(), "{what} failed ({status}){hint}");
    Ok(())
}

fn lab(args: &[String]) -> anyhow::Result<()> {
    // One scenario at a time so the reports do not interleave.
    cargo_in_workspace(
        "test -p sipguard-tests --test lab -- --nocapture --test-threads=1",
        args,
        "the lab",
        "; set SIPGUARD_LAB_KEEP=1 to keep its logs and captures",
    )
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    cargo_in_workspace(
        "run --release --quiet -p sipguard-tests --bin bench --",
        args,
        "bench",
        "",
    )
}
