//! Learned registrars, userspace side: the TC egress program's attachment,
//! its TTL setting, and reading the learned entries (with their expiry)
//! for `sipguard trusted` and `stats`.

use std::{net::IpAddr, path::Path, time::Duration};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, HashMap, Map, MapData},
    programs::{
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
        SchedClassifier, TcAttachType,
    },
    Ebpf,
};
use sipguard_common::{
    map_names, packet::Link, LearnConfig, LearnedExpiry, V4Key, V6Key, LEARN_PROGRAM_NAME,
    LEARN_PROGRAM_NAME_RAW_IP,
};

use super::{pins::open_map, program::map_mut, stateful::boot_ns};

/// `learn_registrars.ttl` in the kernel's unit.
pub fn ttl_ns(enabled: bool, ttl_secs: u32) -> u64 {
    if enabled {
        u64::from(ttl_secs) * 1_000_000_000
    } else {
        0
    }
}

/// Writes the TTL the TC program stamps on each learned entry (0: off).
pub fn set_ttl(ebpf: &mut Ebpf, ttl_ns: u64) -> Result<()> {
    let map = map_mut(ebpf, map_names::LEARN_CONFIG)?;
    let mut a: Array<&mut MapData, LearnConfig> = Array::try_from(map)?;
    a.set(0, LearnConfig { ttl_ns }, 0)
        .context("updating LEARN_CONFIG")
}

fn program_name(link: Link) -> &'static str {
    match link {
        Link::Ethernet => LEARN_PROGRAM_NAME,
        _ => LEARN_PROGRAM_NAME_RAW_IP,
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program '{name}' is missing from the embedded object"))?
        .try_into()
        .context("program has an unexpected type")
}

/// The TC egress attachments, one per interface.
#[derive(Default)]
pub struct Learner {
    links: Vec<(String, &'static str, SchedClassifierLinkId)>,
}

impl Learner {
    pub fn is_attached(&self, iface: &str) -> bool {
        self.links.iter().any(|(n, _, _)| n == iface)
    }

    /// Attaches the egress program to `iface` (a TCX link on Linux 6.6+,
    /// else a clsact qdisc filter, the qdisc added when missing).
    pub fn attach(&mut self, ebpf: &mut Ebpf, iface: &str, link: Link) -> Result<()> {
        if self.is_attached(iface) {
            return Ok(());
        }
        let name = program_name(link);
        let prog = program(ebpf, name)?;
        if prog.fd().is_err() {
            prog.load()
                .with_context(|| format!("the kernel refused the TC program '{name}'"))?;
        }
        let id = match prog.attach(iface, TcAttachType::Egress) {
            Ok(id) => id,
            Err(first) => {
                // Old kernels: netlink attachment needs the clsact qdisc.
                if let Err(e) = tc::qdisc_add_clsact(iface) {
                    log::debug!("adding clsact to {iface}: {e} (may already exist)");
                }
                prog.attach_with_options(iface, TcAttachType::Egress, TcAttachOptions::Netlink(NlOptions::default()))
                    .with_context(|| format!("cannot attach the registrar learner to {iface} egress (first try: {first})"))?
            }
        };
        log::info!("learning registrars from {iface} egress (TC program {name})");
        self.links.push((iface.to_string(), name, id));
        Ok(())
    }

    pub fn detach(&mut self, ebpf: &mut Ebpf, iface: &str) {
        let mut i = 0;
        while i < self.links.len() {
            if self.links[i].0 != iface {
                i += 1;
                continue;
            }
            let (n, name, id) = self.links.remove(i);
            match program(ebpf, name).and_then(|p| p.detach(id).map_err(Into::into)) {
                Ok(()) => log::info!("stopped learning registrars on {n}"),
                Err(e) => log::warn!("detaching the registrar learner from {n}: {e:#}"),
            }
        }
    }

    pub fn detach_all(&mut self, ebpf: &mut Ebpf) {
        let names: Vec<String> = self.links.iter().map(|(n, _, _)| n.clone()).collect();
        for n in names {
            self.detach(ebpf, &n);
        }
    }
}

/// One learned registrar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub addr: IpAddr,
    /// Time left; `None` when expired (the entry waits for LRU eviction
    /// and no longer passes anything).
    pub left: Option<Duration>,
}

/// The learned entries under a pin directory, soonest expiry last.
pub fn learned_pinned(dir: &Path) -> Result<Vec<Learned>> {
    let now = boot_ns();
    let mut out = Vec::new();
    read_learned::<V4Key>(dir, map_names::LEARNED_V4, now, &mut out)?;
    read_learned::<V6Key>(dir, map_names::LEARNED_V6, now, &mut out)?;
    out.sort_by(|a, b| b.left.cmp(&a.left).then(a.addr.cmp(&b.addr)));
    Ok(out)
}

/// Appends the entries of one learned map (IPv4 or IPv6 keys).
fn read_learned<K>(dir: &Path, name: &str, now: u64, out: &mut Vec<Learned>) -> Result<()>
where
    K: aya::Pod,
    IpAddr: From<K>,
{
    let map: HashMap<MapData, K, LearnedExpiry> =
        Map::LruHashMap(open_map(dir, name)?).try_into()?;
    for kv in map.iter() {
        let (k, e) = kv?;
        out.push(Learned {
            addr: IpAddr::from(k),
            left: (e > now).then(|| Duration::from_nanos(e - now)),
        });
    }
    Ok(())
}
