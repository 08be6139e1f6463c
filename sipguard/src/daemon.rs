//! `sipguard run`: load, attach, fill and pin the maps, then serve signals:
//! SIGHUP reloads (validated first; a bad config keeps the running policy),
//! SIGTERM/SIGINT detach and remove the pins.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use aya::{programs::xdp::XdpLinkId, Ebpf};
use sipguard_common::{map_names, PROGRAM_NAME};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    attach::{self, ifindex},
    config::Config,
    maps::PolicyMaps,
    pins,
    policy::Policy,
    program::{self, LoadOptions},
};

/// Where the policy comes from, so SIGHUP re-reads the same source.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    Embedded,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, crate::config::ConfigError> {
        match self {
            ConfigSource::File(p) => Config::load(p),
            ConfigSource::Embedded => Config::embedded_default(),
        }
    }
}

pub struct RunOptions {
    pub source: ConfigSource,
    /// `--iface` overrides the config's interfaces.
    pub ifaces: Vec<String>,
    pub pin_root: PathBuf,
    pub verbose: bool,
}

struct Attached {
    name: String,
    ifindex: u32,
    link: XdpLinkId,
    /// Entry point attached (Ethernet or raw IP).
    program: &'static str,
}

struct Daemon {
    ebpf: Ebpf,
    maps: PolicyMaps,
    attached: Vec<Attached>,
    pin_root: PathBuf,
}

fn interfaces(cfg: &Config, cli: &[String]) -> Result<Vec<String>> {
    let list = if cli.is_empty() { cfg.interfaces.clone() } else { cli.to_vec() };
    anyhow::ensure!(!list.is_empty(), "no interface to attach to: list them under `interfaces:` in the config or pass --iface");
    Ok(list)
}

impl Daemon {
    fn start(opts: &RunOptions, cfg: &Config) -> Result<Daemon> {
        let ifaces = interfaces(cfg, &opts.ifaces)?;
        for i in &ifaces {
            ifindex(i)?;
        }
        let policy = Policy::from_config(cfg);
        let pin_dir = pins::prepare(&opts.pin_root)?;
        // A daemon killed without cleanup leaves pins; they are replaced.
        for name in map_names::ALL {
            let p = pin_dir.join(name);
            if p.exists() {
                log::warn!("removing stale pin {} from an earlier run", p.display());
                std::fs::remove_file(&p).with_context(|| format!("cannot remove stale pin {}", p.display()))?;
            }
        }
        let mut ebpf = program::load(LoadOptions { report_reason: false, verbose: opts.verbose })?;
        for (name, map) in ebpf.maps() {
            if map_names::ALL.contains(&name) {
                map.pin(pin_dir.join(name))
                    .with_context(|| format!("cannot pin map {name} under {}", pin_dir.display()))?;
            }
        }
        let mut maps = PolicyMaps::take(&mut ebpf)?;
        maps.apply(&policy)?;
        let mut d = Daemon { ebpf, maps, attached: Vec::new(), pin_root: opts.pin_root.clone() };
        for name in &ifaces {
            d.attach(name, cfg)?;
        }
        Ok(d)
    }

    fn attach(&mut self, name: &str, cfg: &Config) -> Result<()> {
        let idx = ifindex(name)?;
        let slot = self.attached.len() as u32 + 1;
        // The slot is in place before the first packet is counted.
        self.maps.set_iface_slot(idx, slot, name)?;
        let l2 = attach::link_of(name)?;
        let program = attach::program_for(l2);
        if program != PROGRAM_NAME && program::xdp_program(&mut self.ebpf, program)?.fd().is_err() {
            program::load_program(&mut self.ebpf, program, false)?;
        }
        let prog = program::xdp_program(&mut self.ebpf, program)?;
        let (link, mode) = attach::attach(prog, name, cfg.xdp_mode)?;
        let what = if program == PROGRAM_NAME { "" } else { " (no Ethernet header: raw IP entry point)" };
        log::info!("attached to {name} (ifindex {idx}) in {} mode{what}", mode.as_str());
        self.attached.push(Attached { name: name.to_string(), ifindex: idx, link, program });
        Ok(())
    }

    fn reload(&mut self, opts: &RunOptions) -> Result<()> {
        let cfg = opts.source.load()?;
        let wanted = interfaces(&cfg, &opts.ifaces)?;
        for i in &wanted {
            ifindex(i)?;
        }
        let policy = Policy::from_config(&cfg);
        self.maps.apply(&policy)?;
        // Interfaces added or removed from the config.
        let mut i = 0;
        while i < self.attached.len() {
            if wanted.contains(&self.attached[i].name) {
                i += 1;
                continue;
            }
            let a = self.attached.remove(i);
            let prog = program::xdp_program(&mut self.ebpf, a.program)?;
            prog.detach(a.link)?;
            self.maps.set_iface_slot(a.ifindex, 0, &a.name)?;
            log::info!("detached from {}", a.name);
        }
        for name in &wanted {
            if !self.attached.iter().any(|a| &a.name == name) {
                self.attach(name, &cfg)?;
            }
        }
        Ok(())
    }

    fn stop(mut self) {
        for a in self.attached.drain(..) {
            if let Ok(prog) = program::xdp_program(&mut self.ebpf, a.program) {
                if let Err(e) = prog.detach(a.link) {
                    log::warn!("detaching from {}: {e}", a.name);
                } else {
                    log::info!("detached from {}", a.name);
                }
            }
        }
        pins::remove(&self.pin_root);
    }
}

pub async fn run(opts: RunOptions) -> Result<()> {
    let cfg = opts.source.load()?;
    if matches!(opts.source, ConfigSource::Embedded) {
        log::info!("no config file: running the embedded default policy (inspect untrusted SIP)");
    }
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    crate::preflight::check(&opts.pin_root)?;
    let mut daemon = match Daemon::start(&opts, &cfg) {
        Ok(d) => d,
        Err(e) => {
            pins::remove(&opts.pin_root);
            return Err(e);
        }
    };
    log::info!("ready: policy applied, maps pinned under {}", pins::versioned_dir(&opts.pin_root).display());
    loop {
        tokio::select! {
            _ = hup.recv() => match daemon.reload(&opts) {
                Ok(()) => log::info!("policy reloaded"),
                Err(e) => log::error!("reload failed, keeping the running policy: {e:#}"),
            },
            _ = term.recv() => { log::info!("SIGTERM: detaching"); break; }
            _ = int.recv() => { log::info!("SIGINT: detaching"); break; }
        }
    }
    daemon.stop();
    Ok(())
}
