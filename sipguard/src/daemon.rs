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
    /// Trusted DNS names: last good addresses and the refresh task.
    dns: DnsNames,
    /// TC egress programs learning registrars (when enabled).
    learner: crate::learn::Learner,
}

fn interfaces(cfg: &Config, cli: &[String]) -> Result<Vec<String>> {
    let list = if cli.is_empty() { cfg.interfaces.clone() } else { cli.to_vec() };
    anyhow::ensure!(!list.is_empty(), "no interface to attach to: list them under `interfaces:` in the config or pass --iface");
    Ok(list)
}

impl Daemon {
    fn start(opts: &RunOptions, cfg: &Config, dns: DnsNames) -> Result<Daemon> {
        let ifaces = interfaces(cfg, &opts.ifaces)?;
        for i in &ifaces {
            ifindex(i)?;
        }
        let policy = Policy::from_config(cfg).with_names(&dns.state);
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
        crate::learn::set_ttl(&mut ebpf, crate::learn::ttl_ns(cfg.learn_registrars.enabled, cfg.learn_registrars.ttl))?;
        let mut d = Daemon {
            ebpf,
            maps,
            attached: Vec::new(),
            pin_root: opts.pin_root.clone(),
            dns,
            learner: Default::default(),
        };
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
        if cfg.learn_registrars.enabled {
            self.learner.attach(&mut self.ebpf, name, l2)?;
        }
        self.attached.push(Attached { name: name.to_string(), ifindex: idx, link, program });
        Ok(())
    }

    fn reload(&mut self, opts: &RunOptions) -> Result<()> {
        let cfg = opts.source.load()?;
        let wanted = interfaces(&cfg, &opts.ifaces)?;
        for i in &wanted {
            ifindex(i)?;
        }
        self.dns.reconfigure(&cfg)?;
        let policy = Policy::from_config(&cfg).with_names(&self.dns.state);
        self.maps.apply(&policy)?;
        // Interfaces added or removed from the config.
        let mut i = 0;
        while i < self.attached.len() {
            if wanted.contains(&self.attached[i].name) {
                i += 1;
                continue;
            }
            let a = self.attached.remove(i);
            self.learner.detach(&mut self.ebpf, &a.name);
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
        self.reload_learning(&cfg)?;
        Ok(())
    }

    /// A trusted name resolved to a new set of addresses: the same apply
    /// as a reload, from the last good config, so the two never race (both
    /// run on the main loop).
    fn dns_update(&mut self, u: crate::names::Update) -> Result<()> {
        if let Some(policy) = self.dns.update(u) {
            self.maps.apply(&policy)?;
        }
        Ok(())
    }

    /// Learning switched on or off (or its TTL changed) by a reload.
    /// Entries already learned keep their expiry; turned off, the TTL 0
    /// stops new ones and the programs are detached.
    fn reload_learning(&mut self, cfg: &Config) -> Result<()> {
        let l = cfg.learn_registrars;
        crate::learn::set_ttl(&mut self.ebpf, crate::learn::ttl_ns(l.enabled, l.ttl))?;
        if l.enabled {
            let names: Vec<String> = self.attached.iter().map(|a| a.name.clone()).collect();
            for n in names {
                if !self.learner.is_attached(&n) {
                    self.learner.attach(&mut self.ebpf, &n, attach::link_of(&n)?)?;
                }
            }
        } else {
            self.learner.detach_all(&mut self.ebpf);
        }
        Ok(())
    }

    fn stop(mut self) {
        self.dns.stop();
        self.learner.detach_all(&mut self.ebpf);
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
    let (dns, mut dns_rx) = DnsNames::start(&cfg).await?;
    let mut daemon = match Daemon::start(&opts, &cfg, dns) {
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
            Some(u) = dns_rx.recv() => {
                if let Err(e) = daemon.dns_update(u) {
                    log::error!("applying new addresses of a trusted name failed: {e:#}");
                }
            }
            _ = term.recv() => { log::info!("SIGTERM: detaching"); break; }
            _ = int.recv() => { log::info!("SIGINT: detaching"); break; }
        }
    }
    daemon.stop();
    Ok(())
}

/// The daemon's side of trusted DNS names: the config they came from, the
/// last good addresses per name and the refresh task, restarted when a
/// reload changes the names or the `dns` settings.
struct DnsNames {
    cfg: Config,
    state: crate::names::NameState,
    task: Option<tokio::task::JoinHandle<()>>,
    tx: tokio::sync::mpsc::Sender<crate::names::Update>,
}

impl DnsNames {
    async fn start(cfg: &Config) -> Result<(DnsNames, tokio::sync::mpsc::Receiver<crate::names::Update>)> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut d = DnsNames { cfg: cfg.clone(), state: Default::default(), task: None, tx };
        let names = cfg.trusted_names();
        if !names.is_empty() {
            let r = crate::names::resolver(&cfg.dns)?;
            let next = crate::names::resolve_all(&r, &names, &cfg.dns, &mut d.state).await;
            d.task = Some(tokio::spawn(crate::names::refresh_task(r, cfg.dns.clone(), d.state.clone(), next, d.tx.clone())));
        }
        Ok((d, rx))
    }

    /// After a reload: forget names no longer configured; when the names or
    /// the resolver settings changed, restart the refresh task, which asks
    /// for every name at once (new names are trusted as soon as they
    /// resolve; kept names keep their addresses meanwhile).
    fn reconfigure(&mut self, cfg: &Config) -> Result<()> {
        let names = cfg.trusted_names();
        let changed = names != self.cfg.trusted_names() || cfg.dns != self.cfg.dns;
        self.state.retain(&names);
        if changed {
            self.stop();
            if !names.is_empty() {
                let r = crate::names::resolver(&cfg.dns)?;
                let now = tokio::time::Instant::now();
                let next = names.iter().map(|n| (n.clone(), now)).collect();
                self.task = Some(tokio::spawn(crate::names::refresh_task(r, cfg.dns.clone(), self.state.clone(), next, self.tx.clone())));
            }
        }
        self.cfg = cfg.clone();
        Ok(())
    }

    /// Records new addresses for a name; returns the policy to apply.
    fn update(&mut self, u: crate::names::Update) -> Option<Policy> {
        if !self.cfg.trusted_names().contains(&u.name) || self.state.addrs.get(&u.name) == Some(&u.addrs) {
            return None;
        }
        let list: Vec<String> = u.addrs.iter().map(|a| a.to_string()).collect();
        log::info!("dns: {} changed; trusted now [{}]", u.name, list.join(", "));
        self.state.addrs.insert(u.name, u.addrs);
        Some(Policy::from_config(&self.cfg).with_names(&self.state))
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
