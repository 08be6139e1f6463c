//! Typed access to the program's maps, loaded or pinned, and applying a
//! policy to them without a moment where a still-wanted entry is missing.

use std::{collections::BTreeSet, path::Path};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{lpm_trie::Key, Array, HashMap, IterableMap as _, LpmTrie, Map, MapData, PerCpuArray},
    Ebpf,
};
use ipnet::IpNet;
use sipguard_common::{
    map_names as names, Counter, IfaceName, ListValue, Settings, UaKey, UserKey, V4Key, V6Key,
    USER_BYTES,
};

use super::{pins::open_map, program::take_map};
use crate::policy::Policy;

pub struct PolicyMaps {
    pub settings: Array<MapData, Settings>,
    pub trusted_v4: LpmTrie<MapData, V4Key, ListValue>,
    pub trusted_v6: LpmTrie<MapData, V6Key, ListValue>,
    pub blocked_v4: LpmTrie<MapData, V4Key, ListValue>,
    pub blocked_v6: LpmTrie<MapData, V6Key, ListValue>,
    /// The blocklist's full-length entries; `None` only for an older build
    /// of the object (benchmark comparisons), whose tries hold everything.
    pub blocked_hosts: Option<BlockedHosts>,
    pub iface_slots: Array<MapData, u32>,
    pub iface_names: Array<MapData, IfaceName>,
    pub ua_prefixes: LpmTrie<MapData, UaKey, ListValue>,
    pub expected_users: HashMap<MapData, UserKey, ListValue>,
}

/// `BLOCKED_V4_HOSTS` and `BLOCKED_V6_HOSTS`: the /32 and /128 entries of
/// the blocklist, each looked up by the kernel before the trie.
pub struct BlockedHosts {
    pub v4: HashMap<MapData, V4Key, ListValue>,
    pub v6: HashMap<MapData, V6Key, ListValue>,
}

/// A policy map opened from its pin, typed by what the object declares.
fn pinned(dir: &Path, name: &str) -> Result<Map> {
    let data = open_map(dir, name)?;
    Ok(match name {
        names::SETTINGS | names::IFACE_SLOTS | names::IFACE_NAMES => Map::Array(data),
        names::COUNTERS => Map::PerCpuArray(data),
        names::EXPECTED_USERS | names::BLOCKED_V4_HOSTS | names::BLOCKED_V6_HOSTS => {
            Map::HashMap(data)
        }
        _ => Map::LpmTrie(data),
    })
}

impl PolicyMaps {
    /// `has_hosts`: the object declares the host hashes (every build but
    /// older ones given to benchmark comparisons).
    pub fn from_maps(mut get: impl FnMut(&str) -> Result<Map>, has_hosts: bool) -> Result<Self> {
        let blocked_hosts = if has_hosts {
            Some(BlockedHosts {
                v4: get(names::BLOCKED_V4_HOSTS)?.try_into()?,
                v6: get(names::BLOCKED_V6_HOSTS)?.try_into()?,
            })
        } else {
            None
        };
        Ok(PolicyMaps {
            blocked_hosts,
            settings: get(names::SETTINGS)?.try_into()?,
            trusted_v4: get(names::TRUSTED_V4)?.try_into()?,
            trusted_v6: get(names::TRUSTED_V6)?.try_into()?,
            blocked_v4: get(names::BLOCKED_V4)?.try_into()?,
            blocked_v6: get(names::BLOCKED_V6)?.try_into()?,
            iface_slots: get(names::IFACE_SLOTS)?.try_into()?,
            iface_names: get(names::IFACE_NAMES)?.try_into()?,
            ua_prefixes: get(names::UA_PREFIXES)?.try_into()?,
            expected_users: get(names::EXPECTED_USERS)?.try_into()?,
        })
    }

