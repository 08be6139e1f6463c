//! Trusted DNS names: resolved through A, AAAA and the SIP SRV records,
//! refreshed when their TTL ends, with the last good addresses kept when a
//! resolution fails. The daemon's main loop stays the only writer of the
//! maps: the refresh task sends it [`Update`]s over a channel.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use anyhow::{Context as _, Result};
use hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts},
    net::{runtime::TokioRuntimeProvider, NetError},
    proto::rr::{RData, RecordType},
    TokioResolver,
};
use tokio::{sync::mpsc, time::Instant};

use crate::policy::config::{Config, DnsSettings};

/// The SRV services a SIP provider publishes its proxies under (RFC 3263).
pub const SRV_SERVICES: [&str; 3] = ["_sip._udp", "_sip._tcp", "_sips._tcp"];

/// How long one query may take before it counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The result of resolving one name once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    pub addrs: BTreeSet<IpAddr>,
    /// Smallest TTL among the answers (None: no answer at all).
    pub ttl: Option<Duration>,
    /// Queries that failed for another reason than "no such record"
    /// (timeout, refused, SERVFAIL): the answer may be incomplete.
    pub errors: Vec<String>,
    /// What each SRV record pointed to, for `check`.
    pub srv_targets: Vec<String>,
}

impl Resolution {
    /// Nothing usable came back or something failed: keep the last good
    /// addresses (adding any new ones).
    pub fn failed(&self) -> bool {
        self.addrs.is_empty() || !self.errors.is_empty()
    }

    /// Why it failed, for the log.
    pub fn failure(&self) -> String {
        if self.errors.is_empty() {
            "no A, AAAA or SIP SRV record".to_string()
        } else {
            self.errors.join("; ")
        }
    }
}

