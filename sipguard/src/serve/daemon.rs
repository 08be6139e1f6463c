//! The running filter: the loaded program with its pinned maps, the XDP
//! links per interface and the registrar learner; started (or adopted),
//! reloaded, and stopped as `on_exit` says.

use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, MapData, RingBuf},
    programs::{links::FdLink, xdp::XdpLink},
    Ebpf,
};
use sipguard_common::{OpsSettings, PROGRAM_NAME};

use super::RunOptions;
use crate::{
    kernel::{
        attach::{self, ifindex},
        bans,
        maps::PolicyMaps,
        migrate, pins,
        program::{self, take_map, LoadOptions},
        registrars::{self, Learner},
        stateful,
    },
    policy::{
        self,
        config::{Config, OnExit},
        overlaps::{self, Overlap},
        sources::{
            dns::{DnsNames, Update},
            feeds::FeedWatch,
        },
        Policy, Sources,
    },
};

struct Attached {
    name: String,
    ifindex: u32,
    /// Runs the multi-buffer build (tail calls through `INSPECTOR_FRAGS`).
    multi_buffer: bool,
}

pub struct Daemon {
    ebpf: Ebpf,
    maps: PolicyMaps,
    ops: Array<MapData, OpsSettings>,
    attached: Vec<Attached>,
    pin_root: PathBuf,
    /// Trusted DNS names: last good addresses and the refresh task.
    dns: DnsNames,
    /// TC egress programs learning registrars (when enabled).
    learner: Learner,
    on_exit: OnExit,
    feeds: FeedWatch,
    /// The trusted sources of the policy last applied (the bouncer holds
    /// back decisions over them).
    trusted: Vec<ipnet::IpNet>,
    /// What [`Daemon::log_overlaps`] logged last.
    overlaps_logged: Vec<Overlap>,
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
    pub fn start(
        opts: &RunOptions,
        cfg: &Config,
        dns: DnsNames,
    ) -> Result<(Daemon, RingBuf<MapData>)> {
        crate::kernel::features::require_for(cfg)?;
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
            take_map(&mut ebpf, sipguard_common::map_names::OPS)?.try_into()?;
        let ring: RingBuf<MapData> =
            take_map(&mut ebpf, sipguard_common::map_names::EVENTS)?.try_into()?;
        let feeds = FeedWatch::new(&cfg.feeds);
        let policy = policy::assemble(
            cfg,
            &Sources {
                feeds: &feeds,
                names: &dns.state,
            },
        )?;
        // Entries are added before stale ones go: adopted maps never lose a
        // still-wanted entry.
        maps.apply(&policy)?;
        ops.set(0, stateful::settings(cfg), 0)
            .context("updating OPS")?;
        registrars::set_ttl(
            &mut ebpf,
            registrars::ttl_ns(cfg.learn_registrars.enabled, cfg.learn_registrars.ttl),
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
            trusted: policy.trusted.clone(),
            overlaps_logged: Vec::new(),
        };
        d.log_overlaps(&policy);
        let older = migrate::older(&opts.pin_root);
        if !older.is_empty() {
            // The slots `attach` gives (1, 2, … in config order) before the
            // counters are carried: they follow the interface name.
            for (i, name) in ifaces.iter().enumerate() {
                d.maps.set_iface_slot(ifindex(name)?, i as u32 + 1, name)?;
            }
        }
        for o in &older {
            o.carry(&pin_dir).log(o.version);
        }
        for name in &ifaces {
            d.attach(name, cfg)?;
        }
        for o in &older {
            o.carry_late(&pin_dir);
        }
        // Links pinned for interfaces no longer configured.
        for name in pins::pinned_links(&opts.pin_root) {
            if !ifaces.contains(&name) {
                log::info!("detaching from {name}: no longer configured");
                pins::detach_link(&opts.pin_root, &name)?;
            }
        }
        pins::remove_older(&opts.pin_root)?;
        Ok((d, ring))
    }

