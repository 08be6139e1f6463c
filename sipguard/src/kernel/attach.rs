//! Attaching the XDP program to interfaces in the requested mode.

use anyhow::{anyhow, Result};
use aya::programs::{xdp::XdpLinkId, Xdp, XdpMode};

use crate::policy::config::XdpModeSetting;

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
    let c = std::ffi::CString::new(name)
        .map_err(|_| anyhow!("interface name '{name}' contains a NUL byte"))?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(anyhow!(
            "interface '{name}' does not exist (in this network namespace)"
        ));
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
    let ifr = if_ioctl(name, libc::SIOCGIFHWADDR, "link type")?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    Ok(unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_family })
}

/// The MTU of an interface in the current network namespace.
pub fn mtu(name: &str) -> Result<u32> {
    let ifr = if_ioctl(name, libc::SIOCGIFMTU, "MTU")?;
    // SAFETY: SIOCGIFMTU filled the mtu member.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu } as u32)
}

/// An `ifreq` ioctl on `name` (`what` names the answer in errors).
fn if_ioctl(name: &str, request: libc::Ioctl, what: &str) -> Result<libc::ifreq> {
    anyhow::ensure!(
        name.len() < libc::IF_NAMESIZE,
        "interface name '{name}' is too long"
    );
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
        let rc = libc::ioctl(fd, request, &mut ifr);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(anyhow!("cannot read the {what} of '{name}': {err}"));
        }
        Ok(ifr)
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
            "interface '{name}' has link type {other} (ARPHRD), neither Ethernet nor raw IP: \
             sipguard cannot tell where its packets' IP header starts; attach it to the \
             Ethernet or ppp/tun device instead"
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

/// The multi-buffer build of [`program_for`].
pub fn frags_program_for(link: sipguard_common::packet::Link) -> &'static str {
    match link {
        sipguard_common::packet::Link::Ethernet => sipguard_common::PROGRAM_NAME_FRAGS,
        sipguard_common::packet::Link::RawIp => sipguard_common::PROGRAM_NAME_RAW_IP_FRAGS,
    }
}

/// The largest Ethernet MTU native XDP runs a single-buffer program at
/// (veth and most drivers refuse to attach one above it).
pub const SINGLE_BUFFER_MTU: u32 =
    (sipguard_common::SINGLE_BUFFER_FRAME - sipguard_common::packet::ETH_HLEN) as u32;

/// Whether native XDP on a `link` interface of MTU `mtu` needs the
/// multi-buffer build: its frames do not fit one buffer.
pub fn needs_multi_buffer(link: sipguard_common::packet::Link, mtu: u32) -> bool {
    let header = match link {
        sipguard_common::packet::Link::Ethernet => sipguard_common::packet::ETH_HLEN as u32,
        sipguard_common::packet::Link::RawIp => 0,
    };
    mtu + header > sipguard_common::SINGLE_BUFFER_FRAME as u32
}

/// Which build goes on an interface, in which mode, and what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub program: &'static str,
    pub mode: XdpModeSetting,
    pub note: Option<String>,
}

/// The build for `iface`: the single-buffer one unless native XDP is
/// asked for (or tried, `auto`) and its MTU needs multi-buffer frames.
/// Generic (skb) XDP hands a single-buffer program the whole frame at any
/// MTU (the kernel linearizes it), so skb mode never needs it. Without
/// multi-buffer support, `auto` goes to skb mode and `native` is refused.
pub fn plan(
    iface: &str,
    link: sipguard_common::packet::Link,
    mode: XdpModeSetting,
    mtu: u32,
    has_multi_buffer: bool,
) -> Result<Plan> {
    let single = Plan {
        program: program_for(link),
        mode,
        note: None,
    };
    if mode == XdpModeSetting::Skb || !needs_multi_buffer(link, mtu) {
        return Ok(single);
    }
    if has_multi_buffer {
        return Ok(Plan {
            program: frags_program_for(link),
            mode,
            note: Some(format!(
                "{iface}: MTU {mtu} is above the {SINGLE_BUFFER_MTU} bytes a single-buffer XDP program \
                 takes in native mode: attaching the multi-buffer (xdp.frags) build"
            )),
        });
    }
    if mode == XdpModeSetting::Native {
        anyhow::bail!(crate::kernel::features::multi_buffer_missing(iface, mtu));
    }
    Ok(Plan {
        mode: XdpModeSetting::Skb,
        note: Some(format!(
            "{iface}: MTU {mtu} needs multi-buffer XDP (Linux 5.18+) in native mode, which this \
             kernel lacks: attaching in skb mode, where the single-buffer build sees whole frames"
        )),
        ..single
    })
}

/// The errno at the bottom of an error chain, if any.
fn errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

/// What a failed attach means for the user, by errno.
pub fn explain_attach_error(iface: &str, mode: &str, errno: Option<i32>, detail: &str) -> String {
    let why = match errno {
        Some(libc::EOPNOTSUPP) => format!("the driver of {iface} has no native XDP support; use xdp_mode: skb (or auto)"),
        Some(libc::EBUSY) | Some(libc::EEXIST) => format!(
            "another XDP program is already attached to {iface} (see `ip link show {iface}`); detach it first"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => "permission denied: run as root or with CAP_BPF and CAP_NET_ADMIN".to_string(),
        Some(libc::ENODEV) => format!("interface {iface} disappeared"),
        Some(libc::EINVAL) | Some(libc::ERANGE) if mode == "native" => format!(
            "the driver refused the program ({detail}); often the MTU of {iface} is too large for native XDP \
             without multi-buffer support, or the driver lacks XDP; use xdp_mode: skb (or auto)"
        ),
        _ => detail.to_string(),
    };
    format!("cannot attach to {iface} in {mode} mode: {why}")
}

fn describe(e: &aya::programs::ProgramError) -> (Option<i32>, String) {
    let mut detail = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        detail.push_str(&format!(": {s}"));
        cur = s.source();
    }
    (errno(e), detail)
}

