//! CrowdSec beside the main loop: the bouncer task pulls the decision
//! stream and writes what changed into the pinned decision tries (never
//! a decision that overlaps a trusted source: it is held back and said
//! so); the signal task pushes the kernel's new automatic bans to the
//! Local API as alerts. Neither is on the packet path or the event
//! stream: the kernel makes bans and drops by itself, these tasks only
//! read and write maps.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::maps::{Array, MapData};
use ipnet::IpNet;
use log::{error, info, warn};
use sipguard_common::{AddrKey, Reason, StateHints, BAN_AUTO};
use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
};

use crate::{
    kernel::{bans, decisions::DecisionMaps, stateful},
    policy::sources::crowdsec::{
        bouncer::Bouncer,
        config::{read_secret, CrowdsecConfig},
        decisions::Changes,
        lapi::LapiError,
        signals::{self, BanSignal, SignalCounters, SignalQueue},
    },
};

pub struct Fleet {
    cfg: CrowdsecConfig,
    trusted: watch::Sender<Vec<IpNet>>,
    bouncer: JoinHandle<()>,
    signaller: Option<JoinHandle<()>>,
    sender: Option<JoinHandle<()>>,
    pub signals: Option<Arc<SignalCounters>>,
}

impl Fleet {
    /// Reads the secrets (a refused file stops the start, naming it) and
    /// starts the tasks on the pinned maps under `dir`; `events` is the
    /// drop event stream, where the signal task learns why a source was
    /// banned.
    pub fn start(
        cfg: &CrowdsecConfig,
        dir: &Path,
        trusted: Vec<IpNet>,
        events: &broadcast::Sender<Arc<String>>,
    ) -> Result<Fleet> {
        let key = cfg.api_key()?;
        let machine = match &cfg.machine {
            Some(m) => Some((
                m.id.clone(),
                read_secret(&m.password_file, "crowdsec.machine.password_file")?,
            )),
            None => None,
        };
        let bouncer = Bouncer::new(cfg, key).context("crowdsec.url")?;
        let maps = DecisionMaps::open_pinned(dir)?;
        let hints = stateful::hints_pinned(dir)?;
        let (trusted_tx, trusted_rx) = watch::channel(trusted);
        let writer = Writer {
            maps,
            hints,
            trusted: trusted_rx,
            held_back: BTreeMap::new(),
        };
        let lapi = bouncer.lapi().clone();
        let bouncer_task = tokio::spawn(bounce(bouncer, writer));
        let (signaller, sender, counters) = match machine {
            Some((id, password)) => {
                let (queue, rx) = signals::queue();
                let counters = queue.counters.clone();
                let sender = tokio::spawn(signals::run(lapi, id, password, rx, counters.clone()));
                let watcher =
                    tokio::spawn(watch_bans(dir.to_path_buf(), queue, events.subscribe()));
                (Some(watcher), Some(sender), Some(counters))
            }
            None => (None, None, None),
        };
        info!(
            "crowdsec: pulling decisions from {} every {}{}",
            cfg.url,
            cfg.interval,
            if counters.is_some() {
                ", pushing automatic bans as alerts"
            } else {
                ""
            }
        );
        Ok(Fleet {
            cfg: cfg.clone(),
            trusted: trusted_tx,
            bouncer: bouncer_task,
            signaller,
            sender,
            signals: counters,
        })
    }

    pub fn config(&self) -> &CrowdsecConfig {
        &self.cfg
    }

    /// The trusted sources changed (reload, DNS): decisions over them are
    /// taken out of the kernel, decisions no longer over one put back.
    pub fn set_trusted(&self, trusted: &[IpNet]) {
        self.trusted.send_if_modified(|t| {
            if t.as_slice() == trusted {
                return false;
            }
            *t = trusted.to_vec();
            true
        });
    }

    /// Stops the tasks; what is applied stays in the pinned maps.
    pub fn stop(self) {
        self.bouncer.abort();
        if let Some(t) = self.signaller {
            t.abort();
        }
        if let Some(t) = self.sender {
            t.abort();
        }
    }
}

