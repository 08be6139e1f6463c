//! Per-class cost of the real program through BPF_PROG_TEST_RUN, each as a
//! ratio to the empty XDP program of the same object timed in the same
//! round: the machine's noise hits numerator and denominator alike.

use std::{collections::HashSet, time::Instant};

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};
use sipguard::{
    kernel::testrun::Sandbox,
    policy::{config::Config, Policy},
};
use sipguard_common::Reason;
use sipguard_tests::frames::v4;

use crate::{payload, stats, xdpfilter, Rng};

pub const TRUSTED: [u8; 4] = [192, 0, 2, 10];
pub const UNTRUSTED: [u8; 4] = [198, 51, 100, 7];
pub const PBX: [u8; 4] = [100, 64, 0, 1];
pub const BLOCKED_ENTRIES: usize = 1_000_000;

const ALLOWLIST: &str =
    "policy: drop\nsip_ports: [5060]\ntrusted: [192.0.2.10]\nblocked: [203.0.113.0/24]\n";
/// The allowlist with SIP recognised on any UDP port.
const ANY_PORT: &str = "policy: drop\nsip_ports: [5060]\nany_udp_port: true\ntrusted: [192.0.2.10]\nblocked: [203.0.113.0/24]\n";
/// A high port outside the SIP set for the any-port classes.
const HIGH_PORT: u16 = 41_234;

/// Sandboxes with the daemon's operations settings (events, bans) carry
/// this in their name.
const OPS: &str = "events + bans on";

/// The daemon's settings (events sampled per source, automatic bans), with
/// the ban threshold out of the bench's reach: a class of untrusted drops
/// then stays what it is named (a source below the threshold, as in a
/// distributed flood) instead of turning into the banned class after its
/// first few runs.
fn ops_config() -> Result<Config> {
    Ok(Config::parse(
        &format!(
            "{ALLOWLIST}bans:\n  enabled: true\n  threshold: {}\n",
            u32::MAX
        ),
        "bench allowlist with bans",
    )?)
}

fn ops_sandbox(policy: &Policy) -> Result<Sandbox> {
    let mut sb = Sandbox::production(policy)?;
    sb.set_ops(sipguard::kernel::stateful::settings(&ops_config()?))?;
    Ok(sb)
}

pub struct Params {
    pub rounds: usize,
    pub repeat: u32,
    /// Other builds of the object `(label, ELF bytes)`, timed on the same
    /// classes in the same rounds: how a change to the program is judged.
    pub compare: Vec<(String, Vec<u8>)>,
}

struct Class {
    key: &'static str,
    name: String,
    /// Index into the sandboxes.
    sandbox: usize,
    frame: Vec<u8>,
    reason: Reason,
    /// Target ratio to the empty program.
    target: Option<f64>,
}

/// `n` distinct /32 and /24 IPv4 blocklist entries from a fixed seed, half
/// each, none covering the addresses the other classes use.
pub fn random_blocklist(n: usize) -> Vec<(u32, [u8; 4])> {
    let mut rng = Rng(0x5195_6a2d_0000_0006);
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = rng.next_u64() as u32;
        let mut a = r.to_be_bytes();
        // Public-looking unicast space only, never the bench's own sources.
        if matches!(a[0], 0 | 10 | 100 | 127 | 192 | 198 | 203) || a[0] >= 224 {
            continue;
        }
        let len = if out.len() % 2 == 0 { 32 } else { 24 };
        if len == 24 {
            a[3] = 0;
        }
        if seen.insert((len, a)) {
            out.push((len, a));
        }
    }
    out
}

/// The 1M-entry blocklist's kernel maps by their fdinfo memlock: the trie
/// (its shorter prefixes) and the host hash (its /32s).
struct BlocklistMemory {
    trie_entries: usize,
    trie_bytes: u64,
    hosts_entries: usize,
    hosts_bytes: u64,
}

