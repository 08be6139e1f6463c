//! The stateful maps, userspace side: the `OPS` settings that switch drop
//! events, automatic bans and fragment tracking on, the sticky `HINTS`,
//! the per-CPU `OPS_STATS`, and the boot clock their timestamps use.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use sipguard_common::abi::{map_names as names, *};

use super::pins::open_map;
use crate::policy::config::{Config, FragmentPolicy};

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
        events_per_second: cfg.events.max_per_second,
    }
}

pub use crate::policy::clock::{boot_ns, clock_ns};

/// Wall-clock time (ns since the Unix epoch) of a CLOCK_BOOTTIME stamp.
pub fn boot_to_unix_ns(boot: u64) -> u64 {
    let wall = clock_ns(libc::CLOCK_REALTIME);
    let now_boot = boot_ns();
    (wall as i128 - (now_boot as i128 - boot as i128)).max(0) as u64
}

pub fn ops_pinned(dir: &Path) -> Result<Array<MapData, OpsSettings>> {
    Ok(Array::try_from(Map::Array(open_map(dir, names::OPS)?))?)
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
    Ok(Array::try_from(Map::Array(open_map(dir, names::HINTS)?))?)
}

pub fn stats_pinned(dir: &Path) -> Result<PerCpuArray<MapData, u64>> {
    Ok(PerCpuArray::try_from(Map::PerCpuArray(open_map(
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
    pub events_over_budget: u64,
    pub bans_created: u64,
    pub fragments_remembered: u64,
}

pub fn read_stats(map: &PerCpuArray<MapData, u64>) -> Result<OpsStats> {
    Ok(OpsStats {
        events_sent: stat(map, STAT_EVENTS_SENT)?,
        events_lost: stat(map, STAT_EVENTS_LOST)?,
        events_suppressed: stat(map, STAT_EVENTS_SUPPRESSED)?,
        events_over_budget: stat(map, STAT_EVENTS_OVER_BUDGET)?,
        bans_created: stat(map, STAT_BANS_CREATED)?,
        fragments_remembered: stat(map, STAT_FRAGS_REMEMBERED)?,
    })
}
