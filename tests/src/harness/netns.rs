//! Network namespaces joined by veth pairs, created and always removed by
//! the test that uses them. Traffic only ever goes between addresses inside
//! these namespaces.

use std::{
    fs::File,
    net::IpAddr,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    thread::JoinHandle,
};

use super::process::{assert_success, run_ok};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short prefix for names: `sg<pid><n>` (interface names ≤ 15).
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("sg{}{}{}", std::process::id() % 100000, n, tag)
}

pub fn ip(args: &[&str]) -> Output {
    run_ok(Command::new("ip").args(args))
}

/// A network namespace, deleted (with its interfaces) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside the namespace, asserting success.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let out = self.exec_unchecked(cmd);
        assert_success(&out, format_args!("{} (in {})", cmd.join(" "), self.name));
        out
    }

    pub fn exec_unchecked(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("running ip netns exec")
    }

    /// A command that joins only this network namespace (keeps the host's
    /// /sys, so pins under /sys/fs/bpf stay visible to other processes).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs `f` on a thread that has joined this namespace; sockets it
    /// creates belong to the namespace and may be used from anywhere.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("thread in netns panicked")
    }

    /// Like [`Netns::run`], without waiting for `f` to finish.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = self.path();
        std::thread::spawn(move || {
            let file = File::open(&path).expect("opening netns file");
            // SAFETY: setns on this thread only, with a valid netns fd.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// Adds `addr/prefix` to `dev` (IPv6 without duplicate address
    /// detection, so the address is usable at once).
    pub fn add_addr(&self, dev: &str, addr: impl Into<IpAddr>, prefix: u8) {
        let addr = addr.into();
        let cidr = format!("{addr}/{prefix}");
        let mut cmd = vec!["ip", "addr", "add", &cidr, "dev", dev];
        if addr.is_ipv6() {
            cmd.push("nodad");
        }
        self.exec(&cmd);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Creates a veth pair with one end in each namespace and brings both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    ip(&[
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    a.exec(&["ip", "link", "set", a_if, "up"]);
    b.exec(&["ip", "link", "set", b_if, "up"]);
}