impl BlocklistMemory {
    fn of(maps: &sipguard::kernel::maps::PolicyMaps) -> Result<Self> {
        let hosts_entries = maps
            .blocked_hosts
            .as_ref()
            .map_or(0, |h| h.v4.keys().count());
        Ok(BlocklistMemory {
            trie_entries: maps.blocked_v4.keys().count(),
            trie_bytes: maps.blocked_v4_memory()?,
            hosts_entries,
            hosts_bytes: maps.blocked_v4_hosts_memory()?.unwrap_or(0),
        })
    }
}

/// Bytes in use in the kmalloc slab caches (where LPM trie nodes live).
fn kmalloc_bytes() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/slabinfo").ok()?;
    Some(
        m.lines()
            .filter(|l| l.starts_with("kmalloc-"))
            .filter_map(|l| {
                let v: Vec<&str> = l.split_whitespace().collect();
                Some(v.get(1)?.parse::<u64>().ok()? * v.get(3)?.parse::<u64>().ok()?)
            })
            .sum(),
    )
}

fn unreclaimable_slab_kib() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    m.lines()
        .find(|l| l.starts_with("SUnreclaim:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn udp_to(src: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    v4(src, PBX).udp(5060, dport).payload(payload).build()
}

/// This thread's CPU time per run of a BPF_PROG_TEST_RUN call: the kernel's
/// own figure is whole nanoseconds (a 1 ns step is 15 % of the empty
/// program here) and counts time the thread was preempted inside its loop;
/// the thread's CPU clock has neither problem. The syscall's fixed cost is
/// spread over `repeat` runs (about 1 us / 1M).
fn cpu_ns_per_run(repeat: u32, f: impl FnOnce() -> Result<std::time::Duration>) -> Result<f64> {
    let t0 = crate::thread_cpu_ns();
    f()?;
    Ok((crate::thread_cpu_ns() - t0) / repeat as f64)
}

/// Whether this build has the SIP inspector: the embedded default policy
/// then drops a friendly-scanner INVITE by its User-Agent.
pub fn has_inspector() -> Result<bool> {
    let inspect = Policy::from_config(&Config::embedded_default()?);
    let scanner_probe = udp_to(UNTRUSTED, 5060, &payload::invite(true, 400 - 42));
    Ok(Sandbox::new(&inspect)?.run(&scanner_probe)?.reason == Reason::DropUserAgent)
}

pub fn run(p: &Params) -> Result<Value> {
    let allowlist = Policy::from_config(&Config::parse(ALLOWLIST, "bench allowlist")?);
    let inspect = Policy::from_config(&Config::embedded_default()?);
    let any_port = Policy::from_config(&Config::parse(ANY_PORT, "bench any_udp_port")?);
    let invite = payload::invite(false, 0);

    let mut sandboxes = vec![
        ("allowlist", Sandbox::production(&allowlist)?),
        ("allowlist + 1M blocked", Sandbox::production(&allowlist)?),
    ];
    let list = random_blocklist(BLOCKED_ENTRIES);
    let slab0 = unreclaimable_slab_kib();
    let kmalloc0 = kmalloc_bytes();
    let t = Instant::now();
    let inserted = sandboxes[1]
        .1
        .maps_mut()
        .insert_blocked_v4(list.iter().copied())?;
    let insert_secs = t.elapsed().as_secs_f64();
    // fdinfo's memlock counts one node per entry; the trie also allocates
    // intermediate nodes. The machine-wide unreclaimable slab growth
    // catches those too, plus whatever else the kernel allocated meanwhile.
    let slab_delta = slab0
        .zip(unreclaimable_slab_kib())
        .map(|(a, b)| b.saturating_sub(a) * 1024);
    let kmalloc_delta = kmalloc0
        .zip(kmalloc_bytes())
        .map(|(a, b)| b.saturating_sub(a));
    let memory = BlocklistMemory::of(sandboxes[1].1.maps_mut())?;
    eprintln!(
        "loaded {inserted} blocklist entries in {insert_secs:.1} s; trie {:.1} MiB, host hash {:.1} MiB",
        memory.trie_bytes as f64 / 1048576.0,
        memory.hosts_bytes as f64 / 1048576.0
    );
    // A /32 and an address inside a /24, both from the random list.
    let hit32 = list
        .iter()
        .rev()
        .find(|e| e.0 == 32)
        .map(|e| e.1)
        .unwrap_or_default();
    let mut hit24 = list
        .iter()
        .rev()
        .find(|e| e.0 == 24)
        .map(|e| e.1)
        .unwrap_or_default();
    hit24[3] = 77;

    let mut classes = vec![
        Class {
            key: "non_sip_udp",
            name: "non-SIP UDP (dport 53)".into(),
            sandbox: 0,
            frame: udp_to(UNTRUSTED, 53, &[0u8; 64]),
            reason: Reason::PassNotSipPort,
            target: Some(1.2),
        },
        Class {
            key: "trusted_invite",
            name: "trusted INVITE (pass)".into(),
            sandbox: 0,
            frame: udp_to(TRUSTED, 5060, &invite),
            reason: Reason::PassTrusted,
            target: Some(2.0),
        },
        Class {
            key: "untrusted_invite_drop",
            name: "untrusted INVITE, allowlist (drop)".into(),
            sandbox: 0,
            frame: udp_to(UNTRUSTED, 5060, &invite),
            reason: Reason::DropUntrusted,
            target: Some(2.0),
        },
        Class {
            key: "blocked_small",
            name: "blocked source, 1-entry list (drop)".into(),
            sandbox: 0,
            frame: udp_to([203, 0, 113, 9], 5060, &invite),
            reason: Reason::DropBlocked,
            target: None,
        },
        Class {
            key: "blocked_1m_32",
            name: "blocked /32 of 1M entries (drop)".into(),
            sandbox: 1,
            frame: udp_to(hit32, 5060, &invite),
            reason: Reason::DropBlocked,
            target: None,
        },
        Class {
            key: "blocked_1m_24",
            name: "blocked /24 of 1M entries (drop)".into(),
            sandbox: 1,
            frame: udp_to(hit24, 5060, &invite),
            reason: Reason::DropBlocked,
            target: None,
        },
        Class {
            key: "trusted_invite_1m",
            name: "trusted INVITE, 1M blocked loaded".into(),
            sandbox: 1,
            frame: udp_to(TRUSTED, 5060, &invite),
            reason: Reason::PassTrusted,
            target: None,
        },
        Class {
            key: "untrusted_invite_drop_1m",
            name: "untrusted INVITE, 1M blocked loaded".into(),
            sandbox: 1,
            frame: udp_to(UNTRUSTED, 5060, &invite),
            reason: Reason::DropUntrusted,
            target: None,
        },
    ];

    let mut missing = Vec::new();
    let inspector = has_inspector()?;
    if inspector {
        sandboxes.push(("inspect (default policy)", Sandbox::production(&inspect)?));
        let s = sandboxes.len() - 1;
        for (size, key_l, key_s) in [
            (400, "inspect_legit_400", "inspect_scanner_400"),
            (1400, "inspect_legit_1400", "inspect_scanner_1400"),
        ] {
            let body = size - 42;
            for (key, scanner, what) in [
                (key_l, false, "legit INVITE"),
                (key_s, true, "scanner INVITE"),
            ] {
                let (reason, verdict) = if scanner {
                    (Reason::DropUserAgent, "drop")
                } else {
                    (Reason::PassInspected, "pass")
                };
                classes.push(Class {
                    key,
                    name: format!("inspect, {what} {size} B, UA last ({verdict})"),
                    sandbox: s,
                    frame: udp_to(UNTRUSTED, 5060, &payload::invite(scanner, body)),
                    reason,
                    target: Some(4.0),
                });
            }
        }
    } else {
        missing.push(String::from("inspect classes: the SIP inspector is not in this build (the default policy does not drop a friendly-scanner INVITE)"));
    }
    // any_udp_port: what it costs UDP outside the SIP ports (a binary
    // payload stops at its first byte; text starting with a letter makes the
    // request-line reader run until the line fails), and a scanner INVITE
    // to a high port.
    sandboxes.push(("allowlist + any_udp_port", Sandbox::production(&any_port)?));
    let s = sandboxes.len() - 1;
    classes.push(Class {
        key: "any_port_non_sip_binary",
        name: format!("any_udp_port: binary UDP to {HIGH_PORT} (pass)"),
        sandbox: s,
        frame: udp_to(UNTRUSTED, HIGH_PORT, &[0u8; 64]),
        reason: Reason::PassNotSipPort,
        target: None,
    });
    classes.push(Class {
        key: "any_port_non_sip_text",
        name: format!("any_udp_port: HTTP-like text to {HIGH_PORT} (pass)"),
        sandbox: s,
        frame: udp_to(
            UNTRUSTED,
            HIGH_PORT,
            b"GET /index.html HTTP/1.1\r\nHost: pbx.example\r\n\r\n",
        ),
        reason: Reason::PassNotSipPort,
        target: None,
    });
    classes.push(Class {
        key: "any_port_scanner_invite",
        name: format!("any_udp_port: untrusted INVITE to {HIGH_PORT} (drop)"),
        sandbox: s,
        frame: udp_to(UNTRUSTED, HIGH_PORT, &invite),
        reason: Reason::DropUntrusted,
        target: None,
    });

    // A banned source (a manual ban, which is what an automatic one
    // becomes in the BANS map): present since the bans work landed.
    let banned_src = [198, 51, 100, 66];
    sandboxes[0].1.ban(std::net::IpAddr::from(banned_src))?;
    classes.push(Class {
        key: "banned",
        name: "banned source (drop)".into(),
        sandbox: 0,
        frame: udp_to(banned_src, 5060, &invite),
        reason: Reason::DropBanned,
        target: None,
    });
    // The same with the daemon's operations settings (drop events sampled
    // per source, automatic bans): what every packet of a flood from a
    // banned scanner costs once its first event went out.
    let mut with_ops = ops_sandbox(&allowlist)?;
    with_ops.ban(std::net::IpAddr::from(banned_src))?;
    sandboxes.push(("allowlist, events + bans on", with_ops));
    let ops = sandboxes.len() - 1;
    classes.push(Class {
        key: "banned_ops",
        name: "banned source, daemon's events + bans on (drop)".into(),
        sandbox: ops,
        frame: udp_to(banned_src, 5060, &invite),
        reason: Reason::DropBanned,
        target: None,
    });
    // Every other drop class with the daemon's settings too: each drop
    // then also pays the event sampler (and, for untrusted sources, the
    // ban counting).
    classes.push(Class {
        key: "untrusted_invite_drop_ops",
        name: "untrusted INVITE, allowlist, events + bans on (drop)".into(),
        sandbox: ops,
        frame: udp_to(UNTRUSTED, 5060, &invite),
        reason: Reason::DropUntrusted,
        target: None,
    });
    classes.push(Class {
        key: "blocked_small_ops",
        name: "blocked source, 1-entry list, events + bans on (drop)".into(),
        sandbox: ops,
        frame: udp_to([203, 0, 113, 9], 5060, &invite),
        reason: Reason::DropBlocked,
        target: None,
    });
    let mut big_ops = ops_sandbox(&allowlist)?;
    big_ops.maps_mut().insert_blocked_v4(list.iter().copied())?;
    sandboxes.push(("allowlist + 1M blocked, events + bans on", big_ops));
    classes.push(Class {
        key: "blocked_1m_32_ops",
        name: "blocked /32 of 1M entries, events + bans on (drop)".into(),
        sandbox: sandboxes.len() - 1,
        frame: udp_to(hit32, 5060, &invite),
        reason: Reason::DropBlocked,
        target: None,
    });
    if inspector {
        sandboxes.push((
            "inspect (default policy), events + bans on",
            ops_sandbox(&inspect)?,
        ));
        classes.push(Class {
            key: "inspect_scanner_400_ops",
            name: "inspect, scanner INVITE 400 B, UA last, events + bans on (drop)".into(),
            sandbox: sandboxes.len() - 1,
            frame: udp_to(UNTRUSTED, 5060, &payload::invite(true, 400 - 42)),
            reason: Reason::DropUserAgent,
            target: None,
        });
    }

    // Each class must really take the path it is named after: one run,
    // the counter of its reason must move by exactly one.
    for c in &classes {
        let sb = &mut sandboxes[c.sandbox].1;
        let before = sb.counter(c.reason, false)?.packets;
        let action = sb.run_action(&c.frame)?;
        let after = sb.counter(c.reason, false)?.packets;
        ensure!(
            after == before + 1,
            "class '{}' did not count as {:?}",
            c.name,
            c.reason
        );
        ensure!(
            (action == 1) == c.reason.is_drop(),
            "class '{}': action {action} does not match {:?}",
            c.name,
            c.reason
        );
    }

    // The compared builds: same policies and lists. Their verdicts are not
    // checked (an older build may lack a feature); only their time is used.
    let mut others: Vec<Vec<Sandbox>> = Vec::new();
    let mut others_memory: Vec<Option<BlocklistMemory>> = Vec::new();
    for (label, obj) in &p.compare {
        let mut v = Vec::new();
        let mut mem = None;
        for (name, _) in &sandboxes {
            let policy = if name.starts_with("inspect") {
                &inspect
            } else if name.ends_with("any_udp_port") {
                &any_port
            } else {
                &allowlist
            };
            let mut sb = Sandbox::production_from(obj, policy)
                .with_context(|| format!("loading build '{label}'"))?;
            if name.contains("1M blocked") {
                sb.maps_mut().insert_blocked_v4(list.iter().copied())?;
                if mem.is_none() {
                    mem = Some(BlocklistMemory::of(sb.maps_mut())?);
                }
            }
            if name.contains(OPS) {
                sb.set_ops(sipguard::kernel::stateful::settings(&ops_config()?))?;
            }
            // Older builds have no BANS map; their "banned" row is then an
            // untrusted drop.
            let _ = sb.ban(std::net::IpAddr::from([198u8, 51, 100, 66]));
            v.push(sb);
        }
        others.push(v);
        others_memory.push(mem);
    }
    let mut other_ratio: Vec<Vec<Vec<f64>>> =
        vec![vec![Vec::with_capacity(p.rounds); classes.len()]; others.len()];

    // The XDP peer on the same frames, one instance per equivalent job.
    let mut peers = match xdpfilter::Peers::new(&peer_addresses(&list), 5060) {
        Ok(mut peers) => {
            peers.check(|k| classes.iter().find(|c| c.key == k).map(|c| c.frame.clone()))?;
            Some(peers)
        }
        Err(e) => {
            eprintln!("note: no XDP peer: {e:#}");
            missing.push(format!("xdp-filter: {e:#}"));
            None
        }
    };
    let n_jobs = peers.as_ref().map_or(0, |p| p.jobs.len());
    let mut peer_ns: Vec<Vec<f64>> = vec![Vec::with_capacity(p.rounds); n_jobs];

    let verifier = sandboxes[0].1.verified_instructions()?;
    let mut empty = Vec::with_capacity(p.rounds);
    let mut ns: Vec<Vec<f64>> = vec![Vec::with_capacity(p.rounds); classes.len()];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::with_capacity(p.rounds); classes.len()];
    for round in 0..p.rounds {
        // The empty program before and after the round; its mean is the
        // round's baseline.
        let e0 = cpu_ns_per_run(p.repeat, || {
            sandboxes[0].1.time_empty(&classes[0].frame, p.repeat)
        })?;
        let mut this = Vec::with_capacity(classes.len());
        let mut other_this = Vec::new();
        // Rotate the order so no class always runs right after another.
        for k in 0..classes.len() {
            let i = (k + round) % classes.len();
            let c = &classes[i];
            this.push((
                i,
                cpu_ns_per_run(p.repeat, || sandboxes[c.sandbox].1.time(&c.frame, p.repeat))?,
            ));
            for (b, o) in others.iter_mut().enumerate() {
                let t = cpu_ns_per_run(p.repeat, || o[c.sandbox].time(&c.frame, p.repeat))?;
                other_this.push((b, i, t));
            }
            // The peer's equivalent jobs right after the class, on its frame.
            if let Some(peers) = peers.as_mut() {
                for (j, job) in peers.jobs.iter().enumerate() {
                    if job.class_key == c.key {
                        let inst = &mut peers.instances[job.instance];
                        peer_ns[j]
                            .push(cpu_ns_per_run(p.repeat, || inst.time(&c.frame, p.repeat))?);
                    }
                }
            }
        }
        let e1 = cpu_ns_per_run(p.repeat, || {
            sandboxes[0].1.time_empty(&classes[0].frame, p.repeat)
        })?;
        let base = (e0 + e1) / 2.0;
        empty.push(base);
        for (i, v) in this {
            ns[i].push(v);
            ratio[i].push(v / base);
        }
        for (b, i, v) in other_this {
            other_ratio[b][i].push(v / base);
        }
    }

    let e = stats(&empty);
    let rows: Vec<Value> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "key": c.key,
                "name": c.name,
                "policy": sandboxes[c.sandbox].0,
                "frame_bytes": c.frame.len(),
                "reason": format!("{:?}", c.reason),
                "ns": stats(&ns[i]),
                "ratio": stats(&ratio[i]),
                "target_ratio": c.target,
                "meets_target": c.target.map(|t| stats(&ratio[i])["median"].as_f64().unwrap_or(f64::MAX) <= t),
            })
        })
        .collect();
    let compare: Vec<Value> = p
        .compare
        .iter()
        .enumerate()
        .map(|(b, (label, _))| {
            json!({
                "build": label,
                "verifier_instructions": others[b][0].verified_instructions().ok().flatten(),
                "blocklist": others_memory[b].as_ref().map(|m| json!({
                    "trie_entries": m.trie_entries, "trie_memory_bytes": m.trie_bytes,
                    "hosts_entries": m.hosts_entries, "hosts_memory_bytes": m.hosts_bytes,
                })),
                "classes": classes.iter().enumerate().map(|(i, c)| json!({"key": c.key, "name": c.name, "ratio": stats(&other_ratio[b][i])})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "compare": compare,
        "rounds": p.rounds,
        "repeat": p.repeat,
        "verifier_instructions": verifier,
        "empty_ns": e,
        "classes": rows,
        "blocklist": {
            "entries": inserted,
            "insert_seconds": insert_secs,
            "kernel_memory_bytes": memory.trie_bytes + memory.hosts_bytes,
            "trie_entries": memory.trie_entries,
            "trie_memory_bytes": memory.trie_bytes,
            "hosts_entries": memory.hosts_entries,
            "hosts_memory_bytes": memory.hosts_bytes,
            "slab_growth_bytes": slab_delta,
            "kmalloc_growth_bytes": kmalloc_delta,
        },
        "daemon_settings": daemon_settings_json(&classes, &ns),
        "peer": peers.as_ref().map(|peers| peer_json(peers, &classes, &ns, &peer_ns, &empty, &memory)),
        "missing": missing,
    }))
}

/// The 1M-entry list as xdp-filter can hold it: addresses only (a /24
/// entry contributes its network address), each once.
fn peer_addresses(list: &[(u32, [u8; 4])]) -> Vec<[u8; 4]> {
    let mut seen = HashSet::with_capacity(list.len());
    list.iter()
        .map(|e| e.1)
        .filter(|a| seen.insert(*a))
        .collect()
}

/// Target of sipguard against xdp-filter on each equivalent job: within
/// 1.1x, and on 1M-entry lists no slower than xdp-filter's hash.
fn peer_target(class_key: &str) -> f64 {
    if class_key == "blocked_1m_32" {
        1.0
    } else {
        1.1
    }
}

fn peer_json(
    peers: &xdpfilter::Peers,
    classes: &[Class],
    ns: &[Vec<f64>],
    peer_ns: &[Vec<f64>],
    empty: &[f64],
    memory: &BlocklistMemory,
) -> Value {
    let jobs: Vec<Value> = peers
        .jobs
        .iter()
        .enumerate()
        .filter_map(|(j, job)| {
            let i = classes.iter().position(|c| c.key == job.class_key)?;
            // Same round, same frame: sipguard's time over the peer's.
            let vs: Vec<f64> = ns[i].iter().zip(&peer_ns[j]).map(|(s, x)| s / x).collect();
            let to_empty: Vec<f64> = peer_ns[j].iter().zip(empty).map(|(x, e)| x / e).collect();
            let target = peer_target(job.class_key);
            let median = stats(&vs)["median"].as_f64().unwrap_or(f64::MAX);
            Some(json!({
                "key": job.key,
                "name": job.name,
                "program": peers.instances[job.instance].features().label(),
                "class_key": job.class_key,
                "class_name": classes[i].name,
                "drop": job.drop,
                "ns": stats(&peer_ns[j]),
                "ratio": stats(&to_empty),
                "sipguard_over_peer": stats(&vs),
                "target": target,
                "meets_target": median <= target,
            }))
        })
        .collect();
    let tables: Vec<Value> = peers
        .table_1m
        .iter()
        .map(|(f, n, bytes)| {
            json!({"features": f.label(), "entries": n, "memlock_bytes": bytes, "bytes_per_entry": *bytes as f64 / *n as f64})
        })
        .collect();
    json!({
        "jobs": jobs,
        "tables_1m": tables,
        "sipguard_trie": {"entries": memory.trie_entries, "memlock_bytes": memory.trie_bytes, "bytes_per_entry": memory.trie_bytes as f64 / memory.trie_entries as f64},
        "sipguard_hosts": {"entries": memory.hosts_entries, "memlock_bytes": memory.hosts_bytes, "bytes_per_entry": memory.hosts_bytes as f64 / memory.hosts_entries as f64},
    })
}

/// Each drop class in the sandbox setting against the same class with the
/// daemon's settings, and the flood's steady state (a banned source with
/// events on) against a static blocklist hit: per-round ratios of ns.
fn daemon_settings_json(classes: &[Class], ns: &[Vec<f64>]) -> Value {
    let per_round = |a: &str, b: &str| -> Option<Value> {
        let i = classes.iter().position(|c| c.key == a)?;
        let j = classes.iter().position(|c| c.key == b)?;
        let r: Vec<f64> = ns[i].iter().zip(&ns[j]).map(|(x, y)| x / y).collect();
        Some(stats(&r))
    };
    let pairs: Vec<Value> = [
        "untrusted_invite_drop",
        "blocked_small",
        "blocked_1m_32",
        "inspect_scanner_400",
        "banned",
    ]
    .iter()
    .filter_map(|k| {
        let ops = format!("{k}_ops");
        let ratio = per_round(&ops, k)?;
        Some(json!({"sandbox": k, "daemon": ops, "daemon_over_sandbox": ratio}))
    })
    .collect();
    json!({
        "pairs": pairs,
        "banned_ops_over_blocked_small": per_round("banned_ops", "blocked_small"),
        "banned_ops_over_blocked_small_ops": per_round("banned_ops", "blocked_small_ops"),
        "target": 1.25,
    })
}