/// Writes decisions into the kernel, holding back those over trusted
/// sources.
struct Writer {
    maps: DecisionMaps,
    hints: Array<MapData, StateHints>,
    trusted: watch::Receiver<Vec<IpNet>>,
    /// Decisions not applied because they overlap this trusted source
    /// (each logged once).
    held_back: BTreeMap<IpNet, IpNet>,
}

fn overlapping(trusted: &[IpNet], net: &IpNet) -> Option<IpNet> {
    trusted
        .iter()
        .find(|t| t.contains(net) || net.contains(*t))
        .copied()
}

impl Writer {
    fn write(&mut self, changes: &Changes) -> Result<()> {
        let trusted = self.trusted.borrow().clone();
        let mut upsert = Vec::new();
        let mut remove: Vec<IpNet> = changes.remove.clone();
        for b in &changes.upsert {
            match overlapping(&trusted, &b.net) {
                Some(t) => {
                    if self.held_back.insert(b.net, t).is_none() {
                        warn!(
                            "crowdsec: decision for {} (origin {}) not applied: it overlaps trusted {t}, and trusted sources always pass",
                            b.net, b.origin
                        );
                    }
                    // An earlier daemon (or trust list) may have applied it.
                    remove.push(b.net);
                }
                None => {
                    self.held_back.remove(&b.net);
                    upsert.push(b.decision());
                }
            }
        }
        for n in &changes.remove {
            self.held_back.remove(n);
        }
        self.maps.upsert(&mut self.hints, &upsert)?;
        self.maps.remove(&remove);
        Ok(())
    }

    /// After a change of the trusted list: every decision of the set again.
    fn rewrite_all(&mut self, bouncer: &Bouncer) -> Result<()> {
        let all = Changes {
            upsert: bouncer.set.entries().cloned().collect(),
            remove: Vec::new(),
        };
        self.write(&all)
    }
}

