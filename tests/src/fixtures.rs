//! Running fixture rows through the real program and checking each against
//! the expected action, the expected counter change and the host verdict.

pub mod allowlist;
pub mod any_port;
pub mod decisions;
pub mod host_entries;
pub mod inspect;
pub mod jumbo;
pub mod pppoe;
pub mod repeated_headers;
pub mod tcp;

use sipguard::{
    kernel::{
        features::Scanners,
        testrun::{Sandbox, XDP_DROP, XDP_PASS},
    },
    policy::{config::Config, Policy},
};
use sipguard_common::{packet::Link, Reason};

/// A policy and the rows that must come out of it. The host tests run each
/// case on a sandbox of their own; the VM suite runs every case through one
/// load of the programs per kernel (the verifier is slow under emulation).
pub struct Case {
    pub name: &'static str,
    pub policy: Policy,
    pub rows: Vec<Row>,
    pub link: Link,
}

impl Case {
    pub fn new(name: &'static str, policy: Policy, rows: Vec<Row>) -> Case {
        Case {
            name,
            policy,
            rows,
            link: Link::Ethernet,
        }
    }

    /// Whether the case reaches the SIP inspector or the any-port reader,
    /// each of which has two builds (with and without bpf_loop) that must
    /// agree.
    pub fn uses_scanners(&self) -> bool {
        self.policy.settings.policy == sipguard_common::POLICY_INSPECT
            || self.policy.settings.any_udp_port()
    }

    /// Applies the case's policy to `sandbox` and runs every row.
    pub fn run(&self, sandbox: &mut Sandbox) -> Vec<String> {
        if let Err(e) = sandbox.apply(&self.policy) {
            return vec![format!("{}: applying the policy: {e:#}", self.name)];
        }
        run_rows_on(sandbox, &self.policy, &self.rows, self.link)
    }
}

/// Every fixture case, for the VM suite.
pub fn all_cases() -> Vec<Case> {
    let mut v = allowlist::cases();
    v.extend(inspect::cases());
    v.extend(any_port::cases());
    v.extend(pppoe::cases());
    v.push(repeated_headers::case());
    v.push(decisions::case());
    v.push(host_entries::case());
    v.push(tcp::case());
    v.push(jumbo::case());
    v
}

/// Loads a sandbox for `case`, runs it and fails the test on any mismatch.
/// Cases that reach the inspector or the any-port reader run against every
/// build of them this kernel accepts: the ones the daemon installs, the
/// bounded ones (what kernels before 5.17 run) and the `bpf_loop` ones
/// (the daemon's fallback). Where the kernel has multi-buffer XDP, every
/// case runs through the multi-buffer build too (a jumbo link sees small
/// frames as well).
pub fn check_case(case: &Case) {
    let mut builds = vec![(
        "",
        Sandbox::new(&case.policy).expect("loading the eBPF object (root, BPF)"),
    )];
    if case.uses_scanners() {
        builds.push((
            " (inspector and any-port reader without bpf_loop)",
            Sandbox::with_scanners(&case.policy, Scanners::Bounded)
                .expect("loading the eBPF object (root, BPF)"),
        ));
        if let Some(sb) = bpf_loop_builds(&case.policy) {
            builds.push((" (inspector and any-port reader under bpf_loop)", sb));
        }
    }
    if sipguard::kernel::features::has_multi_buffer() {
        builds.push((
            " (multi-buffer build)",
            Sandbox::multi_buffer(&case.policy).expect("loading the multi-buffer build"),
        ));
    }
    for (build, mut sb) in builds {
        let failures = case.run(&mut sb);
        assert!(
            failures.is_empty(),
            "{}{build}: {} of {} rows failed:\n{}",
            case.name,
            failures.len(),
            case.rows.len(),
            failures.join("\n")
        );
        eprintln!("{}{build}: {} rows passed", case.name, case.rows.len());
    }
}

/// A sandbox with the `bpf_loop` builds of the inspector and the any-port
/// reader, where the kernel has the helper and its verifier accepts them
/// (the daemon falls back from one build to the other, so a kernel may
/// refuse one). A refusal is said once per test process, loudly, and not
/// tried again: each try can cost seconds of verification.
pub fn bpf_loop_builds(policy: &Policy) -> Option<Sandbox> {
    static REFUSED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if !sipguard::kernel::features::has_bpf_loop() || REFUSED.get().is_some() {
        return None;
    }
    match Sandbox::with_scanners(policy, Scanners::BpfLoop) {
        Ok(sb) => Some(sb),
        Err(e) => {
            let why = format!("{e:#}");
            let first = why.lines().next().unwrap_or_default().to_string();
            if REFUSED.set(first.clone()).is_ok() {
                eprintln!(
                    "\n*** NOT RUN: the bpf_loop builds of the inspector and any-port reader on this kernel: {first} ***\n"
                );
            }
            None
        }
    }
}

/// The whole body of a fixture test: skips loudly without root, otherwise
/// builds the case and checks it.
pub fn check_case_as_root(test: &str, case: impl FnOnce() -> Case) {
    if crate::require_root(test) {
        check_case(&case());
    }
}