    fn attach(&mut self, name: &str, cfg: &Config) -> Result<()> {
        let idx = ifindex(name)?;
        let slot = self.attached.len() as u32 + 1;
        // The slot is in place before the first packet is counted.
        self.maps.set_iface_slot(idx, slot, name)?;
        let l2 = attach::link_of(name)?;
        let plan = attach::plan(
            name,
            l2,
            cfg.xdp_mode,
            attach::mtu(name)?,
            crate::kernel::features::has_multi_buffer(),
        )?;
        if let Some(note) = &plan.note {
            log::info!("{note}");
        }
        let program = plan.program;
        let multi_buffer = program == attach::frags_program_for(l2);
        if multi_buffer {
            program::load_frags(&mut self.ebpf, program, false)?;
        } else if program != PROGRAM_NAME
            && program::xdp_program(&mut self.ebpf, program)?.fd().is_err()
        {
            program::load_program(&mut self.ebpf, program, false)?;
        }
        let path = pins::link_path(&self.pin_root, name);
        let prog = program::xdp_program(&mut self.ebpf, program)?;
        let new_tag = prog.info()?.tag();
        if let Some(version) = pins::take_over_older_link(&self.pin_root, name)? {
            log::info!("{name}: taking over the XDP link of map ABI v{version} (its program keeps filtering until it is replaced)");
        }
        if path.exists() {
            match pins::link_info(&path) {
                Ok((prog_id, link_if)) if link_if == idx => {
                    let old_tag = program_tag(prog_id);
                    // A multi-buffer program tail-calls through this
                    // daemon's own INSPECTOR_FRAGS (not pinned), so the
                    // one adopted, even if identical, is swapped for it.
                    if old_tag == Some(new_tag) && !multi_buffer {
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
                    // The learner's TC link ended with the daemon before.
                    if cfg.learn_registrars.enabled {
                        self.learner.attach(&mut self.ebpf, name, l2)?;
                    }
                    self.attached.push(Attached {
                        name: name.to_string(),
                        ifindex: idx,
                        multi_buffer,
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
        let (id, mode) = attach::attach(prog, name, plan.mode)?;
        let link = prog.take_link(id)?;
        let fd = FdLink::try_from(link)
            .map_err(|e| anyhow!("{name}: the kernel attached XDP without a bpf_link ({e}); sipguard needs Linux 5.9+ to pin it"))?;
        fd.pin(&path)
            .with_context(|| format!("cannot pin the XDP link of {name} at {}", path.display()))?;
        let what = match (l2, multi_buffer) {
            (sipguard_common::packet::Link::Ethernet, false) => "",
            (sipguard_common::packet::Link::Ethernet, true) => " (multi-buffer build)",
            (_, false) => " (no Ethernet header: raw IP entry point)",
            (_, true) => " (no Ethernet header: raw IP entry point, multi-buffer build)",
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
            multi_buffer,
        });
        Ok(())
    }

    /// The policy from the config, its feeds and the last good addresses
    /// of its trusted names.
    fn policy(&self, cfg: &Config) -> Result<Policy> {
        policy::assemble(
            cfg,
            &Sources {
                feeds: &self.feeds,
                names: &self.dns.state,
            },
        )
    }

    /// A feed file changed and has stayed the same for a poll since.
    pub fn feeds_changed(&mut self) -> bool {
        self.feeds.changed()
    }

    pub fn trusted(&self) -> &[ipnet::IpNet] {
        &self.trusted
    }

    pub fn apply(&mut self, cfg: &Config) -> Result<()> {
        let policy = self.policy(cfg)?;
        self.maps.apply(&policy)?;
        self.trusted = policy.trusted.clone();
        self.log_overlaps(&policy);
        self.ops
            .set(0, stateful::settings(cfg), 0)
            .context("updating OPS")?;
        Ok(())
    }

    /// Reloads the config; returns it for what runs beside the daemon.
    pub fn reload(&mut self, opts: &RunOptions) -> Result<Config> {
        let cfg = opts.source.load()?;
        crate::kernel::features::require_for(&cfg)?;
        // No interface is a state the daemon can be in (it starts idle on
        // such a config): the new policy applies and every link goes.
        let wanted = if opts.ifaces.is_empty() {
            cfg.interfaces.clone()
        } else {
            opts.ifaces.clone()
        };
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
        if self.attached.is_empty() {
            log::warn!(
                "no interface configured: sipguard is attached to none and filters nothing \
                 until a reload lists one under `interfaces:`"
            );
        }
        Ok(cfg)
    }

    /// Whether a reload left it attached to no interface.
    pub fn is_idle(&self) -> bool {
        self.attached.is_empty()
    }

    /// A trusted name resolved to a new set of addresses: the same apply
    /// as a reload, from the last good config, so the two never race (both
    /// run on the main loop).
    pub fn dns_update(&mut self, u: Update) -> Result<()> {
        if self.dns.update(u) {
            let cfg = self.dns.cfg.clone();
            let policy = self.policy(&cfg)?;
            self.maps.apply(&policy)?;
            self.trusted = policy.trusted.clone();
            self.log_overlaps(&policy);
        }
        Ok(())
    }

    /// Logs each entry that a trusted one overrides (feed entries left out,
    /// bans in force the filter never reaches for a trusted source), when
    /// the set differs from the one logged last, so a DNS refresh does not
    /// repeat it.
    fn log_overlaps(&mut self, policy: &Policy) {
        let mut found = policy.overlaps.clone();
        match bans::active_ban_nets(&pins::versioned_dir(&self.pin_root)) {
            Ok(nets) => found.extend(overlaps::ban_overlaps(&policy.trusted, nets)),
            Err(e) => log::warn!("bans not read to compare them with trusted: {e:#}"),
        }
        if found != self.overlaps_logged {
            for o in &found {
                log::warn!("{o}");
            }
            self.overlaps_logged = found;
        }
    }

    /// Learning switched on or off (or its TTL changed) by a reload.
    /// Entries already learned keep their expiry; turned off, the TTL 0
    /// stops new ones and the programs are detached.
    fn reload_learning(&mut self, cfg: &Config) -> Result<()> {
        let l = cfg.learn_registrars;
        registrars::set_ttl(&mut self.ebpf, registrars::ttl_ns(l.enabled, l.ttl))?;
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

    pub fn stop(mut self) {
        self.dns.stop();
        // Learning needs the daemon's TC links; they go with it either way.
        self.learner.detach_all(&mut self.ebpf);
        match self.on_exit {
            OnExit::Keep => {
                log::info!(
                    "on_exit: keep: the filter stays attached and pinned under {}; `sipguard detach` removes it",
                    pins::versioned_dir(&self.pin_root).display()
                );
                for a in self.attached.iter().filter(|a| a.multi_buffer) {
                    log::warn!(
                        "{}: the multi-buffer build keeps its lists, bans and decisions, but passes \
                         SIP uninspected (counted as uninspectable) until the next daemon starts: \
                         its inspector array lives with this process",
                        a.name
                    );
                }
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