async fn bounce(mut bouncer: Bouncer, mut writer: Writer) {
    match writer.maps.entries() {
        Ok(held) => bouncer
            .set
            .adopt(held.iter().map(|d| (d.net, d.entry.expires_ns))),
        Err(e) => warn!("crowdsec: cannot read the pinned decisions: {e:#}"),
    }
    let mut refused_reported = false;
    loop {
        match bouncer.pull(stateful::boot_ns).await {
            Ok(changes) => {
                refused_reported = false;
                if !changes.is_empty() {
                    log::debug!(
                        "crowdsec: {} decisions written, {} removed",
                        changes.upsert.len(),
                        changes.remove.len()
                    );
                }
                if let Err(e) = writer.write(&changes) {
                    error!("crowdsec: writing decisions into the kernel failed: {e:#}");
                }
            }
            // A key the API refuses will not start working by itself:
            // said loudly once, retried quietly (the operator may fix it
            // on the API side).
            Err(e @ LapiError::Refused { .. }) if !refused_reported => {
                refused_reported = true;
                error!("crowdsec: {e}");
            }
            Err(_) => {}
        }
        let wait = bouncer.next_wait();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Ok(()) = writer.trusted.changed() => {
                if let Err(e) = writer.rewrite_all(&bouncer) {
                    error!("crowdsec: rewriting decisions after a trust change failed: {e:#}");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The prefix an automatic ban key stands for.
fn ban_source(k: &AddrKey, v6_prefix: u32) -> IpNet {
    if k.family == 4 {
        IpNet::from(IpAddr::V4(Ipv4Addr::new(
            k.addr[0], k.addr[1], k.addr[2], k.addr[3],
        )))
    } else {
        IpNet::new(IpAddr::V6(Ipv6Addr::from(k.addr)), v6_prefix.min(128) as u8)
            .unwrap_or_else(|_| IpNet::from(IpAddr::V6(Ipv6Addr::from(k.addr))))
    }
}

/// Why sources were last dropped, from the drop event stream (JSON lines
/// with `src` and `reason`); bounded, cleared when full.
#[derive(Default)]
struct DropReasons(HashMap<IpAddr, String>);

const REASONS_KEPT: usize = 65536;

impl DropReasons {
    fn note(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        let (Some(src), Some(reason)) = (v["src"].as_str(), v["reason"].as_str()) else {
            return;
        };
        let Ok(ip) = src.parse::<IpAddr>() else {
            return;
        };
        if self.0.len() >= REASONS_KEPT {
            self.0.clear();
        }
        self.0.insert(ip, reason.to_string());
    }

    /// The last reason of an address inside `source` (an IPv6 ban holds a
    /// whole prefix).
    fn of(&self, source: &IpNet) -> Option<&str> {
        if let Some(r) = self.0.get(&source.addr()) {
            return Some(r);
        }
        self.0
            .iter()
            .find(|(a, _)| source.contains(*a))
            .map(|(_, r)| r.as_str())
    }
}

/// Offers each new automatic ban of the kernel to the signal queue, with
/// the reason of the drops that made it (from the event stream). A ban
/// the kernel made from drops of a fleet's decision is not sent back to
/// the fleet, and is lifted: the decision already drops that source, and
/// the ban would outlive a decision the operator deletes. It
/// reads `BANS` only when the kernel's count of bans made moved, and
/// leaves the bans an earlier daemon already saw alone.
async fn watch_bans(
    dir: PathBuf,
    queue: SignalQueue,
    mut events: broadcast::Receiver<Arc<String>>,
) {
    let mut seen: HashMap<AddrKey, u64> = HashMap::new();
    let mut reasons = DropReasons::default();
    let mut made = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut first = true;
    let mut following = true;
    loop {
        tokio::select! {
            ev = events.recv(), if following => {
                match ev {
                    Ok(line) => reasons.note(&line),
                    // Missed lines only cost a reason ("drops" then).
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => following = false,
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let now_made = stateful::stats_pinned(&dir)
            .and_then(|m| stateful::stat(&m, sipguard_common::STAT_BANS_CREATED))
            .ok();
        if now_made.is_none() || (now_made == made && !first) {
            continue;
        }
        made = now_made;
        let Ok(mut map) = bans::bans_pinned(&dir) else {
            continue;
        };
        let mut lift = Vec::new();
        let v6_prefix = stateful::ops_pinned(&dir)
            .map(|o| bans::v6_prefix(&o))
            .unwrap_or(64);
        let now = stateful::boot_ns();
        seen.retain(|_, until| *until > now);
        let entries: Vec<_> = map.iter().filter_map(|r| r.ok()).collect();
        for (k, v) in entries {
            if v.origin != BAN_AUTO || v.expires_ns <= now {
                continue;
            }
            if seen.insert(k, v.expires_ns) == Some(v.expires_ns) || first {
                continue;
            }
            let source = ban_source(&k, v6_prefix);
            let reason = reasons.of(&source).unwrap_or("drops");
            if reason == Reason::DropDecision.name() {
                lift.push(k);
                continue;
            }
            queue.offer(BanSignal {
                source,
                reason: reason.to_string(),
                duration: Duration::from_nanos(v.expires_ns - now),
                at: super::events::rfc3339(stateful::boot_to_unix_ns(now)),
            });
        }
        for k in lift {
            let _ = map.remove(&k);
        }
        first = false;
    }
}

/// The Local API's view for `sipguard check`: one full pull with the
/// configured key, compared with the trusted sources.
pub struct Probe {
    pub by_origin: BTreeMap<String, usize>,
    pub held_back: Vec<(IpNet, String, IpNet)>,
    pub skipped: BTreeMap<String, u64>,
}

pub async fn probe(cfg: &CrowdsecConfig, trusted: &[IpNet]) -> Result<Probe> {
    let key = cfg.api_key()?;
    let mut b = Bouncer::new(cfg, key)?;
    b.pull(stateful::boot_ns).await?;
    let held_back = b
        .set
        .overlapping(trusted)
        .into_iter()
        .map(|(d, t)| (d.net, d.origin.clone(), t))
        .collect();
    Ok(Probe {
        by_origin: b.set.by_origin(),
        held_back,
        skipped: b
            .set
            .skipped
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    })
}
