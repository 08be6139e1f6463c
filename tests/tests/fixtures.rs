//! Verdict fixtures for the real eBPF object through BPF_PROG_TEST_RUN:
//! every row states the frame, the expected action and reason, and the
//! counter that must move. Needs root.

use sipguard::kernel::testrun::Sandbox;
use sipguard_tests::{
    fixtures::{
        allowlist::{base_rows, cases, policy},
        check_case_as_root, drops,
    },
    require_root,
};

#[test]
fn allowlist_policy_fixtures() {
    check_case_as_root("allowlist_policy_fixtures", || cases().remove(0));
}

#[test]
fn monitor_mode_counts_would_drop_and_passes() {
    check_case_as_root("monitor_mode_counts_would_drop_and_passes", || {
        cases().remove(1)
    });
}
#[test]
fn production_object_returns_bare_actions() {
    if !require_root("production_object_returns_bare_actions") {
        return;
    }
    let policy = policy("");
    let mut sb = Sandbox::production(&policy).expect("load");
    for r in base_rows() {
        let want = if drops(r.reason) { 1 } else { 2 };
        assert_eq!(sb.run_action(&r.frame).expect("run"), want, "{}", r.name);
    }
}

#[test]
fn empty_settings_pass_everything() {
    if !require_root("empty_settings_pass_everything") {
        return;
    }
    // Before the daemon writes SETTINGS no port is a SIP port.
    let mut p = policy("");
    p.settings = sipguard_common::Settings::empty();
    let mut sb = Sandbox::new(&p).expect("load");
    for r in base_rows() {
        let v = sb.run(&r.frame).expect("run");
        assert_eq!(v.action, 2, "{}", r.name);
        assert!(!drops(v.reason), "{}: {:?}", r.name, v.reason);
    }
}

#[test]
fn decision_fixtures() {
    check_case_as_root(
        "decision_fixtures",
        sipguard_tests::fixtures::decisions::case,
    );
}

#[test]
fn host_entry_fixtures() {
    check_case_as_root(
        "host_entry_fixtures",
        sipguard_tests::fixtures::host_entries::case,
    );
}
