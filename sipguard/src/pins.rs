//! The pin directory in bpffs: `<root>/v<ABI>/<MAP NAME>`, one versioned
//! directory so a daemon never opens maps of another layout.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sipguard_common::{map_names, MAP_ABI_VERSION};

pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/sipguard";

pub fn versioned_dir(root: &Path) -> PathBuf {
    root.join(format!("v{MAP_ABI_VERSION}"))
}

/// Creates the directory, mounting bpffs on /sys/fs/bpf first if the
/// machine has none (as xdp-tools do).
pub fn prepare(root: &Path) -> Result<PathBuf> {
    ensure_bpffs(root)?;
    let dir = versioned_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create pin directory {}", dir.display()))?;
    Ok(dir)
}

pub fn ensure_bpffs(root: &Path) -> Result<()> {
    let bpf = Path::new("/sys/fs/bpf");
    if !root.starts_with(bpf) {
        // Elsewhere the directory (or what exists of its path) must be on
        // a bpffs already: pinning anywhere else fails with a bare EPERM.
        let existing = root.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
        anyhow::ensure!(
            is_bpffs(existing),
            "pin root {} is not on a BPF filesystem ({} is not bpffs); use a directory under /sys/fs/bpf \
             or mount one first: mount -t bpf bpf {}",
            root.display(),
            existing.display(),
            root.display()
        );
        return Ok(());
    }
    if is_bpffs(bpf) {
        return Ok(());
    }
    log::warn!("bpffs is not mounted on /sys/fs/bpf; mounting it");
    let status = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .status()
        .context("cannot run mount to mount bpffs")?;
    anyhow::ensure!(status.success(), "mounting bpffs on /sys/fs/bpf failed ({status}); mount it with: mount -t bpf bpf /sys/fs/bpf");
    Ok(())
}

fn is_bpffs(p: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Removes the pins this daemon created and the directories if empty.
pub fn remove(root: &Path) {
    let dir = versioned_dir(root);
    for name in map_names::ALL {
        let p = dir.join(name);
        if p.exists() {
            if let Err(e) = std::fs::remove_file(&p) {
                log::warn!("cannot remove pin {}: {e}", p.display());
            }
        }
    }
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir(root);
}
