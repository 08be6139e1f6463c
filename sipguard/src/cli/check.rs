//! `sipguard check`: validate a config and print the effective policy.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Result;

use super::config_source;
use crate::kernel::{bans, features, pins};
use crate::policy::{
    config::{Config, ConfigError, ConfigSource},
    overlaps::{self, Overlap},
    sources::{
        crowdsec::config::{read_secret, CrowdsecConfig},
        dns, feeds,
    },
    Policy,
};
use crate::serve::crowdsec;

pub fn do_check(config: Option<PathBuf>, kernel: bool, pin_root: &Path) -> Result<ExitCode> {
    let source = config_source(config);
    let cfg: Config = source.load()?;
    if kernel {
        print!("{}", features::report());
        if let Err(e) = features::require_for(&cfg) {
            println!("{e:#}");
            return Ok(ExitCode::from(3));
        }
        println!("this kernel can run the configured policy");
    }
    let policy = Policy::from_config(&cfg);
    match &source {
        ConfigSource::File(p) => println!("{}: valid", p.display()),
        ConfigSource::Embedded => {
            println!("no config file: the embedded default policy applies")
        }
    }
    print!("{}", policy.describe(&cfg));
    let b = &cfg.bans;
    if cfg.bans_enabled() {
        println!(
            "bans:        after {} drops in {}, for {} (IPv6 per /{})",
            b.threshold, b.window, b.ttl, b.ipv6_prefix
        );
    } else {
        println!("bans:        automatic bans off (manual `sipguard ban` still works)");
    }
    let e = &cfg.events;
    let cap = match e.max_per_second {
        0 => "no limit per CPU".to_string(),
        n => format!("at most {n} a second per CPU"),
    };
    println!("events:      one per source per {}, {cap}", e.interval);
    println!("fragments:   {:?}", cfg.fragments);
    println!("on exit:     {:?}", cfg.on_exit);
    for f in &cfg.feeds {
        let n = std::fs::read_to_string(f)
            .map_err(anyhow::Error::from)
            .and_then(|t| feeds::parse(&t, &f.display().to_string()));
        match n {
            Ok(v) => println!("feed:        {} ({} entries)", f.display(), v.len()),
            Err(e) => {
                return Err(ConfigError {
                    source_name: f.display().to_string(),
                    line: None,
                    message: format!("{e:#}"),
                }
                .into())
            }
        }
    }
    print!("{}", overrides_report(&cfg, pin_root)?);
    if let Some(a) = cfg.metrics.listen {
        println!("metrics:     http://{a}/metrics");
    }
    let names = cfg.trusted_names();
    if !names.is_empty() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        print!("{}", rt.block_on(dns::describe(&cfg.dns, &names)));
    }
    if let Some(cs) = &cfg.crowdsec {
        check_crowdsec(cs, &policy.trusted)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The `crowdsec:` section: its secret files (refused ones are errors),
/// then one full pull from the Local API: what it would apply by origin,
/// and which decisions are not applied because they cover a trusted
/// source. The Local API being away is reported, not an error of the
/// config.
fn check_crowdsec(cs: &CrowdsecConfig, trusted: &[ipnet::IpNet]) -> Result<()> {
    cs.api_key()?;
    if let Some(m) = &cs.machine {
        read_secret(&m.password_file, "crowdsec.machine.password_file")?;
        println!("crowdsec:    pushes automatic bans as machine '{}'", m.id);
    }
    let origins = cs
        .origins
        .as_ref()
        .map(|o| o.join(", "))
        .unwrap_or_else(|| "every origin".into());
    println!("crowdsec:    {} every {} ({origins})", cs.url, cs.interval);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(crowdsec::probe(cs, trusted)) {
        Ok(p) => {
            let total: usize = p.by_origin.values().sum();
            let parts: Vec<String> = p
                .by_origin
                .iter()
                .map(|(o, n)| format!("{o} {n}"))
                .collect();
            println!(
                "crowdsec:    the Local API holds {total} ban decisions to apply ({})",
                if parts.is_empty() {
                    "none".into()
                } else {
                    parts.join(", ")
                }
            );
            for (net, origin, t) in &p.held_back {
                println!(
                    "crowdsec:    not applied: decision for {net} (origin {origin}) overlaps trusted {t}"
                );
            }
            for (kind, n) in &p.skipped {
                println!("crowdsec:    not applied: {n} decisions with {kind}");
            }
        }
        Err(e) => println!("crowdsec:    {e:#}"),
    }
    Ok(())
}

/// Every entry a trusted entry of this config overrides: feed entries
/// (read above, so they parse) and, when a filter's maps are pinned, the
/// bans in force.
fn overrides_report(cfg: &Config, pin_root: &Path) -> Result<String> {
    use std::fmt::Write as _;
    let policy = feeds::FeedWatch::new(&cfg.feeds).policy(cfg)?;
    let mut found: Vec<Overlap> = policy.overlaps.clone();
    let mut s = String::new();
    let dir = pins::versioned_dir(pin_root);
    if dir.join(sipguard_common::map_names::BANS).exists() {
        match bans::active_ban_nets(&dir) {
            Ok(nets) => found.extend(overlaps::ban_overlaps(&policy.trusted, nets)),
            Err(e) => {
                let _ = writeln!(
                    s,
                    "bans in force: not read from {} ({e:#}); overlaps with them not checked",
                    dir.display()
                );
            }
        }
    }
    if found.is_empty() {
        let _ = writeln!(
            s,
            "overrides:   none (no trusted entry overrides a feed entry or a ban)"
        );
    } else {
        let _ = writeln!(s, "overrides ({}):", found.len());
        for o in &found {
            let _ = writeln!(s, "  {o}");
        }
    }
    Ok(s)
}
