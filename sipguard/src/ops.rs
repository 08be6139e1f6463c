//! Userspace side of the operations maps: the `OPS` settings, bans
//! (`sipguard ban/unban/bans`) and the per-CPU statistics.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use sipguard_common::abi::{map_names as names, *};

use crate::config::{Config, FragmentPolicy};

/// The `OPS` value for a config. Events are always produced (sampling keeps
/// them cheap); whether the daemon logs them is a userspace choice.
pub fn settings(cfg: &Config) -> OpsSettings {
    let mut flags = OPS_EVENTS;
    if cfg.bans_enabled() {
        flags |= OPS_AUTO_BAN;
    }
    if cfg.fragments == FragmentPolicy::Track {
        flags |= OPS_FRAGS;
    }
    OpsSettings {
        flags,
        ban_threshold: cfg.bans.threshold,
        ban_window_ns: cfg.bans.window.0.as_nanos() as u64,
        ban_ttl_ns: cfg.bans.ttl.0.as_nanos() as u64,
        event_interval_ns: cfg.events.interval.0.as_nanos() as u64,
        ban_v6_prefix: cfg.bans.ipv6_prefix as u32,
        _pad0: 0,
    }
}

/// CLOCK_BOOTTIME now, the clock of `bpf_ktime_get_boot_ns` and of every
/// time stamp in the maps (bans, events, learned registrars): it counts
/// through suspend, so an expiry means the same wall-clock span.
pub fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock time (ns since the Unix epoch) of a CLOCK_BOOTTIME stamp.
pub fn boot_to_unix_ns(boot: u64) -> u64 {
    let wall = clock_ns(libc::CLOCK_REALTIME);
    let now_boot = boot_ns();
    (wall as i128 - (now_boot as i128 - boot as i128)).max(0) as u64
}

fn pinned(dir: &Path, name: &str) -> Result<MapData> {
    let path = dir.join(name);
    MapData::from_pin(&path).with_context(|| {
        format!(
            "cannot open pinned map {} (is `sipguard run` running?)",
            path.display()
        )
    })
}

pub fn ops_pinned(dir: &Path) -> Result<Array<MapData, OpsSettings>> {
    Ok(Array::try_from(Map::Array(pinned(dir, names::OPS)?))?)
}

pub fn bans_pinned(dir: &Path) -> Result<HashMap<MapData, AddrKey, BanEntry>> {
    Ok(HashMap::try_from(Map::LruHashMap(pinned(
        dir,
        names::BANS,
    )?))?)
}

/// Sets fields of the sticky `HINTS` value (see `StateHints`): `mark` may
/// only turn fields on.
pub fn mark_hints<T: std::borrow::BorrowMut<MapData>>(
    hints: &mut Array<T, StateHints>,
    mark: impl FnOnce(&mut StateHints),
) -> Result<()> {
    let mut h = hints.get(&0, 0).context("reading HINTS")?;
    mark(&mut h);
    hints.set(0, h, 0).context("updating HINTS")?;
    Ok(())
}

pub fn hints_pinned(dir: &Path) -> Result<Array<MapData, StateHints>> {
    Ok(Array::try_from(Map::Array(pinned(dir, names::HINTS)?))?)
}

pub fn stats_pinned(dir: &Path) -> Result<PerCpuArray<MapData, u64>> {
    Ok(PerCpuArray::try_from(Map::PerCpuArray(pinned(
        dir,
        names::OPS_STATS,
    )?))?)
}

/// Sum of one `OPS_STATS` slot over all CPUs.
pub fn stat(map: &PerCpuArray<MapData, u64>, idx: u32) -> Result<u64> {
    Ok(map.get(&idx, 0)?.iter().sum())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpsStats {
    pub events_sent: u64,
    pub events_lost: u64,
    pub events_suppressed: u64,
    pub bans_created: u64,
    pub fragments_remembered: u64,
}

pub fn read_stats(map: &PerCpuArray<MapData, u64>) -> Result<OpsStats> {
    Ok(OpsStats {
        events_sent: stat(map, STAT_EVENTS_SENT)?,
        events_lost: stat(map, STAT_EVENTS_LOST)?,
        events_suppressed: stat(map, STAT_EVENTS_SUPPRESSED)?,
        bans_created: stat(map, STAT_BANS_CREATED)?,
        fragments_remembered: stat(map, STAT_FRAGS_REMEMBERED)?,
    })
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
