//! The effective policy: exactly what goes into the maps. [`assemble`]
//! builds it from the static config ([`config`], compiled in [`compile`])
//! and the dynamic [`sources`]; [`evaluate`] is the host's verdict over
//! the same shared logic; [`describe`] is what `sipguard check` prints.
//! Depends on neither the kernel side nor the serving side.

pub mod compile;
pub mod config;
pub mod describe;
pub mod evaluate;
pub mod overlaps;
pub mod sources;

use anyhow::Result;
use ipnet::IpNet;
use sipguard_common::Settings;

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
    // Names first: a feed must not cut off a trusted name's address either.
    policy.trust_names(sources.names);
    policy.block_feeds(sources.feeds)?;
    Ok(policy)
}

impl Policy {
    /// Adds every feed's entries to the blocklist. Entries that overlap a
    /// trusted entry (of the config or a trusted name's address) are left
    /// out and recorded in `overlaps`: a feed must never cut off the
    /// provider.
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

    /// Adds the addresses trusted DNS names currently resolve to (host
    /// routes), keeping the list sorted and unique like the static part.
    fn trust_names(&mut self, names: &NameState) {
        self.trusted.extend(names.all().map(IpNet::from));
        self.trusted.sort();
        self.trusted.dedup();
    }
}
