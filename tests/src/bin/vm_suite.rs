//! The suite that runs inside each kernel of the matrix (tests/src/vm.rs
//! boots it; tests/tests/kernel_matrix.rs reads its report). Every line
//! meant for the host starts with `SIPGUARD-VM:`; each part ends with a
//! `result=` line.
//!
//! - `vm_suite fixtures`: loads the real programs once, reports what the
//!   verifier made of each, and pushes every fixture case through that load.
//! - `vm_suite verifier`: only loads the programs and reports the verifier's
//!   figures (the quick loop when tuning the programs for an old verifier).
//! - `vm_suite replay`: `sipguard replay` on a capture of the inspection
//!   rows; every packet's reason must be the row's.
//! - `vm_suite e2e`: the daemon attached in native XDP mode to a veth in a
//!   namespace, real UDP SIP from another namespace, `sipguard stats`.

use std::{
    net::UdpSocket,
    path::Path,
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use sipguard::kernel::{features::Scanners, testrun::Sandbox};
use sipguard_common::{
    packet::Link, ANY_PORT_BOUNDED_PROGRAM_NAME, ANY_PORT_PROGRAM_NAME,
    ANY_PORT_PROGRAM_NAME_FRAGS, INSPECT_BOUNDED_PROGRAM_NAME, INSPECT_PROGRAM_NAME,
    INSPECT_PROGRAM_NAME_FRAGS, LEARN_PROGRAM_NAME, PROGRAM_NAME, PROGRAM_NAME_FRAGS,
    PROGRAM_NAME_RAW_IP,
};
use sipguard_tests::{addresses, fixtures, vm::RESULT_PREFIX};

/// How many failing rows of one case are printed in full.
const SHOWN_FAILURES: usize = 20;

fn report(line: &str) {
    println!("{RESULT_PREFIX} {line}");
}

fn main() -> ExitCode {
    let part = std::env::args().nth(1).unwrap_or_default();
    let ok = match part.as_str() {
        "fixtures" => fixtures(),
        "verifier" => verifier(),
        "replay" => replay(),
        "e2e" => e2e(),
        _ => {
            eprintln!("usage: vm_suite fixtures | verifier | replay | e2e");
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Loads the real programs once (the learner and the raw-IP entry point
/// too, which otherwise load on first use), reporting how long each took.
/// None when the object does not load.
fn load_all(cases: &[fixtures::Case], suite: &str) -> Option<Sandbox> {
    let start = Instant::now();
    let mut sb = match Sandbox::new(&cases[0].policy) {
        Ok(sb) => sb,
        Err(e) => {
            report(&format!("load result=fail error={:?}", format!("{e:#}")));
            report(&format!("suite={suite} result=fail"));
            return None;
        }
    };
    report(&format!(
        "load result=pass seconds={:.1} word_loads={}",
        start.elapsed().as_secs_f64(),
        sipguard::kernel::program::WORD_LOADS_ON_THIS_CPU
    ));
    let frame = &cases[0].rows[0].frame;
    let t = Instant::now();
    let learner = sb.run_learner(frame).map(drop);
    report_load("learner-load", t, learner);
    let t = Instant::now();
    let raw_ip = sb.run_link(frame, Link::RawIp).map(drop);
    report_load("rawip-load", t, raw_ip);
    // The multi-buffer build, for the rows above a single buffer.
    if sipguard::kernel::features::has_multi_buffer() {
        let t = Instant::now();
        let multi = sb.load_multi_buffer(Link::Ethernet).map(drop);
        report_load("multibuffer-load", t, multi);
    } else {
        report("multibuffer-load result=skip needs=xdp.frags");
    }
    Some(sb)
}

fn report_load(what: &str, start: Instant, result: anyhow::Result<()>) {
    match result {
        Ok(()) => report(&format!(
            "{what} result=pass seconds={:.1}",
            start.elapsed().as_secs_f64()
        )),
        Err(e) => report(&format!("{what} result=fail error={:?}", format!("{e:#}"))),
    }
}

/// The verifier's figures for every program of the object; the builds
/// without bpf_loop from `bounded` where the kernel has the helper (the
/// main sandbox then runs the other builds).
fn report_verifier(sb: &Sandbox, bounded: Option<&Sandbox>, under_loop: Option<&Sandbox>) {
    for prog in [
        PROGRAM_NAME,
        INSPECT_PROGRAM_NAME,
        INSPECT_BOUNDED_PROGRAM_NAME,
        ANY_PORT_PROGRAM_NAME,
        ANY_PORT_BOUNDED_PROGRAM_NAME,
        LEARN_PROGRAM_NAME,
        PROGRAM_NAME_RAW_IP,
        PROGRAM_NAME_FRAGS,
        INSPECT_PROGRAM_NAME_FRAGS,
        ANY_PORT_PROGRAM_NAME_FRAGS,
    ] {
        let sb = match (bounded, under_loop) {
            (Some(b), _)
                if prog == ANY_PORT_BOUNDED_PROGRAM_NAME
                    || prog == INSPECT_BOUNDED_PROGRAM_NAME =>
            {
                b
            }
            (_, Some(l)) if prog == INSPECT_PROGRAM_NAME => l,
            _ => sb,
        };
        // Per function, entry point first: "480+32".
        let stack = match sb.stack_frames_of(prog) {
            Ok(Some(frames)) => frames
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("+"),
            _ => "unreported".to_string(),
        };
        // 0: the program runs in the interpreter.
        let jited = sb.jited_bytes_of(prog).unwrap_or(0);
        match sb.verified_instructions_of(prog) {
            Ok(Some(n)) => report(&format!(
                "verifier prog={prog} insns={n} stack={stack} jited={jited}"
            )),
            // Kernels before 5.16 do not report the count.
            Ok(None) => report(&format!(
                "verifier prog={prog} insns=unreported stack={stack} jited={jited}"
            )),
            // Not loaded: the bpf_loop programs on a kernel without it.
            Err(e) => report(&format!(
                "verifier prog={prog} insns=not-loaded detail={:?}",
                format!("{e:#}")
            )),
        }
    }
}

/// The main sandbox runs the builds the daemon installs (the bounded
/// inspector; the any-port reader under bpf_loop where the kernel has it);
/// this second load runs both bounded builds, so every build meets the same
/// rows and corpora. None on kernels without the helper (the main sandbox
/// already runs those builds) or when it fails to load (reported as a
/// failure).
fn load_bounded(cases: &[fixtures::Case]) -> Result<Option<Sandbox>, ()> {
    if !sipguard::kernel::features::has_bpf_loop() {
        return Ok(None);
    }
    let t = Instant::now();
    match Sandbox::with_scanners(&cases[0].policy, Scanners::Bounded) {
        Ok(sb) => {
            report_load("without-bpf-loop-load", t, Ok(()));
            Ok(Some(sb))
        }
        Err(e) => {
            report_load("without-bpf-loop-load", t, Err(e));
            Err(())
        }
    }
}

/// Both builds under bpf_loop (the daemon's fallback inspector), where the
/// kernel has the helper: a refusal by the verifier is reported, not a
/// failure (the daemon then runs the bounded build it tried first).
fn load_under_loop(cases: &[fixtures::Case]) -> Option<Sandbox> {
    if !sipguard::kernel::features::has_bpf_loop() {
        return None;
    }
    let t = Instant::now();
    match Sandbox::with_scanners(&cases[0].policy, Scanners::BpfLoop) {
        Ok(sb) => {
            report_load("bpf-loop-load", t, Ok(()));
            Some(sb)
        }
        Err(e) => {
            let why = format!("{e:#}");
            report(&format!(
                "bpf-loop-load result=refused seconds={:.1} detail={:?}",
                t.elapsed().as_secs_f64(),
                why.lines().next().unwrap_or_default()
            ));
            None
        }
    }
}

fn verifier() -> bool {
    let cases = fixtures::all_cases();
    let Some(sb) = load_all(&cases, "verifier") else {
        return false;
    };
    let Ok(bounded) = load_bounded(&cases) else {
        report("suite=verifier result=fail");
        return false;
    };
    let under_loop = load_under_loop(&cases);
    report_verifier(&sb, bounded.as_ref(), under_loop.as_ref());
    report("suite=verifier result=pass");
    true
}

fn fixtures() -> bool {
    let cases = fixtures::all_cases();
    let Some(mut sb) = load_all(&cases, "fixtures") else {
        return false;
    };
    let Ok(mut bounded) = load_bounded(&cases) else {
        report("suite=fixtures result=fail");
        return false;
    };
    let mut under_loop = load_under_loop(&cases);
    let mut failed = 0;
    let mut rows = 0;
    let run_start = Instant::now();
    let has_loop = sipguard::kernel::features::has_bpf_loop();
    report(&format!("bpf_loop present={has_loop}"));
    for case in &cases {
        let name = case.name.replace(' ', "-");
        let mut builds = vec![(name.clone(), &mut sb)];
        if let (true, Some(b)) = (case.uses_scanners(), bounded.as_mut()) {
            builds.push((format!("{name}-without-bpf-loop"), b));
        }
        if let (true, Some(l)) = (case.uses_scanners(), under_loop.as_mut()) {
            builds.push((format!("{name}-under-bpf-loop"), l));
        }
        for (name, sb) in builds {
            let failures = case.run(sb);
            rows += case.rows.len();
            for f in failures.iter().take(SHOWN_FAILURES) {
                report(&format!("row case={name} result=fail detail={f:?}"));
            }
            report(&format!(
                "case name={name} rows={} failures={} result={}",
                case.rows.len(),
                failures.len(),
                if failures.is_empty() { "pass" } else { "fail" }
            ));
            if !failures.is_empty() {
                failed += 1;
            }
        }
    }
    report_verifier(&sb, bounded.as_ref(), under_loop.as_ref());
    failed += differential(&mut sb, bounded.as_mut());
    report(&format!(
        "suite=fixtures cases={} rows={rows} failed_cases={failed} seconds={:.1} result={}",
        cases.len(),
        run_start.elapsed().as_secs_f64(),
        if failed == 0 { "pass" } else { "fail" }
    ));
    failed == 0
}

/// Corpus sizes inside a VM: emulation makes each packet cost about ten
/// times what it costs on the host, so a slice of the host test's corpus
/// (same seed, so the same first packets) still reaching every outcome.
const DIFFERENTIAL_SIP: usize = 12_000;
const DIFFERENTIAL_ANY_PORT: usize = 6_000;

/// The differential corpora through the sandboxes' one load each; returns
/// how many runs failed. Every corpus runs against both builds of the
/// inspector and the any-port reader (`bounded` holds the ones without
/// bpf_loop where the main sandbox runs the others).
fn differential(sb: &mut Sandbox, mut bounded: Option<&mut Sandbox>) -> usize {
    use sipguard::policy::{config::Config, Policy};
    use sipguard_tests::differential as d;
    let mut failed = 0;
    let corpora = [
        (
            "sip",
            d::SIP_CONFIG,
            DIFFERENTIAL_SIP,
            d::SIP_REASONS,
            d::SIP_MIN_SHARE,
        ),
        (
            "any-port",
            d::ANY_PORT_CONFIG,
            DIFFERENTIAL_ANY_PORT,
            d::ANY_PORT_REASONS,
            d::ANY_PORT_MIN_SHARE,
        ),
        (
            "any-port-drop",
            d::ANY_PORT_DROP_CONFIG,
            DIFFERENTIAL_ANY_PORT,
            d::ANY_PORT_DROP_REASONS,
            d::ANY_PORT_MIN_SHARE,
        ),
    ];
    for (name, config, packets, reasons, share) in corpora {
        let policy = Policy::from_config(&Config::parse(config, "differential").expect("config"));
        let mut builds = vec![(name.to_string(), &mut *sb)];
        if let Some(b) = bounded.as_deref_mut() {
            builds.push((format!("{name}-without-bpf-loop"), b));
        }
        for (name, sb) in builds {
            let start = Instant::now();
            if let Err(e) = sb.apply(&policy) {
                report(&format!(
                    "differential name={name} result=fail error={:?}",
                    format!("{e:#}")
                ));
                failed += 1;
                continue;
            }
            let out = if name.starts_with("sip") {
                d::random_sip(sb, &policy, packets)
            } else {
                d::any_port(sb, &policy, packets)
            };
            let mut problems = out.shown.clone();
            problems.extend(out.too_rare(reasons, share));
            for p in problems.iter().take(SHOWN_FAILURES) {
                report(&format!(
                    "differential-row name={name} result=fail detail={p:?}"
                ));
            }
            let ok = out.mismatches == 0 && problems.is_empty();
            report(&format!(
                "differential name={name} packets={packets} mismatches={} seconds={:.1} result={}",
                out.mismatches,
                start.elapsed().as_secs_f64(),
                if ok { "pass" } else { "fail" }
            ));
            if !ok {
                failed += 1;
            }
        }
    }
    failed
}

fn sipguard() -> Command {
    Command::new(std::env::var("SIPGUARD_BIN").unwrap_or_else(|_| "sipguard".into()))
}

/// The inspection rows through `sipguard replay`, which installs the
/// inspector this kernel gets (with or without bpf_loop).
fn replay() -> bool {
    replay_rows(
        "inspect",
        fixtures::inspect::BASE,
        &fixtures::inspect::default_rows(),
    )
}

fn write_capture(
    name: &str,
    config: &str,
    rows: &[fixtures::Row],
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let dir = Path::new("/tmp/replay").join(name);
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("sipguard.yaml");
    std::fs::write(&cfg, config)?;
    let capture = dir.join("capture.pcap");
    let mut w = pcap_file::pcap::PcapWriter::new(std::fs::File::create(&capture)?)?;
    for (i, r) in rows.iter().enumerate() {
        w.write_packet(&pcap_file::pcap::PcapPacket::new(
            Duration::from_millis(i as u64),
            r.frame.len() as u32,
            &r.frame,
        ))?;
    }
    Ok((cfg, capture))
}

/// `sipguard replay --json` of `rows` (written as a capture) under `config`.
fn run_replay(
    name: &str,
    config: &str,
    rows: &[fixtures::Row],
) -> anyhow::Result<std::process::Output> {
    let (cfg, capture) = write_capture(name, config, rows)?;
    Ok(sipguard()
        .args(["replay", "--json", "-c"])
        .arg(&cfg)
        .arg(&capture)
        .output()?)
}

fn replay_rows(name: &str, config: &str, rows: &[fixtures::Row]) -> bool {
    let run = || -> anyhow::Result<Vec<String>> {
        let out = run_replay(name, config, rows)?;
        if !out.status.success() {
            anyhow::bail!(
                "sipguard replay failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut failures = Vec::new();
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        if lines.len() != rows.len() {
            failures.push(format!(
                "{} verdicts for {} packets",
                lines.len(),
                rows.len()
            ));
        }
        // Frames a single-buffer test run cannot take go to the host
        // evaluator on kernels without multi-buffer XDP, labelled, the
        // reason followed by why.
        let multi_buffer = sipguard::kernel::features::has_multi_buffer();
        for (r, v) in rows.iter().zip(&lines) {
            let by_host = r.frame.len() > sipguard::replay::MAX_TEST_FRAME && !multi_buffer;
            let engine = if by_host { "host" } else { "kernel" };
            if v["engine"] != engine {
                failures.push(format!(
                    "{}: decided by {}, not the {engine}",
                    r.name, v["engine"]
                ));
            }
            let said = v["reason"].as_str().unwrap_or_default();
            let reason_ok = if by_host {
                said.starts_with(&format!("{} (", r.reason.name()))
            } else {
                said == r.reason.name()
            };
            if !reason_ok {
                failures.push(format!(
                    "{}: replay said {}, expected {}",
                    r.name,
                    v["reason"],
                    r.reason.name()
                ));
            }
        }
        Ok(failures)
    };
    match run() {
        Ok(failures) => {
            for f in failures.iter().take(SHOWN_FAILURES) {
                report(&format!("replay-row result=fail detail={f:?}"));
            }
            report(&format!(
                "suite=replay-{name} packets={} failures={} result={}",
                rows.len(),
                failures.len(),
                if failures.is_empty() { "pass" } else { "fail" }
            ));
            failures.is_empty()
        }
        Err(e) => {
            report(&format!(
                "suite=replay-{name} result=fail error={:?}",
                format!("{e:#}")
            ));
            false
        }
    }
}

/// The traffic of the end-to-end part: scanner OPTIONS and clean INVITEs
/// from an untrusted address, clean INVITEs from a trusted one.
const SCANS: usize = 3;
const CALLS: usize = 2;
const WAN_ADDR: std::net::Ipv4Addr = addresses::PBX4;
const UNTRUSTED_ADDR: std::net::Ipv4Addr = addresses::SCANNER4;
const TRUSTED_ADDR: std::net::Ipv4Addr = addresses::PROVIDER4;
/// The daemon's start includes verifying every program: slow under emulation.
const READY_WITHIN: Duration = Duration::from_secs(300);

/// A policy and what must come of the traffic under it.
struct Scenario {
    name: &'static str,
    policy: &'static str,
    /// INVITEs delivered from (untrusted, trusted).
    delivered: (usize, usize),
    /// Counter packets by reason name.
    counted: &'static [(&'static str, u64)],
}

const INSPECT: Scenario = Scenario {
    name: "inspect",
    policy: "policy: inspect",
    delivered: (CALLS, CALLS),
    counted: &[
        ("user_agent", SCANS as u64),
        ("inspected_clean", CALLS as u64),
        ("trusted", CALLS as u64),
    ],
};

/// `sipguard check --kernel` must agree with the probe this suite made,
/// name the inspector and any-port reader this kernel gets (the builds
/// under bpf_loop where it has the helper, the bounded ones where it does
/// not) and accept an inspect policy and an any-port one on every kernel.
fn check_kernel() -> bool {
    let has_loop = sipguard::kernel::features::has_bpf_loop();
    let run = || -> anyhow::Result<()> {
        let dir = Path::new("/tmp/check");
        std::fs::create_dir_all(dir)?;
        for (name, config) in [
            ("inspect", fixtures::inspect::BASE),
            ("any-port", sipguard_tests::differential::ANY_PORT_CONFIG),
        ] {
            let cfg = dir.join(format!("{name}.yaml"));
            std::fs::write(&cfg, config)?;
            let out = sipguard()
                .args(["check", "--kernel", "-c"])
                .arg(&cfg)
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                anyhow::bail!(
                    "check --kernel refused the {name} policy (exit {:?}):\n{text}{}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let line = text
                .lines()
                .find(|l| l.contains("bpf_loop helper"))
                .ok_or_else(|| anyhow::anyhow!("no bpf_loop line in:\n{text}"))?;
            let (mark, builds) = if has_loop {
                (
                    "yes",
                    "SIP inspector: sipguard_inspect_bounded (steps under a loop with a constant bound), \
                     else sipguard_inspect; \
                     any-port reader: sipguard_anyport (steps under bpf_loop), else sipguard_anyport_bounded",
                )
            } else {
                (
                    "NO",
                    "SIP inspector: sipguard_inspect_bounded (steps under a loop with a constant bound); \
                     any-port reader: sipguard_anyport_bounded (steps under a loop with a constant bound)",
                )
            };
            if !line.trim_start().starts_with(mark) || !text.lines().any(|l| l == builds) {
                anyhow::bail!("check --kernel does not say {mark:?} and {builds:?}:\n{text}");
            }
        }
        Ok(())
    };
    let result = run();
    report(&format!(
        "suite=check-kernel result={}{}",
        if result.is_ok() { "pass" } else { "fail" },
        match &result {
            Ok(()) => String::new(),
            Err(e) => format!(" error={:?}", format!("{e:#}")),
        }
    ));
    result.is_ok()
}

fn e2e() -> bool {
    if !check_kernel() {
        return false;
    }
    let scenario = INSPECT;
    match e2e_run(&scenario) {
        Ok(()) => {
            report(&format!("suite=e2e-{} result=pass", scenario.name));
            true
        }
        Err(e) => {
            report(&format!(
                "suite=e2e-{} result=fail error={:?}",
                scenario.name,
                format!("{e:#}")
            ));
            false
        }
    }
}

fn e2e_run(sc: &Scenario) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    use sipguard_tests::harness::netns::{unique, veth, Netns};
    let wan = Netns::new("w");
    let peer = Netns::new("p");
    let (wan_if, peer_if) = (unique("a"), unique("b"));
    veth(&wan, &wan_if, &peer, &peer_if);
    wan.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{WAN_ADDR}/24"),
        "dev",
        &wan_if,
    ]);
    for a in [UNTRUSTED_ADDR, TRUSTED_ADDR] {
        peer.exec(&["ip", "addr", "add", &format!("{a}/24"), "dev", &peer_if]);
    }
    let dir = Path::new("/tmp/e2e").join(sc.name);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("sipguard.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: [{wan_if}]\nxdp_mode: native\n{}\nsip_ports: [5060]\ntrusted: [{TRUSTED_ADDR}]\n",
            sc.policy
        ),
    )?;
    let pin_root = format!("/sys/fs/bpf/sipguard-e2e-{}", sc.name);
    let log = dir.join("daemon.log");
    let bin = std::env::var("SIPGUARD_BIN").unwrap_or_else(|_| "/usr/local/bin/sipguard".into());
    let mut daemon = wan
        .command(&bin)
        .args(["run", "--pin-root", &pin_root, "-c"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting sipguard run")?;
    let result = (|| -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("ready:") {
                break;
            }
            if let Some(status) = daemon.try_wait()? {
                bail!("sipguard run refused at start ({status}):\n{text}");
            }
            if start.elapsed() > READY_WITHIN {
                bail!("sipguard run not ready within {READY_WITHIN:?}:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        report(&format!(
            "e2e-ready scenario={} seconds={:.1}",
            sc.name,
            start.elapsed().as_secs_f64()
        ));
        let listener = wan.run(|| UdpSocket::bind((WAN_ADDR, 5060)))?;
        listener.set_read_timeout(Some(Duration::from_secs(3)))?;
        let dst = format!("{WAN_ADDR}:5060");
        peer.run(move || -> std::io::Result<()> {
            let untrusted = UdpSocket::bind((UNTRUSTED_ADDR, 0))?;
            let trusted = UdpSocket::bind((TRUSTED_ADDR, 0))?;
            for _ in 0..SCANS {
                untrusted.send_to(&sipguard_tests::sip::svmap_options(), &dst)?;
            }
            for i in 0..CALLS {
                let inv = |from: &str| {
                    sipguard_tests::sip::invite(from, "bob", "pbx.example", "Linphone/5.2")
                };
                untrusted.send_to(&inv(&format!("alice{i}")), &dst)?;
                trusted.send_to(&inv(&format!("carol{i}")), &dst)?;
            }
            Ok(())
        })?;
        let (mut from_untrusted, mut from_trusted, mut scans) = (0, 0, 0);
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = listener.recv_from(&mut buf) {
            if !buf[..n].starts_with(b"INVITE ") {
                scans += 1;
            } else if from.ip() == std::net::IpAddr::V4(TRUSTED_ADDR) {
                from_trusted += 1;
            } else {
                from_untrusted += 1;
            }
        }
        report(&format!(
            "e2e-delivered scenario={} untrusted_invites={from_untrusted} trusted_invites={from_trusted} scans={scans}",
            sc.name
        ));
        if (from_untrusted, from_trusted) != sc.delivered || scans != 0 {
            bail!(
                "delivered INVITEs (untrusted, trusted) = ({from_untrusted}, {from_trusted}) and {scans} scans; want {:?} and none",
                sc.delivered
            );
        }
        let out = sipguard()
            .args(["stats", "--json", "--pin-root", &pin_root])
            .output()?;
        if !out.status.success() {
            bail!(
                "sipguard stats failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        for (reason, want) in sc.counted {
            let got = stats["reasons"][reason]["packets"].as_u64().unwrap_or(0);
            report(&format!("e2e-stats scenario={} {reason}={got}", sc.name));
            if got != *want {
                bail!("stats count {reason}={got}, want {want}");
            }
        }
        Ok(())
    })();
    // Our own child, by its handle: SIGTERM detaches and removes the pins.
    if daemon.try_wait()?.is_none() {
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
        let _ = daemon.wait();
    }
    let _ = std::fs::remove_dir_all(&pin_root);
    result
}