/// The static policy of a fixture config (`name` labels a parse error).
pub fn fixture_policy(yaml: &str, name: &str) -> Policy {
    Policy::from_config(&Config::parse(yaml, name).expect("fixture config"))
}

/// One row: a frame, what the kernel must do with it, and which counter
/// must move by one packet of the frame's length.
pub struct Row {
    pub name: String,
    pub frame: Vec<u8>,
    pub reason: Reason,
}

pub fn row(name: impl Into<String>, frame: Vec<u8>, reason: Reason) -> Row {
    Row {
        name: name.into(),
        frame,
        reason,
    }
}

/// `full` cut to its first `n` bytes. Until the L4 header (which ends at
/// `l4_end`) is complete the ports are unknown: pass, unparsed; after it the
/// IP length lies about a SIP-port packet: drop, malformed.
pub fn truncated(name: String, full: &[u8], n: usize, l4_end: usize) -> Row {
    let reason = if n < l4_end {
        Reason::PassUnparsed
    } else {
        Reason::DropMalformed
    };
    row(name, full[..n].to_vec(), reason)
}

/// `frame` built, with the big-endian 16-bit field at `at` set to `value`:
/// a header that lies about a length.
pub fn with_u16(frame: crate::frames::Frame, at: usize, value: u16) -> Vec<u8> {
    let mut f = frame.build();
    f[at..at + 2].copy_from_slice(&value.to_be_bytes());
    f
}

/// Whether a row with this reason must be dropped. Written out here and
/// not taken from `Reason::is_drop`: the tables then check that function
/// too, and a new reason does not compile until its row action is chosen.
pub const fn drops(reason: Reason) -> bool {
    use Reason::*;
    match reason {
        PassNotIp | PassNotUdpTcp | PassNotSipPort | PassTrusted | PassLearned | PassInspected
        | PassUnparsed | PassFragment | PassUninspectable | PassPartial => false,
        DropBlocked | DropBanned | DropUntrusted | DropMalformed | DropMethod | DropUserAgent
        | DropUriIpHost | DropUnknownUser | DropSipVicious | DropFragment | DropNotSip
        | DropDecision => true,
    }
}

/// Runs every row; returns the failures (all rows run, so one report shows
/// every mismatch).
pub fn run_rows(sandbox: &mut Sandbox, policy: &Policy, rows: &[Row]) -> Vec<String> {
    run_rows_on(sandbox, policy, rows, Link::Ethernet)
}

/// `run_rows` for packets that start with the link header `link` says.
pub fn run_rows_on(
    sandbox: &mut Sandbox,
    policy: &Policy,
    rows: &[Row],
    link: Link,
) -> Vec<String> {
    let monitored_mode = policy.settings.monitor();
    let multi_buffer = sipguard::kernel::features::has_multi_buffer();
    let mut failures = Vec::new();
    for r in rows {
        if r.frame.len() > sipguard_common::SINGLE_BUFFER_FRAME && !multi_buffer {
            eprintln!(
                "{}: skipped, a {}-byte frame needs a multi-buffer test run (Linux 5.18+)",
                r.name,
                r.frame.len()
            );
            continue;
        }
        let monitored = monitored_mode && drops(r.reason);
        let want_action = if drops(r.reason) && !monitored {
            XDP_DROP
        } else {
            XDP_PASS
        };
        let before: Vec<_> = all_cells(sandbox);
        let got = match sandbox.run_link(&r.frame, link) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: test run failed: {e:#}", r.name));
                continue;
            }
        };
        let after: Vec<_> = all_cells(sandbox);
        if got.action != want_action || got.reason != r.reason || got.monitored != monitored {
            failures.push(format!(
                "{}: kernel gave action {} reason {:?} monitored {}, expected action {} reason {:?} monitored {}",
                r.name, got.action, got.reason, got.monitored, want_action, r.reason, monitored
            ));
        }
        // Exactly one counter moved, by one packet of this frame's size.
        for ((reason, m, b), (_, _, a)) in before.iter().zip(after.iter()) {
            let expect = if *reason == r.reason && *m == monitored {
                (1, r.frame.len() as u64)
            } else {
                (0, 0)
            };
            let delta = (a.packets - b.packets, a.bytes - b.bytes);
            if delta != expect {
                failures.push(format!(
                    "{}: counter {:?}/monitored={} moved by {:?}, expected {:?}",
                    r.name, reason, m, delta, expect
                ));
            }
        }
        // The host's verdict, from the same shared code, must agree.
        let host = policy.evaluate_link(&r.frame, link);
        if host.reason != got.reason
            || host.drop != (got.action == XDP_DROP)
            || host.monitored != got.monitored
        {
            failures.push(format!(
                "{}: host verdict {:?} differs from kernel {:?}",
                r.name, host, got
            ));
        }
    }
    failures
}

fn all_cells(sb: &Sandbox) -> Vec<(Reason, bool, sipguard_common::Counter)> {
    let mut v = Vec::new();
    for m in [false, true] {
        for r in Reason::ALL {
            v.push((r, m, sb.counter(r, m).expect("reading counters")));
        }
    }
    v
}
