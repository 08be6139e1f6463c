//! A real Debian 12 with systemd as PID 1, booted with systemd-nspawn on
//! the host kernel, for testing the package the way an admin installs it.
//!
//! The root filesystem is made once with debootstrap and cached under
//! target/systemd-rootfs/; every boot runs on a fresh copy of it. The
//! container gets a private network namespace (the test adds its own veth),
//! a bpffs instance of its own at /sys/fs/bpf (its /sys is read-only, so
//! systemd inside cannot mount one), and only the capabilities its systemd
//! needs plus CAP_BPF and CAP_PERFMON for the unit to narrow down to.
//! Everything is torn down on drop, even when the test failed.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::harness::{
    netns::{self, Netns},
    process::{assert_success, run_ok},
};

pub const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// procps: the unit's ExecReload runs /bin/kill, which the package depends
/// on and the container cannot download (no network).
const INCLUDE: &str = "--include=systemd,systemd-sysv,dbus,iproute2,procps";
/// Written last, holding INCLUDE: a tree without it (or made with another
/// list) is made again.
const COMPLETE: &str = ".sipguard-rootfs-complete";

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// True when a program can be run (looked up on PATH, /usr/sbin too).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("PATH=$PATH:/usr/sbin:/sbin command -v {program}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cached minimal Debian with systemd, made by debootstrap on first use
/// (about a minute; needs the Debian archive).
pub fn rootfs() -> PathBuf {
    let dir = target_dir().join("systemd-rootfs");
    let root = dir.join(SUITE);
    if std::fs::read_to_string(root.join(COMPLETE)).is_ok_and(|s| s == INCLUDE) {
        return root;
    }
    let tmp = dir.join(format!("{SUITE}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = Instant::now();
    run_ok(
        Command::new("debootstrap")
            .args(["--variant=minbase", INCLUDE, SUITE])
            .arg(&tmp)
            .arg(MIRROR),
    );
    std::fs::write(tmp.join(COMPLETE), INCLUDE).unwrap();
    std::fs::rename(&tmp, &root).unwrap();
    eprintln!("debootstrap {SUITE}: {:.1?}", t0.elapsed());
    root
}

pub struct Os {
    dir: PathBuf,
    nspawn: Child,
    /// The container's systemd (PID 1 inside), as the host sees it.
    pub init: u32,
    /// The bpffs mounted at /sys/fs/bpf inside, seen from the host.
    pub bpffs: PathBuf,
    pub boot_time: Duration,
}

impl Os {
    /// Boots a copy of `rootfs` with `share` bound read-only at /mnt/share
    /// and waits until `systemctl is-system-running` says running.
    pub fn boot(rootfs: &Path, share: &Path) -> Os {
        let dir = std::env::temp_dir().join(format!("sipguard-os-{}", netns::unique("")));
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.join("root");
        run_ok(Command::new("cp").arg("-a").arg(rootfs).arg(&root));
        let bpffs = dir.join("bpffs");
        std::fs::create_dir_all(&bpffs).unwrap();
        run_ok(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&bpffs));
        let console = std::fs::File::create(dir.join("console.log")).unwrap();
        let t0 = Instant::now();
        let nspawn = Command::new("systemd-nspawn")
            .args([
                // The host has no systemd to register with or to make a scope.
                "--register=no",
                "--keep-unit",
                "--boot",
                "--private-network",
                "--hostname=sipguard-test",
                // On top of nspawn's default set (what systemd needs):
                // what the unit keeps for itself.
                "--capability=CAP_BPF,CAP_PERFMON",
                // nspawn's seccomp filter refuses bpf(2) unless allowed.
                "--system-call-filter=bpf",
                "--console=pipe",
            ])
            .arg("-D")
            .arg(&root)
            .arg(format!("--bind={}:/sys/fs/bpf", bpffs.display()))
            .arg(format!("--bind-ro={}:/mnt/share", share.display()))
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("spawning systemd-nspawn");
        let mut os = Os {
            dir,
            nspawn,
            init: 0,
            bpffs,
            boot_time: Duration::ZERO,
        };
        let pid = os.nspawn.id();
        while os.init == 0 {
            if let Ok(Some(st)) = os.nspawn.try_wait() {
                panic!("systemd-nspawn exited ({st}):\n{}", os.console());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no init under systemd-nspawn after 30 s:\n{}",
                os.console()
            );
            // nspawn's first child is a helper that forks the container's
            // init: wait for a child that is systemd.
            os.init = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
                .find(|c| {
                    std::fs::read_to_string(format!("/proc/{c}/comm"))
                        .is_ok_and(|n| n.trim() == "systemd")
                })
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(20));
        }
        // Until systemd has its bus socket, systemctl cannot even ask.
        let state = loop {
            let out = os.sh("timeout 60 systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !state.is_empty() || t0.elapsed() > Duration::from_secs(60) {
                break state;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        os.boot_time = t0.elapsed();
        assert_eq!(
            state,
            "running",
            "systemd did not come up cleanly ({state}):\n{}\n{}",
            os.sh_ok("systemctl --failed --no-pager"),
            os.console()
        );
        os
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// `sh -c script` inside the container (all its namespaces).
    pub fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "/bin/sh", "-c", script])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("running nsenter")
    }

    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert_success(&out, format_args!("in the container: {script}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The container's network namespace under a name of its own in
    /// /run/netns, so the namespace helpers (veth, sockets) work with it.
    pub fn netns(&self) -> Netns {
        let name = netns::unique("os");
        netns::ip(&["netns", "attach", &name, &self.init.to_string()]);
        Netns { name }
    }
}

impl Drop for Os {
    fn drop(&mut self) {
        // A clean shutdown first; the tree is thrown away, so one that
        // lingers is cut short (-ff: reboot(2) at once), and nspawn itself
        // (our child, by PID) is the last resort.
        let exited = |os: &mut Os, script: &str, wait: Duration| {
            let _ = os.sh(script);
            let t0 = Instant::now();
            while t0.elapsed() < wait {
                if matches!(os.nspawn.try_wait(), Ok(Some(_))) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        };
        if !exited(self, "systemctl poweroff", Duration::from_secs(10))
            && !exited(self, "systemctl poweroff -ff", Duration::from_secs(5))
        {
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        let _ = Command::new("umount").arg(&self.bpffs).status();
        if std::env::var_os("SIPGUARD_OS_KEEP").is_some() {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
