//! `sipguard events`: follow the daemon's events socket and print each
//! drop event.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::ExitCode,
};

use anyhow::{anyhow, Context as _, Result};

use crate::serve::events::Event;

pub fn do_events(socket: &Path, json: bool, count: Option<u64>) -> Result<ExitCode> {
    follow(socket, json, count)?;
    Ok(ExitCode::SUCCESS)
}

/// `sipguard events`: follows the daemon's socket and prints each event.
pub fn follow(path: &Path, json: bool, count: Option<u64>) -> Result<()> {
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        anyhow!(
            "cannot connect to {} ({e}); is `sipguard run` running, and are you root?",
            path.display()
        )
    })?;
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    for line in BufReader::new(stream).lines() {
        let line = line.context("reading events")?;
        let mut out = stdout.lock();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(n) = v.get("skipped") {
                eprintln!("sipguard: {n} events skipped (this client reads too slowly)");
                continue;
            }
        }
        if json {
            writeln!(out, "{line}")?;
        } else {
            match serde_json::from_str::<Event>(&line) {
                Ok(ev) => writeln!(out, "{}", ev.to_text())?,
                Err(_) => writeln!(out, "{line}")?,
            }
        }
        out.flush()?;
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
    }
    // The daemon closed the socket (it stopped or restarted).
    match count {
        Some(c) => Err(anyhow!(
            "the daemon closed {} after {seen} of the {c} events asked for",
            path.display()
        )),
        None => Err(anyhow!(
            "the daemon closed {} after {seen} events",
            path.display()
        )),
    }
}
