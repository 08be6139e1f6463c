//! Where a trusted entry overrides another source: a feed entry left out
//! of the blocklist, a `blocked:` entry that holds an address a trusted DNS
//! name resolved to, or a ban the filter never reaches for a trusted source
//! (trusted is checked before the blocklist and bans). `sipguard check` lists them and
//! the daemon logs them at load, each naming both entries, so no entry
//! looks applied when it is not.

use std::{fmt, path::PathBuf};

use ipnet::IpNet;

/// The entry a trusted one overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overridden {
    /// A blocklist feed's entry, left out of the blocklist altogether.
    Feed { path: PathBuf, entry: IpNet },
    /// A `blocked:` entry of the config. The config refuses one that
    /// overlaps a static trusted entry, so this is always a resolved name's
    /// address: the entry stays blocked for every other address.
    Blocked { entry: IpNet, name: String },
    /// A ban in `BANS` (a key: an address, or an IPv6 prefix).
    Ban { entry: IpNet },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub trusted: IpNet,
    pub overridden: Overridden,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.trusted;
        match &self.overridden {
            Overridden::Feed { path, entry } => write!(
                f,
                "trusted {t} overrides feed entry {entry} ({}): the entry is not blocked",
                path.display()
            ),
            Overridden::Blocked { entry, name } => write!(
                f,
                "trusted {t} ({name}) overrides blocked entry {entry}: the entry does not apply to {t}"
            ),
            Overridden::Ban { entry } if entry.contains(&t) && *entry != t => write!(
                f,
                "trusted {t} overrides ban {entry}: the ban does not apply to {t}"
            ),
            Overridden::Ban { entry } => write!(
                f,
                "trusted {t} overrides ban {entry}: the ban does not take effect"
            ),
        }
    }
}

/// The first trusted entry (most specific) that overlaps `net`: one
/// contains the other.
pub fn trusted_over(trusted: &[IpNet], net: &IpNet) -> Option<IpNet> {
    trusted
        .iter()
        .filter(|t| t.contains(net) || net.contains(*t))
        .max_by_key(|t| t.prefix_len())
        .copied()
}

/// The bans among `bans` that a trusted entry overrides (wholly or in
/// part), in the order given.
pub fn ban_overlaps(trusted: &[IpNet], bans: impl IntoIterator<Item = IpNet>) -> Vec<Overlap> {
    bans.into_iter()
        .filter_map(|entry| {
            trusted_over(trusted, &entry).map(|t| Overlap {
                trusted: t,
                overridden: Overridden::Ban { entry },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn bans_inside_or_around_a_trusted_entry_are_named_with_it() {
        let trusted = [n("192.0.2.0/24"), n("192.0.2.7/32"), n("2001:db8::5/128")];
        let got = ban_overlaps(
            &trusted,
            [n("192.0.2.7/32"), n("198.51.100.1/32"), n("2001:db8::/64")],
        );
        let text: Vec<String> = got.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            text,
            [
                "trusted 192.0.2.7/32 overrides ban 192.0.2.7/32: the ban does not take effect",
                "trusted 2001:db8::5/128 overrides ban 2001:db8::/64: the ban does not apply to 2001:db8::5/128",
            ]
        );
    }
}
