//! `sipguard ban`, `unban` and `bans`: manual bans in the pinned maps.

use std::{net::IpAddr, path::Path, process::ExitCode};

use anyhow::Result;

use crate::{
    kernel::{bans, decisions, pins},
    policy::config::Dur,
};

pub fn do_ban(pin_root: &Path, addr: IpAddr, duration: Option<Dur>) -> Result<ExitCode> {
    let dir = pins::versioned_dir(pin_root);
    // The filter checks trusted sources before bans (a ban must never cut
    // off a provider), so such a ban would be listed but never act.
    if let Some(net) = super::trusted::trusted_entry_covering(&dir, addr)? {
        anyhow::bail!(
            "not banned: {addr} is trusted (trusted entry {net}), and trusted sources are \
             checked before bans, so a ban would not take effect"
        );
    }
    let b = bans::ban(&dir, addr, duration.map(|d| d.0))?;
    let label = &b.label;
    match duration {
        Some(d) => println!("banned {label} for {d}"),
        None => println!("banned {label} until `sipguard unban`"),
    }
    if let Some(old) = &b.replaced {
        println!(
            "  it replaces the {} ban of {label} that was in force (remaining: {})",
            old.origin,
            old.remaining()
        );
    }
    // An IPv6 ban is a prefix: trusted addresses inside it keep passing.
    for t in super::trusted::trusted_entries_inside(&dir, b.net)? {
        println!("  except trusted {t}: trusted sources are checked before bans");
    }
    for e in &b.evicted {
        println!(
            "  the ban table was full: the ban of {e} was evicted to make room (least recently used)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn do_unban(pin_root: &Path, addr: IpAddr) -> Result<ExitCode> {
    let label = bans::unban(&pins::versioned_dir(pin_root), addr)?;
    println!("unbanned {label}");
    Ok(ExitCode::SUCCESS)
}

pub fn do_bans(pin_root: &Path, json: bool) -> Result<ExitCode> {
    let dir = pins::versioned_dir(pin_root);
    let bans = bans::list_bans(&dir)?;
    // CrowdSec decisions drop too but are not bans (their own maps, ends and
    // origins): summarised by origin, as in the text output, not listed.
    let decisions = decisions::pinned_by_origin(&dir);
    if json {
        let decisions = decisions
            .map(|d| serde_json::json!({ "in_force": d.values().sum::<u64>(), "by_origin": d }));
        println!(
            "{}",
            serde_json::json!({ "bans": bans, "decisions": decisions })
        );
    } else {
        println!(
            "{:<45} {:<7} {:>12} {:>7}",
            "SOURCE", "ORIGIN", "REMAINING", "DROPS"
        );
        for b in &bans {
            println!(
                "{:<45} {:<7} {:>12} {:>7}",
                b.source,
                b.origin,
                b.remaining(),
                b.drops
            );
        }
        println!("{} active", bans.len());
        if let Some(d) = decisions {
            println!(
                "crowdsec decisions (not listed above): {}",
                decisions::describe(&d)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
