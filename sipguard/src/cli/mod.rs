//! Command-line interface: tiny verbs in the style of xdp-filter. The clap
//! definition is here ([`Cli`]; `<Cli as clap::CommandFactory>::command()`
//! gives the whole command tree), each verb in a module of its own with a
//! `do_<verb>` entry.

mod ban;
mod check;
mod detach;
mod events;
mod generate;
mod replay;
mod run;
mod stats;
mod trusted;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::{
    kernel::pins,
    policy::config::{self, ConfigSource},
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
    // The help is an attribute, not a doc comment, so that rustdoc does not
    // read `<DIR>` as an HTML tag.
    #[arg(
        long,
        global = true,
        env = "SIPGUARD_PIN_ROOT",
        default_value = pins::DEFAULT_ROOT,
        help = "bpffs directory for pins (maps live under <DIR>/v<map ABI version>/)"
    )]
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
        /// Also probe this kernel: which features it has, which parts of
        /// sipguard they enable, and whether it can run this policy (exit 3
        /// if not). Needs root.
        #[arg(long)]
        kernel: bool,
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
    let matches = Cli::command().subcommand(generate::command()).get_matches();
    if let Some(m) = matches.subcommand_matches(generate::VERB) {
        return generate::main(m);
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if !matches!(cli.command, Command::Run { .. }) {
        // A reader that stops early (`sipguard check | head -1`) ends a verb
        // as it ends cat: by SIGPIPE, quietly. Rust ignores the signal, so
        // the next print would panic instead. The daemon keeps ignoring it:
        // a write to an events client that left is an error, not its end.
        // SAFETY: restores the default action before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
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
    let pin_root = cli.pin_root;
    match cli.command {
        Command::Run {
            config,
            ifaces,
            json_events,
            events_socket,
        } => run::do_run(
            run::RunArgs {
                config,
                ifaces,
                json_events,
                events_socket,
            },
            pin_root,
            cli.verbose,
        ),
        Command::Check { config, kernel } => check::do_check(config, kernel, &pin_root),
        Command::Trusted { json } => trusted::do_trusted(&pin_root, json),
        Command::Replay {
            config,
            capture,
            json,
        } => replay::do_replay(config, &capture, json),
        Command::Stats { json, watch } => stats::do_stats(&pin_root, json, watch),
        Command::Events {
            json,
            socket,
            count,
        } => events::do_events(&socket, json, count),
        Command::Ban { addr, duration } => ban::do_ban(&pin_root, addr, duration),
        Command::Unban { addr } => ban::do_unban(&pin_root, addr),
        Command::Bans { json } => ban::do_bans(&pin_root, json),
        Command::Detach { iface } => detach::do_detach(&pin_root, iface),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
