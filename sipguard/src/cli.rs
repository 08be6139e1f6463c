//! Command-line interface: tiny verbs in the style of xdp-filter.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::{
    config::{self, Config},
    daemon::{self, ConfigSource, RunOptions},
    events, metrics, ops, pins,
    policy::Policy,
};

/// Exit code for an invalid configuration (and usage errors).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "sipguard",
    version,
    about = "XDP filter against SIP scanners and ghost calls"
)]
pub struct Cli {
    /// bpffs directory for pins (maps live under <DIR>/v<map ABI version>/).
    #[arg(long, global = true, env = "SIPGUARD_PIN_ROOT", default_value = pins::DEFAULT_ROOT)]
    pub pin_root: PathBuf,
    /// More logging; on a verifier rejection, print the whole log.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the filter: attach, fill the maps, reload on SIGHUP.
    Run {
        /// Config file. Without one (and without /etc/sipguard/sipguard.yaml)
        /// the embedded default policy runs.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Interface to attach to (repeatable); overrides the config.
        #[arg(long = "iface", short = 'i')]
        ifaces: Vec<String>,
        /// Log drop events as JSON lines on stdout (overrides events.log).
        #[arg(long)]
        json_events: bool,
        /// Events socket path (overrides events.socket).
        #[arg(long, env = "SIPGUARD_EVENTS_SOCKET")]
        events_socket: Option<PathBuf>,
    },
    /// Validate a config and print the effective policy (exit 2 if invalid).
    Check {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Run every packet of a pcap/pcapng capture through the real program
    /// (a private instance; a running daemon is not touched) and print each
    /// verdict and reason, then a summary.
    Replay {
        /// Config file (default: /etc/sipguard/sipguard.yaml if it exists,
        /// else the embedded default policy).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// pcap or pcapng file (Ethernet, Linux cooked SLL/SLL2 or raw IP).
        capture: PathBuf,
        /// One JSON object per packet: index, verdict (pass/drop), reason;
        /// the summary goes to stderr.
        #[arg(long)]
        json: bool,
    },
    /// Trusted sources in force: static and resolved entries, and learned
    /// registrars with the time they have left.
    Trusted {
        #[arg(long)]
        json: bool,
    },
    /// Counters per interface and reason, read from the pinned maps.
    Stats {
        #[arg(long)]
        json: bool,
        /// Print again every SECONDS (default 1).
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "1")]
        watch: Option<f64>,
    },
    /// Follow drop events live (from the running daemon's socket).
    Events {
        #[arg(long)]
        json: bool,
        #[arg(long, env = "SIPGUARD_EVENTS_SOCKET", default_value = config::DEFAULT_EVENTS_SOCKET)]
        socket: PathBuf,
        /// Stop after N events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Ban a source (IPv6: its configured prefix, /64 by default).
    Ban {
        addr: std::net::IpAddr,
        /// How long (500ms, 30s, 10m, 2h, 1d); without it, until unbanned.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<config::Dur>,
    },
    /// Lift a ban.
    Unban { addr: std::net::IpAddr },
    /// List the bans in force.
    Bans {
        #[arg(long)]
        json: bool,
    },
    /// Detach the filter and remove its pins (all interfaces, or one).
    Detach {
        #[arg(long = "iface", short = 'i')]
        iface: Option<String>,
    },
}

/// `-c` given: that file. Otherwise the default path if it exists, else the
/// embedded default policy.
fn config_source(arg: Option<PathBuf>) -> ConfigSource {
    match arg {
        Some(p) => ConfigSource::File(p),
        None if std::path::Path::new(config::DEFAULT_PATH).exists() => {
            ConfigSource::File(config::DEFAULT_PATH.into())
        }
        None => ConfigSource::Embedded,
    }
}