/// A resolver from `dns.servers`, or from /etc/resolv.conf when none are set.
pub fn resolver(dns: &DnsSettings) -> Result<TokioResolver> {
    let mut builder = if dns.servers.is_empty() {
        TokioResolver::builder_tokio()
            .context("reading the system resolver configuration (/etc/resolv.conf)")?
    } else {
        let servers = dns
            .servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.0.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.0.port();
                NameServerConfig::new(s.0.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let mut opts = ResolverOpts::default();
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = 1;
    // Refreshes are driven by TTLs here; the resolver's own cache would
    // only hand back the answer we are trying to replace.
    opts.cache_size = 0;
    opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    *builder.options_mut() = opts;
    builder.build().context("building the DNS resolver")
}

fn benign(e: &NetError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

/// What one query brought back.
struct Answer {
    data: Vec<RData>,
    ttl: Option<Duration>,
    error: Option<String>,
}

/// One record type of one name; empty (no error) when it does not exist.
async fn query(r: &TokioResolver, name: &str, t: RecordType) -> Answer {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let mut a = Answer {
        data: Vec::new(),
        ttl: None,
        error: None,
    };
    match tokio::time::timeout(
        QUERY_TIMEOUT + Duration::from_secs(1),
        r.lookup(fqdn.as_str(), t),
    )
    .await
    {
        Ok(Ok(lookup)) => {
            let left = lookup
                .valid_until()
                .saturating_duration_since(std::time::Instant::now());
            for rec in lookup.answers() {
                if rec.record_type() == t {
                    a.ttl = Some(left);
                    a.data.push(rec.data.clone());
                }
            }
        }
        Ok(Err(e)) if benign(&e) => {}
        Ok(Err(e)) => a.error = Some(format!("{t} {name}: {e}")),
        Err(_) => a.error = Some(format!("{t} {name}: timed out")),
    }
    a
}

impl Resolution {
    fn take(&mut self, a: Answer) -> Vec<RData> {
        if let Some(t) = a.ttl {
            self.ttl = Some(self.ttl.map_or(t, |m| m.min(t)));
        }
        self.errors.extend(a.error);
        for d in &a.data {
            match d {
                RData::A(x) => {
                    self.addrs.insert(IpAddr::V4(x.0));
                }
                RData::AAAA(x) => {
                    self.addrs.insert(IpAddr::V6(x.0));
                }
                _ => {}
            }
        }
        a.data
    }
}

/// Resolves `name`: its own A/AAAA and the SIP SRV services at once (one
/// timeout for all when the server is gone), then the SRV targets' A/AAAA.
pub async fn resolve(r: &TokioResolver, name: &str) -> Resolution {
    let mut out = Resolution::default();
    let [s0, s1, s2] = SRV_SERVICES.map(|svc| format!("{svc}.{name}"));
    let (a, aaaa, srv0, srv1, srv2) = tokio::join!(
        query(r, name, RecordType::A),
        query(r, name, RecordType::AAAA),
        query(r, &s0, RecordType::SRV),
        query(r, &s1, RecordType::SRV),
        query(r, &s2, RecordType::SRV),
    );
    out.take(a);
    out.take(aaaa);
    let mut targets = BTreeSet::new();
    for (svc, ans) in SRV_SERVICES.iter().zip([srv0, srv1, srv2]) {
        for d in out.take(ans) {
            if let RData::SRV(srv) = d {
                // "." as target: the service is decidedly not available.
                if !srv.target.is_root() {
                    let t = srv.target.to_ascii();
                    out.srv_targets.push(format!("{svc} -> {t}:{}", srv.port));
                    targets.insert(t.trim_end_matches('.').to_ascii_lowercase());
                }
            }
        }
    }
    for t in targets {
        if t != name {
            let (a, aaaa) =
                tokio::join!(query(r, &t, RecordType::A), query(r, &t, RecordType::AAAA));
            out.take(a);
            out.take(aaaa);
        }
    }
    out
}

/// A refresh result for the main loop: `name` now trusts `addrs`.
#[derive(Debug, Clone)]
pub struct Update {
    pub name: String,
    pub addrs: BTreeSet<IpAddr>,
}

/// The addresses the main loop currently trusts per name, and the failure
/// counters reported in the log.
#[derive(Debug, Default, Clone)]
pub struct NameState {
    pub addrs: BTreeMap<String, BTreeSet<IpAddr>>,
    pub failures: u64,
}

impl NameState {
    /// All resolved addresses, for the policy.
    pub fn all(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addrs.values().flatten().copied()
    }

    /// Keeps only the names still configured.
    pub fn retain(&mut self, names: &[String]) {
        self.addrs.retain(|n, _| names.contains(n));
    }
}

/// Clamps a TTL into the configured refresh window.
pub fn refresh_after(ttl: Option<Duration>, dns: &DnsSettings) -> Duration {
    let lo = Duration::from_secs(dns.min_ttl.into());
    let hi = Duration::from_secs(dns.max_ttl.into());
    ttl.unwrap_or(lo).clamp(lo, hi)
}

/// Merges one resolution into the last good set of a name: a success
/// replaces it, a failure keeps it (plus anything new that did come back).
pub fn merge(last: Option<&BTreeSet<IpAddr>>, res: &Resolution) -> BTreeSet<IpAddr> {
    if res.failed() {
        let mut keep = last.cloned().unwrap_or_default();
        keep.extend(res.addrs.iter().copied());
        keep
    } else {
        res.addrs.clone()
    }
}

/// Resolves every name once (start-up, or names new after a reload) and
/// logs what each resolved to. Failures are counted in `state`.
pub async fn resolve_all(
    r: &TokioResolver,
    names: &[String],
    dns: &DnsSettings,
    state: &mut NameState,
) -> BTreeMap<String, Instant> {
    let mut next = BTreeMap::new();
    for name in names {
        let started = Instant::now();
        let res = resolve(r, name).await;
        let merged = merge(state.addrs.get(name), &res);
        log_result(name, &res, &merged, started.elapsed(), state);
        let after = refresh_after(res.ttl, dns);
        next.insert(
            name.clone(),
            Instant::now()
                + if res.failed() {
                    refresh_after(None, dns)
                } else {
                    after
                },
        );
        state.addrs.insert(name.clone(), merged);
    }
    next
}

fn log_result(
    name: &str,
    res: &Resolution,
    merged: &BTreeSet<IpAddr>,
    took: Duration,
    state: &mut NameState,
) {
    let list = |s: &BTreeSet<IpAddr>| {
        s.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if res.failed() {
        state.failures += 1;
        log::warn!(
            "dns: resolving {name} failed ({}); keeping [{}] (dns failures: {})",
            res.failure(),
            list(merged),
            state.failures
        );
    } else {
        log::info!(
            "dns: {name} -> [{}] (ttl {}s, {} ms)",
            list(&res.addrs),
            res.ttl.map_or(0, |t| t.as_secs_f64().round() as u64),
            took.as_millis()
        );
    }
}

/// The refresh task: re-resolves each name when its TTL has run out and
/// sends changed address sets to the main loop. It owns a copy of the last
/// good sets so failures can keep them without asking the main loop.
pub async fn refresh_task(
    r: TokioResolver,
    dns: DnsSettings,
    mut state: NameState,
    mut next: BTreeMap<String, Instant>,
    tx: mpsc::Sender<Update>,
) {
    loop {
        let Some((name, when)) = next
            .iter()
            .min_by_key(|(_, w)| **w)
            .map(|(n, w)| (n.clone(), *w))
        else {
            return;
        };
        tokio::time::sleep_until(when).await;
        let started = Instant::now();
        let res = resolve(&r, &name).await;
        let merged = merge(state.addrs.get(&name), &res);
        log_result(&name, &res, &merged, started.elapsed(), &mut state);
        let wait = if res.failed() {
            refresh_after(None, &dns)
        } else {
            refresh_after(res.ttl, &dns)
        };
        next.insert(name.clone(), Instant::now() + wait);
        if state.addrs.get(&name) != Some(&merged) {
            state.addrs.insert(name.clone(), merged.clone());
            if tx
                .send(Update {
                    name,
                    addrs: merged,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// `sipguard check`: what each name resolves to now, each within a
/// timeout so an unreachable resolver cannot hang the command.
pub async fn describe(dns: &DnsSettings, names: &[String]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let servers = if dns.servers.is_empty() {
        "system resolver".to_string()
    } else {
        dns.servers
            .iter()
            .map(|s| s.0.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(s, "trusted names ({}, via {servers}):", names.len());
    let r = match resolver(dns) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(s, "  cannot resolve: {e:#}");
            return s;
        }
    };
    for name in names {
        let started = Instant::now();
        match tokio::time::timeout(QUERY_TIMEOUT * 8, resolve(&r, name)).await {
            Err(_) => {
                let _ = writeln!(
                    s,
                    "  {name}: no answer within {}s",
                    (QUERY_TIMEOUT * 8).as_secs()
                );
            }
            Ok(res) => {
                let addrs: Vec<String> = res.addrs.iter().map(|a| a.to_string()).collect();
                let ttl = res
                    .ttl
                    .map_or("-".to_string(), |t| format!("{}s", t.as_secs_f64().round()));
                let _ = writeln!(
                    s,
                    "  {name} -> [{}] (ttl {ttl}, refresh in {}s, {} ms)",
                    addrs.join(", "),
                    refresh_after(res.ttl, dns).as_secs(),
                    started.elapsed().as_millis()
                );
                for t in &res.srv_targets {
                    let _ = writeln!(s, "    srv {t}");
                }
                if res.failed() {
                    let _ = writeln!(
                        s,
                        "    failed: {} (the daemon keeps the last good addresses)",
                        res.failure()
                    );
                }
            }
        }
    }
    s
}

/// The daemon's side of trusted DNS names: the config they came from, the
/// last good addresses per name and the refresh task, restarted when a
/// reload changes the names or the `dns` settings.
pub struct DnsNames {
    pub cfg: Config,
    pub state: NameState,
    task: Option<tokio::task::JoinHandle<()>>,
    tx: tokio::sync::mpsc::Sender<Update>,
}

impl DnsNames {
    pub async fn start(cfg: &Config) -> Result<(DnsNames, tokio::sync::mpsc::Receiver<Update>)> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut d = DnsNames {
            cfg: cfg.clone(),
            state: Default::default(),
            task: None,
            tx,
        };
        let names = cfg.trusted_names();
        if !names.is_empty() {
            let r = resolver(&cfg.dns)?;
            let next = resolve_all(&r, &names, &cfg.dns, &mut d.state).await;
            d.task = Some(tokio::spawn(refresh_task(
                r,
                cfg.dns.clone(),
                d.state.clone(),
                next,
                d.tx.clone(),
            )));
        }
        Ok((d, rx))
    }

    /// After a reload: forget names no longer configured; when the names or
    /// the resolver settings changed, restart the refresh task, which asks
    /// for every name at once (new names are trusted as soon as they
    /// resolve; kept names keep their addresses meanwhile).
    pub fn reconfigure(&mut self, cfg: &Config) -> Result<()> {
        let names = cfg.trusted_names();
        let changed = names != self.cfg.trusted_names() || cfg.dns != self.cfg.dns;
        self.state.retain(&names);
        if changed {
            self.stop();
            if !names.is_empty() {
                let r = resolver(&cfg.dns)?;
                let now = tokio::time::Instant::now();
                let next = names.iter().map(|n| (n.clone(), now)).collect();
                self.task = Some(tokio::spawn(refresh_task(
                    r,
                    cfg.dns.clone(),
                    self.state.clone(),
                    next,
                    self.tx.clone(),
                )));
            }
        }
        self.cfg = cfg.clone();
        Ok(())
    }

    /// Records new addresses for a name; true when the maps must change.
    pub fn update(&mut self, u: Update) -> bool {
        if !self.cfg.trusted_names().contains(&u.name)
            || self.state.addrs.get(&u.name) == Some(&u.addrs)
        {
            return false;
        }
        let list: Vec<String> = u.addrs.iter().map(|a| a.to_string()).collect();
        log::info!("dns: {} changed; trusted now [{}]", u.name, list.join(", "));
        self.state.addrs.insert(u.name, u.addrs);
        true
    }

    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_clamped() {
        let dns = DnsSettings {
            servers: vec![],
            min_ttl: 30,
            max_ttl: 3600,
        };
        assert_eq!(
            refresh_after(Some(Duration::from_secs(2)), &dns),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_after(Some(Duration::from_secs(300)), &dns),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_after(Some(Duration::from_secs(86400)), &dns),
            Duration::from_secs(3600)
        );
        assert_eq!(refresh_after(None, &dns), Duration::from_secs(30));
    }

    #[test]
    fn failure_keeps_last_good() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let last: BTreeSet<IpAddr> = [a].into();
        let ok = Resolution {
            addrs: [b].into(),
            ttl: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        assert_eq!(merge(Some(&last), &ok), [b].into());
        let empty = Resolution::default();
        assert!(empty.failed());
        assert_eq!(merge(Some(&last), &empty), last);
        let partial = Resolution {
            addrs: [b].into(),
            errors: vec!["SRV: timed out".into()],
            ..Default::default()
        };
        assert_eq!(merge(Some(&last), &partial), [a, b].into());
        assert_eq!(merge(None, &empty), BTreeSet::new());
    }
}
