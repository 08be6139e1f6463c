//! `sipguard run`: load the program with its maps pinned (adopting pins a
//! previous daemon left), fill the maps, attach through pinned XDP links,
//! then serve: drop events, SIGHUP reloads (validated first; a bad config
//! keeps the running policy), feed files that change, and SIGTERM/SIGINT,
//! which detach or leave the filter in place as `on_exit` says.
//!
//! Everything that filters lives in the kernel and in bpffs: a daemon
//! killed with SIGKILL leaves the filter running, and the next one adopts
//! it without a gap.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, MapData, RingBuf},
    programs::{links::FdLink, xdp::XdpLink},
    Ebpf,
};
use sipguard_common::{OpsSettings, PROGRAM_NAME};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    attach::{self, ifindex},
    config::{Config, EventLog, OnExit},
    events,
    feeds::FeedWatch,
    maps::PolicyMaps,
    ops, pins,
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
    /// `--json-events`: log events as JSON lines whatever the config says.
    pub json_events: bool,
    /// `--events-socket` overrides the config's socket path.
    pub events_socket: Option<PathBuf>,
}

struct Attached {
    name: String,
    ifindex: u32,
}

struct Daemon {
    ebpf: Ebpf,
    maps: PolicyMaps,
    ops: Array<MapData, OpsSettings>,
    attached: Vec<Attached>,
    pin_root: PathBuf,
    /// Trusted DNS names: last good addresses and the refresh task.
    dns: DnsNames,
    /// TC egress programs learning registrars (when enabled).
    learner: crate::learn::Learner,
    on_exit: OnExit,
    feeds: FeedWatch,
}

fn interfaces(cfg: &Config, cli: &[String]) -> Result<Vec<String>> {
    let list = if cli.is_empty() {
        cfg.interfaces.clone()
    } else {
        cli.to_vec()
    };
    anyhow::ensure!(
        !list.is_empty(),
        "no interface to attach to: list them under `interfaces:` in the config or pass --iface"
    );
    Ok(list)
}

/// Kernel tag (hash of the instructions) of a loaded program id.
fn program_tag(id: u32) -> Option<u64> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id)
        .map(|p| p.tag())
}

