//! `--crowdsec`: decisions from Debian's real Local API (offline, on
//! loopback) into the bouncer's decision set: 100,000 decisions (half IPv4
//! addresses, half IPv6 /64 ranges) from one `startup=true` pull, then a
//! delta of 1,000. Times the Local API's answer and sipguard's reading of
//! it together, as a bouncer sees them; the import through `cscli` is
//! timed too, as the Local API's own reference in the same run. The
//! kernel half: both pulls' entries written into the decision tries of a
//! private instance of the real object, as the daemon's bouncer writes
//! them, and a frame from a decided address checked to be dropped.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};
use sipguard::{
    kernel::testrun::Sandbox,
    policy::config::{Config, Dur},
    policy::sources::crowdsec::{
        bouncer::Bouncer,
        config::CrowdsecConfig,
        decisions::{Ban, DecisionSet},
    },
    policy::{Decision, Policy},
};
use sipguard_common::Reason;
use sipguard_tests::{
    crowdsec::{free_loopback_port, LocalApi},
    frames::v4,
    sip,
};

/// Writes `bans` into `sb`'s decision tries; seconds taken.
fn write(sb: &mut Sandbox, bans: &[Ban]) -> Result<f64> {
    let entries: Vec<Decision> = bans.iter().map(Ban::decision).collect();
    let t = Instant::now();
    let n = sb.add_decisions(&entries)?;
    let s = t.elapsed().as_secs_f64();
    anyhow::ensure!(n == bans.len(), "{n} of {} written", bans.len());
    Ok(s)
}

fn decisions(first: u32, n: u32) -> Value {
    let v: Vec<Value> = (first..first + n)
        .map(|i| {
            if i % 2 == 0 {
                let a = 0x0a00_0000u32 + i;
                json!({"duration": "4h", "scope": "Ip", "type": "ban",
                       "value": std::net::Ipv4Addr::from(a).to_string()})
            } else {
                let net = format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff);
                json!({"duration": "4h", "scope": "Range", "type": "ban", "value": net})
            }
        })
        .collect();
    Value::Array(v)
}

/// `cscli decisions import`, one file per scope: 1.4's `--scope` flag
/// (default `Ip`) overrides the scope of every line.
fn import(api: &LocalApi, first: u32, n: u32) -> Result<Duration> {
    let all = decisions(first, n);
    let mut took = Duration::ZERO;
    for scope in ["Ip", "Range"] {
        let part: Vec<&Value> = all
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["scope"] == scope)
            .collect();
        let file = api.dir.join(format!("import-{first}-{scope}.json"));
        std::fs::write(&file, serde_json::to_string(&part)?)?;
        let t = Instant::now();
        api.cscli(&[
            "decisions",
            "import",
            "--scope",
            scope,
            "-i",
            &file.display().to_string(),
        ])?;
        took += t.elapsed();
    }
    Ok(took)
}

pub fn run(total: u32, delta: u32) -> Result<Value> {
    let listen = format!("127.0.0.1:{}", free_loopback_port()).parse()?;
    let api = LocalApi::start(listen, None)?;
    let (key, key_file) = api.add_bouncer("bench")?;
    let cfg = CrowdsecConfig {
        url: api.url(),
        api_key_file: key_file,
        interval: Dur(Duration::from_secs(10)),
        origins: None,
        machine: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut b = Bouncer::new(&cfg, key)?;
    // A first pull so the delta below is measured from a known point.
    rt.block_on(b.pull(sipguard::kernel::stateful::boot_ns))?;
    let import_full = import(&api, 0, total)?;
    let startup_key = api.add_bouncer("bench-startup")?.0;
    let mut fresh = Bouncer::new(&cfg, startup_key.clone())?;
    let t = Instant::now();
    let startup = rt
        .block_on(fresh.pull(sipguard::kernel::stateful::boot_ns))
        .context("startup pull")?;
    let startup_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        startup.upsert.len() == total as usize,
        "startup pull gave {} decisions, {total} imported",
        startup.upsert.len()
    );
    // The same startup answer again, split: the Local API's answer read
    // and parsed, then sipguard's decision set built from it.
    let t = Instant::now();
    let resp = rt.block_on(fresh.lapi().decisions_stream(&startup_key, true, None))?;
    let fetch_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (set_changes, _) =
        DecisionSet::default().apply(&resp, true, sipguard::kernel::stateful::boot_ns());
    let set_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(set_changes.upsert.len() == total as usize);
    // The kernel half: the startup pull's entries into a fresh instance's
    // tries, then a frame from the first decided address (10.0.0.0).
    let mut sb = Sandbox::new(&Policy::from_config(&Config::embedded_default()?))?;
    let kernel_s = write(&mut sb, &startup.upsert)?;
    let frame = v4([10, 0, 0, 0], [192, 0, 2, 1])
        .udp(40000, 5060)
        .payload(sip::invite("a", "b", "pbx.example", "Test/1.0"))
        .build();
    let verdict = sb.run(&frame)?;
    anyhow::ensure!(
        verdict.reason == Reason::DropDecision,
        "a decided address got {:?}",
        verdict.reason
    );
    let _ = rt.block_on(b.pull(sipguard::kernel::stateful::boot_ns))?;
    let import_delta = import(&api, total, delta)?;
    let t = Instant::now();
    let d = rt.block_on(b.pull(sipguard::kernel::stateful::boot_ns))?;
    let delta_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        d.upsert.len() == delta as usize,
        "delta pull gave {}, {delta} imported",
        d.upsert.len()
    );
    let kernel_delta_s = write(&mut sb, &d.upsert)?;
    Ok(json!({
        "decisions": total,
        "startup_pull_s": startup_s,
        "startup_decisions_per_s": total as f64 / startup_s,
        "startup_fetch_parse_s": fetch_s,
        "startup_set_s": set_s,
        "delta": delta,
        "delta_pull_s": delta_s,
        "kernel_write_s": kernel_s,
        "startup_applied_s": startup_s + kernel_s,
        "kernel_delta_write_s": kernel_delta_s,
        "delta_applied_s": delta_s + kernel_delta_s,
        "cscli_import_s": import_full.as_secs_f64(),
        "cscli_import_delta_s": import_delta.as_secs_f64(),
    }))
}

