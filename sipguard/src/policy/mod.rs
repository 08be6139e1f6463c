//! The effective policy: exactly what goes into the maps. [`assemble`]
//! builds it from the static config ([`config`], compiled in [`compile`])
//! and the dynamic [`sources`]; [`evaluate`] is the host's verdict over
//! the same shared logic; [`describe`] is what `sipguard check` prints.
//! Depends on neither the kernel side nor the serving side.

pub mod clock;
pub mod compile;
pub mod config;
pub mod describe;
pub mod evaluate;
pub mod overlaps;
pub mod sources;
#[cfg(test)]
mod testing;

use anyhow::Result;
use ipnet::IpNet;
use sipguard_common::{DecisionEntry, Settings};

use self::{
    config::Config,
    overlaps::{Overlap, Overridden},
    sources::{dns::NameState, feeds::FeedWatch},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub settings: Settings,
    pub trusted: Vec<IpNet>,
    pub blocked: Vec<IpNet>,
    /// Lowercased scanner User-Agent prefixes (the UA_PREFIXES trie).
    pub user_agents: Vec<String>,
    /// Expected Request-URI users (the EXPECTED_USERS map); empty = rule off.
    pub expected_users: Vec<String>,
    /// Entries of the dynamic sources that a trusted entry overrides
    /// (left out of the lists above), for `check` and the daemon's log.
    pub overlaps: Vec<Overlap>,
    /// Ban decisions (the DECISIONS_* tries). The daemon's bouncer writes
    /// its decisions to the kernel as they change, not through the policy;
    /// this list is what replay and the fixture tables judge with.
    pub decisions: Vec<Decision>,
}

/// A decision trie entry: a prefix and its end and origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub net: IpNet,
    pub entry: DecisionEntry,
}

/// What the dynamic sources hold at the moment a policy is assembled.
pub struct Sources<'a> {
    /// Blocklist feed files, read during assembly.
    pub feeds: &'a FeedWatch,
    /// The last good addresses of the trusted DNS names.
    pub names: &'a NameState,
}

/// The policy in force: the config compiled, then what each dynamic source
/// adds, in this order. A new source contributes one more step here. An
/// error (a feed that does not read or parse) means no policy: the caller
/// keeps the one running.
pub fn assemble(cfg: &Config, sources: &Sources<'_>) -> Result<Policy> {
    let mut policy = Policy::from_config(cfg);
    // Names first: a feed entry that overlaps an address a trusted name
    // resolves to is left out like one that overlaps a static entry.
    policy.trust_names(sources.names);
    policy.note_blocked_names(sources.names);
    policy.block_feeds(sources.feeds)?;
    Ok(policy)
}

impl Policy {
    /// Adds every feed's entries to the blocklist. Entries that overlap a
    /// trusted entry (of the config or resolved from a name) are left out
    /// and recorded in `overlaps`: a feed must never cut off the provider.
    fn block_feeds(&mut self, feeds: &FeedWatch) -> Result<()> {
        for feed in feeds.entries() {
            let (path, nets) = feed?;
            let before = self.blocked.len();
            for entry in nets {
                if let Some(trusted) = overlaps::trusted_over(&self.trusted, &entry) {
                    self.overlaps.push(Overlap {
                        trusted,
                        overridden: Overridden::Feed {
                            path: path.to_path_buf(),
                            entry,
                        },
                    });
                    continue;
                }
                self.blocked.push(entry);
            }
            log::debug!(
                "feed {}: {} entries",
                path.display(),
                self.blocked.len() - before
            );
        }
        self.blocked.sort();
        self.blocked.dedup();
        Ok(())
    }

    /// Records each `blocked:` entry that holds an address a trusted name
    /// resolved to. The entry stays: the filter checks trusted first, so
    /// only that address passes, and the overlap says so.
    fn note_blocked_names(&mut self, names: &NameState) {
        for (name, addrs) in &names.addrs {
            for addr in addrs {
                let t = IpNet::from(*addr);
                for entry in self.blocked.iter().filter(|b| b.contains(&t)) {
                    self.overlaps.push(Overlap {
                        trusted: t,
                        overridden: Overridden::Blocked {
                            entry: *entry,
                            name: name.clone(),
                        },
                    });
                }
            }
        }
    }

    /// Adds the addresses trusted DNS names currently resolve to (host
    /// routes), keeping the list sorted and unique like the static part.
    fn trust_names(&mut self, names: &NameState) {
        self.trusted.extend(names.all().map(IpNet::from));
        self.trusted.sort();
        self.trusted.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy `cfg` assembles to with its feed files as they are and
    /// `names` resolved.
    fn assembled(cfg: &Config, names: &NameState) -> Policy {
        let feeds = FeedWatch::new(&cfg.feeds);
        assemble(
            cfg,
            &Sources {
                feeds: &feeds,
                names,
            },
        )
        .unwrap()
    }

    fn show(v: &[IpNet]) -> Vec<String> {
        v.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn feed_entries_overlapping_resolved_names_are_not_blocked() {
        let feed = testing::TestFile::new(
            "assemble",
            "feed.txt",
            "192.0.2.0/24\n2001:db8:5::/48\n203.0.113.9\n",
        );
        let cfg = Config::parse(
            &format!(
                "trusted: [sip.provider.example]\nfeeds: [{}]\n",
                feed.path.display()
            ),
            "t",
        )
        .unwrap();
        let mut names = NameState::default();
        names.addrs.insert(
            "sip.provider.example".into(),
            [
                "192.0.2.10".parse().unwrap(),
                "2001:db8:5::10".parse().unwrap(),
            ]
            .into(),
        );
        let p = assembled(&cfg, &names);
        assert_eq!(show(&p.trusted), ["192.0.2.10/32", "2001:db8:5::10/128"]);
        assert_eq!(show(&p.blocked), ["203.0.113.9/32"]);
        let named: Vec<String> = p.overlaps.iter().map(|o| o.to_string()).collect();
        let f = feed.path.display();
        assert_eq!(
            named,
            [
                format!("trusted 192.0.2.10/32 overrides feed entry 192.0.2.0/24 ({f}): the entry is not blocked"),
                format!("trusted 2001:db8:5::10/128 overrides feed entry 2001:db8:5::/48 ({f}): the entry is not blocked"),
            ]
        );
    }

    #[test]
    fn blocked_entries_holding_a_resolved_name_are_named_and_kept() {
        let cfg = Config::parse(
            "trusted: [sip.provider.example]\nblocked: [192.0.2.0/24, 198.51.100.0/24]\n",
            "t",
        )
        .unwrap();
        let mut names = NameState::default();
        names.addrs.insert(
            "sip.provider.example".into(),
            ["192.0.2.10".parse().unwrap()].into(),
        );
        let p = assembled(&cfg, &names);
        assert_eq!(show(&p.blocked), ["192.0.2.0/24", "198.51.100.0/24"]);
        let named: Vec<String> = p.overlaps.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            named,
            ["trusted 192.0.2.10/32 (sip.provider.example) overrides blocked entry 192.0.2.0/24: the entry does not apply to 192.0.2.10/32"]
        );
    }
}