    /// Takes the maps out of a loaded object (pin them before taking).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let has_hosts = ebpf.map(names::BLOCKED_V4_HOSTS).is_some();
        Self::from_maps(|n| take_map(ebpf, n), has_hosts)
    }

    pub fn open_pinned(dir: &Path) -> Result<Self> {
        Self::from_maps(|n| pinned(dir, n), true)
    }

    /// Writes `policy`: new list entries first, then settings, then removal
    /// of entries no longer wanted, so a source trusted before and after a
    /// reload is never untrusted in between (and an expected user stays
    /// expected).
    pub fn apply(&mut self, policy: &Policy) -> Result<()> {
        let (t4, t6) = split(&policy.trusted);
        let (b4, b6) = split(&policy.blocked);
        let uas = ua_entries(&policy.user_agents);
        let users = user_keys(&policy.expected_users);
        let stale_t4 = sync_add(&mut self.trusted_v4, &t4).context("updating TRUSTED_V4")?;
        let stale_t6 = sync_add(&mut self.trusted_v6, &t6).context("updating TRUSTED_V6")?;
        // Full-length blocklist entries go to the host hashes; those a full
        // hash refuses stay in the trie (which answers the same, slower).
        let (b4_nets, stale_h4) = match &mut self.blocked_hosts {
            Some(h) => sync_hosts(&mut h.v4, &b4, 32).context("updating BLOCKED_V4_HOSTS")?,
            None => (b4.clone(), Vec::new()),
        };
        let (b6_nets, stale_h6) = match &mut self.blocked_hosts {
            Some(h) => sync_hosts(&mut h.v6, &b6, 128).context("updating BLOCKED_V6_HOSTS")?,
            None => (b6.clone(), Vec::new()),
        };
        let stale_b4 = sync_add(&mut self.blocked_v4, &b4_nets).context("updating BLOCKED_V4")?;
        let stale_b6 = sync_add(&mut self.blocked_v6, &b6_nets).context("updating BLOCKED_V6")?;
        let stale_ua = sync_add(&mut self.ua_prefixes, &uas).context("updating UA_PREFIXES")?;
        let stale_users =
            sync_users(&mut self.expected_users, &users).context("updating EXPECTED_USERS")?;
        // The hints describe the lists as they are once stale entries are
        // gone: until this write the old hints (and old entries) apply,
        // after it the new ones; no moment where a wanted entry is skipped.
        let mut settings = with_list_hints(policy.settings, &t4, &t6, &b4);
        settings.flags |=
            blocked_map_flags(self.blocked_hosts.is_some(), &b4, &b6, &b4_nets, &b6_nets);
        self.settings
            .set(0, settings, 0)
            .context("updating SETTINGS")?;
        remove(&mut self.blocked_v4, stale_b4)?;
        remove(&mut self.blocked_v6, stale_b6)?;
        if let Some(h) = &mut self.blocked_hosts {
            for k in stale_h4 {
                h.v4.remove(&k).context("updating BLOCKED_V4_HOSTS")?;
            }
            for k in stale_h6 {
                h.v6.remove(&k).context("updating BLOCKED_V6_HOSTS")?;
            }
        }
        remove(&mut self.trusted_v4, stale_t4)?;
        remove(&mut self.trusted_v6, stale_t6)?;
        remove(&mut self.ua_prefixes, stale_ua)?;
        for k in stale_users {
            self.expected_users.remove(&k)?;
        }
        Ok(())
    }

    /// Adds IPv4 blocklist entries `(prefix length, network)` one by one
    /// without reading the trie first: the path for large lists (feeds,
    /// benchmarks) where `apply`'s full diff would be wasted work.
    pub fn insert_blocked_v4(
        &mut self,
        entries: impl IntoIterator<Item = (u32, V4Key)>,
    ) -> Result<usize> {
        use sipguard_common::{FLAG_BLOCKED_V4, FLAG_BLOCKED_V4_HOSTS};
        let entries: Vec<(u32, V4Key)> = entries.into_iter().collect();
        // Hints first: an entry the filter would skip must never exist.
        let mut settings = self.settings.get(&0, 0).context("reading SETTINGS")?;
        for (len, data) in &entries {
            settings.hint_blocked_v4(*len, *data);
            settings.flags |= match (*len, &self.blocked_hosts) {
                (32, Some(_)) => FLAG_BLOCKED_V4_HOSTS,
                _ => FLAG_BLOCKED_V4,
            };
        }
        self.settings
            .set(0, settings, 0)
            .context("updating SETTINGS")?;
        let mut n = 0;
        let mut nets = Vec::new();
        for (len, data) in entries {
            match &mut self.blocked_hosts {
                Some(h) if len == 32 => {
                    if insert_host(&mut h.v4, data)? {
                        n += 1;
                    } else {
                        nets.push((len, data));
                    }
                }
                _ => nets.push((len, data)),
            }
        }
        if !nets.is_empty() && settings.flags & FLAG_BLOCKED_V4 == 0 {
            // The host hash is full: the rest go to the trie, which the
            // kernel must then consult.
            settings.flags |= FLAG_BLOCKED_V4;
            self.settings
                .set(0, settings, 0)
                .context("updating SETTINGS")?;
        }
        for (len, data) in nets {
            self.blocked_v4
                .insert(&Key::new(len, data), 1, 0)
                .with_context(|| {
                    format!(
                        "adding {}/{len} to BLOCKED_V4 (after {n} entries)",
                        std::net::Ipv4Addr::from(data)
                    )
                })?;
            n += 1;
        }
        Ok(n)
    }

    /// Entries of the IPv4 blocklist in the kernel: the trie's and the
    /// host hash's.
    pub fn blocked_v4_entries(&self) -> usize {
        self.blocked_v4.keys().count()
            + self
                .blocked_hosts
                .as_ref()
                .map_or(0, |h| h.v4.keys().count())
    }

    /// `BLOCKED_V4_HOSTS`' memory as its fdinfo reports it (buckets and
    /// the entries it holds), in bytes; `None` for a build without it.
    pub fn blocked_v4_hosts_memory(&self) -> Result<Option<u64>> {
        self.blocked_hosts
            .as_ref()
            .map(|h| map_memlock(h.v4.map()))
            .transpose()
    }

    /// The BLOCKED_V4 trie's memory as its fdinfo reports it, in bytes. For
    /// LPM tries the kernel counts one node per entry; intermediate nodes
    /// and slab rounding are not included (about 4x more in practice).
    pub fn blocked_v4_memory(&self) -> Result<u64> {
        map_memlock(self.blocked_v4.map())
    }

    /// Counts `ifindex`'s packets under `slot` (0 = unassigned) and records
    /// the slot's name for `stats`.
    pub fn set_iface_slot(&mut self, ifindex: u32, slot: u32, name: &str) -> Result<()> {
        if ifindex < sipguard_common::MAX_IFINDEX {
            self.iface_slots
                .set(ifindex, slot, 0)
                .context("updating IFACE_SLOTS")?;
        }
        if slot != 0 && slot < sipguard_common::IFACE_SLOTS {
            let mut n: IfaceName = [0; 16];
            let b = name.as_bytes();
            let len = b.len().min(15);
            n[..len].copy_from_slice(&b[..len]);
            self.iface_names
                .set(slot, n, 0)
                .context("updating IFACE_NAMES")?;
        }
        Ok(())
    }
}