/// Attaches `prog` to `iface`. `auto` tries native (driver) mode first and
/// falls back to generic (skb) mode, saying which one it got.
pub fn attach(
    prog: &mut Xdp,
    iface: &str,
    mode: XdpModeSetting,
) -> Result<(XdpLinkId, AttachedMode)> {
    let idx = ifindex(iface)?;
    let mut try_mode = |m: XdpMode, name: &str| {
        prog.attach_to_if_index(idx, m).map_err(|e| {
            let (errno, detail) = describe(&e);
            let message = explain_attach_error(iface, name, errno, &detail);
            (errno, detail, message)
        })
    };
    match mode {
        XdpModeSetting::Native => try_mode(XdpMode::Driver, "native")
            .map(|l| (l, AttachedMode::Native))
            .map_err(|e| anyhow!(e.2)),
        XdpModeSetting::Skb => try_mode(XdpMode::Skb, "skb")
            .map(|l| (l, AttachedMode::Skb))
            .map_err(|e| anyhow!(e.2)),
        XdpModeSetting::Auto => match try_mode(XdpMode::Driver, "native") {
            Ok(l) => Ok((l, AttachedMode::Native)),
            Err((_, native, _)) => {
                log::info!("{iface}: native XDP unavailable ({native}); falling back to skb mode");
                try_mode(XdpMode::Skb, "skb")
                    .map(|l| (l, AttachedMode::Skb))
                    .map_err(|e| anyhow!("{} (native mode failed too: {native})", e.2))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_buffer_build_only_where_native_xdp_needs_it() {
        use sipguard_common::packet::Link;
        let p = |link, mode, mtu, has| plan("wan0", link, mode, mtu, has);
        assert_eq!(SINGLE_BUFFER_MTU, 3506);
        let single = p(Link::Ethernet, XdpModeSetting::Native, 3506, true).unwrap();
        assert_eq!((single.program, single.note), ("sipguard", None));
        let jumbo = p(Link::Ethernet, XdpModeSetting::Native, 3507, true).unwrap();
        assert_eq!(jumbo.program, "sipguard_frags");
        assert!(jumbo.note.unwrap().contains("MTU 3507"));
        let auto = p(Link::Ethernet, XdpModeSetting::Auto, 9000, true).unwrap();
        assert_eq!(
            (auto.program, auto.mode),
            ("sipguard_frags", XdpModeSetting::Auto)
        );
        let raw = p(Link::RawIp, XdpModeSetting::Native, 9000, true).unwrap();
        assert_eq!(raw.program, "sipguard_rawip_frags");
        assert_eq!(
            p(Link::RawIp, XdpModeSetting::Native, 3520, true)
                .unwrap()
                .program,
            "sipguard_rawip"
        );
        let skb = p(Link::Ethernet, XdpModeSetting::Skb, 9000, true).unwrap();
        assert_eq!((skb.program, skb.mode), ("sipguard", XdpModeSetting::Skb));
        // A kernel without multi-buffer XDP: auto goes to skb mode.
        let old = p(Link::Ethernet, XdpModeSetting::Auto, 9000, false).unwrap();
        assert_eq!((old.program, old.mode), ("sipguard", XdpModeSetting::Skb));
        assert!(old.note.unwrap().contains("skb mode"));
        let refused = p(Link::Ethernet, XdpModeSetting::Native, 9000, false).unwrap_err();
        assert!(
            refused.to_string().contains(
                "wan0: MTU 9000 is above the 3506 bytes a single-buffer XDP program takes in \
                 native mode; that needs the XDP multi-buffer (xdp.frags) (Linux 5.18+)"
            ),
            "{refused}"
        );
    }

    #[test]
    fn attach_errors_say_what_to_do() {
        let m = explain_attach_error("eth0", "native", Some(libc::EOPNOTSUPP), "x");
        assert!(
            m.starts_with("cannot attach to eth0 in native mode: ") && m.contains("xdp_mode: skb"),
            "{m}"
        );
        let m = explain_attach_error("eth0", "skb", Some(libc::EBUSY), "x");
        assert!(
            m.contains("already attached") && m.contains("ip link show eth0"),
            "{m}"
        );
        let m = explain_attach_error(
            "wan0",
            "native",
            Some(libc::EINVAL),
            "`bpf_link_create` failed: Invalid argument",
        );
        assert!(
            m.contains("MTU of wan0") && m.contains("Invalid argument"),
            "{m}"
        );
        let m = explain_attach_error("eth0", "skb", Some(libc::EPERM), "x");
        assert!(m.contains("CAP_NET_ADMIN"), "{m}");
        assert_eq!(
            explain_attach_error("eth0", "skb", None, "odd"),
            "cannot attach to eth0 in skb mode: odd"
        );
    }
}
