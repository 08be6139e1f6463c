//! The `DECISIONS_V4` / `DECISIONS_V6` tries: the bouncer's decisions
//! written entry by entry as they change (a pull changes a few of 100,000),
//! read back by a restarted daemon, `sipguard bans`, `stats` and the
//! metrics.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use anyhow::{Context as _, Result};
use aya::maps::{lpm_trie::Key, LpmTrie, Map, MapData};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sipguard_common::{
    decision_origin_name, map_names as names, DecisionEntry, StateHints, V4Key, V6Key,
};

use super::{
    pins::open_map,
    program::take_map,
    stateful::{boot_ns, mark_hints},
};
use crate::policy::Decision;

pub struct DecisionMaps {
    v4: LpmTrie<MapData, V4Key, DecisionEntry>,
    v6: LpmTrie<MapData, V6Key, DecisionEntry>,
    /// `HINTS.decisions` is known to be set.
    hinted: bool,
}

impl DecisionMaps {
    /// Takes the tries out of a loaded object (pinned before taking).
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self> {
        Ok(DecisionMaps {
            v4: take_map(ebpf, names::DECISIONS_V4)?.try_into()?,
            v6: take_map(ebpf, names::DECISIONS_V6)?.try_into()?,
            hinted: false,
        })
    }

    pub fn open_pinned(dir: &Path) -> Result<Self> {
        Ok(DecisionMaps {
            v4: Map::LpmTrie(open_map(dir, names::DECISIONS_V4)?).try_into()?,
            v6: Map::LpmTrie(open_map(dir, names::DECISIONS_V6)?).try_into()?,
            hinted: false,
        })
    }

    /// Writes (or rewrites) entries. `hints` is the object's `HINTS`
    /// array: its `decisions` bit is set before the first entry, or the
    /// filter would skip the lookup.
    pub fn upsert<'a, T: std::borrow::BorrowMut<MapData>>(
        &mut self,
        hints: &mut aya::maps::Array<T, StateHints>,
        decisions: impl IntoIterator<Item = &'a Decision>,
    ) -> Result<usize> {
        let mut n = 0;
        for d in decisions {
            if !self.hinted {
                mark_hints(hints, |h| h.decisions = 1)?;
                self.hinted = true;
            }
            match d.net {
                IpNet::V4(net) => self
                    .v4
                    .insert(&v4_key(net), d.entry, 0)
                    .with_context(|| format!("adding {net} to DECISIONS_V4 (after {n})"))?,
                IpNet::V6(net) => self
                    .v6
                    .insert(&v6_key(net), d.entry, 0)
                    .with_context(|| format!("adding {net} to DECISIONS_V6 (after {n})"))?,
            }
            n += 1;
        }
        Ok(n)
    }

    /// Removes entries; one already gone is not an error (the kernel does
    /// not delete, but a second daemon's pull may have).
    pub fn remove<'a>(&mut self, nets: impl IntoIterator<Item = &'a IpNet>) -> usize {
        let mut n = 0;
        for net in nets {
            let gone = match net.trunc() {
                IpNet::V4(net) => self.v4.remove(&v4_key(net)).is_ok(),
                IpNet::V6(net) => self.v6.remove(&v6_key(net)).is_ok(),
            };
            n += usize::from(gone);
        }
        n
    }

    /// Every entry, ended or not.
    pub fn entries(&self) -> Result<Vec<Decision>> {
        let mut out = read_trie(&self.v4, names::DECISIONS_V4)?;
        out.extend(read_trie(&self.v6, names::DECISIONS_V6)?);
        Ok(out)
    }

    /// Makes the tries hold exactly `want` (a sandbox's policy).
    pub fn replace<T: std::borrow::BorrowMut<MapData>>(
        &mut self,
        hints: &mut aya::maps::Array<T, StateHints>,
        want: &[Decision],
    ) -> Result<()> {
        self.upsert(hints, want)?;
        let stale: Vec<IpNet> = self
            .entries()?
            .into_iter()
            .map(|d| d.net)
            .filter(|n| !want.iter().any(|w| w.net == *n))
            .collect();
        self.remove(&stale);
        Ok(())
    }
}

/// One trie's entries as decisions (the key bytes are the network, in
/// network order, for both families).
fn read_trie<K>(trie: &LpmTrie<MapData, K, DecisionEntry>, name: &str) -> Result<Vec<Decision>>
where
    K: aya::Pod + Into<IpAddr>,
{
    let mut out = Vec::new();
    for kv in trie.iter() {
        let (k, entry) = kv.with_context(|| format!("reading {name}"))?;
        let net = IpNet::new(k.data().into(), k.prefix_len() as u8)?;
        out.push(Decision { net, entry });
    }
    Ok(out)
}

fn v4_key(net: Ipv4Net) -> Key<V4Key> {
    Key::new(u32::from(net.prefix_len()), net.network().octets())
}

fn v6_key(net: Ipv6Net) -> Key<V6Key> {
    Key::new(u32::from(net.prefix_len()), net.network().octets())
}

/// Entries in force per origin name (ended ones the daemon has not removed
/// yet are left out).
pub fn by_origin(entries: &[Decision]) -> BTreeMap<&'static str, u64> {
    let now = boot_ns();
    let mut m = BTreeMap::new();
    for d in entries {
        if sipguard_common::decision_live(&d.entry, now) {
            *m.entry(decision_origin_name(d.entry.origin)).or_insert(0) += 1;
        }
    }
    m
}

/// The pinned tries' entries in force, per origin; `None` without pins
/// (no daemon ever ran with this map layout).
pub fn pinned_by_origin(dir: &Path) -> Option<BTreeMap<&'static str, u64>> {
    let maps = DecisionMaps::open_pinned(dir).ok()?;
    Some(by_origin(&maps.entries().ok()?))
}

/// `3 in force (cscli 2, crowdsec 1)`, or `none in force`.
pub fn describe(by_origin: &BTreeMap<&'static str, u64>) -> String {
    let total: u64 = by_origin.values().sum();
    if total == 0 {
        return "none in force".into();
    }
    let parts: Vec<String> = by_origin.iter().map(|(o, n)| format!("{o} {n}")).collect();
    format!("{total} in force ({})", parts.join(", "))
}