pub fn main() -> ExitCode {
    // `generate` is added here rather than in `Command` so that the man
    // pages and completions it writes do not list it.
    let matches = Cli::command()
        .subcommand(crate::generate::command())
        .get_matches();
    if let Some(m) = matches.subcommand_matches(crate::generate::VERB) {
        return crate::generate::main(m);
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let level = if cli.verbose { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<config::ConfigError>() {
                eprintln!("sipguard: invalid config: {ce}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("sipguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            config,
            ifaces,
            json_events,
            events_socket,
        } => {
            let opts = RunOptions {
                source: config_source(config),
                ifaces,
                pin_root: cli.pin_root,
                verbose: cli.verbose,
                json_events,
                events_socket,
            };
            // Validate before touching the kernel, so a bad config exits 2.
            opts.source.load()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(daemon::run(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let source = config_source(config);
            let cfg: Config = source.load()?;
            let policy = Policy::from_config(&cfg);
            match &source {
                ConfigSource::File(p) => println!("{}: valid", p.display()),
                ConfigSource::Embedded => {
                    println!("no config file: the embedded default policy applies")
                }
            }
            print!("{}", policy.describe(&cfg));
            let b = &cfg.bans;
            if cfg.bans_enabled() {
                println!(
                    "bans:        after {} drops in {}, for {} (IPv6 per /{})",
                    b.threshold, b.window, b.ttl, b.ipv6_prefix
                );
            } else {
                println!("bans:        automatic bans off (manual `sipguard ban` still works)");
            }
            println!("fragments:   {:?}", cfg.fragments);
            println!("on exit:     {:?}", cfg.on_exit);
            for f in &cfg.feeds {
                let n = std::fs::read_to_string(f)
                    .map_err(anyhow::Error::from)
                    .and_then(|t| crate::feeds::parse(&t, &f.display().to_string()));
                match n {
                    Ok(v) => println!("feed:        {} ({} entries)", f.display(), v.len()),
                    Err(e) => {
                        return Err(config::ConfigError {
                            source_name: f.display().to_string(),
                            line: None,
                            message: format!("{e:#}"),
                        }
                        .into())
                    }
                }
            }
            if let Some(a) = cfg.metrics.listen {
                println!("metrics:     http://{a}/metrics");
            }
            let names = cfg.trusted_names();
            if !names.is_empty() {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                print!("{}", rt.block_on(crate::names::describe(&cfg.dns, &names)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Trusted { json } => {
            let dir = pins::versioned_dir(&cli.pin_root);
            print!("{}", crate::learn::trusted_report(&dir, json)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            config,
            capture,
            json,
        } => {
            let cfg: Config = config_source(config).load()?;
            let policy = Policy::from_config(&cfg);
            crate::replay::run(&policy, &capture, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats { json, watch } => {
            let dir = pins::versioned_dir(&cli.pin_root);
            loop {
                let snap = metrics::snapshot_pinned(&dir)?;
                let o = ops::stats_pinned(&dir)
                    .and_then(|m| ops::read_stats(&m))
                    .ok();
                let bans = ops::bans_pinned(&dir)
                    .map(|b| ops::count_active_bans(&b))
                    .ok();
                if json {
                    let mut v = snap.to_json();
                    if let Some(o) = o {
                        v["operations"] = serde_json::json!({
                            "events_sent": o.events_sent, "events_lost": o.events_lost,
                            "events_suppressed": o.events_suppressed, "bans_created": o.bans_created,
                            "fragments_remembered": o.fragments_remembered, "active_bans": bans,
                        });
                    }
                    if let (Some(o), Some(l)) =
                        (v.as_object_mut(), crate::learn::summary_json(&dir))
                    {
                        o.insert("learned".into(), l);
                    }
                    println!("{v}");
                } else {
                    print!("{}", snap.to_table());
                    if let Some(o) = o {
                        println!(
                            "events: sent {}, suppressed {}, lost {}; bans: {} active, {} made; fragments remembered {}",
                            o.events_sent, o.events_suppressed, o.events_lost, bans.unwrap_or(0), o.bans_created, o.fragments_remembered
                        );
                    }
                    if let Some(l) = crate::learn::summary_json(&dir) {
                        println!(
                            "learned registrars: {} active, {} expired",
                            l["active"], l["expired"]
                        );
                    }
                }
                match watch {
                    Some(secs) if secs > 0.0 => {
                        std::thread::sleep(Duration::from_secs_f64(secs));
                        if !json {
                            println!();
                        }
                    }
                    _ => return Ok(ExitCode::SUCCESS),
                }
            }
        }
        Command::Events {
            json,
            socket,
            count,
        } => {
            events::follow(&socket, json, count)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ban { addr, duration } => {
            let dir = pins::versioned_dir(&cli.pin_root);
            let label = ops::ban(&dir, addr, duration.map(|d| d.0))?;
            match duration {
                Some(d) => println!("banned {label} for {d}"),
                None => println!("banned {label} until `sipguard unban`"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Unban { addr } => {
            let label = ops::unban(&pins::versioned_dir(&cli.pin_root), addr)?;
            println!("unbanned {label}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bans { json } => {
            let bans = ops::list_bans(&pins::versioned_dir(&cli.pin_root))?;
            if json {
                println!("{}", serde_json::to_string(&bans)?);
            } else {
                println!(
                    "{:<45} {:<7} {:>12} {:>7}",
                    "SOURCE", "ORIGIN", "REMAINING", "DROPS"
                );
                for b in &bans {
                    let rem = b
                        .remaining_secs
                        .map(|s| format!("{s}s"))
                        .unwrap_or_else(|| "forever".into());
                    println!(
                        "{:<45} {:<7} {:>12} {:>7}",
                        b.source, b.origin, rem, b.drops
                    );
                }
                println!("{} active", bans.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Detach { iface } => {
            let root = &cli.pin_root;
            if !pins::versioned_dir(root).exists() {
                println!(
                    "nothing to detach: no pins under {}",
                    pins::versioned_dir(root).display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let all = pins::pinned_links(root);
            let targets: Vec<String> = match iface {
                Some(i) => {
                    anyhow::ensure!(
                        all.contains(&i),
                        "sipguard is not attached to {i} (no link pinned under {})",
                        pins::versioned_dir(root).display()
                    );
                    vec![i]
                }
                None => all.clone(),
            };
            for i in &targets {
                pins::detach_link(root, i)?;
                println!("detached from {i}");
            }
            if targets.len() == all.len() {
                pins::remove(root);
                println!(
                    "removed the pins under {}",
                    pins::versioned_dir(root).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
