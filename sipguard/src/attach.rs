//! Attaching the XDP program to interfaces in the requested mode.

use anyhow::{anyhow, Result};
use aya::programs::{xdp::XdpLinkId, Xdp, XdpMode};

use crate::config::XdpModeSetting;

/// How a program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Skb,
}

impl AttachedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Skb => "skb",
        }
    }
}

pub fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| anyhow!("interface name '{name}' contains a NUL byte"))?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(anyhow!("interface '{name}' does not exist (in this network namespace)"));
    }
    Ok(idx)
}

pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

/// Attaches `prog` to `iface`. `auto` tries native (driver) mode first and
/// falls back to generic (skb) mode, saying which one it got.
pub fn attach(prog: &mut Xdp, iface: &str, mode: XdpModeSetting) -> Result<(XdpLinkId, AttachedMode)> {
    let idx = ifindex(iface)?;
    let try_mode = |prog: &mut Xdp, m: XdpMode| prog.attach_to_if_index(idx, m);
    match mode {
        XdpModeSetting::Native => try_mode(prog, XdpMode::Driver)
            .map(|l| (l, AttachedMode::Native))
            .map_err(|e| anyhow!("cannot attach to {iface} in native mode: {e} (the driver may lack XDP support; try xdp_mode: skb or auto)")),
        XdpModeSetting::Skb => try_mode(prog, XdpMode::Skb)
            .map(|l| (l, AttachedMode::Skb))
            .map_err(|e| anyhow!("cannot attach to {iface} in skb mode: {e}")),
        XdpModeSetting::Auto => match try_mode(prog, XdpMode::Driver) {
            Ok(l) => Ok((l, AttachedMode::Native)),
            Err(native) => {
                log::info!("{iface}: native XDP unavailable ({native}); falling back to skb mode");
                try_mode(prog, XdpMode::Skb)
                    .map(|l| (l, AttachedMode::Skb))
                    .map_err(|e| anyhow!("cannot attach to {iface}: native mode failed ({native}), skb mode failed ({e})"))
            }
        },
    }
}
