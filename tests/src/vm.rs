//! Booting a real distribution kernel under qemu with an initramfs built
//! here: busybox, the sipguard binaries and their shared libraries, the
//! kernel's own modules and an `/init` that runs the in-VM suite and powers
//! off. The VM reports on its serial console with lines starting
//! [`RESULT_PREFIX`]; the host reads them back as the test's outcome.
//!
//! Kernels come from `scripts/vm-kernels.sh` (Debian packages fetched with a
//! private apt configuration) into `target/vm/<arch>/<name>/`.

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// Every line the VM reports starts with this; the rest is `key=value` words.
pub const RESULT_PREFIX: &str = "SIPGUARD-VM:";

/// A guest architecture: which qemu, which machine, which console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The directory name under `target/vm/` and the `uname -m` of the guest.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    pub fn qemu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// Software emulation: the machines this runs on have a paravirtual KVM
    /// that cannot run stock kernels. The arm64 guest is a Cortex-A72, the
    /// core of a Raspberry Pi 4 and of many small routers; `-cpu max` would
    /// add features (pointer authentication) that are slow to emulate and
    /// that such routers lack.
    fn machine_args(self) -> Vec<&'static str> {
        match self {
            Arch::X86_64 => vec!["-accel", "tcg,thread=multi", "-cpu", "max"],
            Arch::Aarch64 => vec![
                "-M",
                "virt",
                "-accel",
                "tcg,thread=multi",
                "-cpu",
                "cortex-a72",
            ],
        }
    }

    fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    /// The host architecture, when the in-VM binaries built here run there.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The Rust target the guest's binaries are built for.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Debian's cross gcc, which links a build for this architecture on
    /// another one (gcc-aarch64-linux-gnu), and its sysroot with the
    /// architecture's glibc (libc6-arm64-cross).
    fn cross_gcc(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu-gcc",
            Arch::Aarch64 => "aarch64-linux-gnu-gcc",
        }
    }

    /// Debian's name.
    fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    fn cross_sysroot(self) -> PathBuf {
        PathBuf::from("/usr").join(format!("{}-linux-gnu", self.name()))
    }

    /// The static busybox the guest's /init runs on: the host's own
    /// (busybox-static) for the host's architecture, otherwise the one
    /// `scripts/vm-kernels.sh` fetched for the guest.
    pub fn busybox(self) -> PathBuf {
        if Arch::host() == Some(self) {
            PathBuf::from("/bin/busybox")
        } else {
            vm_dir().join(self.name()).join("busybox")
        }
    }
}

/// A kernel unpacked by `scripts/vm-kernels.sh`.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub arch: Arch,
    /// Matrix row name: `5.10`, `6.1`, `6.12`.
    pub name: String,
    pub dir: PathBuf,
    /// The Debian package it came from.
    pub package: String,
}

pub fn vm_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SIPGUARD_VM_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("vm")
}

impl Kernel {
    /// The kernel of matrix row `name`, or why it is not there.
    pub fn find(arch: Arch, name: &str) -> Result<Kernel> {
        let dir = vm_dir().join(arch.name()).join(name);
        if !dir.join("vmlinuz").is_file() {
            bail!(
                "no kernel at {} (run scripts/vm-kernels.sh {})",
                dir.display(),
                arch.name()
            );
        }
        let package = fs::read_to_string(dir.join("package"))
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(Kernel {
            arch,
            name: name.into(),
            dir,
            package,
        })
    }

    /// The row's label in messages: architecture and kernel.
    pub fn row(&self) -> String {
        format!("{} {}", self.arch.name(), self.name)
    }

    /// Module file names in load order (dependencies first).
    pub fn modules(&self) -> Result<Vec<String>> {
        let order = fs::read_to_string(self.dir.join("modules").join("order"))
            .with_context(|| format!("reading the module order of {}", self.dir.display()))?;
        Ok(order
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }
}

/// An initramfs in the making: a list of entries written as one newc cpio.
pub struct Initramfs {
    arch: Arch,
    dirs: BTreeSet<String>,
    files: Vec<(String, u32, Vec<u8>)>,
    added: BTreeSet<String>,
}

impl Initramfs {
    /// An initramfs for a guest of `arch`: its executables' shared libraries
    /// come from the host when the architecture is the host's, otherwise
    /// from the cross sysroot.
    pub fn new(arch: Arch) -> Initramfs {
        let mut i = Initramfs {
            arch,
            dirs: BTreeSet::new(),
            files: Vec::new(),
            added: BTreeSet::new(),
        };
        for d in [
            "bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "etc",
        ] {
            i.dir(d);
        }
        i
    }

