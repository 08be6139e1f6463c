//! `sipguard generate man|completions DIR`: man pages and shell completions
//! written from the same clap definition the CLI parses with, so they never
//! drift from it. Packaging calls it; it is hidden from `--help` and not in
//! what it writes.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, Result};
use clap::{ArgMatches, CommandFactory, FromArgMatches as _, Parser, ValueEnum};
use clap_complete::Shell;

use crate::cli::Cli;

pub const VERB: &str = "generate";

/// Write the man pages or shell completions into DIR (for packaging).
#[derive(Debug, Parser)]
struct Args {
    what: What,
    dir: PathBuf,
}

pub fn command() -> clap::Command {
    Args::command().name(VERB).hide(true)
}

pub fn main(m: &ArgMatches) -> ExitCode {
    let args = match Args::from_arg_matches(m) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match run(args.what, &args.dir) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sipguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// sipguard.1 and one sipguard-VERB.1 per verb (roff, uncompressed).
    Man,
    /// bash (sipguard.bash), zsh (_sipguard) and fish (sipguard.fish).
    Completions,
}

pub fn run(what: What, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command();
    match what {
        What::Man => {
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?;
            let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "1"))
                .collect();
            pages.sort();
            Ok(pages)
        }
        What::Completions => [Shell::Bash, Shell::Zsh, Shell::Fish]
            .into_iter()
            .map(|sh| {
                clap_complete::generate_to(sh, &mut cmd, "sipguard", dir)
                    .with_context(|| format!("writing {sh} completions to {}", dir.display()))
            })
            .collect(),
    }
}
