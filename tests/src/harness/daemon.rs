//! The real `sipguard run` inside a test namespace, with a private pin
//! root, events socket, config and log. On drop (also when the test
//! panicked) the process is killed by its PID, the filter detached, the pins
//! and files removed; a panicking test gets the daemon's log printed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use super::{
    netns::{unique, Netns},
    process::assert_success,
};
use crate::sipguard_bin;

/// How long a starting daemon may take to say "ready:".
const READY: Duration = Duration::from_secs(30);
/// How long a signalled daemon may take to exit.
const EXIT: Duration = Duration::from_secs(20);

/// A per-test scratch directory (the caller removes it).
pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(tag));
    fs::create_dir_all(&d).expect("creating scratch dir");
    d
}

pub struct Daemon {
    /// The network namespace it runs in (joined with nsenter, so the pins
    /// land in the host's bpffs where the CLI finds them).
    netns: String,
    dir: PathBuf,
    pub pin_root: PathBuf,
    child: Option<Child>,
    /// Each launch logs to its own file, so waiting for a line never
    /// matches an earlier run's.
    launches: u32,
}

impl Daemon {
    /// A daemon for `ns`, not yet running: write its config, then
    /// [`Daemon::launch`].
    pub fn new(ns: &Netns) -> Daemon {
        Daemon {
            netns: ns.path(),
            dir: scratch("d"),
            pin_root: PathBuf::from(format!("/sys/fs/bpf/{}", unique("pin"))),
            child: None,
            launches: 0,
        }
    }

    /// Writes `config`, starts `sipguard run` in `ns` and waits until it is
    /// ready.
    pub fn start(ns: &Netns, config: &str, extra_args: &[&str]) -> Daemon {
        let mut d = Daemon::new(ns);
        d.write_config(config);
        d.launch(extra_args);
        d
    }

    pub fn write_config(&self, text: &str) {
        fs::write(self.config_path(), text).expect("writing config");
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("sipguard.yaml")
    }

    pub fn events_socket(&self) -> PathBuf {
        self.dir.join("events.sock")
    }

    /// A file in this daemon's scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where this daemon's maps and links are pinned.
    pub fn pin_dir(&self) -> PathBuf {
        sipguard::kernel::pins::versioned_dir(&self.pin_root)
    }

    /// Starts the process on the written config and waits for "ready:".
    pub fn launch(&mut self, extra_args: &[&str]) {
        self.launch_until(extra_args, "ready:");
    }

    /// Starts the process on the written config and waits until its log
    /// shows `needle`.
    pub fn launch_until(&mut self, extra_args: &[&str], needle: &str) {
        assert!(self.child.is_none(), "a daemon is already running");
        self.launches += 1;
        let log = fs::File::create(self.log_path()).expect("creating log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns))
            .arg("--")
            .arg(sipguard_bin())
            .arg("--pin-root")
            .arg(&self.pin_root)
            .arg("run")
            .arg("-c")
            .arg(self.config_path())
            .arg("--events-socket")
            .arg(self.events_socket())
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("cloning log handle"))
            .stderr(log)
            .spawn()
            .expect("spawning sipguard run");
        self.child = Some(child);
        self.wait_for_log(needle, READY);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("daemon{}.log", self.launches))
    }

    /// The log of the latest launch.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `times` times in all.
    pub fn wait_for_log_count(&mut self, needle: &str, times: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.log_text().matches(needle).count() >= times {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
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

    /// The PID of the running daemon (nsenter execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("no daemon running").id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the PID of the child this struct owns.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Sends `sig` and waits for the process to exit.
    pub fn stop_with(&mut self, sig: libc::c_int) -> ExitStatus {
        self.signal(sig);
        let mut child = self.child.take().expect("no daemon running");
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if start.elapsed() > EXIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sipguard did not exit after signal {sig}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Runs another sipguard command against this daemon's pins (in the
    /// host namespace).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(sipguard_bin())
            .arg("--pin-root")
            .arg(&self.pin_root)
            .args(args)
            .output()
            .expect("running sipguard")
    }

    /// [`Daemon::cli`], asserting success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert_success(&o, format_args!("sipguard {args:?}"));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["stats", "--json"])).expect("stats --json is JSON")
    }

    /// `sipguard events` following this daemon's socket, stdout piped.
    pub fn events_client(&self, json: bool, count: u64) -> Child {
        let mut c = Command::new(sipguard_bin());
        c.args(["events", "--socket"])
            .arg(self.events_socket())
            .args(["--count", &count.to_string()]);
        if json {
            c.arg("--json");
        }
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning sipguard events")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A daemon told to keep the filter on exit leaves a pinned link.
        let _ = self.cli(&["detach"]);
        remove_all(&self.pin_root);
        if std::thread::panicking() {
            eprintln!(
                "--- sipguard log ({}) ---\n{}",
                self.log_path().display(),
                self.log_text()
            );
        }
        remove_all(&self.dir);
    }
}

fn remove_all(p: &Path) {
    if p.exists() {
        let _ = fs::remove_dir_all(p);
    }
}
