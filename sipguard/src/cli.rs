//! Command-line interface: tiny verbs in the style of xdp-filter.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::{
    config::{self, Config},
    daemon::{self, ConfigSource, RunOptions},
    metrics, pins,
    policy::Policy,
};

/// Exit code for an invalid configuration (and usage errors).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "sipguard", version, about = "XDP filter against SIP scanners and ghost calls")]
pub struct Cli {
    /// bpffs directory for pins (maps live under <DIR>/v1/).
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
    },
    /// Validate a config and print the effective policy (exit 2 if invalid).
    Check {
        #[arg(short, long)]
        config: Option<PathBuf>,
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
}

/// `-c` given: that file. Otherwise the default path if it exists, else the
/// embedded default policy.
fn config_source(arg: Option<PathBuf>) -> ConfigSource {
    match arg {
        Some(p) => ConfigSource::File(p),
        None if std::path::Path::new(config::DEFAULT_PATH).exists() => ConfigSource::File(config::DEFAULT_PATH.into()),
        None => ConfigSource::Embedded,
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Run { config, ifaces } => {
            let opts = RunOptions { source: config_source(config), ifaces, pin_root: cli.pin_root, verbose: cli.verbose };
            // Validate before touching the kernel, so a bad config exits 2.
            opts.source.load()?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(daemon::run(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let source = config_source(config);
            let cfg: Config = source.load()?;
            let policy = Policy::from_config(&cfg);
            match &source {
                ConfigSource::File(p) => println!("{}: valid", p.display()),
                ConfigSource::Embedded => println!("no config file: the embedded default policy applies"),
            }
            print!("{}", policy.describe(&cfg));
            let names = cfg.trusted_names();
            if !names.is_empty() {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                print!("{}", rt.block_on(crate::names::describe(&cfg.dns, &names)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Trusted { json } => {
            let dir = pins::versioned_dir(&cli.pin_root);
            print!("{}", crate::learn::trusted_report(&dir, json)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats { json, watch } => {
            let dir = pins::versioned_dir(&cli.pin_root);
            loop {
                let snap = metrics::snapshot_pinned(&dir)?;
                if json {
                    let mut v = snap.to_json();
                    if let (Some(o), Some(l)) = (v.as_object_mut(), crate::learn::summary_json(&dir)) {
                        o.insert("learned".into(), l);
                    }
                    println!("{v}");
                } else {
                    print!("{}", snap.to_table());
                    if let Some(l) = crate::learn::summary_json(&dir) {
                        println!("learned registrars: {} active, {} expired", l["active"], l["expired"]);
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
    }
}
