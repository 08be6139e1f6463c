//! Carrying the kernel's state across a map ABI upgrade. What the daemon of
//! an older package left pinned under `<root>/v<older>/` (bans, ban counts,
//! learned registrars, CrowdSec decisions, remembered fragments, event
//! sampling, counters) is copied into this version's maps before this
//! version's program replaces the older one on the link, for every map
//! whose layout has not changed since that version (`abi::LAYOUT_SINCE`)
//! and whose kernel description (type, key and value size, entries) equals
//! this version's. Everything not carried is named in the log.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, MapType};
use sipguard_common::{layout_since, map_names as names, IfaceName, IFACE_SLOTS};

use super::{
    pins,
    stateful::{hints_pinned, mark_hints},
};

/// The sticky `HINTS` field that must be on before entries of a map are
/// written, or the filter skips their lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Bans,
    Learned,
    Decisions,
}

/// What an upgrade does with an older ABI's pinned map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Entries copied key by key; an entry this version already holds is
    /// kept (it is the newer one).
    Entries(Option<Hint>),
    /// Per-CPU counts added cell by cell; `COUNTERS` cells move to the slot
    /// this version gave the same interface name.
    Counts { by_interface: bool },
    /// Written from the config by this version before its program runs.
    FromConfig,
    /// Not carried, and why.
    Not(&'static str),
}

/// The rule for a pinned map; `None` for a name that has none (every name
/// of `map_names::ALL` has one, a test checks).
pub fn rule(name: &str) -> Option<Rule> {
    Some(match name {
        names::BANS => Rule::Entries(Some(Hint::Bans)),
        names::LEARNED_V4 | names::LEARNED_V6 => Rule::Entries(Some(Hint::Learned)),
        names::DECISIONS_V4 | names::DECISIONS_V6 => Rule::Entries(Some(Hint::Decisions)),
        names::BAN_COUNTS | names::FRAGS | names::EVENT_SAMPLER => Rule::Entries(None),
        names::COUNTERS => Rule::Counts { by_interface: true },
        names::OPS_STATS => Rule::Counts {
            by_interface: false,
        },
        names::SETTINGS
        | names::TRUSTED_V4
        | names::TRUSTED_V6
        | names::BLOCKED_V4
        | names::BLOCKED_V6
        | names::BLOCKED_V4_HOSTS
        | names::BLOCKED_V6_HOSTS
        | names::IFACE_SLOTS
        | names::IFACE_NAMES
        | names::LEARN_CONFIG
        | names::UA_PREFIXES
        | names::EXPECTED_USERS
        | names::OPS => Rule::FromConfig,
        names::INSPECTOR => Rule::Not("it holds each version's own programs"),
        names::HINTS => Rule::Not("set from what was carried"),
        names::EVENTS => Rule::Not("drop events the older daemon left unread are lost"),
        _ => return None,
    })
}

/// A pinned map with the kernel's description of it.
struct Pinned {
    map: MapData,
    kind: MapType,
    key: u32,
    value: u32,
    entries: u32,
}

impl Pinned {
    fn open(path: &Path) -> Result<Pinned> {
        let map = MapData::from_pin(path)
            .with_context(|| format!("cannot open pinned map {}", path.display()))?;
        let info = map.info()?;
        Ok(Pinned {
            kind: info.map_type()?,
            key: info.key_size(),
            value: info.value_size(),
            entries: info.max_entries(),
            map,
        })
    }

    fn same_layout(&self, o: &Pinned) -> bool {
        (self.kind, self.key, self.value, self.entries) == (o.kind, o.key, o.value, o.entries)
    }

    fn same_layout_but_value(&self, o: &Pinned) -> bool {
        (self.kind, self.key, self.entries) == (o.kind, o.key, o.entries)
    }

    fn describe(&self) -> String {
        format!(
            "{:?} of {} entries, {}-byte keys, {}-byte values",
            self.kind, self.entries, self.key, self.value
        )
    }

    fn per_cpu(&self) -> bool {
        matches!(
            self.kind,
            MapType::PerCpuArray | MapType::PerCpuHash | MapType::LruPerCpuHash
        )
    }

