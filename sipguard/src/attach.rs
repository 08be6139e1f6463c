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

/// ARPHRD_* values (include/uapi/linux/if_arp.h) that decide the entry point.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_PPP: u16 = 512;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_NONE: u16 = 0xfffe;

/// The link type of an interface in the current network namespace
/// (`SIOCGIFHWADDR`; /sys/class/net may belong to another namespace).
pub fn arphrd(name: &str) -> Result<u16> {
    anyhow::ensure!(name.len() < libc::IF_NAMESIZE, "interface name '{name}' is too long");
    // SAFETY: a plain datagram socket used only for the ioctl, closed below;
    // ifreq is zeroed and the name copied NUL-terminated.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(anyhow!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in name.bytes().enumerate() {
            ifr.ifr_name[i] = b as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut ifr);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(anyhow!("cannot read the link type of '{name}': {err}"));
        }
        Ok(ifr.ifr_ifru.ifru_hwaddr.sa_family)
    }
}

/// Which header the XDP program sees first on `name`. Ethernet devices give
/// the Ethernet header; under generic XDP, devices without one (tun in `tun`
/// mode, ppp, wireguard, rawip modems) give the IP header itself. Other link
/// types (tunnels, loopback, InfiniBand, ...) are refused rather than
/// parsed wrongly.
pub fn link_of(name: &str) -> Result<sipguard_common::packet::Link> {
    use sipguard_common::packet::Link;
    match arphrd(name)? {
        ARPHRD_ETHER => Ok(Link::Ethernet),
        ARPHRD_PPP | ARPHRD_NONE | ARPHRD_RAWIP => Ok(Link::RawIp),
        other => Err(anyhow!(
            "interface '{name}' has link type {other} (ARPHRD), neither Ethernet nor raw IP:              sipguard cannot tell where its packets' IP header starts; attach it to the              Ethernet or ppp/tun device instead"
        )),
    }
}

/// The program that parses `link`'s packets.
pub fn program_for(link: sipguard_common::packet::Link) -> &'static str {
    match link {
        sipguard_common::packet::Link::Ethernet => sipguard_common::PROGRAM_NAME,
        sipguard_common::packet::Link::RawIp => sipguard_common::PROGRAM_NAME_RAW_IP,
    }
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
