//! `sipguard run`: load the program with its maps pinned (adopting pins a
//! previous daemon left), fill the maps, attach through pinned XDP links,
//! then serve: drop events, SIGHUP reloads (validated first; a bad config
//! keeps the running policy), feed files that change, and SIGTERM/SIGINT,
//! which detach or leave the filter in place as `on_exit` says.
//!
//! Everything that filters lives in the kernel and in bpffs: a daemon
//! killed with SIGKILL leaves the filter running, and the next one adopts
//! it without a gap.
//!
//! This module is the main loop; [`daemon`] owns the loaded program, its
//! maps and attachments; [`events`], [`prometheus`] and [`systemd`] are
//! what the daemon serves while it runs.

pub mod crowdsec;
pub mod daemon;
pub mod events;
pub mod prometheus;
pub mod systemd;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

use self::{crowdsec::Fleet, daemon::Daemon};
use crate::{
    kernel::{pins, preflight},
    policy::{
        config::{Config, ConfigSource, EventLog},
        sources::dns::DnsNames,
    },
};

pub struct RunOptions {
    pub source: ConfigSource,
    /// `--iface` overrides the config's interfaces.
    pub ifaces: Vec<String>,
    pub pin_root: PathBuf,
    pub verbose: bool,
    /// `--json-events`: log events as JSON lines whatever the config says.
    pub json_events: bool,
    /// `--events-socket` overrides the config's socket path.
    pub events_socket: Option<PathBuf>,
}

pub async fn run(opts: RunOptions) -> Result<()> {
    let mut cfg = opts.source.load()?;
    if matches!(opts.source, ConfigSource::Embedded) {
        log::info!("no config file: running the embedded default policy (inspect untrusted SIP)");
    }
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    preflight::check(&opts.pin_root)?;
    if let ConfigSource::File(path) = &opts.source {
        if opts.ifaces.is_empty() && cfg.interfaces.is_empty() {
            match wait_for_interfaces(&opts, path, &mut hup, &mut term, &mut int).await {
                Some(c) => cfg = c,
                None => {
                    systemd::stopping();
                    return Ok(());
                }
            }
        }
    }
    let (dns, mut dns_rx) = DnsNames::start(&cfg).await?;
    // Pins from an earlier daemon are its running filter: a failed start
    // leaves them alone. Only what this start created is cleaned up.
    let fresh = !pins::versioned_dir(&opts.pin_root)
        .join(sipguard_common::map_names::SETTINGS)
        .exists();
    let (mut daemon, ring) = match Daemon::start(&opts, &cfg, dns) {
        Ok(d) => d,
        Err(e) => {
            if fresh {
                for name in pins::pinned_links(&opts.pin_root) {
                    let _ = pins::detach_link(&opts.pin_root, &name);
                }
                pins::remove(&opts.pin_root);
            }
            return Err(e);
        }
    };

    let log_mode = if opts.json_events {
        EventLog::Json
    } else {
        cfg.events.log
    };
    let (feed, _) = tokio::sync::broadcast::channel::<Arc<String>>(65536);
    let sock_path = opts
        .events_socket
        .clone()
        .unwrap_or_else(|| cfg.events.socket.clone());
    let listener = events::bind(&sock_path)?;
    let _sock_guard = events::SocketGuard(sock_path.clone());
    tokio::spawn(events::serve(listener, feed.clone()));
    let pump_feed = feed.clone();
    let pump = tokio::spawn(async move { events::pump(ring, pump_feed, log_mode).await });
    let pin_dir = pins::versioned_dir(&opts.pin_root);
    let mut fleet = match &cfg.crowdsec {
        Some(cs) => Some(Fleet::start(
            cs,
            &pin_dir,
            daemon.trusted().to_vec(),
            &feed,
        )?),
        None => None,
    };
    if let Some(addr) = cfg.metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        log::info!("metrics on http://{}/metrics", listener.local_addr()?);
        let signals = fleet.as_ref().and_then(|f| f.signals.clone());
        tokio::spawn(prometheus::serve(listener, pin_dir.clone(), signals));
    }

    log::info!(
        "ready: policy applied, maps pinned under {}, events on {}",
        pins::versioned_dir(&opts.pin_root).display(),
        sock_path.display()
    );
    systemd::ready();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut pump_reported = false;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                systemd::reloading();
                match daemon.reload(&opts) {
                    Ok(cfg) => {
                        log::info!("policy reloaded");
                        if let Err(e) = reconfigure_fleet(&mut fleet, &cfg, &pin_dir, &daemon, &feed) {
                            log::error!("crowdsec: {e:#}; keeping the decisions applied");
                        }
                    }
                    Err(e) => log::error!("reload failed, keeping the running policy: {e:#}"),
                }
                systemd::ready();
                if daemon.is_idle() {
                    systemd::idle("idle: no interface configured");
                }
            }
            Some(u) = dns_rx.recv() => {
                if let Err(e) = daemon.dns_update(u) {
                    log::error!("applying new addresses of a trusted name failed: {e:#}");
                }
                if let Some(f) = &fleet {
                    f.set_trusted(daemon.trusted());
                }
            }
            _ = tick.tick() => {
                if daemon.feeds_changed() {
                    match opts.source.load().map_err(anyhow::Error::from).and_then(|cfg| daemon.apply(&cfg)) {
                        Ok(()) => log::info!("blocklist feed changed: reloaded"),
                        Err(e) => log::error!("feed reload failed, keeping the running lists: {e:#}"),
                    }
                }
            }
            _ = term.recv() => { log::info!("SIGTERM"); break; }
            _ = int.recv() => { log::info!("SIGINT"); break; }
        }
        if !pump_reported && pump.is_finished() {
            pump_reported = true;
            log::error!("the event reader stopped; events are no longer delivered");
        }
    }
    systemd::stopping();
    if let Some(f) = fleet {
        f.stop();
    }
    daemon.stop();
    Ok(())
}

