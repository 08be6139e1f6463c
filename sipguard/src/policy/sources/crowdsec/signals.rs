//! The signal side: sipguard's own automatic bans, pushed to the Local API
//! as alerts that carry their decision, so every bouncer of the fleet drops
//! the scanner too. The packet path and the event stream only ever
//! `offer` a ban to a bounded queue (never waiting); a task batches them
//! and posts, logging in again when the token is refused. What does not
//! fit while the API is away is counted as dropped.

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ipnet::IpNet;
use log::{info, warn};
use tokio::sync::mpsc;

use super::{
    lapi::{Alert, AlertDecision, AlertEvent, AlertSource, Lapi, LapiError, Meta, Token},
    SCENARIO,
};

/// Signals waiting for the API at most (queue plus the batch being sent).
pub const QUEUE: usize = 4096;
/// Alerts per `POST /v1/alerts`.
pub const BATCH: usize = 100;
/// The Local API's tokens last an hour; log in again before that.
const TOKEN_LIFE: Duration = Duration::from_secs(50 * 60);

/// One automatic ban to tell the fleet about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanSignal {
    /// The banned source: an address, or the IPv6 prefix bans are kept per.
    pub source: IpNet,
    /// What got it banned (`user_agent`, `sipvicious`, `not_trusted`, ...).
    pub reason: String,
    pub duration: Duration,
    /// When the ban was made, RFC 3339 (as drop events write it).
    pub at: String,
}

/// The sending end, cheap to clone into whatever sees bans.
#[derive(Clone)]
pub struct SignalQueue {
    tx: mpsc::Sender<BanSignal>,
    pub counters: Arc<SignalCounters>,
}

#[derive(Debug, Default)]
pub struct SignalCounters {
    pub sent: AtomicU64,
    /// Not sent: the queue was full (API away for long, or a ban storm).
    pub dropped: AtomicU64,
    pub failed_posts: AtomicU64,
}

impl SignalQueue {
    /// Never waits: a full queue counts the signal as dropped.
    pub fn offer(&self, s: BanSignal) {
        if self.tx.try_send(s).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A queue and the receiving end for [`run`].
pub fn queue() -> (SignalQueue, mpsc::Receiver<BanSignal>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        SignalQueue {
            tx,
            counters: Arc::new(SignalCounters::default()),
        },
        rx,
    )
}

/// The alert for one ban: scope `Ip` (or `Range` for a prefix), the ban's
/// duration as the decision.
pub fn alert(s: &BanSignal, machine_id: &str) -> Alert {
    let at = s.at.clone();
    let host = s.source.prefix_len() == s.source.max_prefix_len();
    let (scope, value) = if host {
        ("Ip", s.source.addr().to_string())
    } else {
        ("Range", s.source.to_string())
    };
    let ip = match s.source.addr() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => a.to_string(),
    };
    let message = format!(
        "{value} banned by sipguard on {machine_id} ({}) for {}s",
        s.reason,
        s.duration.as_secs()
    );
    Alert {
        scenario: SCENARIO.into(),
        scenario_hash: String::new(),
        scenario_version: env!("CARGO_PKG_VERSION").into(),
        message,
        events_count: 1,
        start_at: at.clone(),
        stop_at: at.clone(),
        capacity: 0,
        leakspeed: "0".into(),
        simulated: false,
        remediation: true,
        events: vec![AlertEvent {
            timestamp: at,
            meta: vec![
                Meta {
                    key: "source_ip".into(),
                    value: ip.clone(),
                },
                Meta {
                    key: "reason".into(),
                    value: s.reason.clone(),
                },
            ],
        }],
        source: AlertSource {
            scope: scope.into(),
            value: value.clone(),
            ip: host.then_some(ip),
            range: (!host).then(|| s.source.to_string()),
        },
        decisions: vec![AlertDecision {
            origin: "crowdsec".into(),
            kind: "ban".into(),
            scope: scope.into(),
            value,
            duration: format!("{}s", s.duration.as_secs().max(1)),
            scenario: SCENARIO.into(),
        }],
    }
}

struct Session {
    token: Token,
    since: Instant,
}

/// Sends what the queue receives until every sender is gone.
pub async fn run(
    lapi: Lapi,
    machine_id: String,
    password: String,
    mut rx: mpsc::Receiver<BanSignal>,
    counters: Arc<SignalCounters>,
) {
    let mut session: Option<Session> = None;
    let mut pending: Vec<BanSignal> = Vec::new();
    let mut failures = 0u32;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(s) => pending.push(s),
                None => return,
            }
        }
        // Bans come in bursts (one scan, many sources): gather a moment.
        let gather = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(gather);
        while pending.len() < BATCH {
            tokio::select! {
                s = rx.recv() => match s { Some(s) => pending.push(s), None => break },
                _ = &mut gather => break,
            }
        }
        let n = pending.len().min(BATCH);
        let alerts: Vec<Alert> = pending[..n].iter().map(|s| alert(s, &machine_id)).collect();
        match post(&lapi, &machine_id, &password, &mut session, &alerts).await {
            Ok(()) => {
                counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                pending.drain(..n);
                if failures > 0 {
                    info!("crowdsec: alerts reach {} again", lapi.url(""));
                }
                failures = 0;
            }
            Err(e) => {
                counters.failed_posts.fetch_add(1, Ordering::Relaxed);
                if failures == 0 {
                    warn!("crowdsec: cannot push bans as alerts: {e}; retrying");
                }
                failures += 1;
                // While the API is away the queue fills; past its bound
                // the oldest waiting signals give way.
                while let Ok(s) = rx.try_recv() {
                    pending.push(s);
                }
                if pending.len() > QUEUE {
                    let over = pending.len() - QUEUE;
                    pending.drain(..over);
                    counters.dropped.fetch_add(over as u64, Ordering::Relaxed);
                }
                let wait = Duration::from_secs(1u64 << failures.min(5).saturating_sub(1));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn post(
    lapi: &Lapi,
    id: &str,
    password: &str,
    session: &mut Option<Session>,
    alerts: &[Alert],
) -> Result<(), LapiError> {
    if session
        .as_ref()
        .is_some_and(|s| s.since.elapsed() > TOKEN_LIFE)
    {
        *session = None;
    }
    for attempt in 0..2 {
        let token = match session {
            Some(s) => s.token.clone(),
            None => {
                let token = lapi.login(id, password).await?;
                *session = Some(Session {
                    token: token.clone(),
                    since: Instant::now(),
                });
                token
            }
        };
        match lapi.post_alerts(&token, alerts).await {
            // An expired or revoked token: log in once more, then give up.
            Err(LapiError::Refused { status: 401, .. }) if attempt == 0 => *session = None,
            other => return other,
        }
    }
    Ok(())
}
