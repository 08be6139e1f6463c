//! Bans in the `BANS` map: `sipguard ban`, `unban` and `bans`, and the
//! count of bans in force for `stats` and the metrics.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{Array, HashMap, Map, MapData};
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

/// The IPv6 ban prefix in force (from the pinned settings).
pub fn v6_prefix(ops: &Array<MapData, OpsSettings>) -> u32 {
    match ops.get(&0, 0) {
        Ok(o) if o.ban_v6_prefix != 0 => o.ban_v6_prefix,
        _ => 64,
    }
}

/// Bans `addr` (its /prefix for IPv6) for `dur`, or until unbanned.
pub fn ban(dir: &Path, addr: IpAddr, dur: Option<Duration>) -> Result<String> {
    let prefix = v6_prefix(&ops_pinned(dir)?);
    let mut bans = bans_pinned(dir)?;
    let key = key_for(addr, prefix);
    // Before the entry: the filter only looks bans up once this is set.
    mark_hints(&mut hints_pinned(dir)?, |h| h.bans = 1)?;
    let expires_ns = match dur {
        Some(d) => boot_ns().saturating_add(d.as_nanos() as u64),
        None => BAN_FOREVER,
    };
    bans.insert(
        key,
        BanEntry {
            expires_ns,
            origin: BAN_MANUAL,
            count: 0,
        },
        0,
    )
    .context("updating BANS")?;
    Ok(key_label(&key, prefix))
}

pub fn unban(dir: &Path, addr: IpAddr) -> Result<String> {
    let prefix = v6_prefix(&ops_pinned(dir)?);
    let mut bans = bans_pinned(dir)?;
    let key = key_for(addr, prefix);
    let label = key_label(&key, prefix);
    bans.remove(&key)
        .map_err(|_| anyhow!("{label} is not banned"))?;
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

/// Bans still in force (expired entries the kernel has not met again are
/// left out).
pub fn list_bans(dir: &Path) -> Result<Vec<BanInfo>> {
    let prefix = v6_prefix(&ops_pinned(dir)?);
    let bans = bans_pinned(dir)?;
    let now = boot_ns();
    let mut out = Vec::new();
    for item in bans.iter() {
        let (k, v) = item?;
        if v.expires_ns <= now {
            continue;
        }
        out.push(BanInfo {
            source: key_label(&k, prefix),
            origin: if v.origin == BAN_MANUAL {
                "manual"
            } else {
                "auto"
            },
            remaining_secs: (v.expires_ns != BAN_FOREVER)
                .then(|| (v.expires_ns - now).div_ceil(1_000_000_000)),
            drops: v.count,
        });
    }
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
