//! Bans in the `BANS` map: `sipguard ban`, `unban` and `bans`, and the
//! count of bans in force for `stats` and the metrics.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{Array, HashMap, Map, MapData};
use ipnet::IpNet;
use sipguard_common::abi::{map_names as names, *};

use super::{
    pins::open_map,
    stateful::{boot_ns, hints_pinned, mark_hints, ops_pinned},
};

pub fn bans_pinned(dir: &Path) -> Result<HashMap<MapData, AddrKey, BanEntry>> {
    Ok(HashMap::try_from(Map::LruHashMap(open_map(
        dir,
        names::BANS,
    )?))?)
}

pub fn key_for(addr: IpAddr, v6_prefix: u32) -> AddrKey {
    match addr {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            AddrKey::new(false, &b, v6_prefix)
        }
        IpAddr::V6(a) => AddrKey::new(true, &a.octets(), v6_prefix),
    }
}

/// The address (or IPv6 prefix) a ban key stands for, as users write it.
pub fn key_label(k: &AddrKey, v6_prefix: u32) -> String {
    if k.family == 4 {
        Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]).to_string()
    } else if v6_prefix >= 128 {
        Ipv6Addr::from(k.addr).to_string()
    } else {
        format!("{}/{}", Ipv6Addr::from(k.addr), v6_prefix)
    }
}

/// The network a ban key stands for (an IPv4 address, an IPv6 prefix).
pub fn key_net(k: &AddrKey, v6_prefix: u32) -> IpNet {
    if k.family == 4 {
        IpNet::from(IpAddr::V4(Ipv4Addr::new(
            k.addr[0], k.addr[1], k.addr[2], k.addr[3],
        )))
    } else {
        let a = Ipv6Addr::from(k.addr);
        match ipnet::Ipv6Net::new(a, v6_prefix.min(128) as u8) {
            Ok(n) => IpNet::V6(n),
            // Unreachable: the prefix is clamped to 128.
            Err(_) => IpNet::from(IpAddr::V6(a)),
        }
    }
}

/// The networks of the bans in force, for the overlaps with trusted.
pub fn active_ban_nets(dir: &Path) -> Result<Vec<IpNet>> {
    let prefix = v6_prefix(&ops_pinned(dir)?);
    let now = boot_ns();
    let mut v = Vec::new();
    for item in bans_pinned(dir)?.iter() {
        let (k, b) = item?;
        if b.expires_ns > now {
            v.push(key_net(&k, prefix));
        }
    }
    v.sort();
    Ok(v)
}

/// The IPv6 ban prefix in force (from the pinned settings).
pub fn v6_prefix(ops: &Array<MapData, OpsSettings>) -> u32 {
    match ops.get(&0, 0) {
        Ok(o) if o.ban_v6_prefix != 0 => o.ban_v6_prefix,
        _ => 64,
    }
}

/// What a ban changed: the key it wrote, the ban it replaced, and the bans
/// the LRU map evicted to make room for it.
#[derive(Debug)]
pub struct Banned {
    pub net: IpNet,
    pub label: String,
    /// The ban in force for the same key before, if any.
    pub replaced: Option<BanInfo>,
    /// Bans in force that disappeared from the map with this insert: `BANS`
    /// is an LRU hash, so on a full map the kernel drops the least recently
    /// used entry instead of refusing the new one.
    pub evicted: Vec<String>,
}

/// Bans `addr` (its /prefix for IPv6) for `dur`, or until unbanned.
pub fn ban(dir: &Path, addr: IpAddr, dur: Option<Duration>) -> Result<Banned> {
    let prefix = v6_prefix(&ops_pinned(dir)?);
    let mut bans = bans_pinned(dir)?;
    let key = key_for(addr, prefix);
    let before = in_force(&bans, prefix)?;
    let replaced = before
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, i)| i.clone());
    // Before the entry: the filter only looks bans up once this is set.
    mark_hints(&mut hints_pinned(dir)?, |h| h.bans = 1)?;
    let expires_ns = match dur {
        Some(d) => boot_ns().saturating_add(d.as_nanos() as u64),
        None => BAN_FOREVER,
    };
    bans.insert(key, BanEntry::new(expires_ns, BAN_MANUAL, 0), 0)
        .context("updating BANS")?;
    let after: Vec<AddrKey> = bans.keys().filter_map(|k| k.ok()).collect();
    anyhow::ensure!(
        after.contains(&key),
        "BANS accepted the ban of {} but does not hold it",
        key_label(&key, prefix)
    );
    let evicted = before
        .into_iter()
        .filter(|(k, _)| *k != key && !after.contains(k))
        .map(|(_, i)| i.source)
        .collect();
    Ok(Banned {
        net: key_net(&key, prefix),
        label: key_label(&key, prefix),
        replaced,
        evicted,
    })
}

