//! `sipguard stats`: counters per interface and reason, the stateful maps'
//! statistics and the learned registrars, from the pins; once or every
//! few seconds.

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::Result;

use crate::kernel::{bans, counters, decisions, pins, registrars, stateful};

pub fn do_stats(pin_root: &Path, json: bool, watch: Option<f64>) -> Result<ExitCode> {
    let dir = pins::versioned_dir(pin_root);
    loop {
        let snap = counters::snapshot_pinned(&dir)?;
        let o = stateful::stats_pinned(&dir)
            .and_then(|m| stateful::read_stats(&m))
            .ok();
        let bans = bans::bans_pinned(&dir)
            .map(|b| bans::count_active_bans(&b))
            .ok();
        if json {
            let mut v = snap.to_json();
            if let Some(o) = o {
                v["operations"] = serde_json::json!({
                    "events_sent": o.events_sent, "events_lost": o.events_lost,
                    "events_suppressed": o.events_suppressed,
                    "events_over_budget": o.events_over_budget, "bans_created": o.bans_created,
                    "fragments_remembered": o.fragments_remembered, "active_bans": bans,
                });
            }
            if let (Some(o), Some(l)) = (v.as_object_mut(), learned_summary(&dir)) {
                o.insert("learned".into(), l);
            }
            if let (Some(o), Some(d)) = (v.as_object_mut(), decisions::pinned_by_origin(&dir)) {
                o.insert("decisions".into(), serde_json::json!(d));
            }
            println!("{v}");
        } else {
            print!("{}", snap.to_table());
            if let Some(o) = o {
                println!(
                    "events: sent {}, suppressed {}, over budget {}, lost {}; bans: {} active, {} made; fragments remembered {}",
                    o.events_sent, o.events_suppressed, o.events_over_budget, o.events_lost, bans.unwrap_or(0), o.bans_created, o.fragments_remembered
                );
            }
            if let Some(l) = learned_summary(&dir) {
                println!(
                    "learned registrars: {} active, {} expired",
                    l["active"], l["expired"]
                );
            }
            if let Some(d) = decisions::pinned_by_origin(&dir) {
                println!("crowdsec decisions: {}", decisions::describe(&d));
            }
        }
        match watch {
            Some(secs) if secs > 0.0 => {
                std::thread::sleep(Duration::from_secs_f64(secs));
                if !json {
                    println!();
                }
            }
            _ => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `stats --json` addition: how many registrars are learned (and still
/// valid).
fn learned_summary(dir: &Path) -> Option<serde_json::Value> {
    let l = registrars::learned_pinned(dir).ok()?;
    let active = l.iter().filter(|e| e.left.is_some()).count();
    Some(serde_json::json!({ "active": active, "expired": l.len() - active }))
}
