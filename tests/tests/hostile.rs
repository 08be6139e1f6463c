//! Hostile frames through the real XDP program (BPF_PROG_TEST_RUN): every
//! lying header field, over-deep VLAN and IPv6 extension chains, garbage
//! payloads and jumbo frames, from trusted, blocked and untrusted sources,
//! under both untrusted policies and in monitor mode. Needs root.

use sipguard::{
    kernel::testrun::Sandbox,
    policy::{config::Config, Policy},
};
use sipguard_common::{packet::Link, Reason};
use sipguard_tests::{
    fixtures::{row, run_rows, Row},
    frames::v4,
    hostile::{jumbo_9000, shapes, Expect, Source, CONFIG},
    require_root,
};

fn policy(extra: &str) -> Policy {
    let cfg = Config::parse(&format!("{CONFIG}{extra}"), "hostile").expect("hostile config");
    Policy::from_config(&cfg)
}

fn rows(inspect: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for src in Source::ALL {
        for s in shapes(src) {
            rows.push(row(
                format!("{} from {src:?}", s.name),
                s.frame,
                s.expect.reason(src, inspect),
            ));
        }
    }
    rows
}

fn check(extra: &str, inspect: bool) -> usize {
    let policy = policy(extra);
    let mut sb = Sandbox::new(&policy).expect("loading the eBPF object (root, BPF)");
    let rows = rows(inspect);
    let failures = run_rows(&mut sb, &policy, &rows);
    assert!(
        failures.is_empty(),
        "{} of {} hostile rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} hostile rows passed ({} shapes x 3 sources) under '{}'",
        rows.len(),
        rows.len() / 3,
        extra.trim()
    );
    rows.len()
}

#[test]
fn hostile_frames_allowlist_policy() {
    if require_root("hostile_frames_allowlist_policy") {
        check("policy: drop\n", false);
    }
}

#[test]
fn hostile_frames_inspect_policy() {
    if require_root("hostile_frames_inspect_policy") {
        check("policy: inspect\n", true);
    }
}

#[test]
fn hostile_frames_monitor_mode() {
    if require_root("hostile_frames_monitor_mode") {
        check("policy: drop\nmode: monitor\n", false);
    }
}

/// BPF_PROG_TEST_RUN (kernel 6.18) takes a frame of any size, but a
/// program without multi-buffer support sees only the first 3520 bytes
/// (PAGE_SIZE - XDP headroom - skb_shared_info); the rest goes into
/// fragments it cannot read. A 9000-byte jumbo therefore looks truncated to
/// the single-buffer build, and its IP length is judged a lie. The
/// multi-buffer build, which `Sandbox::run` uses for such frames (as the
/// daemon attaches it on a jumbo link in native mode), sees it whole; generic
/// XDP linearizes it for the single-buffer build. tests/tests/jumbo.rs
/// checks both on a 9000-MTU veth.
#[test]
fn jumbo_frames_in_test_run() {
    if !require_root("jumbo_frames_in_test_run") {
        return;
    }
    const LINEAR: usize = 3520;
    let policy = policy("policy: inspect\n");
    let mut sb = Sandbox::new(&policy).expect("load");
    for src in Source::ALL {
        let jumbo = jumbo_9000(src);
        assert_eq!(jumbo.len(), 9000);
        let k = sb
            .run_single_buffer(&jumbo, Link::Ethernet)
            .expect("BPF_PROG_TEST_RUN accepts a 9000-byte frame");
        // What the program sees is the linear part; the host agrees on it.
        let host = policy.evaluate(&jumbo[..LINEAR]);
        assert_eq!(
            (k.reason, k.action == 1),
            (host.reason, host.drop),
            "{src:?}"
        );
        assert_eq!(k.reason, Expect::Lying.reason(src, true), "{src:?}");
        // The whole frame on the host (what a real link delivers) is fine,
        // and so it is for the multi-buffer build.
        assert_eq!(
            policy.evaluate(&jumbo).reason,
            Expect::Sip.reason(src, true),
            "{src:?}"
        );
        if sipguard::kernel::features::has_multi_buffer() {
            let whole = sb.run(&jumbo).expect("multi-buffer test run");
            assert_eq!(whole.reason, Expect::Sip.reason(src, true), "{src:?}");
        }
    }
    // The boundary: 3520 bytes are all visible, 3521 are not.
    for (n, lying) in [(LINEAR, false), (LINEAR + 1, true)] {
        let f = v4(Source::Untrusted.v4(), [100, 64, 0, 1])
            .udp(40000, 5060)
            .payload(vec![b'x'; n - 42])
            .build();
        let k = sb.run_single_buffer(&f, Link::Ethernet).expect("run");
        // The payload is 'x' bytes: not SIP, once the lengths are believed.
        let want = if lying {
            Expect::Lying
        } else {
            Expect::Inspect(Reason::DropNotSip)
        }
        .reason(Source::Untrusted, true);
        assert_eq!(k.reason, want, "{n}-byte frame");
    }
}