    /// A directory and its parents.
    pub fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        let mut acc = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.dirs.insert(acc.clone());
        }
    }

    pub fn bytes(&mut self, dest: &str, mode: u32, data: Vec<u8>) {
        let dest = dest.trim_start_matches('/').to_string();
        if let Some((parent, _)) = dest.rsplit_once('/') {
            self.dir(parent);
        }
        if self.added.insert(dest.clone()) {
            self.files.push((dest, mode, data));
        }
    }

    pub fn file(&mut self, dest: &str, src: &Path, mode: u32) -> Result<()> {
        let data = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        self.bytes(dest, mode, data);
        Ok(())
    }

    /// An executable and every shared library it needs.
    pub fn executable(&mut self, dest: &str, src: &Path) -> Result<()> {
        self.file(dest, src, 0o755)?;
        if Arch::host() == Some(self.arch) {
            self.host_libraries(src)
        } else {
            self.sysroot_libraries(src)
        }
    }

    /// What `ldd` says, each library at its host path (the guest runs the
    /// host's userland).
    fn host_libraries(&mut self, src: &Path) -> Result<()> {
        let out = Command::new("ldd")
            .arg(src)
            .output()
            .context("running ldd")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "not a dynamic executable": nothing to add.
        for line in text.lines() {
            let lib = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/')),
            };
            let Some(lib) = lib.filter(|p| p.starts_with('/')) else {
                continue;
            };
            // Libraries are often symlinks: store the target's bytes under
            // the name the loader asks for.
            self.file(lib, Path::new(lib), 0o755)?;
        }
        Ok(())
    }

    /// A foreign executable cannot run `ldd` here: its program interpreter
    /// and `NEEDED` libraries (read by binutils' `readelf`, which reads any
    /// architecture), and theirs, come from the cross sysroot into `/lib`,
    /// a directory the guest's loader always searches.
    fn sysroot_libraries(&mut self, src: &Path) -> Result<()> {
        let libdir = self.arch.cross_sysroot().join("lib");
        let mut pending = vec![src.to_path_buf()];
        while let Some(elf) = pending.pop() {
            let out = Command::new("readelf")
                .args(["--wide", "--dynamic", "--program-headers"])
                .arg(&elf)
                .output()
                .context("running readelf (binutils)")?;
            if !out.status.success() {
                bail!(
                    "readelf {}: {}",
                    elf.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines() {
                let dest = if let Some(rest) = line.split_once("program interpreter: ") {
                    rest.1.trim_end_matches(']').to_string()
                } else if line.contains("(NEEDED)") {
                    let Some((_, name)) = line.split_once('[') else {
                        continue;
                    };
                    format!("/lib/{}", name.trim_end_matches(']'))
                } else {
                    continue;
                };
                if self.added.contains(dest.trim_start_matches('/')) {
                    continue;
                }
                let name = Path::new(&dest)
                    .file_name()
                    .context("a library path without a name")?;
                let lib = libdir.join(name);
                if !lib.is_file() {
                    bail!(
                        "{} needs {dest}, which {} lacks (libc6-{}-cross)",
                        elf.display(),
                        libdir.display(),
                        self.arch.debian()
                    );
                }
                self.file(&dest, &lib, 0o755)?;
                pending.push(lib);
            }
        }
        Ok(())
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut w = std::io::BufWriter::new(file);
        let mut ino = 1u32;
        for d in &self.dirs {
            let b = cpio::newc::Builder::new(d).ino(ino).mode(0o040755).nlink(2);
            ino += 1;
            b.write(&mut w, 0).finish()?;
        }
        for (name, mode, data) in &self.files {
            let b = cpio::newc::Builder::new(name)
                .ino(ino)
                .mode(0o100000 | mode)
                .nlink(1);
            ino += 1;
            let mut fw = b.write(&mut w, data.len() as u32);
            fw.write_all(data)?;
            fw.finish()?;
        }
        cpio::newc::trailer(&mut w)?;
        w.flush()?;
        Ok(())
    }
}

/// What a VM run gave: every console line and the result lines among them.
pub struct VmRun {
    pub console: Vec<String>,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl VmRun {
    /// The result lines (without the prefix), in order.
    pub fn results(&self) -> Vec<&str> {
        self.console
            .iter()
            .filter_map(|l| l.split_once(RESULT_PREFIX).map(|(_, r)| r.trim()))
            .collect()
    }

    /// The last `n` console lines, for a failure message.
    pub fn tail(&self, n: usize) -> String {
        let start = self.console.len().saturating_sub(n);
        self.console[start..].join("\n")
    }
}

/// Boots `kernel` with `initrd` and waits for it to power off, at most
/// `timeout`. Console lines are echoed to stderr with the kernel's name as
/// they come, so a slow run shows where it is.
pub fn boot(kernel: &Kernel, initrd: &Path, memory_mb: u32, timeout: Duration) -> Result<VmRun> {
    let arch = kernel.arch;
    let append = format!(
        "console={} panic=-1 oops=panic loglevel=4 rdinit=/init",
        arch.console()
    );
    let mut cmd = Command::new(arch.qemu());
    cmd.args(arch.machine_args())
        .args(["-smp", "2", "-m", &memory_mb.to_string()])
        .args([
            "-nographic",
            "-no-reboot",
            "-nodefaults",
            "-serial",
            "stdio",
        ])
        .args(["-net", "none"])
        .arg("-kernel")
        .arg(kernel.dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", arch.qemu()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let tx2 = tx.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx2.send(format!("qemu: {line}"));
        }
    });
    let mut console = Vec::new();
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_string();
                eprintln!(
                    "[{} {:>5.1}s] {line}",
                    kernel.row(),
                    start.elapsed().as_secs_f64()
                );
                console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if start.elapsed() >= timeout {
                    timed_out = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if timed_out {
        // Our own child, by its handle.
        let _ = child.kill();
    }
    let _ = child.wait();
    let _ = reader.join();
    let _ = err_reader.join();
    Ok(VmRun {
        console,
        elapsed: start.elapsed(),
        timed_out,
    })
}

/// Path to a binary of this workspace, built once (debug profile) with
/// `cargo build -p PACKAGE --bin BIN`.
pub fn workspace_bin(package: &str, bin: &str) -> Result<PathBuf> {
    Ok(cargo_bin(package, bin, &[], None)?.exe)
}

/// A binary built by cargo and the eBPF object its build embedded.
pub struct Built {
    pub exe: PathBuf,
    /// The object `sipguard/build.rs` wrote (`OUT_DIR/sipguard`).
    pub ebpf_object: PathBuf,
}

/// A binary of this workspace for a guest of `arch`, cross-built in the
/// release profile with the cross gcc as linker, given to cargo for this
/// build only: the build `cargo xtask package --arch arm64` makes of the
/// packaged binary, so the two share every compiled crate and, for
/// `sipguard`, the output file itself.
pub fn cross_bin(arch: Arch, package: &str, bin: &str) -> Result<Built> {
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        arch.triple().to_uppercase().replace('-', "_")
    );
    cargo_bin(
        package,
        bin,
        &["--release", "--target", arch.triple()],
        Some((&linker_var, arch.cross_gcc())),
    )
}
/// What the cross build of [`cross_bin`] needs and this machine lacks, if
/// anything: the Rust target, the cross gcc and the sysroot's glibc.
pub fn cross_toolchain_missing(arch: Arch) -> Option<String> {
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !targets.lines().any(|t| t.trim() == arch.triple()) {
        return Some(format!(
            "the Rust target {} is not installed (rustup target add {})",
            arch.triple(),
            arch.triple()
        ));
    }
    if Command::new(arch.cross_gcc())
        .arg("--version")
        .output()
        .is_err()
    {
        return Some(format!(
            "{} is missing (gcc-{}-linux-gnu)",
            arch.cross_gcc(),
            arch.name()
        ));
    }
    let libc = arch.cross_sysroot().join("lib").join("libc.so.6");
    if !libc.is_file() {
        return Some(format!(
            "{} is missing (libc6-{}-cross)",
            libc.display(),
            arch.debian()
        ));
    }
    None
}

fn cargo_bin(package: &str, bin: &str, args: &[&str], env: Option<(&str, &str)>) -> Result<Built> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .args(args)
        .arg("--message-format=json");
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cmd.output().context("running cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build -p {package} --bin {bin} {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (mut exe, mut ebpf_object) = (None, None);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] == "compiler-artifact" && v["target"]["name"] == bin {
            exe = v["executable"].as_str().map(PathBuf::from);
        }
        // Reported for a fresh build script too.
        if v["reason"] == "build-script-executed"
            && v["package_id"]
                .as_str()
                .is_some_and(|id| id.contains("/sipguard#") || id.contains("/sipguard "))
        {
            ebpf_object = v["out_dir"]
                .as_str()
                .map(|d| PathBuf::from(d).join("sipguard"));
        }
    }
    Ok(Built {
        exe: exe.with_context(|| format!("cargo build did not report the {bin} executable"))?,
        ebpf_object: ebpf_object.context(
            "cargo build did not report the output directory of sipguard's build script",
        )?,
    })
}
