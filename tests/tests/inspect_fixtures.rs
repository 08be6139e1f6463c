//! SIP inspection fixtures for the real eBPF object through
//! BPF_PROG_TEST_RUN: every rule, every parsing edge case, each row checked
//! for action, reason, counter and host == kernel. Needs root.

use sipguard::kernel::testrun::Sandbox;
use sipguard_common::Reason::{self, *};
use sipguard_tests::{
    fixtures::{check_case_as_root, inspect::*},
    require_root, sip,
};

#[test]
fn default_rules() {
    check_case_as_root("default_rules", || cases().remove(0));
}

/// Repeated, folded and respelled User-Agent, From and To headers.
#[test]
fn repeated_headers() {
    check_case_as_root(
        "repeated_headers",
        sipguard_tests::fixtures::repeated_headers::case,
    );
}

/// SIP over TCP: requests at a segment start, cut, continuations, TLS.
#[test]
fn sip_over_tcp() {
    check_case_as_root("sip_over_tcp", sipguard_tests::fixtures::tcp::case);
}

/// Frames above a single XDP buffer, through the multi-buffer build.
#[test]
fn jumbo_frames() {
    check_case_as_root("jumbo_frames", sipguard_tests::fixtures::jumbo::case);
}

#[test]
fn default_rules_monitor_mode() {
    check_case_as_root("default_rules_monitor_mode", || cases().remove(1));
}

#[test]
fn embedded_default_policy() {
    check_case_as_root("embedded_default_policy", embedded_default_policy_case);
}

#[test]
fn opt_in_rules() {
    check_case_as_root("opt_in_rules", opt_in_rules_case);
}

#[test]
fn replaced_lists_and_rules_off() {
    check_case_as_root(
        "replaced_lists_and_rules_off",
        replaced_lists_and_rules_off_case,
    );
}

#[test]
fn reload_removes_and_adds_list_entries() {
    if !require_root("reload_removes_and_adds_list_entries") {
        return;
    }
    let first = policy("inspect:\n  extra_user_agents: [evilscan]\n  expected_users: [alice]\n");
    let second = policy("inspect:\n  user_agents: [otherscan]\n  expected_users: [bob]\n");
    let mut sb = Sandbox::new(&first).expect("load");
    // OPTIONS: the expected-user rule does not apply to them.
    let options = |ua: &str| udp(&replace(&invite_ua(ua), "INVITE sip:", "OPTIONS sip:"));
    let evil = options("EvilScan 2");
    let other = options("otherscan");
    let to = |u: &str| udp(&sip::invite("x", u, "pbx.example", "Yealink"));
    let r = |sb: &mut Sandbox, f: &[u8]| -> Reason { sb.run(f).expect("run").reason };
    assert_eq!(r(&mut sb, &evil), DropUserAgent);
    assert_eq!(r(&mut sb, &other), PassInspected);
    assert_eq!(r(&mut sb, &to("alice")), PassInspected);
    assert_eq!(r(&mut sb, &to("bob")), DropUnknownUser);
    sb.apply(&second).expect("apply");
    assert_eq!(r(&mut sb, &evil), PassInspected);
    assert_eq!(r(&mut sb, &other), DropUserAgent);
    assert_eq!(
        r(&mut sb, &udp(&sip::svmap_options())),
        DropSipVicious,
        "friendly-scanner left the list"
    );
    assert_eq!(r(&mut sb, &to("alice")), DropUnknownUser);
    assert_eq!(r(&mut sb, &to("bob")), PassInspected);
    for f in [&evil, &other, &to("alice"), &to("bob")] {
        assert_eq!(second.evaluate(f).reason, r(&mut sb, f));
    }
}

/// The filter and the tail-called inspector are verified separately; each
/// must stay well inside the kernel's 1M processed-instruction budget
/// (together, inlined, they did not fit).
#[test]
fn filter_and_inspector_each_fit_the_verifier_budget() {
    if !sipguard_tests::require_root("filter_and_inspector_each_fit_the_verifier_budget") {
        return;
    }
    use sipguard_common::*;
    let cfg = sipguard::policy::config::Config::embedded_default().expect("embedded default");
    let mut sb =
        sipguard::kernel::testrun::Sandbox::new(&sipguard::policy::Policy::from_config(&cfg))
            .expect("load");
    // The daemon's inspector is the bounded build; the `bpf_loop` build is
    // its fallback, measured where this kernel accepts it.
    let mut names = vec![
        PROGRAM_NAME,
        INSPECT_BOUNDED_PROGRAM_NAME,
        ANY_PORT_PROGRAM_NAME,
    ];
    // The multi-buffer builds, on kernels that have them (5.18+).
    if sipguard::kernel::features::has_multi_buffer() {
        sb.load_multi_buffer(sipguard_common::packet::Link::Ethernet)
            .expect("the multi-buffer build loads");
        names.extend([
            PROGRAM_NAME_FRAGS,
            INSPECT_PROGRAM_NAME_FRAGS,
            ANY_PORT_PROGRAM_NAME_FRAGS,
        ]);
    }
    let policy = sipguard::policy::Policy::from_config(&cfg);
    let under_loop = sipguard_tests::fixtures::bpf_loop_builds(&policy);
    let mut counted = vec![];
    for name in names {
        counted.push((name, sb.verified_instructions_of(name)));
    }
    if let Some(l) = &under_loop {
        counted.push((
            INSPECT_PROGRAM_NAME,
            l.verified_instructions_of(INSPECT_PROGRAM_NAME),
        ));
    }
    for (name, n) in counted {
        let n = n.expect("info").expect("count");
        eprintln!("verifier: {name} {n} instructions processed");
        assert!(n < 500_000, "{name}: {n}");
    }
}
