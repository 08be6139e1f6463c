//! `sipguard trusted`: the trusted sources in force, from the pins.

use std::{net::IpAddr, path::Path, process::ExitCode};

use anyhow::Result;
use aya::maps::{LpmTrie, MapData};
use ipnet::IpNet;
use sipguard_common::ListValue;

use crate::kernel::{maps::PolicyMaps, pins, registrars::learned_pinned};

pub fn do_trusted(pin_root: &Path, json: bool) -> Result<ExitCode> {
    let dir = pins::versioned_dir(pin_root);
    print!("{}", trusted_report(&dir, json)?);
    Ok(ExitCode::SUCCESS)
}

/// `sipguard trusted`: the trusted tries (static addresses, CIDRs and the
/// addresses of trusted names) and the learned registrars with expiry.
fn trusted_report(dir: &Path, json: bool) -> Result<String> {
    use std::fmt::Write as _;
    let nets = pinned_trusted(dir)?;
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

/// The most specific static trusted entry (address, CIDR or an address of
/// a trusted name) that covers `addr`.
pub(super) fn trusted_entry_covering(dir: &Path, addr: IpAddr) -> Result<Option<IpNet>> {
    Ok(pinned_trusted(dir)?
        .into_iter()
        .filter(|n| n.contains(&addr))
        .max_by_key(|n| n.prefix_len()))
}

/// The static trusted entries that lie inside `net` (all of them trusted
/// addresses a ban of `net` does not reach).
pub(super) fn trusted_entries_inside(dir: &Path, net: IpNet) -> Result<Vec<IpNet>> {
    Ok(pinned_trusted(dir)?
        .into_iter()
        .filter(|n| net.contains(n))
        .collect())
}

fn pinned_trusted(dir: &Path) -> Result<Vec<IpNet>> {
    let maps = PolicyMaps::open_pinned(dir)?;
    let mut nets = trie_nets(&maps.trusted_v4)?;
    nets.extend(trie_nets(&maps.trusted_v6)?);
    nets.sort();
    Ok(nets)
}

/// The entries of an address trie as networks.
fn trie_nets<K>(trie: &LpmTrie<MapData, K, ListValue>) -> Result<Vec<IpNet>>
where
    K: aya::Pod,
    IpAddr: From<K>,
{
    let mut nets = Vec::new();
    for k in trie.keys() {
        let k = k?;
        nets.push(IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8)?);
    }
    Ok(nets)
}