type Entry<K> = (u32, K);

/// `settings` with the source-list hints (IPv4 /16 bitmaps, the short
/// copies, the trusted IPv6 flag) describing exactly these lists.
fn with_list_hints(
    mut settings: Settings,
    t4: &BTreeSet<Entry<V4Key>>,
    t6: &BTreeSet<Entry<V6Key>>,
    b4: &BTreeSet<Entry<V4Key>>,
) -> Settings {
    settings.clear_list_hints();
    for (len, net) in t4 {
        settings.hint_trusted_v4(*len, *net);
    }
    for (len, net) in b4 {
        settings.hint_blocked_v4(*len, *net);
    }
    // After the hints (which mark the short copies partial): these are the
    // whole lists.
    settings.small_trusted_v4 = sipguard_common::SmallV4::from_entries(t4.iter());
    settings.small_blocked_v4 = sipguard_common::SmallV4::from_entries(b4.iter());
    if !t6.is_empty() {
        settings.flags |= sipguard_common::FLAG_TRUSTED_V6;
    }
    // The blocklist's map flags depend on which entries went to the host
    // hashes: `blocked_map_flags`.
    settings
}

/// The `Settings` flags saying which blocklist maps may hold entries, for
/// lists `b4`/`b6` of which `b4_nets`/`b6_nets` went to the tries.
fn blocked_map_flags(
    hosts: bool,
    b4: &BTreeSet<Entry<V4Key>>,
    b6: &BTreeSet<Entry<V6Key>>,
    b4_nets: &BTreeSet<Entry<V4Key>>,
    b6_nets: &BTreeSet<Entry<V6Key>>,
) -> u32 {
    use sipguard_common::{
        FLAG_BLOCKED_V4, FLAG_BLOCKED_V4_HOSTS, FLAG_BLOCKED_V6, FLAG_BLOCKED_V6_HOSTS,
    };
    let mut flags = 0;
    if !b4_nets.is_empty() {
        flags |= FLAG_BLOCKED_V4;
    }
    if !b6_nets.is_empty() {
        flags |= FLAG_BLOCKED_V6;
    }
    if hosts && b4.len() > b4_nets.len() {
        flags |= FLAG_BLOCKED_V4_HOSTS;
    }
    if hosts && b6.len() > b6_nets.len() {
        flags |= FLAG_BLOCKED_V6_HOSTS;
    }
    flags
}

