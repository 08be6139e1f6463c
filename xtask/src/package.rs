//! `cargo xtask package [--arch amd64|arm64] [--version-suffix S]`: the
//! Debian package (cargo-deb, metadata in sipguard/Cargo.toml) and a plain
//! tarball for other distributions, both under target/package/.
//!
//! The man pages and completions come from the host build's hidden
//! `sipguard generate` verb, so an arm64 package needs no arm64 machine to
//! run it on. The cross linker is given to cargo through the environment of
//! this one build only, never through a global cargo config.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _, Result};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    fn parse(s: &str) -> Result<Arch> {
        match s {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            _ => bail!("unknown architecture '{s}' (known: amd64, arm64)"),
        }
    }

    fn host() -> Result<Arch> {
        Arch::parse(env::consts::ARCH)
    }

    /// Debian's name.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    pub fn triple(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Debian's cross gcc (package gcc-aarch64-linux-gnu) links and strips.
    fn gnu_prefix(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu-",
            Arch::Arm64 => "aarch64-linux-gnu-",
        }
    }
}

pub struct Built {
    pub deb: PathBuf,
    pub tarball: PathBuf,
}

pub fn main(root: &Path, args: &[String]) -> Result<()> {
    let mut arch = Arch::host()?;
    let mut suffix = String::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--arch" => arch = Arch::parse(it.next().context("--arch needs a value")?)?,
            "--version-suffix" => {
                suffix = it.next().context("--version-suffix needs a value")?.clone()
            }
            _ => bail!("unexpected argument '{a}' (usage: package [--arch amd64|arm64] [--version-suffix S])"),
        }
    }
    let built = build(root, arch, &suffix)?;
    println!("{}", built.deb.display());
    println!("{}", built.tarball.display());
    Ok(())
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

/// The Debian version: the crate's, `~suffix` sorting before it (so a test
/// can build an older package from the same tree), revision 1.
pub fn deb_version(suffix: &str) -> String {
    if suffix.is_empty() {
        format!("{VERSION}-1")
    } else {
        format!("{VERSION}~{suffix}-1")
    }
}

pub fn build(root: &Path, arch: Arch, suffix: &str) -> Result<Built> {
    let target = root.join("target");
    let out = target.join("package");
    let generated = out.join("generated");
    let host = Arch::host()?;

    // The host binary writes the man pages and completions.
    run(cargo()
        .current_dir(root)
        .args(["build", "--release", "-p", "sipguard"]))?;
    let host_bin = target.join("release").join("sipguard");
    let binary = if arch == host {
        host_bin.clone()
    } else {
        let linker = format!("{}gcc", arch.gnu_prefix());
        ensure!(
            which(&linker),
            "{linker} is missing: install gcc-aarch64-linux-gnu (scripts/setup.sh --tests does)"
        );
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            arch.triple().to_uppercase().replace('-', "_")
        );
        run(cargo()
            .current_dir(root)
            .env(var, &linker)
            .args(["build", "--release", "-p", "sipguard", "--target"])
            .arg(arch.triple()))?;
        target.join(arch.triple()).join("release").join("sipguard")
    };

    if generated.exists() {
        std::fs::remove_dir_all(&generated)?;
    }
    let man = generated.join("man");
    let completions = generated.join("completions");
    run(Command::new(&host_bin)
        .args(["generate", "man"])
        .arg(&man)
        .stdout(std::process::Stdio::null()))?;
    run(Command::new("gzip").arg("-9n").args(files(&man)?))?;
    run(Command::new(&host_bin)
        .args(["generate", "completions"])
        .arg(&completions)
        .stdout(std::process::Stdio::null()))?;
    let version = deb_version(suffix);
    write_changelog(root, &generated.join("changelog"), &version)?;

    let deb = out.join(format!("sipguard_{version}_{}.deb", arch.debian()));
    let mut deb_cmd = cargo();
    deb_cmd
        .current_dir(root)
        .args(["deb", "-p", "sipguard", "--no-build", "--deb-version"])
        .arg(&version)
        .arg("--output")
        .arg(&deb);
    if arch != host {
        deb_cmd.args(["--target", arch.triple()]);
    }
    run(&mut deb_cmd).context("cargo deb (install it with: cargo install cargo-deb --locked)")?;

    let tarball = tarball(root, &out, &generated, &binary, arch, &version)?;
    Ok(Built { deb, tarball })
}

fn which(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// Debian wants a changelog in every package; this one names the release
/// and is dated by the commit it was built from (reproducible).
fn write_changelog(root: &Path, path: &Path, version: &str) -> Result<()> {
    let date = Command::new("git")
        .current_dir(root)
        .args(["log", "-1", "--format=%aD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into());
    let text = format!(
        "sipguard ({version}) unstable; urgency=medium\n\n  * sipguard {VERSION}: see /usr/share/doc/sipguard/README.md.\n\n -- sipguard developers <sipguard@example.org>  {date}\n"
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// sipguard-VERSION-TRIPLE.tar.gz: the binary, unit, config, man pages,
/// completions and docs in the layout of the Debian package, under one
/// top directory, for systems without dpkg.
fn tarball(
    root: &Path,
    out: &Path,
    generated: &Path,
    binary: &Path,
    arch: Arch,
    version: &str,
) -> Result<PathBuf> {
    let name = format!("sipguard-{version}-{}", arch.triple());
    let stage = out.join("stage").join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    let copy = |from: &Path, to: &str| -> Result<()> {
        let dest = stage.join(to);
        std::fs::create_dir_all(dest.parent().expect("relative path"))?;
        std::fs::copy(from, &dest)
            .with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
        Ok(())
    };
    copy(binary, "usr/bin/sipguard")?;
    run(Command::new(format!("{}strip", arch.gnu_prefix())).arg(stage.join("usr/bin/sipguard")))
        .or_else(|_| run(Command::new("strip").arg(stage.join("usr/bin/sipguard"))))?;
    let comp = generated.join("completions");
    for (from, to) in [
        (
            root.join("contrib/sipguard.service"),
            "lib/systemd/system/sipguard.service",
        ),
        (
            root.join("contrib/sipguard.yaml"),
            "etc/sipguard/sipguard.yaml",
        ),
        (
            comp.join("sipguard.bash"),
            "usr/share/bash-completion/completions/sipguard",
        ),
        (
            comp.join("_sipguard"),
            "usr/share/zsh/vendor-completions/_sipguard",
        ),
        (
            comp.join("sipguard.fish"),
            "usr/share/fish/vendor_completions.d/sipguard.fish",
        ),
        (root.join("README.md"), "usr/share/doc/sipguard/README.md"),
    ] {
        copy(&from, to)?;
    }
    for page in files(&generated.join("man"))? {
        let file = page
            .file_name()
            .expect("file")
            .to_string_lossy()
            .to_string();
        copy(&page, &format!("usr/share/man/man1/{file}"))?;
    }

    for doc in files(&root.join("docs"))? {
        if doc.extension().is_some_and(|e| e == "md") {
            let file = doc.file_name().expect("file").to_string_lossy().to_string();
            copy(&doc, &format!("usr/share/doc/sipguard/{file}"))?;
        }
    }
    let tarball = out.join(format!("{name}.tar.gz"));
    run(Command::new("tar")
        .current_dir(out.join("stage"))
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-czf",
        ])
        .arg(&tarball)
        .arg(&name))?;
    std::fs::remove_dir_all(out.join("stage"))?;
    Ok(tarball)
}
