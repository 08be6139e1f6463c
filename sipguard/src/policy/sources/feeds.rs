//! Blocklist feeds: files of addresses and CIDRs, one a line, `#` or `;`
//! starting a comment. They join the static `blocked:` list; the whole set
//! is applied with `PolicyMaps::apply`, which adds new entries before it
//! removes old ones, so there is never a moment where an entry that is in
//! both the old and the new feed is missing. A feed that does not parse is
//! not applied at all (the running lists stay).
//!
//! Change detection is by polling (size, mtime, inode) once a second:
//! cheap, and it also sees a file replaced by rename, which is how feeds
//! should be written. A change is applied once the file has stayed the same
//! for a whole poll, so a file rewritten in place is not read half-written
//! (unless its writer pauses for over a second mid-file: use rename).

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use ipnet::IpNet;

use crate::policy::{
    config::{Cidr, Config},
    Policy, Sources,
};

type Stamp = Option<(i64, i64, u64, u64)>;

fn stamp(p: &Path) -> Stamp {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
}

pub struct FeedWatch {
    files: Vec<(PathBuf, Stamp)>,
    /// A change was seen and the file has not been stable for a poll yet.
    pending: bool,
}

impl FeedWatch {
    pub fn new(paths: &[PathBuf]) -> FeedWatch {
        FeedWatch {
            files: paths.iter().map(|p| (p.clone(), stamp(p))).collect(),
            pending: false,
        }
    }

    /// Called once per poll interval: true when a feed file changed and has
    /// then stayed the same for one whole interval. The wait keeps a file
    /// that is being rewritten in place (truncated, then filled) from being
    /// applied half-written.
    pub fn changed(&mut self) -> bool {
        let mut moving = false;
        for (p, s) in &mut self.files {
            let now = stamp(p);
            if now != *s {
                *s = now;
                moving = true;
            }
        }
        if moving {
            self.pending = true;
            return false;
        }
        std::mem::take(&mut self.pending)
    }

    /// Each feed's path and entries, read now, in config order; an error
    /// names the file (and the line, for an entry that does not parse).
    pub fn entries(&self) -> impl Iterator<Item = Result<(&Path, Vec<IpNet>)>> + '_ {
        self.files.iter().map(|(p, _)| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read blocklist feed {}", p.display()))?;
            Ok((p.as_path(), parse(&text, &p.display().to_string())?))
        })
    }

    /// The config's policy with only the feeds as dynamic source.
    pub fn policy(&self, cfg: &Config) -> Result<Policy> {
        crate::policy::assemble(
            cfg,
            &Sources {
                feeds: self,
                names: &Default::default(),
            },
        )
    }
}

/// Parses a feed; an error names the file and line.
pub fn parse(text: &str, name: &str) -> Result<Vec<IpNet>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = match line.find(['#', ';']) {
            Some(c) => &line[..c],
            None => line,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let c: Cidr = line
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{name}: line {}: {e}", i + 1))?;
        out.push(c.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::TestFile;

    #[test]
    fn parses_comments_and_both_families() {
        let v = parse(
            "# header\n203.0.113.5\n198.51.100.0/24 ; SBL123\n\n  2001:db8::/32  # x\n",
            "f",
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].to_string(), "198.51.100.0/24");
        let e = parse("1.2.3.4\nnot-an-ip\n", "feed.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feed.txt: line 2"), "{e}");
        assert!(parse("10.0.0.1/8\n", "f")
            .unwrap_err()
            .to_string()
            .contains("host bits"));
    }

    #[test]
    fn trusted_overlaps_are_not_blocked() {
        let feed = TestFile::new("feed", "feed.txt", "192.0.2.0/24\n203.0.113.9\n");
        let f = &feed.path;
        let cfg = Config::parse(
            &format!("trusted: [192.0.2.10]\nfeeds: [{}]\n", f.display()),
            "t",
        )
        .unwrap();
        let mut w = FeedWatch::new(&cfg.feeds);
        let p = w.policy(&cfg).unwrap();
        assert_eq!(
            p.blocked.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            vec!["203.0.113.9/32"]
        );
        assert_eq!(
            p.overlaps.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            vec![format!(
                "trusted 192.0.2.10/32 overrides feed entry 192.0.2.0/24 ({}): the entry is not blocked",
                f.display()
            )]
        );
        assert!(!w.changed());
        std::fs::write(f, "203.0.113.9\n203.0.113.10\n").unwrap();
        assert!(!w.changed(), "not while it may still be written");
        assert!(w.changed(), "once it stayed the same for a poll");
        assert!(!w.changed());
    }
}