pub fn table(r: &Value) -> String {
    format!(
        "| step | decisions | seconds | decisions/s |\n|---|---|---|---|\n\
         | `cscli decisions import` (Local API reference) | {n} | {ci:.2} | {cir:.0} |\n\
         | startup=true pull: Local API answer + sipguard's set | {n} | {s:.2} | {sr:.0} |\n\
         | of which: answer read and parsed | {n} | {f:.2} | {fr:.0} |\n\
         | of which: decision set built | {n} | {st:.3} | {str:.0} |\n\
         | `cscli decisions import` delta | {dn} | {di:.2} | {dir:.0} |\n\
         | delta pull | {dn} | {d:.3} | {dr:.0} |\n\
         | kernel: startup entries written into the decision tries | {n} | {k:.2} | {kr:.0} |\n\
         | **startup applied: pull + kernel write** (target < 5 s) | {n} | {sa:.2} | {sar:.0} |\n\
         | kernel: delta entries written | {dn} | {kd:.4} | {kdr:.0} |\n\
         | **delta applied: pull + kernel write** (target < 1 s) | {dn} | {da:.3} | {dar:.0} |\n",
        n = r["decisions"],
        ci = r["cscli_import_s"].as_f64().unwrap_or(0.0),
        cir = r["decisions"].as_f64().unwrap_or(0.0) / r["cscli_import_s"].as_f64().unwrap_or(1.0),
        s = r["startup_pull_s"].as_f64().unwrap_or(0.0),
        sr = r["startup_decisions_per_s"].as_f64().unwrap_or(0.0),
        f = r["startup_fetch_parse_s"].as_f64().unwrap_or(0.0),
        fr = r["decisions"].as_f64().unwrap_or(0.0)
            / r["startup_fetch_parse_s"].as_f64().unwrap_or(1.0),
        st = r["startup_set_s"].as_f64().unwrap_or(0.0),
        str = r["decisions"].as_f64().unwrap_or(0.0) / r["startup_set_s"].as_f64().unwrap_or(1.0),
        dn = r["delta"],
        di = r["cscli_import_delta_s"].as_f64().unwrap_or(0.0),
        dir =
            r["delta"].as_f64().unwrap_or(0.0) / r["cscli_import_delta_s"].as_f64().unwrap_or(1.0),
        d = r["delta_pull_s"].as_f64().unwrap_or(0.0),
        dr = r["delta"].as_f64().unwrap_or(0.0) / r["delta_pull_s"].as_f64().unwrap_or(1.0),
        k = r["kernel_write_s"].as_f64().unwrap_or(0.0),
        kr = r["decisions"].as_f64().unwrap_or(0.0) / r["kernel_write_s"].as_f64().unwrap_or(1.0),
        sa = r["startup_applied_s"].as_f64().unwrap_or(0.0),
        sar =
            r["decisions"].as_f64().unwrap_or(0.0) / r["startup_applied_s"].as_f64().unwrap_or(1.0),
        kd = r["kernel_delta_write_s"].as_f64().unwrap_or(0.0),
        kdr =
            r["delta"].as_f64().unwrap_or(0.0) / r["kernel_delta_write_s"].as_f64().unwrap_or(1.0),
        da = r["delta_applied_s"].as_f64().unwrap_or(0.0),
        dar = r["delta"].as_f64().unwrap_or(0.0) / r["delta_applied_s"].as_f64().unwrap_or(1.0),
    )
}
