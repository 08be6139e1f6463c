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
    let map = ebpf.map_mut(map_names::LEARN_CONFIG).ok_or_else(|| {
        anyhow!(
            "map {} is missing from the eBPF object",
            map_names::LEARN_CONFIG
        )
    })?;
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

fn pinned_hash(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "cannot open pinned map {} (is `sipguard run` running?)",
            path.display()
        )
    })?;
    Ok(Map::LruHashMap(data))
}

/// The learned entries under a pin directory, soonest expiry last.
pub fn learned_pinned(dir: &Path) -> Result<Vec<Learned>> {
    let now = crate::ops::boot_ns();
    let left = |e: u64| (e > now).then(|| Duration::from_nanos(e - now));
    let mut out = Vec::new();
    let v4: HashMap<MapData, V4Key, LearnedExpiry> =
        pinned_hash(dir, map_names::LEARNED_V4)?.try_into()?;
    for kv in v4.iter() {
        let (k, e) = kv?;
        out.push(Learned {
            addr: IpAddr::from(k),
            left: left(e),
        });
    }
    let v6: HashMap<MapData, V6Key, LearnedExpiry> =
        pinned_hash(dir, map_names::LEARNED_V6)?.try_into()?;
    for kv in v6.iter() {
        let (k, e) = kv?;
        out.push(Learned {
            addr: IpAddr::from(k),
            left: left(e),
        });
    }
    out.sort_by(|a, b| b.left.cmp(&a.left).then(a.addr.cmp(&b.addr)));
    Ok(out)
}

/// `stats --json` addition: how many registrars are learned (and still
/// valid).
pub fn summary_json(dir: &Path) -> Option<serde_json::Value> {
    let l = learned_pinned(dir).ok()?;
    let active = l.iter().filter(|e| e.left.is_some()).count();
    Some(serde_json::json!({ "active": active, "expired": l.len() - active }))
}

/// `sipguard trusted`: the trusted tries (static addresses, CIDRs and the
/// addresses of trusted names) and the learned registrars with expiry.
pub fn trusted_report(dir: &Path, json: bool) -> Result<String> {
    use std::fmt::Write as _;
    let maps = crate::maps::PolicyMaps::open_pinned(dir)?;
    let mut nets = Vec::new();
    for k in maps.trusted_v4.keys() {
        let k = k?;
        nets.push(ipnet::IpNet::new(
            IpAddr::from(k.data()),
            k.prefix_len() as u8,
        )?);
    }
    for k in maps.trusted_v6.keys() {
        let k = k?;
        nets.push(ipnet::IpNet::new(
            IpAddr::from(k.data()),
            k.prefix_len() as u8,
        )?);
    }
    nets.sort();
    let learned = learned_pinned(dir)?;
    if json {
        let v = serde_json::json!({
            "static": nets.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "learned": learned.iter().map(|l| serde_json::json!({
                "address": l.addr.to_string(),
                "expires_in_ms": l.left.map(|d| d.as_millis() as u64),
                "expired": l.left.is_none(),
            })).collect::<Vec<_>>(),
        });
        return Ok(format!("{v}\n"));
    }
    let mut s = String::new();
    let _ = writeln!(s, "static and resolved ({}):", nets.len());
    for n in &nets {
        let _ = writeln!(s, "  {n}");
    }
    let _ = writeln!(s, "learned registrars ({}):", learned.len());
    for l in &learned {
        match l.left {
            Some(d) => {
                let _ = writeln!(
                    s,
                    "  {:<40} expires in {:.1} s",
                    l.addr.to_string(),
                    d.as_secs_f64()
                );
            }
            None => {
                let _ = writeln!(s, "  {:<40} expired", l.addr.to_string());
            }
        }
    }
    Ok(s)
}