/// A lookup or delete of a key the map does not hold.
fn not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// The bans in force, by key.
fn in_force(
    bans: &HashMap<MapData, AddrKey, BanEntry>,
    prefix: u32,
) -> Result<Vec<(AddrKey, BanInfo)>> {
    let now = boot_ns();
    let mut v = Vec::new();
    for item in bans.iter() {
        let (k, b) = item?;
        if b.expires_ns > now {
            v.push((k, info(&k, &b, prefix, now)));
        }
    }
    Ok(v)
}

fn info(k: &AddrKey, v: &BanEntry, prefix: u32, now: u64) -> BanInfo {
    BanInfo {
        source: key_label(k, prefix),
        origin: if v.origin == BAN_MANUAL {
            "manual"
        } else {
            "auto"
        },
        remaining_secs: (v.expires_ns != BAN_FOREVER)
            .then(|| v.expires_ns.saturating_sub(now).div_ceil(1_000_000_000)),
        drops: v.count,
    }
}

/// Lifts the ban of `addr` (its /prefix for IPv6). An error when there is
/// none in force: an entry whose time is up is removed, but reported as
/// not banned, since lifting it changes nothing.
pub fn unban(dir: &Path, addr: IpAddr) -> Result<String> {
    let prefix = v6_prefix(&ops_pinned(dir)?);
    let mut bans = bans_pinned(dir)?;
    let key = key_for(addr, prefix);
    let label = key_label(&key, prefix);
    let entry = match bans.get(&key, 0) {
        Ok(e) => e,
        Err(e) if not_found(&e) => anyhow::bail!("{label} is not banned"),
        Err(e) => return Err(anyhow!(e).context(format!("reading the ban of {label}"))),
    };
    match bans.remove(&key) {
        Ok(()) => {}
        // The kernel removed it first (met after its expiry): not banned.
        Err(e) if not_found(&e) => anyhow::bail!("{label} is not banned"),
        Err(e) => return Err(anyhow!(e).context(format!("removing the ban of {label}"))),
    }
    let now = boot_ns();
    anyhow::ensure!(
        entry.expires_ns > now,
        "{label} is not banned: its ban had ended {} s ago (the stale entry is removed)",
        (now - entry.expires_ns) / 1_000_000_000
    );
    Ok(label)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BanInfo {
    pub source: String,
    pub origin: &'static str,
    /// Seconds left; `None` for a ban without end.
    pub remaining_secs: Option<u64>,
    pub drops: u32,
}

impl BanInfo {
    /// The time left as `bans` shows it: `3600s`, or `forever`.
    pub fn remaining(&self) -> String {
        self.remaining_secs
            .map(|s| format!("{s}s"))
            .unwrap_or_else(|| "forever".into())
    }
}

/// Bans still in force (expired entries the kernel has not met again are
/// left out).
pub fn list_bans(dir: &Path) -> Result<Vec<BanInfo>> {
    let prefix = v6_prefix(&ops_pinned(dir)?);
    let mut out: Vec<BanInfo> = in_force(&bans_pinned(dir)?, prefix)?
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    out.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(out)
}

pub fn count_active_bans(bans: &HashMap<MapData, AddrKey, BanEntry>) -> u64 {
    let now = boot_ns();
    bans.iter()
        .filter_map(|r| r.ok())
        .filter(|(_, v)| v.expires_ns > now)
        .count() as u64
}
