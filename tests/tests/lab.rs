//! The namespace lab: the real SIPVicious tools against SIPp and
//! Kamailio through sipguard, with SIPp calls from the trusted provider
//! running the whole time. See docs/LAB.md; `cargo xtask lab` runs these
//! with the reports printed.

use sipguard_tests::{
    lab::{Lab, Mode, Policy, Report},
    require_root,
};

/// Runs the lab's scenario with this policy and mode, prints its report,
/// runs `check` on it and then checks the calls ([`assert_calls`]); skips
/// without root.
fn scenario(test: &str, policy: Policy, mode: Mode, title: &str, check: impl FnOnce(&Report)) {
    if !require_root(test) {
        return;
    }
    let r = Lab::start(policy, mode, "").run_scenario(title);
    println!("{}", r.render());
    check(&r);
    assert_calls(&r);
}

/// Calls: at least one per family, all complete, and no SIPp retransmission
/// (a dropped provider packet would be papered over by one).
fn assert_calls(r: &Report) {
    assert_eq!(r.calls.len(), 2);
    for c in &r.calls {
        assert!(
            c.attempted > 0,
            "no {} calls were placed\n{}",
            c.family,
            r.render()
        );
        assert_eq!(
            c.successful,
            c.attempted,
            "{} calls lost\n{}",
            c.family,
            r.render()
        );
        assert_eq!(c.failed, 0, "{} calls failed\n{}", c.family, r.render());
        assert_eq!(
            c.retransmissions,
            0,
            "{} calls needed retransmissions\n{}",
            c.family,
            r.render()
        );
        assert_eq!(
            c.exit,
            Some(0),
            "sipp uac {} exit code\n{}",
            c.family,
            r.render()
        );
    }
}

fn assert_every_tool_sent_over_both_families(r: &Report) {
    for t in &r.tools {
        assert!(
            t.sent[0] > 0 && t.sent[1] > 0,
            "{} sent nothing over one family\n{}",
            t.name,
            r.render()
        );
    }
}

/// Enforce mode: every tool sent something over both families, nothing of
/// it reached the PBX, and every datagram is counted as a drop whose reason
/// satisfies `reason_ok`.
fn assert_nothing_through(r: &Report, reason_ok: impl Fn(&str) -> bool) {
    assert_every_tool_sent_over_both_families(r);
    for t in &r.tools {
        assert_eq!(
            t.reached_total(),
            0,
            "{} got through\n{}",
            t.name,
            r.render()
        );
        assert_eq!(t.answers, 0, "{} got answers\n{}", t.name, r.render());
        assert_eq!(
            t.dropped(),
            t.sent_total(),
            "{}: drops counted != datagrams sent\n{}",
            t.name,
            r.render()
        );
        assert_eq!(
            t.would_drop(),
            0,
            "{}: monitor counters in enforce mode\n{}",
            t.name,
            r.render()
        );
        for reason in t.drops_by_reason().keys() {
            assert!(
                reason_ok(reason),
                "{}: unexpected drop reason {reason}\n{}",
                t.name,
                r.render()
            );
        }
    }
    assert_eq!(
        r.foreign_requests_at_sipp,
        0,
        "scanner messages in the SIPp logs\n{}",
        r.render()
    );
}

#[test]
fn allowlist_policy_stops_every_scanner_and_every_call_completes() {
    scenario(
        "allowlist_policy_stops_every_scanner_and_every_call_completes",
        Policy::Drop,
        Mode::Enforce,
        "policy: drop (allowlist), enforce",
        |r| {
            assert_nothing_through(r, |reason| reason == "untrusted");
        },
    );
}

#[test]
fn inspect_policy_stops_every_scanner_and_every_call_completes() {
    scenario(
        "inspect_policy_stops_every_scanner_and_every_call_completes",
        Policy::Inspect,
        Mode::Enforce,
        "policy: inspect, enforce",
        |r| {
            // The inspector, not the allowlist, must be what stops them.
            assert_nothing_through(r, |reason| {
                !matches!(reason, "untrusted" | "blocked" | "banned" | "malformed")
            });
        },
    );
}

/// Monitor mode: every datagram reaches the PBX, and the counters account
/// for every one of them, tool by tool: all as "would drop" under the
/// allowlist (checked by the caller); under inspect, "would drop" plus
/// "inspected_clean" (a tool's later in-dialog requests, such as svwar's
/// ACKs, need not match a rule, but its first request must).
fn assert_monitor(r: &Report) {
    assert_every_tool_sent_over_both_families(r);
    for t in &r.tools {
        assert_eq!(
            t.reached,
            t.sent,
            "{}: monitor mode lost datagrams\n{}",
            t.name,
            r.render()
        );
        assert_eq!(
            t.dropped(),
            0,
            "{}: real drops in monitor mode\n{}",
            t.name,
            r.render()
        );
        let clean = t.counters.get("inspected_clean").copied().unwrap_or(0);
        assert!(
            t.would_drop() >= 2,
            "{}: the first request of each family must count as would-drop\n{}",
            t.name,
            r.render()
        );
        assert_eq!(
            t.would_drop() + clean,
            t.sent_total(),
            "{}: counters != datagrams sent\n{}",
            t.name,
            r.render()
        );
    }
    // The endpoints saw and answered them: the scanners got replies and
    // SIPp logged their requests.
    assert!(
        r.tools.iter().all(|t| t.answers > 0),
        "a scanner got no answer\n{}",
        r.render()
    );
    assert!(
        r.foreign_requests_at_sipp > 0,
        "no scanner message reached SIPp\n{}",
        r.render()
    );
}

#[test]
fn monitor_mode_passes_everything_and_counts_exactly_what_would_drop() {
    scenario(
        "monitor_mode_passes_everything_and_counts_exactly_what_would_drop",
        Policy::Drop,
        Mode::Monitor,
        "policy: drop (allowlist), monitor",
        |r| {
            assert_monitor(r);
            assert!(
                r.tools.iter().all(|t| t.would_drop() == t.sent_total()
                    && t.drops_by_reason()
                        .keys()
                        .all(|k| k == "untrusted(would_drop)")),
                "unexpected reasons\n{}",
                r.render()
            );
        },
    );
}

#[test]
fn monitor_mode_with_inspect_counts_exactly_what_would_drop() {
    scenario(
        "monitor_mode_with_inspect_counts_exactly_what_would_drop",
        Policy::Inspect,
        Mode::Monitor,
        "policy: inspect, monitor",
        assert_monitor,
    );
}
