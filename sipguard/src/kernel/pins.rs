//! The pin directory in bpffs: `<root>/v<ABI>/<MAP NAME>`, one versioned
//! directory so a daemon never opens maps of another layout.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use aya::maps::MapData;
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
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create pin directory {}", dir.display()))?;
    Ok(dir)
}

pub fn ensure_bpffs(root: &Path) -> Result<()> {
    let bpf = Path::new("/sys/fs/bpf");
    if !root.starts_with(bpf) {
        // Elsewhere the directory (or what exists of its path) must be on
        // a bpffs already: pinning anywhere else fails with a bare EPERM.
        let existing = root
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
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
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Opens the map pinned as `dir/<name>` (a daemon runs or left its pins).
pub fn open_map(dir: &Path, name: &str) -> Result<MapData> {
    let path = dir.join(name);
    MapData::from_pin(&path).with_context(|| {
        format!(
            "cannot open pinned map {} (is `sipguard run` running?)",
            path.display()
        )
    })
}

/// Pin of the XDP link on interface `ifname`.
pub fn link_path(root: &Path, ifname: &str) -> PathBuf {
    versioned_dir(root).join(format!("link_{ifname}"))
}

/// Interfaces with a pinned link under `root`.
pub fn pinned_links(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(versioned_dir(root))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("link_"))
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

/// Detaches and unpins the XDP link of `ifname`. BPF_LINK_DETACH ends the
/// link even while a daemon still holds a descriptor of it.
pub fn detach_link(root: &Path, ifname: &str) -> Result<()> {
    detach_link_at(&link_path(root, ifname), ifname)
}

fn detach_link_at(path: &Path, ifname: &str) -> Result<()> {
    let fd = obj_get(path)
        .with_context(|| format!("no sipguard link pinned for {ifname} ({})", path.display()))?;
    let r = link_detach(&fd);
    std::fs::remove_file(path).with_context(|| format!("cannot remove pin {}", path.display()))?;
    r
}

/// Pin directories of older map ABIs under `root`, newest first: what a
/// daemon of an older package left running.
pub(crate) fn older_dirs(root: &Path) -> Vec<(u32, PathBuf)> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n: u32 = e.file_name().to_str()?.strip_prefix('v')?.parse().ok()?;
            (n < MAP_ABI_VERSION).then(|| (n, e.path()))
        })
        .collect();
    v.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    v
}

/// Moves the XDP link an older map ABI's daemon pinned for `ifname` to this
/// version's place, so the caller swaps its program in place (no gap) as it
/// does for a link of its own version. Returns the older version, if any.
pub fn take_over_older_link(root: &Path, ifname: &str) -> Result<Option<u32>> {
    let path = link_path(root, ifname);
    if path.exists() {
        return Ok(None);
    }
    for (version, dir) in older_dirs(root) {
        let old = dir.join(format!("link_{ifname}"));
        if old.exists() {
            std::fs::rename(&old, &path).with_context(|| {
                format!(
                    "cannot move the pinned link {} to {}",
                    old.display(),
                    path.display()
                )
            })?;
            return Ok(Some(version));
        }
    }
    Ok(None)
}

/// Removes what older map ABIs left under `root` once this daemon runs:
/// links of interfaces it does not filter are detached, then their maps are
/// unpinned (what this version can read was carried over before, `migrate.rs`).
pub fn remove_older(root: &Path) -> Result<()> {
    for (version, dir) in older_dirs(root) {
        let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        for path in &entries {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Some(ifname) = name.strip_prefix("link_") {
                log::info!(
                    "detaching the map ABI v{version} filter from {ifname}: not configured here"
                );
                detach_link_at(path, ifname)?;
            } else {
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove pin {}", path.display()))?;
            }
        }
        std::fs::remove_dir(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        log::info!("removed the pins of map ABI v{version} ({})", dir.display());
    }
    Ok(())
}

/// aya 0.14 wraps neither BPF_OBJ_GET on a bare path nor BPF_LINK_DETACH
/// (nor hands back a program's JIT image, `jit.rs`), so these are issued
/// directly (attr layouts from linux/bpf.h).
pub(crate) fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<libc::c_long> {
    // SAFETY: bpf(2) with an attr buffer of the size we pass.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn obj_get(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    const BPF_OBJ_GET: libc::c_long = 7;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut attr = [0u8; 128];
    attr[..8].copy_from_slice(&(c.as_ptr() as u64).to_ne_bytes());
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// (program id, ifindex) of the XDP link pinned at `path`; ifindex 0 means
/// the link outlived its interface.
pub fn link_info(path: &Path) -> std::io::Result<(u32, u32)> {
    use std::os::fd::AsRawFd as _;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    let fd = obj_get(path)?;
    // struct bpf_link_info: type, id, prog_id, then an 8-aligned union
    // whose `xdp` member starts with ifindex.
    let mut info = [0u64; 16];
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&((info.len() * 8) as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let prog_id = (info[1] & 0xffff_ffff) as u32;
    let ifindex = (info[2] & 0xffff_ffff) as u32;
    Ok((prog_id, ifindex))
}

fn link_detach(fd: &std::os::fd::OwnedFd) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    const BPF_LINK_DETACH: libc::c_long = 34;
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    bpf(BPF_LINK_DETACH, &mut attr).context("BPF_LINK_DETACH")?;
    Ok(())
}

/// Removes the pins this daemon created and the directories if empty.
pub fn remove(root: &Path) {
    let dir = versioned_dir(root);
    for name in map_names::ALL.iter() {
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