    /// Bytes of one value as the syscalls read and write it (per-CPU
    /// values: one 8-byte aligned slot per possible CPU).
    fn value_len(&self) -> Result<usize> {
        if !self.per_cpu() {
            return Ok(self.value as usize);
        }
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        Ok((self.value as usize).div_ceil(8) * 8 * cpus)
    }

    fn op(
        &self,
        cmd: libc::c_long,
        key: *const u8,
        value: *mut u8,
        flags: u64,
    ) -> std::io::Result<()> {
        let mut attr = [0u8; 128];
        let fd = self.map.fd().as_fd().as_raw_fd() as u32;
        attr[..4].copy_from_slice(&fd.to_ne_bytes());
        attr[8..16].copy_from_slice(&(key as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(value as u64).to_ne_bytes());
        attr[24..32].copy_from_slice(&flags.to_ne_bytes());
        pins::bpf(cmd, &mut attr).map(|_| ())
    }

    /// The value of `key`, `false` when there is none.
    fn lookup(&self, key: &[u8], value: &mut [u8]) -> std::io::Result<bool> {
        const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
        match self.op(BPF_MAP_LOOKUP_ELEM, key.as_ptr(), value.as_mut_ptr(), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> std::io::Result<()> {
        const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
        self.op(
            BPF_MAP_UPDATE_ELEM,
            key.as_ptr(),
            value.as_ptr() as *mut u8,
            flags,
        )
    }

    /// Every key of a hash or trie. Entries the older program evicts
    /// meanwhile may restart the walk; it is bounded all the same.
    fn keys(&self) -> std::io::Result<Vec<Vec<u8>>> {
        const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = vec![0u8; self.key as usize];
        let limit = 2 * self.entries as usize + 16;
        for _ in 0..limit {
            let prev = out.last().map_or(std::ptr::null(), |k| k.as_ptr());
            match self.op(BPF_MAP_GET_NEXT_KEY, prev, next.as_mut_ptr(), 0) {
                Ok(()) => {
                    if !seen.insert(next.clone()) {
                        break;
                    }
                    out.push(next.clone());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// An older map ABI's pins: the version and its maps, held open so a
/// second pass still reads them after this version took their place.
pub struct Older {
    pub version: u32,
    dir: PathBuf,
    maps: Vec<(&'static str, Pinned)>,
}

/// The pins older map ABIs left under `root`, newest first.
pub fn older(root: &Path) -> Vec<Older> {
    pins::older_dirs(root)
        .into_iter()
        .map(|(version, dir)| {
            let maps = names::ALL
                .iter()
                .filter_map(|n| Pinned::open(&dir.join(n)).ok().map(|p| (*n, p)))
                .collect();
            Older { version, dir, maps }
        })
        .collect()
}

/// What one pass carried, for the log.
#[derive(Debug, Default)]
pub struct Carried {
    /// `NAME n` per map carried.
    pub carried: Vec<String>,
    /// `NAME (why)` per map left behind.
    pub left: Vec<String>,
}

impl Carried {
    /// One line of what was carried, one warning naming what was not.
    pub fn log(&self, version: u32) {
        let carried = if self.carried.is_empty() {
            "nothing".to_string()
        } else {
            self.carried.join(", ")
        };
        log::info!(
            "map ABI v{version} -> v{}: carried {carried}",
            sipguard_common::MAP_ABI_VERSION
        );
        if !self.left.is_empty() {
            log::warn!("map ABI v{version}: not carried: {}", self.left.join("; "));
        }
    }
}

impl Older {
    fn map(&self, name: &str) -> Option<&Pinned> {
        self.maps.iter().find(|(n, _)| *n == name).map(|(_, p)| p)
    }

    /// Copies every map this version can read into the maps pinned in
    /// `new_dir`. Run before this version's program replaces the older one,
    /// so bans and learned registrars hold from its first packet on, and
    /// after this version wrote its interface slots (counters follow the
    /// interface name).
    pub fn carry(&self, new_dir: &Path) -> Carried {
        let mut report = Carried::default();
        for name in names::ALL {
            let Some(rule) = rule(name) else {
                report.left.push(format!("{name} (no migration rule)"));
                continue;
            };
            if matches!(rule, Rule::FromConfig) {
                continue;
            }
            if let Rule::Not(why) = rule {
                if self.map(name).is_some() {
                    report.left.push(format!("{name} ({why})"));
                }
                continue;
            }
            let Some(old) = self.map(name) else {
                if layout_since(name).is_some_and(|v| v > self.version) {
                    continue; // the map is newer than that version
                }
                report
                    .left
                    .push(format!("{name} (not pinned under {})", self.dir.display()));
                continue;
            };
            match self.carry_map(name, rule, old, new_dir) {
                Ok(n) => report.carried.push(format!("{name} {n}")),
                Err(why) => report.left.push(format!("{name} ({why:#})")),
            }
        }
        report
    }

    /// This version's map `name`, when `old` can be carried into it: same
    /// layout since the older version, or a value [`widened`] since.
    fn readable(&self, name: &str, old: &Pinned, new_dir: &Path) -> Result<Pinned> {
        let since = layout_since(name).unwrap_or(u32::MAX);
        let widened = widened(name, self.version, old);
        anyhow::ensure!(
            since <= self.version || widened,
            "its layout changed in map ABI v{since}, after v{}",
            self.version
        );
        let new = Pinned::open(&new_dir.join(name))?;
        let fits = if since <= self.version {
            old.same_layout(&new)
        } else {
            old.same_layout_but_value(&new) && new.value > old.value
        };
        anyhow::ensure!(
            fits,
            "v{}'s is a {}, this version's a {}",
            self.version,
            old.describe(),
            new.describe()
        );
        Ok(new)
    }

    fn carry_map(&self, name: &str, rule: Rule, old: &Pinned, new_dir: &Path) -> Result<u64> {
        let new = self.readable(name, old, new_dir)?;
        match rule {
            Rule::Entries(hint) => copy_entries(old, &new, hint, new_dir),
            Rule::Counts { by_interface } => {
                let slots = if by_interface {
                    Some(slot_map(&self.dir, new_dir)?)
                } else {
                    None
                };
                let n = add_counts(old, &new, slots.as_deref())?;
                // Counted once: a daemon started again after a failure
                // must not add them a second time.
                let _ = std::fs::remove_file(self.dir.join(name));
                Ok(n)
            }
            Rule::FromConfig | Rule::Not(_) => Ok(0),
        }
    }

    /// Entries the older program made after [`Older::carry`] and before
    /// its last link went over to this version (a ban made in those
    /// milliseconds); logged when there were any. Returns how many.
    pub fn carry_late(&self, new_dir: &Path) -> u64 {
        let mut n = 0;
        for (name, old) in &self.maps {
            let Some(Rule::Entries(hint)) = rule(name) else {
                continue;
            };
            if let Ok(new) = self.readable(name, old, new_dir) {
                n += copy_entries(old, &new, hint, new_dir).unwrap_or(0);
            }
        }
        if n > 0 {
            log::info!(
                "map ABI v{}: {n} entries made until its program was replaced carried too",
                self.version
            );
        }
        n
    }
}

/// Maps whose value grew by fields appended at its end, whose zero means
/// "none yet", and the first map ABI version with the older value: entries
/// from those versions are carried zero-extended. `BANS` grew from 16 to
/// 32 bytes in map ABI 4 (the event sampling of its drops; zero: no event
/// sent yet, none suppressed).
const WIDENED: [(&str, u32, u32); 1] = [(names::BANS, 1, 16)];

/// Whether `old`, pinned by map ABI `version`, is an older value of a map
/// in [`WIDENED`].
fn widened(name: &str, version: u32, old: &Pinned) -> bool {
    !old.per_cpu()
        && WIDENED
            .iter()
            .any(|(n, from, size)| *n == name && version >= *from && old.value == *size)
}

/// Copies the entries of `old` that `new` lacks (values zero-extended to
/// `new`'s size); returns how many.
fn copy_entries(old: &Pinned, new: &Pinned, hint: Option<Hint>, new_dir: &Path) -> Result<u64> {
    const BPF_NOEXIST: u64 = 1;
    let keys = old.keys().context("listing the older entries")?;
    let old_len = old.value_len()?;
    let mut value = vec![0u8; new.value_len()?.max(old_len)];
    let mut hinted = false;
    let mut n = 0;
    for key in keys {
        value.fill(0);
        if !old.lookup(&key, &mut value[..old_len])? {
            continue; // evicted meanwhile
        }
        if !hinted {
            if let Some(h) = hint {
                mark_hints(&mut hints_pinned(new_dir)?, |s| match h {
                    Hint::Bans => s.bans = 1,
                    Hint::Learned => s.learned = 1,
                    Hint::Decisions => s.decisions = 1,
                })?;
            }
            hinted = true;
        }
        match new.update(&key, &value, BPF_NOEXIST) {
            Ok(()) => n += 1,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e).context(format!("writing entry {} of the older map", n + 1)),
        }
    }
    Ok(n)
}

/// Adds the per-CPU counts of `old` to `new`, cell by cell (`slots`: the
/// new interface slot of each old one, `COUNTERS` only). Returns the cells
/// carried.
fn add_counts(old: &Pinned, new: &Pinned, slots: Option<&[Option<u32>]>) -> Result<u64> {
    let len = old.value_len()?;
    let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
    let per_slot = (old.entries / IFACE_SLOTS).max(1);
    let mut n = 0;
    for i in 0..old.entries {
        let to = match slots {
            None => i,
            Some(map) => match map.get((i / per_slot) as usize).copied().flatten() {
                Some(slot) => slot * per_slot + i % per_slot,
                None => continue,
            },
        };
        if !old.lookup(&i.to_ne_bytes(), &mut a)? || a.iter().all(|x| *x == 0) {
            continue;
        }
        if !new.lookup(&to.to_ne_bytes(), &mut b)? {
            b.fill(0);
        }
        for (x, y) in b.chunks_exact_mut(8).zip(a.chunks_exact(8)) {
            let word = |c: &[u8]| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_ne_bytes(w)
            };
            let sum = word(x).wrapping_add(word(y));
            x.copy_from_slice(&sum.to_ne_bytes());
        }
        new.update(&to.to_ne_bytes(), &b, 0)?;
        n += 1;
    }
    Ok(n)
}

/// For each older interface slot, this version's slot of the interface
/// of the same name (slot 0, packets of unregistered interfaces, stays 0).
fn slot_map(old_dir: &Path, new_dir: &Path) -> Result<Vec<Option<u32>>> {
    let names_in = |dir: &Path| -> Result<Vec<IfaceName>> {
        let m = Pinned::open(&dir.join(names::IFACE_NAMES))?;
        anyhow::ensure!(
            m.value as usize == std::mem::size_of::<IfaceName>(),
            "IFACE_NAMES is a {}",
            m.describe()
        );
        let mut out = Vec::new();
        for slot in 0..IFACE_SLOTS.min(m.entries) {
            let mut n: IfaceName = [0; 16];
            m.lookup(&slot.to_ne_bytes(), &mut n)?;
            out.push(n);
        }
        Ok(out)
    };
    let (old, new) = (names_in(old_dir)?, names_in(new_dir)?);
    Ok(old
        .iter()
        .enumerate()
        .map(|(slot, name)| {
            if slot == 0 {
                return Some(0);
            }
            if name[0] == 0 {
                return None;
            }
            new.iter()
                .skip(1)
                .position(|n| n == name)
                .map(|p| p as u32 + 1)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_map_has_a_rule() {
        for name in names::ALL {
            assert!(rule(name).is_some(), "{name} has no migration rule");
        }
        assert_eq!(rule(names::BANS), Some(Rule::Entries(Some(Hint::Bans))));
        assert_eq!(
            rule(names::COUNTERS),
            Some(Rule::Counts { by_interface: true })
        );
        assert_eq!(rule(names::TRUSTED_V4), Some(Rule::FromConfig));
        assert_eq!(rule("SCAN"), None);
    }
}
