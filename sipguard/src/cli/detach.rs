//! `sipguard detach`: remove the filter from all interfaces (and its pins)
//! or from one.

use std::{path::Path, process::ExitCode};

use anyhow::Result;

use crate::kernel::pins;

pub fn do_detach(root: &Path, iface: Option<String>) -> Result<ExitCode> {
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
        let dir = pins::versioned_dir(root);
        pins::remove(root);
        // Only sipguard's own pins are removed: anything else found there
        // keeps the directory, and the detach must not claim it is gone.
        if let Ok(rest) = std::fs::read_dir(&dir) {
            let mut left: Vec<String> = rest
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            anyhow::bail!(
                "the filter is detached, but {} is not removed: it still holds {}",
                dir.display(),
                left.join(", ")
            );
        }
        println!("removed the pins under {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
