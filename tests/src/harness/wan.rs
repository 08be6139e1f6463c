//! The standard topology: a WAN namespace (provider, scanner and other
//! sources) joined by a veth pair to the namespace of the host sipguard
//! guards, optionally with a LAN namespace (a phone) routed behind it.
//!
//! ```text
//!   [lan: phone PHONE4] ─veth─ [pbx: ROUTER_LAN4 | PBX4 PBX6] ─veth─ [wan: PROVIDER… SCANNER… OTHER…]
//!                                         sipguard on pbx_if ▲
//! ```

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

use super::netns::{unique, veth, Netns};
use crate::addresses::*;

/// The phone's side of [`Wan::with_lan`].
pub struct Lan {
    pub phone: Netns,
    pub phone_if: String,
    /// The router's (the pbx namespace's) interface towards the phone.
    pub router_if: String,
}

pub struct Wan {
    /// Where sipguard runs: `pbx_if` is its WAN interface.
    pub pbx: Netns,
    pub wan: Netns,
    pub pbx_if: String,
    pub wan_if: String,
    pub lan: Option<Lan>,
}

impl Wan {
    pub fn new() -> Wan {
        Wan::build(None, false)
    }

    /// Both ends of the WAN link with this MTU.
    pub fn with_mtu(mtu: u32) -> Wan {
        Wan::build(Some(mtu), false)
    }

    /// With a LAN namespace behind the pbx namespace, which forwards.
    pub fn with_lan() -> Wan {
        Wan::build(None, true)
    }

    fn build(mtu: Option<u32>, lan: bool) -> Wan {
        let pbx = Netns::new("p");
        let wan = Netns::new("w");
        let pbx_if = unique("p");
        let wan_if = unique("w");
        veth(&pbx, &pbx_if, &wan, &wan_if);
        if let Some(mtu) = mtu {
            let mtu = mtu.to_string();
            pbx.exec(&["ip", "link", "set", &pbx_if, "mtu", &mtu]);
            wan.exec(&["ip", "link", "set", &wan_if, "mtu", &mtu]);
        }
        pbx.add_addr(&pbx_if, PBX4, WAN4_PREFIX);
        pbx.add_addr(&pbx_if, PBX6, WAN6_PREFIX);
        for a in WAN_SOURCES {
            let prefix = if a.is_ipv4() {
                WAN4_PREFIX
            } else {
                WAN6_PREFIX
            };
            wan.add_addr(&wan_if, a, prefix);
        }
        // Unbound WAN sockets towards the PBX leave from the scanner: some
        // scanners (svwar, svcrack 0.3.8) ignore --bindingip, and their
        // traffic must be told apart from the provider's.
        let (pbx4, pbx6) = (format!("{PBX4}/32"), format!("{PBX6}/128"));
        let (scanner4, scanner6) = (SCANNER4.to_string(), SCANNER6.to_string());
        for (fam, dst, src) in [("-4", &pbx4, &scanner4), ("-6", &pbx6, &scanner6)] {
            wan.exec(&["ip", fam, "route", "add", dst, "dev", &wan_if, "src", src]);
        }
        let lan = lan.then(|| {
            let phone = Netns::new("l");
            let (phone_if, router_if) = (unique("l"), unique("r"));
            veth(&phone, &phone_if, &pbx, &router_if);
            phone.add_addr(&phone_if, PHONE4, LAN4_PREFIX);
            phone.exec(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &ROUTER_LAN4.to_string(),
            ]);
            pbx.add_addr(&router_if, ROUTER_LAN4, LAN4_PREFIX);
            pbx.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            wan.exec(&["ip", "route", "add", LAN4_NET, "via", &PBX4.to_string()]);
            Lan {
                phone,
                phone_if,
                router_if,
            }
        });
        Wan {
            pbx,
            wan,
            pbx_if,
            wan_if,
            lan,
        }
    }

    /// A sipguard config for the pbx's WAN interface: `body` after the
    /// `interfaces:` line.
    pub fn config(&self, body: &str) -> String {
        format!("interfaces: [{}]\n{body}", self.pbx_if)
    }

    pub fn lan(&self) -> &Lan {
        self.lan.as_ref().expect("built without Wan::with_lan")
    }

    /// A UDP socket in the WAN namespace bound to `src` (any port).
    pub fn wan_socket(&self, src: impl Into<IpAddr>) -> UdpSocket {
        let src = src.into();
        self.wan
            .run(move || UdpSocket::bind((src, 0)).expect("binding a WAN socket"))
    }

    /// Sends `n` OPTIONS from `src` to the PBX's `port`, `gap` apart.
    pub fn send_options(&self, src: impl Into<IpAddr>, port: u16, n: u64, gap: Duration) {
        let s = self.wan_socket(src);
        for i in 0..n {
            s.send_to(
                format!("OPTIONS sip:probe{i}@{PBX4} SIP/2.0\r\n\r\n").as_bytes(),
                pbx_addr(port),
            )
            .expect("sending OPTIONS");
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
    }

    /// The pbx's `ip -d link show` of its WAN interface mentions XDP.
    pub fn xdp_attached(&self) -> bool {
        let out = self
            .pbx
            .exec(&["ip", "-d", "link", "show", "dev", &self.pbx_if]);
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    }
}

impl Default for Wan {
    fn default() -> Wan {
        Wan::new()
    }
}

/// The PBX's address in the family of `like`.
pub fn pbx_for(like: IpAddr) -> IpAddr {
    if like.is_ipv4() {
        PBX4.into()
    } else {
        PBX6.into()
    }
}

/// The PBX's IPv4 `port`.
pub fn pbx_addr(port: u16) -> SocketAddr {
    SocketAddr::new(PBX4.into(), port)
}
