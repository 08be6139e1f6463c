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
        pins::remove(root);
        println!(
            "removed the pins under {}",
            pins::versioned_dir(root).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
