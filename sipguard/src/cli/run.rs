//! `sipguard run`: validate the config, then run the daemon until a signal
//! stops it.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;

use super::config_source;
use crate::serve::{self, RunOptions};

/// The verb's own arguments (the global ones are passed beside them).
pub struct RunArgs {
    pub config: Option<PathBuf>,
    pub ifaces: Vec<String>,
    pub json_events: bool,
    pub events_socket: Option<PathBuf>,
}

pub fn do_run(args: RunArgs, pin_root: PathBuf, verbose: bool) -> Result<ExitCode> {
    let opts = RunOptions {
        source: config_source(args.config),
        ifaces: args.ifaces,
        pin_root,
        verbose,
        json_events: args.json_events,
        events_socket: args.events_socket,
    };
    // Validate before touching the kernel, so a bad config exits 2.
    opts.source.load()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve::run(opts))?;
    Ok(ExitCode::SUCCESS)
}