impl Daemon {
    fn start(opts: &RunOptions, cfg: &Config, dns: DnsNames) -> Result<(Daemon, RingBuf<MapData>)> {
        let ifaces = interfaces(cfg, &opts.ifaces)?;
        for i in &ifaces {
            ifindex(i)?;
        }
        let pin_dir = pins::prepare(&opts.pin_root)?;
        let adopting = pin_dir.join(sipguard_common::map_names::SETTINGS).exists();
        if adopting {
            log::info!(
                "adopting the maps pinned under {} (filter kept running)",
                pin_dir.display()
            );
        }
        let mut ebpf = program::load_pinned(
            LoadOptions {
                report_reason: false,
                verbose: opts.verbose,
                ..Default::default()
            },
            &pin_dir,
        )?;
        let mut maps = PolicyMaps::take(&mut ebpf)?;
        let mut ops: Array<MapData, OpsSettings> =
            take(&mut ebpf, sipguard_common::map_names::OPS)?.try_into()?;
        let ring: RingBuf<MapData> =
            take(&mut ebpf, sipguard_common::map_names::EVENTS)?.try_into()?;
        let feeds = FeedWatch::new(&cfg.feeds);
        let policy = feeds.policy(cfg)?.with_names(&dns.state);
        // Entries are added before stale ones go: adopted maps never lose a
        // still-wanted entry.
        maps.apply(&policy)?;
        ops.set(0, ops::settings(cfg), 0).context("updating OPS")?;
        crate::learn::set_ttl(
            &mut ebpf,
            crate::learn::ttl_ns(cfg.learn_registrars.enabled, cfg.learn_registrars.ttl),
        )?;
        let mut d = Daemon {
            ebpf,
            maps,
            ops,
            attached: Vec::new(),
            pin_root: opts.pin_root.clone(),
            on_exit: cfg.on_exit,
            feeds,
            dns,
            learner: Default::default(),
        };
        for name in &ifaces {
            d.attach(name, cfg)?;
        }
        // Links pinned for interfaces no longer configured.
        for name in pins::pinned_links(&opts.pin_root) {
            if !ifaces.contains(&name) {
                log::info!("detaching from {name}: no longer configured");
                pins::detach_link(&opts.pin_root, &name)?;
            }
        }
        Ok((d, ring))
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
        let path = pins::link_path(&self.pin_root, name);
        let prog = program::xdp_program(&mut self.ebpf, program)?;
        let new_tag = prog.info()?.tag();
        if path.exists() {
            match pins::link_info(&path) {
                Ok((prog_id, link_if)) if link_if == idx => {
                    let old_tag = program_tag(prog_id);
                    if old_tag == Some(new_tag) {
                        log::info!("{name}: adopted the pinned XDP link (program unchanged)");
                    } else {
                        if old_tag.is_none() {
                            // Reading another program's tag needs CAP_SYS_ADMIN
                            // (BPF_PROG_GET_FD_BY_ID); a swap is harmless.
                            log::info!(
                                "{name}: cannot read the tag of the running program; replacing it"
                            );
                        }
                        // bpf_link_update swaps the program in one step: no
                        // packet sees no program.
                        let fd: FdLink = aya::programs::links::PinnedLink::from_pin(&path)?.into();
                        let link = XdpLink::try_from(fd)?;
                        prog.attach_to_link(link)
                            .map_err(|e| anyhow!("cannot replace the program on {name}: {e}"))?;
                        log::info!("{name}: replaced the program of the pinned XDP link (new build, tag {new_tag:016x})");
                    }
                    self.attached.push(Attached {
                        name: name.to_string(),
                        ifindex: idx,
                    });
                    return Ok(());
                }
                Ok(_) | Err(_) => {
                    log::warn!("{name}: pinned link {} is stale (interface gone or recreated); replacing it", path.display());
                    let _ = pins::detach_link(&self.pin_root, name);
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let prog = program::xdp_program(&mut self.ebpf, program)?;
        let (id, mode) = attach::attach(prog, name, cfg.xdp_mode)?;
        let link = prog.take_link(id)?;
        let fd = FdLink::try_from(link)
            .map_err(|e| anyhow!("{name}: the kernel attached XDP without a bpf_link ({e}); sipguard needs Linux 5.9+ to pin it"))?;
        fd.pin(&path)
            .with_context(|| format!("cannot pin the XDP link of {name} at {}", path.display()))?;
        let what = if program == PROGRAM_NAME {
            ""
        } else {
            " (no Ethernet header: raw IP entry point)"
        };
        log::info!(
            "attached to {name} (ifindex {idx}) in {} mode{what}",
            mode.as_str()
        );
        if cfg.learn_registrars.enabled {
            self.learner.attach(&mut self.ebpf, name, l2)?;
        }
        self.attached.push(Attached {
            name: name.to_string(),
            ifindex: idx,
        });
        Ok(())
    }

    /// The policy from the config, its feeds and the last good addresses
    /// of its trusted names.
    fn policy(&self, cfg: &Config) -> Result<Policy> {
        Ok(self.feeds.policy(cfg)?.with_names(&self.dns.state))
    }

    fn apply(&mut self, cfg: &Config) -> Result<()> {
        let policy = self.policy(cfg)?;
        self.maps.apply(&policy)?;
        self.ops
            .set(0, ops::settings(cfg), 0)
            .context("updating OPS")?;
        Ok(())
    }

    fn reload(&mut self, opts: &RunOptions) -> Result<()> {
        let cfg = opts.source.load()?;
        let wanted = interfaces(&cfg, &opts.ifaces)?;
        for i in &wanted {
            ifindex(i)?;
        }
        self.dns.reconfigure(&cfg)?;
        self.feeds = FeedWatch::new(&cfg.feeds);
        self.apply(&cfg)?;
        self.on_exit = cfg.on_exit;
        // Interfaces added or removed from the config.
        let mut i = 0;
        while i < self.attached.len() {
            if wanted.contains(&self.attached[i].name) {
                i += 1;
                continue;
            }
            let a = self.attached.remove(i);
            self.learner.detach(&mut self.ebpf, &a.name);
            pins::detach_link(&self.pin_root, &a.name)?;
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
        if self.dns.update(u) {
            let cfg = self.dns.cfg.clone();
            let policy = self.policy(&cfg)?;
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
                    self.learner
                        .attach(&mut self.ebpf, &n, attach::link_of(&n)?)?;
                }
            }
        } else {
            self.learner.detach_all(&mut self.ebpf);
        }
        Ok(())
    }

    fn stop(mut self) {
        self.dns.stop();
        // Learning needs the daemon's TC links; they go with it either way.
        self.learner.detach_all(&mut self.ebpf);
        match self.on_exit {
            OnExit::Keep => {
                log::info!(
                    "on_exit: keep: the filter stays attached and pinned under {}; `sipguard detach` removes it",
                    pins::versioned_dir(&self.pin_root).display()
                );
            }
            OnExit::Detach => {
                for a in &self.attached {
                    match pins::detach_link(&self.pin_root, &a.name) {
                        Ok(()) => log::info!("detached from {}", a.name),
                        Err(e) => log::warn!("detaching from {}: {e:#}", a.name),
                    }
                }
                drop(self.ebpf);
                pins::remove(&self.pin_root);
            }
        }
    }
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("map {name} is missing from the eBPF object"))
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
    if let Some(addr) = cfg.metrics.listen {
        let dir = pins::versioned_dir(&opts.pin_root);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        log::info!("metrics on http://{}/metrics", listener.local_addr()?);
        tokio::spawn(crate::prom::serve(listener, dir));
    }

    log::info!(
        "ready: policy applied, maps pinned under {}, events on {}",
        pins::versioned_dir(&opts.pin_root).display(),
        sock_path.display()
    );
    crate::systemd::ready();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut pump_reported = false;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                crate::systemd::reloading();
                match daemon.reload(&opts) {
                    Ok(()) => log::info!("policy reloaded"),
                    Err(e) => log::error!("reload failed, keeping the running policy: {e:#}"),
                }
                crate::systemd::ready();
            }
            Some(u) = dns_rx.recv() => {
                if let Err(e) = daemon.dns_update(u) {
                    log::error!("applying new addresses of a trusted name failed: {e:#}");
                }
            }
            _ = tick.tick() => {
                if daemon.feeds.changed() {
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
    crate::systemd::stopping();
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
    async fn start(
        cfg: &Config,
    ) -> Result<(DnsNames, tokio::sync::mpsc::Receiver<crate::names::Update>)> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut d = DnsNames {
            cfg: cfg.clone(),
            state: Default::default(),
            task: None,
            tx,
        };
        let names = cfg.trusted_names();
        if !names.is_empty() {
            let r = crate::names::resolver(&cfg.dns)?;
            let next = crate::names::resolve_all(&r, &names, &cfg.dns, &mut d.state).await;
            d.task = Some(tokio::spawn(crate::names::refresh_task(
                r,
                cfg.dns.clone(),
                d.state.clone(),
                next,
                d.tx.clone(),
            )));
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
                self.task = Some(tokio::spawn(crate::names::refresh_task(
                    r,
                    cfg.dns.clone(),
                    self.state.clone(),
                    next,
                    self.tx.clone(),
                )));
            }
        }
        self.cfg = cfg.clone();
        Ok(())
    }

    /// Records new addresses for a name; true when the maps must change.
    fn update(&mut self, u: crate::names::Update) -> bool {
        if !self.cfg.trusted_names().contains(&u.name)
            || self.state.addrs.get(&u.name) == Some(&u.addrs)
        {
            return false;
        }
        let list: Vec<String> = u.addrs.iter().map(|a| a.to_string()).collect();
        log::info!("dns: {} changed; trusted now [{}]", u.name, list.join(", "));
        self.state.addrs.insert(u.name, u.addrs);
        true
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
