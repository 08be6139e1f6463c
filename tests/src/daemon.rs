//! Running the real `sipguard` binary inside a test namespace.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{netns::Netns, sipguard_bin};

/// A `sipguard run` process with a private pin root; killed by PID and its
/// pins removed on drop, even when the test failed.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub pin_root: PathBuf,
    pub dir: PathBuf,
}

/// A per-test scratch directory (removed by `Daemon`'s drop or the caller).
pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(crate::netns::unique(tag));
    fs::create_dir_all(&d).expect("creating scratch dir");
    d
}

impl Daemon {
    /// Starts `sipguard run -c CONFIG` in `ns` (network namespace only, so
    /// the pins land in the host's bpffs) and waits until it is ready.
    pub fn start(ns: &Netns, config: &str, extra_args: &[&str]) -> Daemon {
        let dir = scratch("d");
        let cfg = dir.join("sipguard.yaml");
        fs::write(&cfg, config).expect("writing config");
        let pin_root = PathBuf::from(format!("/sys/fs/bpf/{}", crate::netns::unique("pin")));
        let log = dir.join("daemon.log");
        let logf = fs::File::create(&log).expect("creating log");
        let child = ns
            .command(sipguard_bin().to_str().expect("utf-8 path"))
            .args(["run", "-c"])
            .arg(&cfg)
            .arg("--pin-root")
            .arg(&pin_root)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawning sipguard run");
        let mut d = Daemon {
            child,
            log,
            pin_root,
            dir,
        };
        d.wait_for_log("ready:", Duration::from_secs(30));
        d
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("sipguard.yaml")
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `times` times in all.
    pub fn wait_for_log_count(&mut self, needle: &str, times: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.log_text().matches(needle).count() >= times {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sipguard exited ({status}) before logging '{needle}':\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "no '{needle}' in the log after {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_log_count(needle, 1, timeout)
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the PID of the child this struct owns.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Runs another sipguard command against this daemon's pins.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(sipguard_bin())
            .args(args)
            .arg("--pin-root")
            .arg(&self.pin_root)
            .output()
            .expect("running sipguard")
    }

    pub fn stats_json(&self) -> serde_json::Value {
        let out = self.cli(&["stats", "--json"]);
        assert!(
            out.status.success(),
            "sipguard stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stats --json is JSON")
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "sipguard did not exit after SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.pin_root.exists() {
            let _ = fs::remove_dir_all(&self.pin_root);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- sipguard log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
