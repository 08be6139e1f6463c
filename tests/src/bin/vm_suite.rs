//! The suite that runs inside each kernel of the matrix (tests/src/vm.rs
//! boots it; tests/tests/kernel_matrix.rs reads its report). Every line
//! meant for the host starts with `SIPGUARD-VM:`; each part ends with a
//! `result=` line.
//!
//! - `vm_suite fixtures`: loads the real programs once, reports what the
//!   verifier made of each, and pushes every fixture case through that load.
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

use sipguard::testrun::Sandbox;
use sipguard_common::{
    ANY_PORT_PROGRAM_NAME, INSPECT_PROGRAM_NAME, LEARN_PROGRAM_NAME, PROGRAM_NAME,
};
use sipguard_tests::{fixtures, vm::RESULT_PREFIX};

/// How many failing rows of one case are printed in full.
const SHOWN_FAILURES: usize = 20;

fn report(line: &str) {
    println!("{RESULT_PREFIX} {line}");
}

fn main() -> ExitCode {
    let part = std::env::args().nth(1).unwrap_or_default();
    let ok = match part.as_str() {
        "fixtures" => fixtures(),
        "replay" => replay(),
        "e2e" => e2e(),
        _ => {
            eprintln!("usage: vm_suite fixtures | replay | e2e");
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fixtures() -> bool {
    let cases = fixtures::all_cases();
    let start = Instant::now();
    let mut sb = match Sandbox::new(&cases[0].policy) {
        Ok(sb) => sb,
        Err(e) => {
            report(&format!("load result=fail error={:?}", format!("{e:#}")));
            report("suite=fixtures result=fail");
            return false;
        }
    };
    report(&format!(
        "load result=pass seconds={:.1}",
        start.elapsed().as_secs_f64()
    ));
    // The registrar learner loads on first use; load it here so its count
    // is reported with the others.
    let learner_start = Instant::now();
    match sb.run_learner(&cases[0].rows[0].frame) {
        Ok(_) => report(&format!(
            "learner-load result=pass seconds={:.1}",
            learner_start.elapsed().as_secs_f64()
        )),
        Err(e) => report(&format!(
            "learner-load result=fail error={:?}",
            format!("{e:#}")
        )),
    }
    for prog in [
        PROGRAM_NAME,
        INSPECT_PROGRAM_NAME,
        ANY_PORT_PROGRAM_NAME,
        LEARN_PROGRAM_NAME,
    ] {
        match sb.verified_instructions_of(prog) {
            Ok(Some(n)) => report(&format!("verifier prog={prog} insns={n}")),
            Ok(None) => report(&format!("verifier prog={prog} insns=unknown")),
            Err(e) => report(&format!(
                "verifier prog={prog} error={:?}",
                format!("{e:#}")
            )),
        }
    }
    let mut failed = 0;
    let mut rows = 0;
    let run_start = Instant::now();
    for case in &cases {
        let failures = case.run(&mut sb);
        rows += case.rows.len();
        let name = case.name.replace(' ', "-");
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
    report(&format!(
        "suite=fixtures cases={} rows={rows} failed_cases={failed} seconds={:.1} result={}",
        cases.len(),
        run_start.elapsed().as_secs_f64(),
        if failed == 0 { "pass" } else { "fail" }
    ));
    failed == 0
}

fn sipguard() -> Command {
    Command::new(std::env::var("SIPGUARD_BIN").unwrap_or_else(|_| "sipguard".into()))
}

fn replay() -> bool {
    let rows = fixtures::inspect::default_rows();
    let dir = Path::new("/tmp/replay");
    let run = || -> anyhow::Result<Vec<String>> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("sipguard.yaml");
        std::fs::write(&config, fixtures::inspect::BASE)?;
        let capture = dir.join("inspect.pcap");
        let mut w = pcap_file::pcap::PcapWriter::new(std::fs::File::create(&capture)?)?;
        for (i, r) in rows.iter().enumerate() {
            w.write_packet(&pcap_file::pcap::PcapPacket::new(
                Duration::from_millis(i as u64),
                r.frame.len() as u32,
                &r.frame,
            ))?;
        }
        drop(w);
        let out = sipguard()
            .args(["replay", "--json", "-c"])
            .arg(&config)
            .arg(&capture)
            .output()?;
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
        for (r, v) in rows.iter().zip(&lines) {
            if v["reason"] != r.reason.name() {
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
                "suite=replay packets={} failures={} result={}",
                rows.len(),
                failures.len(),
                if failures.is_empty() { "pass" } else { "fail" }
            ));
            failures.is_empty()
        }
        Err(e) => {
            report(&format!(
                "suite=replay result=fail error={:?}",
                format!("{e:#}")
            ));
            false
        }
    }
}

/// Scanner OPTIONS and clean INVITEs sent through the attached filter.
const SCANS: usize = 3;
const CALLS: usize = 2;
const WAN_ADDR: &str = "192.0.2.1";
const PEER_ADDR: &str = "192.0.2.2";
/// The daemon's start includes verifying every program: slow under emulation.
const READY_WITHIN: Duration = Duration::from_secs(300);

fn e2e() -> bool {
    match e2e_run() {
        Ok(()) => {
            report("suite=e2e result=pass");
            true
        }
        Err(e) => {
            report(&format!(
                "suite=e2e result=fail error={:?}",
                format!("{e:#}")
            ));
            false
        }
    }
}

fn e2e_run() -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    use sipguard_tests::netns::{unique, veth, Netns};
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
    peer.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{PEER_ADDR}/24"),
        "dev",
        &peer_if,
    ]);
    let dir = Path::new("/tmp/e2e");
    std::fs::create_dir_all(dir)?;
    let config = dir.join("sipguard.yaml");
    std::fs::write(
        &config,
        format!("interfaces: [{wan_if}]\nxdp_mode: native\npolicy: inspect\nsip_ports: [5060]\n"),
    )?;
    let pin_root = "/sys/fs/bpf/sipguard-e2e";
    let log = dir.join("daemon.log");
    let bin = std::env::var("SIPGUARD_BIN").unwrap_or_else(|_| "/usr/local/bin/sipguard".into());
    let mut daemon = wan
        .command(&bin)
        .args(["run", "--pin-root", pin_root, "-c"])
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
                bail!("sipguard run exited ({status}) before ready:\n{text}");
            }
            if start.elapsed() > READY_WITHIN {
                bail!("sipguard run not ready within {READY_WITHIN:?}:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        report(&format!(
            "e2e-ready seconds={:.1}",
            start.elapsed().as_secs_f64()
        ));
        let listener = wan.run(|| UdpSocket::bind((WAN_ADDR, 5060)))?;
        listener.set_read_timeout(Some(Duration::from_secs(3)))?;
        let dst = format!("{WAN_ADDR}:5060");
        peer.run(move || -> std::io::Result<()> {
            let s = UdpSocket::bind((PEER_ADDR, 0))?;
            for _ in 0..SCANS {
                s.send_to(&sipguard_tests::sip::svmap_options(), &dst)?;
            }
            for i in 0..CALLS {
                let inv = sipguard_tests::sip::invite(
                    &format!("alice{i}"),
                    "bob",
                    "pbx.example",
                    "Linphone/5.2",
                );
                s.send_to(&inv, &dst)?;
            }
            Ok(())
        })?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = listener.recv_from(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        let calls = got.iter().filter(|m| m.starts_with("INVITE ")).count();
        let scans = got.len() - calls;
        report(&format!("e2e-delivered invites={calls} scans={scans}"));
        if calls != CALLS || scans != 0 {
            bail!("delivered {calls} of {CALLS} INVITEs and {scans} of {SCANS} scanner requests (want all INVITEs, no scans)");
        }
        let out = sipguard()
            .args(["stats", "--json", "--pin-root", pin_root])
            .output()?;
        if !out.status.success() {
            bail!(
                "sipguard stats failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let packets = |reason: &str| stats["reasons"][reason]["packets"].as_u64().unwrap_or(0);
        let (dropped, clean) = (packets("user_agent"), packets("inspected_clean"));
        report(&format!(
            "e2e-stats user_agent={dropped} inspected_clean={clean}"
        ));
        if dropped != SCANS as u64 || clean != CALLS as u64 {
            bail!("stats count user_agent={dropped} inspected_clean={clean}, want {SCANS} and {CALLS}");
        }
        Ok(())
    })();
    // Our own child, by its handle: SIGTERM detaches and removes the pins.
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(pin_root);
    result
}
