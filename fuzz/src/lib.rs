//! Shared by the fuzz targets: the policies frames are judged under, and
//! the properties every verdict must have whatever the frame.

use std::sync::OnceLock;

use sipguard::policy::{config::Config, Policy};
use sipguard_common::{
    packet::{self, Bytes, Stop},
    verdict::{self, Judgement, Outcome},
    Reason,
};

/// The addresses used by the seed frames (tests/src/fuzz_seeds.rs), so the
/// list lookups see hits as well as misses.
const BASE: &str = "\
sip_ports: [5060, 5061, \"5080-5082\"]
trusted: [192.0.2.10, \"2001:db8:1::/48\"]
blocked: [203.0.113.0/24, \"2001:db8:bad::/48\"]
";

/// The first input byte selects one of these, so the fuzzer explores every
/// policy and mode with the same frames.
const VARIANTS: [&str; 6] = [
    "policy: drop\n",
    "policy: inspect\n",
    "policy: drop\nmode: monitor\n",
    "policy: inspect\nmode: monitor\n",
    "policy: drop\nany_udp_port: true\n",
    "policy: inspect\nany_udp_port: true\n",
];

pub fn policies() -> &'static [Policy] {
    static P: OnceLock<Vec<Policy>> = OnceLock::new();
    P.get_or_init(|| {
        VARIANTS
            .iter()
            .map(|v| {
                let cfg = Config::parse(&format!("{BASE}{v}"), "fuzz policy")
                    .unwrap_or_else(|e| panic!("fuzz policy does not parse: {e}"));
                Policy::from_config(&cfg)
            })
            .collect()
    })
}

/// Splits a fuzz input into (policy index, frame).
pub fn split(data: &[u8]) -> Option<(usize, &[u8])> {
    let (&sel, frame) = data.split_first()?;
    Some((sel as usize % VARIANTS.len(), frame))
}

/// Judges `frame` on the host and checks the verdict's invariants; returns
/// the outcome for comparison with the kernel.
pub fn check_host(frame: &[u8], policy: &Policy) -> Outcome {
    let parsed = packet::parse(frame);
    let judged = verdict::judge(frame, &policy.settings, policy);
    match (parsed, judged) {
        (Err(stop), Judgement::Done(r)) => {
            let want = match stop {
                Stop::NotIp => Reason::PassNotIp,
                Stop::NotUdpTcp => Reason::PassNotUdpTcp,
                Stop::LaterFragment(_) => Reason::PassFragment,
                Stop::Unparsed => Reason::PassUnparsed,
            };
            assert_eq!(r, want, "parse stopped with {stop:?}");
        }
        (Err(stop), Judgement::Inspect(_) | Judgement::Recognise(_)) => {
            panic!("parse stopped with {stop:?} but judge asks for a second stage")
        }
        (Ok(flow), j) => {
            // What the SIP inspector will read must lie inside the frame
            // unless the headers were flagged as lying.
            if !flow.malformed {
                let end = flow.payload_off as usize + flow.payload_len as usize;
                assert!(
                    end <= frame.len(),
                    "payload {}+{} past a {}-byte frame",
                    flow.payload_off,
                    flow.payload_len,
                    frame.len()
                );
            }
            let any_port = policy.settings.any_udp_port() && flow.proto == packet::IPPROTO_UDP;
            if !policy.settings.is_sip_port(flow.dport)
                && !(any_port && sipguard_common::any_port::is_request_line(frame, &flow))
            {
                assert_eq!(j, Judgement::Done(Reason::PassNotSipPort));
            }
            assert!(
                !matches!(j, Judgement::Recognise(_)),
                "judge returned Recognise"
            );
            if let Judgement::Inspect(f) = j {
                assert_eq!(f, flow);
                assert!(!flow.malformed);
                // SIP over TCP is inspected too, but only a segment that
                // carries data.
                assert!(
                    flow.proto == packet::IPPROTO_UDP
                        || (flow.proto == packet::IPPROTO_TCP && flow.payload_len > 0),
                    "inspected a {} flow with {} payload bytes",
                    flow.proto,
                    flow.payload_len
                );
            }
            if let Judgement::Done(r) = j {
                assert!(
                    !matches!(
                        r,
                        Reason::PassNotIp
                            | Reason::PassNotUdpTcp
                            | Reason::PassFragment
                            | Reason::PassUnparsed
                    ),
                    "parsed flow judged as {r:?}"
                );
            }
        }
    }
    let out = policy.evaluate(frame);
    assert!(
        !(out.drop && out.monitored),
        "dropped and monitored at once"
    );
    assert_eq!(out.drop || out.monitored, out.reason.is_drop());
    assert_eq!(
        out.monitored,
        out.reason.is_drop() && policy.settings.monitor()
    );
    assert_eq!(Reason::from_u32(out.reason as u32), Some(out.reason));
    // Reads past the end fail instead of wrapping.
    assert!(frame.read::<1>(usize::MAX).is_none());
    out
}
