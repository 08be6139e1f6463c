//! `cargo xtask bench`: per-packet cost of the real XDP program, by packet
//! class, through BPF_PROG_TEST_RUN. Every figure is a ratio to the empty
//! XDP program measured in the same run, interleaved round by round, so
//! machine noise hits both alike. Needs root.

use std::time::Duration;

use anyhow::Result;
use sipguard::{config::Config, policy::Policy, testrun::Sandbox};
use sipguard_tests::{frames::v4, sip};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 7;

struct Class {
    name: &'static str,
    frame: Vec<u8>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

fn main() -> Result<()> {
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the benchmark loads XDP programs: run it as root");
    let cfg = Config::parse(
        "policy: drop\nsip_ports: [5060]\ntrusted: [192.0.2.10]\nblocked: [203.0.113.0/24]\n",
        "bench",
    )?;
    let policy = Policy::from_config(&cfg);
    let mut sb = Sandbox::production(&policy)?;
    let invite = sip::invite("alice", "100", "pbx.example", "Yealink SIP-T46S 66.86.0.15");
    let classes = [
        Class { name: "non-SIP UDP (dport 53)", frame: v4([198, 51, 100, 7], [100, 64, 0, 1]).udp(40000, 53).payload([0u8; 64]).build() },
        Class { name: "trusted INVITE", frame: v4([192, 0, 2, 10], [100, 64, 0, 1]).udp(5060, 5060).payload(&invite).build() },
        Class { name: "untrusted INVITE (dropped)", frame: v4([198, 51, 100, 7], [100, 64, 0, 1]).udp(5060, 5060).payload(&invite).build() },
        Class { name: "blocked INVITE (dropped)", frame: v4([203, 0, 113, 9], [100, 64, 0, 1]).udp(5060, 5060).payload(&invite).build() },
    ];
    println!("verifier instructions: {:?}", sb.verified_instructions()?);
    let mut empty = Vec::new();
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); classes.len()];
    for _ in 0..ROUNDS {
        empty.push(ns(sb.time_empty(&classes[0].frame, REPEAT)?));
        for (i, c) in classes.iter().enumerate() {
            per[i].push(ns(sb.time(&c.frame, REPEAT)?));
        }
    }
    let e = median(&mut empty.clone());
    let (emin, emax) = (empty.iter().cloned().fold(f64::MAX, f64::min), empty.iter().cloned().fold(0.0, f64::max));
    println!("{ROUNDS} rounds x {REPEAT} runs each, kernel-measured ns/packet (median, min-max)");
    println!("{:<30} {:>8} {:>15} {:>8}", "class", "ns", "range", "ratio");
    println!("{:<30} {:>8.1} {:>7.1}-{:<7.1} {:>8.2}", "empty XDP program", e, emin, emax, 1.0);
    for (i, c) in classes.iter().enumerate() {
        let v = &mut per[i];
        let m = median(v);
        println!("{:<30} {:>8.1} {:>7.1}-{:<7.1} {:>8.2}", c.name, m, v[0], v[v.len() - 1], m / e);
    }
    Ok(())
}
