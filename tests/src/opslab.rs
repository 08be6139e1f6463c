//! A router namespace running the real `sipguard run` on its WAN veth, and
//! a sender namespace on the other end. Everything (namespaces, pins under a
//! private --pin-root, sockets, the daemon process) is removed on drop, even
//! when the test fails.

use std::{
    io::Read as _,
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{
    netns::{self, veth, Netns},
    sipguard_bin,
};

pub const ROUTER: &str = "10.99.0.1";
/// Sender addresses (all on the sender's veth).
pub const SCANNER: &str = "10.99.0.2";
pub const PROVIDER: &str = "10.99.0.3";
pub const OTHER: &str = "10.99.0.4";
pub const OTHER2: &str = "10.99.0.5";

pub struct Lab {
    pub router: Netns,
    pub sender: Netns,
    pub r_if: String,
    pub s_if: String,
    pub dir: PathBuf,
    pub pin_root: PathBuf,
    pub sock: PathBuf,
    pub config: PathBuf,
    daemon: Option<Child>,
    log_n: u32,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        let router = Netns::new("r");
        let sender = Netns::new("s");
        let r_if = netns::unique("w");
        let s_if = netns::unique("x");
        veth(&router, &r_if, &sender, &s_if);
        router.exec(&["ip", "addr", "add", &format!("{ROUTER}/24"), "dev", &r_if]);
        for a in [SCANNER, PROVIDER, OTHER, OTHER2] {
            sender.exec(&["ip", "addr", "add", &format!("{a}/24"), "dev", &s_if]);
        }
        let u = netns::unique(tag);
        let dir = std::env::temp_dir().join(format!("sipguard-test-{u}"));
        std::fs::create_dir_all(&dir).unwrap();
        Lab {
            pin_root: PathBuf::from(format!("/sys/fs/bpf/sg-test-{u}")),
            sock: dir.join("events.sock"),
            config: dir.join("sipguard.yaml"),
            dir,
            router,
            sender,
            r_if,
            s_if,
            daemon: None,
            log_n: 0,
        }
    }

    pub fn write_config(&self, yaml: &str) {
        let text = format!("interfaces: [{}]\nxdp_mode: native\n{yaml}", self.r_if);
        std::fs::write(&self.config, text).unwrap();
    }

    /// `sipguard` with this lab's pin root, in the host namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(sipguard_bin())
            .arg("--pin-root")
            .arg(&self.pin_root)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "sipguard {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("daemon{}.log", self.log_n))
    }

    /// Starts the daemon in the router namespace and waits until it is ready.
    pub fn start(&mut self) {
        self.start_until("ready:");
    }

    /// Starts the daemon and waits until its log shows `needle`.
    pub fn start_until(&mut self, needle: &str) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        self.log_n += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = self
            .router
            .command(sipguard_bin().to_str().unwrap())
            .arg("--pin-root")
            .arg(&self.pin_root)
            .args(["run", "-c"])
            .arg(&self.config)
            .arg("--events-socket")
            .arg(&self.sock)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        self.wait_log(needle, Duration::from_secs(20));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            if self.log().contains(needle) {
                return;
            }
            if let Some(c) = self.daemon.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("daemon exited ({st}) before '{needle}':\n{}", self.log());
                }
            }
            assert!(
                t0.elapsed() < timeout,
                "no '{needle}' in the daemon log after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&mut self, sig: i32) {
        let pid = self.daemon.as_ref().expect("no daemon").id() as i32;
        // nsenter execs the daemon in place (same pid).
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid, sig) };
    }

    /// Signals the daemon and waits for it to exit; returns its log.
    pub fn stop_with(&mut self, sig: i32) -> String {
        self.signal(sig);
        let mut c = self.daemon.take().unwrap();
        let t0 = Instant::now();
        while c.try_wait().unwrap().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "daemon did not exit after signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log()
    }

    /// A UDP receiver on the router counting datagrams per source address.
    pub fn receiver(&self, port: u16) -> Receiver {
        let sock = self
            .router
            .run(move || UdpSocket::bind(("0.0.0.0", port)).unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
            String,
            u64,
        >::new()));
        let (s2, c2) = (stop.clone(), counts.clone());
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    *c2.lock().unwrap().entry(from.ip().to_string()).or_default() += 1;
                }
            }
        });
        Receiver {
            stop,
            counts,
            handle: Some(handle),
        }
    }

    /// A UDP socket in the sender namespace bound to `src`.
    pub fn sender_socket(&self, src: &str) -> UdpSocket {
        let src = src.to_string();
        self.sender
            .run(move || UdpSocket::bind((src.as_str(), 0)).unwrap())
    }

    pub fn router_addr(port: u16) -> SocketAddr {
        format!("{ROUTER}:{port}").parse().unwrap()
    }

    /// Sends `n` datagrams from `src` to the router's `port`, spaced by `gap`.
    pub fn send(&self, src: &str, port: u16, n: u64, gap: Duration) {
        let s = self.sender_socket(src);
        for i in 0..n {
            s.send_to(
                format!("OPTIONS sip:probe{i}@{ROUTER} SIP/2.0\r\n\r\n").as_bytes(),
                Self::router_addr(port),
            )
            .unwrap();
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
    }

    /// Reads the whole output of a child's stdout (for `sipguard events`).
    pub fn read_all(child: &mut Child) -> String {
        let mut s = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        s
    }

    /// `sipguard events` following this lab's socket.
    pub fn events_client(&self, json: bool, count: u64) -> Child {
        let mut c = Command::new(sipguard_bin());
        c.args(["events", "--socket"])
            .arg(&self.sock)
            .args(["--count", &count.to_string()]);
        if json {
            c.arg("--json");
        }
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn pin_dir(&self) -> PathBuf {
        sipguard::pins::versioned_dir(&self.pin_root)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(sipguard_bin())
            .arg("--pin-root")
            .arg(&self.pin_root)
            .arg("detach")
            .output();
        let _ = std::fs::remove_dir_all(&self.pin_root);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Receiver {
    stop: Arc<AtomicBool>,
    counts: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn count(&self, src: &str) -> u64 {
        self.counts.lock().unwrap().get(src).copied().unwrap_or(0)
    }

    /// Waits until `src` has `n` datagrams or `timeout` passes.
    pub fn wait_for(&self, src: &str, n: u64, timeout: Duration) -> u64 {
        let t0 = Instant::now();
        while self.count(src) < n && t0.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.count(src)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Waits until `path` exists.
pub fn wait_path(path: &Path, timeout: Duration) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < timeout, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}
