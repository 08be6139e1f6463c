//! Child processes a test starts: found on the machine by name, stopped by
//! their own PID when dropped (never by name: other people's processes run
//! on the same machine).

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

/// A process a test started; on drop it gets SIGTERM, then SIGKILL, by PID.
pub struct Proc {
    pub what: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout and stderr in `log`.
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = fs::File::create(log).expect("creating a log file");
        let err = out.try_clone().expect("cloning a log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what} ({cmd:?}): {e}"));
        Proc::adopt(what, child)
    }

    /// Takes charge of a child started with its own stdio set-up.
    pub fn adopt(what: &str, child: Child) -> Proc {
        Proc {
            what: what.into(),
            child,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) on the PID of our own, not yet reaped child.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits until the process exits or `limit` passes.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig`, waits up to `limit`, then kills.
    pub fn stop(&mut self, sig: i32, limit: Duration) -> ExitStatus {
        self.signal(sig);
        if let Some(s) = self.wait_for(limit) {
            return s;
        }
        self.signal(libc::SIGKILL);
        let s = self.child.wait().expect("waiting for a killed child");
        self.status = Some(s);
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.stop(libc::SIGTERM, Duration::from_secs(3));
        }
    }
}

/// Fails the test unless `out` is a success, naming `what` and showing all
/// the command printed.
pub fn assert_success(out: &Output, what: impl std::fmt::Display) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` to completion; fails the test unless it ran and succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert_success(&out, format_args!("{cmd:?}"));
    out
}

/// Reads a child's whole stdout (until it closes it).
pub fn read_stdout(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut s);
    }
    s
}

/// Finds an installed tool; a missing one fails loudly, since the
/// end-to-end tests are meant to run in CI.
pub fn tool(names: &[&str]) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(d.into());
    }
    if let Ok(home) = std::env::var("HOME") {
        dirs.push(Path::new(&home).join(".local/bin"));
        dirs.push(Path::new(&home).join(".pyenv/shims"));
    }
    for n in names {
        for d in &dirs {
            let p = d.join(n);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("test tool {names:?} not found: install it with ./scripts/setup.sh --tests");
}

/// Polls `ok` every 50 ms; fails naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        sleep(Duration::from_millis(50));
    }
}