/// Adds `key` to a host hash; `false` when the hash is full (E2BIG: an
/// insert beyond `max_entries`).
fn insert_host<K: aya::Pod>(map: &mut HashMap<MapData, K, ListValue>, key: K) -> Result<bool> {
    match map.insert(key, 1, 0) {
        Ok(()) => Ok(true),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::E2BIG) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Brings a host hash to the full-length (`full`-bit) entries of `want`:
/// inserts what is missing. Returns the entries for the trie (the shorter
/// ones and any the full hash refused) and the hash's stale keys, to be
/// removed once the new settings are written.
fn sync_hosts<K>(
    map: &mut HashMap<MapData, K, ListValue>,
    want: &BTreeSet<Entry<K>>,
    full: u32,
) -> Result<(BTreeSet<Entry<K>>, Vec<K>)>
where
    K: aya::Pod + Ord + Copy,
{
    let mut have = BTreeSet::new();
    for key in map.keys() {
        have.insert(key?);
    }
    let mut nets = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for (len, data) in want {
        if *len != full {
            nets.insert((*len, *data));
        } else if have.contains(data) || insert_host(map, *data)? {
            hosts.insert(*data);
        } else {
            nets.insert((*len, *data));
        }
    }
    Ok((nets, have.difference(&hosts).copied().collect()))
}

fn split(nets: &[IpNet]) -> (BTreeSet<Entry<V4Key>>, BTreeSet<Entry<V6Key>>) {
    let mut v4 = BTreeSet::new();
    let mut v6 = BTreeSet::new();
    for n in nets {
        match n {
            IpNet::V4(n) => {
                v4.insert((n.prefix_len() as u32, n.network().octets()));
            }
            IpNet::V6(n) => {
                v6.insert((n.prefix_len() as u32, n.network().octets()));
            }
        }
    }
    (v4, v6)
}

/// Scanner prefixes as trie entries: length in bits, bytes zero padded.
fn ua_entries(uas: &[String]) -> BTreeSet<Entry<UaKey>> {
    let mut out = BTreeSet::new();
    for ua in uas {
        let b = ua.as_bytes();
        let mut key = UaKey::default();
        let n = b.len().min(key.len());
        key[..n].copy_from_slice(&b[..n]);
        out.insert((n as u32 * 8, key));
    }
    out
}

fn user_keys(users: &[String]) -> BTreeSet<UserKey> {
    let mut out = BTreeSet::new();
    for u in users {
        let b = u.as_bytes();
        let mut key = UserKey {
            len: b.len().min(USER_BYTES) as u32,
            user: [0; USER_BYTES],
        };
        key.user[..key.len as usize].copy_from_slice(&b[..key.len as usize]);
        out.insert(key);
    }
    out
}

fn sync_users(
    map: &mut HashMap<MapData, UserKey, ListValue>,
    want: &BTreeSet<UserKey>,
) -> Result<Vec<UserKey>> {
    let mut have = BTreeSet::new();
    for key in map.keys() {
        have.insert(key?);
    }
    for k in want.difference(&have) {
        map.insert(*k, 1, 0)?;
    }
    Ok(have.difference(want).copied().collect())
}

/// Inserts what is missing; returns the entries present but not wanted.
fn sync_add<K>(
    trie: &mut LpmTrie<MapData, K, ListValue>,
    want: &BTreeSet<Entry<K>>,
) -> Result<Vec<Entry<K>>>
where
    K: aya::Pod + Ord + Copy,
{
    let mut have = BTreeSet::new();
    for key in trie.keys() {
        let key = key?;
        have.insert((key.prefix_len(), key.data()));
    }
    for (len, data) in want.difference(&have) {
        trie.insert(&Key::new(*len, *data), 1, 0)?;
    }
    Ok(have.difference(want).copied().collect())
}

fn remove<K: aya::Pod>(
    trie: &mut LpmTrie<MapData, K, ListValue>,
    stale: Vec<Entry<K>>,
) -> Result<()> {
    for (len, data) in stale {
        trie.remove(&Key::new(len, data))?;
    }
    Ok(())
}

/// The `memlock` line of a map's fdinfo: the kernel's own account of the
/// memory the map uses (for LPM tries, proportional to the entries).
pub fn map_memlock(map: &MapData) -> Result<u64> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let fd = map.fd().as_fd().as_raw_fd();
    let path = format!("/proc/self/fdinfo/{fd}");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("memlock:")
                .and_then(|v| v.trim().parse().ok())
        })
        .ok_or_else(|| anyhow!("no memlock line in {path}"))
}

/// The counters map, from a loaded object or from its pin.
pub fn counters_pinned(dir: &Path) -> Result<PerCpuArray<MapData, Counter>> {
    Ok(pinned(dir, names::COUNTERS)?.try_into()?)
}
