//! The bouncer side: pull the decision stream, keep the set it adds up to,
//! and say what to change in the filter. After a failed pull the next one
//! asks for everything again (`startup=true`), so decisions deleted or
//! expired while the API was away are removed and none are missed; what is
//! applied stays applied meanwhile (the kernel ends each entry on time by
//! itself).

use std::time::Duration;

use log::{info, warn};

use super::{
    config::CrowdsecConfig,
    decisions::{Changes, DecisionSet},
    lapi::{Lapi, LapiError},
};

/// Longest wait between two attempts while the API is away.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Bouncer {
    lapi: Lapi,
    key: String,
    origins: Option<Vec<String>>,
    interval: Duration,
    pub set: DecisionSet,
    /// A full pull succeeded and no pull failed since.
    synced: bool,
    /// Failed pulls in a row.
    failures: u32,
    pub stats: PullStats,
}

#[derive(Debug, Default, Clone)]
pub struct PullStats {
    pub pulls: u64,
    pub failed_pulls: u64,
    pub last_error: Option<String>,
}

impl Bouncer {
    pub fn new(cfg: &CrowdsecConfig, key: String) -> Result<Bouncer, LapiError> {
        let interval = cfg.interval.0;
        Ok(Bouncer {
            // A pull must end before the next is due.
            lapi: Lapi::new(
                &cfg.url,
                interval.clamp(Duration::from_secs(1), Duration::from_secs(10)),
            )?,
            key,
            origins: cfg.origins.clone(),
            interval,
            set: DecisionSet::default(),
            synced: false,
            failures: 0,
            stats: PullStats::default(),
        })
    }

    pub fn lapi(&self) -> &Lapi {
        &self.lapi
    }

    /// One pull; `now_ns` is CLOCK_BOOTTIME now. Also ends decisions whose
    /// time is over.
    pub async fn pull(&mut self, now_ns: impl Fn() -> u64) -> Result<Changes, LapiError> {
        let startup = !self.synced;
        self.stats.pulls += 1;
        let resp = self
            .lapi
            .decisions_stream(&self.key, startup, self.origins.as_deref())
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                if self.failures == 0 {
                    warn!(
                        "crowdsec: {e}; keeping the {} applied decisions, retrying",
                        self.set.len()
                    );
                }
                self.synced = false;
                self.failures += 1;
                self.stats.failed_pulls += 1;
                self.stats.last_error = Some(e.to_string());
                return Err(e);
            }
        };
        if self.failures > 0 {
            info!("crowdsec: {} reachable again", self.lapi.url(""));
        }
        self.synced = true;
        self.failures = 0;
        self.stats.last_error = None;
        let now = now_ns();
        let (mut changes, first_seen) = self.set.apply(&resp, startup, now);
        for skip in first_seen {
            warn!("crowdsec: decisions with {skip} are not applied (counted, logged once)");
        }
        changes.remove.extend(self.set.expire(now));
        Ok(changes)
    }

    /// How long to wait before the next pull: the interval, or after
    /// failures 1 s doubling up to [`MAX_BACKOFF`] (never longer than the
    /// interval would be, so a short interval recovers quickly).
    pub fn next_wait(&self) -> Duration {
        if self.failures == 0 {
            return self.interval;
        }
        let exp = self.failures.saturating_sub(1).min(16);
        let wait = Duration::from_secs(1u64 << exp);
        wait.min(MAX_BACKOFF)
            .min(self.interval.max(Duration::from_secs(1)))
    }
}
