//! `sipguard replay`: a capture through the real program, one verdict per
//! packet, then a summary.

use std::{path::Path, path::PathBuf, process::ExitCode};

use anyhow::{anyhow, Result};

use super::config_source;
use crate::{
    policy::{config::Config, Policy},
    replay::{format_line, read_capture, replay, summary},
};

pub fn do_replay(config: Option<PathBuf>, capture: &Path, json: bool) -> Result<ExitCode> {
    let cfg: Config = config_source(config).load()?;
    crate::kernel::features::require_for(&cfg)?;
    let policy = Policy::from_config(&cfg);
    let frames = read_capture(capture)?;
    let verdicts = replay(&policy, &frames).map_err(|e| anyhow!("{e:#}"))?;
    for v in &verdicts {
        if json {
            println!("{}", v.to_json());
        } else {
            println!("{}", format_line(v));
        }
    }
    if json {
        eprint!("{}", summary(&verdicts));
    } else {
        print!("\n{}", summary(&verdicts));
    }
    Ok(ExitCode::SUCCESS)
}
