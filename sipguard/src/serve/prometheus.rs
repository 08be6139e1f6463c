//! Prometheus endpoint (`metrics.listen`): counters per interface, reason
//! and action, active bans, event statistics and build info, read from the
//! pinned maps at each scrape so they are the kernel's own numbers.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Result;
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    kernel::{bans, counters, decisions, stateful},
    policy::sources::crowdsec::signals::SignalCounters,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CellLabels {
    interface: String,
    reason: String,
    /// `pass`, `drop` or `would_drop`.
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    abi: String,
}

/// The metrics text for the maps pinned in `dir`, and the signal
/// sender's counters when it runs.
pub fn render(dir: &Path, signals: Option<&SignalCounters>) -> Result<String> {
    let snap = counters::snapshot_pinned(dir)?;
    let mut reg = Registry::with_prefix("sipguard");
    let packets = Family::<CellLabels, Counter>::default();
    let bytes = Family::<CellLabels, Counter>::default();
    for c in &snap.cells {
        let l = CellLabels {
            interface: snap.slot_label(c.slot),
            reason: c.reason.name().to_string(),
            action: (if c.monitored {
                "would_drop"
            } else if c.reason.is_drop() {
                "drop"
            } else {
                "pass"
            })
            .to_string(),
        };
        packets.get_or_create(&l).inc_by(c.packets);
        bytes.get_or_create(&l).inc_by(c.bytes);
    }
    reg.register(
        "packets",
        "Packets by interface, reason and action",
        packets,
    );
    reg.register("bytes", "Bytes by interface, reason and action", bytes);

    let stats = stateful::read_stats(&stateful::stats_pinned(dir)?)?;
    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    counter(
        &mut reg,
        "events_sent",
        "Drop events written to the ring buffer",
        stats.events_sent,
    );
    counter(
        &mut reg,
        "events_lost",
        "Drop events lost because the ring buffer was full",
        stats.events_lost,
    );
    counter(
        &mut reg,
        "events_suppressed",
        "Drop events suppressed by per-source sampling",
        stats.events_suppressed,
    );
    counter(
        &mut reg,
        "events_over_budget",
        "Drop events held back by the per-CPU events.max_per_second limit",
        stats.events_over_budget,
    );
    counter(
        &mut reg,
        "bans_created",
        "Automatic bans made by the kernel",
        stats.bans_created,
    );
    counter(
        &mut reg,
        "fragments_remembered",
        "Dropped first fragments remembered",
        stats.fragments_remembered,
    );

    let active = Gauge::<i64>::default();
    active.set(bans::count_active_bans(&bans::bans_pinned(dir)?) as i64);
    reg.register("active_bans", "Bans in force", active);

    if let Some(by_origin) = decisions::pinned_by_origin(dir) {
        let family = Family::<OriginLabels, Gauge>::default();
        for (origin, n) in by_origin {
            family
                .get_or_create(&OriginLabels {
                    origin: origin.to_string(),
                })
                .set(n as i64);
        }
        reg.register(
            "decisions",
            "CrowdSec decisions in force in the kernel, by origin",
            family,
        );
    }
    if let Some(s) = signals {
        use std::sync::atomic::Ordering::Relaxed;
        counter(
            &mut reg,
            "signals_sent",
            "Automatic bans pushed to the Local API as alerts",
            s.sent.load(Relaxed),
        );
        counter(
            &mut reg,
            "signals_dropped",
            "Automatic bans not pushed: the queue was full",
            s.dropped.load(Relaxed),
        );
        counter(
            &mut reg,
            "signals_failed_posts",
            "Alert posts the Local API did not take",
            s.failed_posts.load(Relaxed),
        );
    }

    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
            abi: sipguard_common::MAP_ABI_VERSION.to_string(),
        })
        .set(1);
    reg.register("build_info", "Build information", build);

    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

type Scraped = (PathBuf, Option<Arc<SignalCounters>>);

async fn scrape(State((dir, signals)): State<Scraped>) -> axum::response::Response {
    match tokio::task::spawn_blocking(move || render(&dir, signals.as_deref())).await {
        Ok(Ok(body)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the maps: {e:#}\n"),
        )
            .into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e}\n"),
        )
            .into_response(),
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    dir: PathBuf,
    signals: Option<Arc<SignalCounters>>,
) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state((dir, signals));
    if let Err(e) = axum::serve(listener, app).await {
        log::error!("metrics endpoint stopped: {e}");
    }
}