/// After a reload: the bouncer restarted when its section changed (or
/// started, or stopped), told the new trusted sources otherwise.
fn reconfigure_fleet(
    fleet: &mut Option<Fleet>,
    cfg: &Config,
    pin_dir: &std::path::Path,
    daemon: &Daemon,
    feed: &tokio::sync::broadcast::Sender<Arc<String>>,
) -> Result<()> {
    let same = match (fleet.as_ref(), &cfg.crowdsec) {
        (Some(f), Some(cs)) => f.config() == cs,
        (None, None) => true,
        _ => false,
    };
    if same {
        if let Some(f) = fleet {
            f.set_trusted(daemon.trusted());
        }
        return Ok(());
    }
    // The new one first: a section that does not start (a secret file
    // refused) keeps the running bouncer.
    let new = match &cfg.crowdsec {
        Some(cs) => Some(Fleet::start(cs, pin_dir, daemon.trusted().to_vec(), feed)?),
        None => None,
    };
    if let Some(old) = std::mem::replace(fleet, new) {
        old.stop();
        log::info!("crowdsec: section changed; the bouncer restarted");
    }
    Ok(())
}

/// A config file that names no interface (as installed, before the admin
/// has chosen the WAN side): nothing is loaded or attached, the service
/// reports itself ready and idle, and each SIGHUP reads the file again
/// until it lists an interface. `None` when told to stop first.
async fn wait_for_interfaces(
    opts: &RunOptions,
    path: &std::path::Path,
    hup: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Option<Config> {
    let hint = format!(
        "no interface configured in {}: nothing attached; list the WAN interface under `interfaces:` \
         and reload (systemctl reload sipguard, or SIGHUP)",
        path.display()
    );
    log::warn!("{hint}");
    let attached = pins::pinned_links(&opts.pin_root);
    if !attached.is_empty() {
        log::warn!(
            "a filter pinned by an earlier run is still attached to {} and left as it is; `sipguard detach` removes it",
            attached.join(", ")
        );
    }
    systemd::idle("idle: no interface configured");
    loop {
        tokio::select! {
            _ = hup.recv() => {
                systemd::reloading();
                match opts.source.load() {
                    Ok(cfg) if !cfg.interfaces.is_empty() => {
                        log::info!("interfaces configured: {}", cfg.interfaces.join(", "));
                        return Some(cfg);
                    }
                    Ok(_) => log::warn!("{hint}"),
                    Err(e) => log::error!("reload failed: {e}"),
                }
                systemd::idle("idle: no interface configured");
            }
            _ = term.recv() => { log::info!("SIGTERM"); return None; }
            _ = int.recv() => { log::info!("SIGINT"); return None; }
        }
    }
}
