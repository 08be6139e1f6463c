//! Building Ethernet frames for fixtures: VLAN tags, IPv4 options and
//! fragments, IPv6 extension headers, UDP/TCP. Checksums are left zero: XDP
//! runs before the stack verifies them and sipguard does not read them.

pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

#[derive(Clone, Debug)]
pub enum L4 {
    Udp {
        sport: u16,
        dport: u16,
    },
    Tcp {
        sport: u16,
        dport: u16,
    },
    /// Any other IP protocol, payload only.
    Other(u8),
}

#[derive(Clone, Debug)]
pub enum L3 {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        options: Vec<u8>,
        frag: u16,
        id: u16,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        ext: Vec<(u8, Vec<u8>)>,
    },
}

/// A frame under construction.
#[derive(Clone, Debug)]
pub struct Frame {
    pub vlans: Vec<u16>,
    /// PPPoE session header with this PPP protocol field (1 or 2 bytes)
    /// between the VLAN tags and the IP header.
    pub pppoe: Option<Vec<u8>>,
    pub l3: L3,
    pub l4: L4,
    pub payload: Vec<u8>,
}

pub fn v4(src: [u8; 4], dst: [u8; 4]) -> Frame {
    Frame {
        vlans: vec![],
        pppoe: None,
        l3: L3::V4 {
            src,
            dst,
            options: vec![],
            frag: 0,
            id: 0x1234,
        },
        l4: L4::Udp {
            sport: 5060,
            dport: 5060,
        },
        payload: vec![],
    }
}

pub fn v6(src: [u8; 16], dst: [u8; 16]) -> Frame {
    Frame {
        vlans: vec![],
        pppoe: None,
        l3: L3::V6 {
            src,
            dst,
            ext: vec![],
        },
        l4: L4::Udp {
            sport: 5060,
            dport: 5060,
        },
        payload: vec![],
    }
}

pub fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .expect("test IPv6 literal")
        .octets()
}

impl Frame {
    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Udp { sport, dport };
        self
    }
    pub fn tcp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Tcp { sport, dport };
        self
    }
    pub fn proto(mut self, p: u8) -> Self {
        self.l4 = L4::Other(p);
        self
    }
    pub fn payload(mut self, p: impl AsRef<[u8]>) -> Self {
        self.payload = p.as_ref().to_vec();
        self
    }
    /// Adds a VLAN tag with this TPID (0x8100 or 0x88a8), outermost first.
    pub fn vlan(mut self, tpid: u16) -> Self {
        self.vlans.push(tpid);
        self
    }
    /// Wraps the IP packet in a PPPoE session frame (ethertype 0x8864) with
    /// the PPP protocol field for its IP version.
    pub fn pppoe(self) -> Self {
        let proto = match self.l3 {
            L3::V4 { .. } => vec![0x00, 0x21],
            L3::V6 { .. } => vec![0x00, 0x57],
        };
        self.pppoe_proto(proto)
    }
    /// A PPPoE session frame with an explicit PPP protocol field.
    pub fn pppoe_proto(mut self, proto: Vec<u8>) -> Self {
        self.pppoe = Some(proto);
        self
    }
    /// IPv4 options (padded to a multiple of 4 with NOPs).
    pub fn ip_options(mut self, n: usize) -> Self {
        if let L3::V4 { options, .. } = &mut self.l3 {
            *options = vec![1u8; n.div_ceil(4) * 4];
        }
        self
    }
    /// IPv4 flags+fragment offset field.
    pub fn frag(mut self, v: u16) -> Self {
        if let L3::V4 { frag, .. } = &mut self.l3 {
            *frag = v;
        }
        self
    }
    /// IPv4 identification field.
    pub fn ip_id(mut self, v: u16) -> Self {
        if let L3::V4 { id, .. } = &mut self.l3 {
            *id = v;
        }
        self
    }
    /// Appends an IPv6 extension header of `kind` with `body_len` bytes of
    /// body after the 2-byte (next, len) prefix, sized to a valid length.
    pub fn ext(mut self, kind: u8, body: Vec<u8>) -> Self {
        if let L3::V6 { ext, .. } = &mut self.l3 {
            ext.push((kind, body));
        }
        self
    }

    fn l4_proto(&self) -> u8 {
        match self.l4 {
            L4::Udp { .. } => 17,
            L4::Tcp { .. } => 6,
            L4::Other(p) => p,
        }
    }

    fn l4_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self.l4 {
            L4::Udp { sport, dport } => {
                b.extend(sport.to_be_bytes());
                b.extend(dport.to_be_bytes());
                b.extend(((8 + self.payload.len()) as u16).to_be_bytes());
                b.extend([0, 0]);
            }
            L4::Tcp { sport, dport } => {
                b.extend(sport.to_be_bytes());
                b.extend(dport.to_be_bytes());
                b.extend([0, 0, 0, 1, 0, 0, 0, 0]);
                b.extend([0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            }
            L4::Other(_) => {}
        }
        b.extend(&self.payload);
        b
    }

    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend(MAC_DST);
        f.extend(MAC_SRC);
        for tpid in &self.vlans {
            f.extend(tpid.to_be_bytes());
            f.extend(100u16.to_be_bytes());
        }
        let ip = self.ip_packet(false);
        match &self.pppoe {
            Some(proto) => {
                f.extend(0x8864u16.to_be_bytes());
                f.extend([0x11, 0x00, 0x00, 0x2a]);
                f.extend(((proto.len() + ip.len()) as u16).to_be_bytes());
                f.extend(proto);
            }
            None => f.extend(
                match self.l3 {
                    L3::V4 { .. } => 0x0800u16,
                    L3::V6 { .. } => 0x86DD,
                }
                .to_be_bytes(),
            ),
        }
        f.extend(ip);
        f
    }

    /// The IP packet alone, as a device without a link header (tun, ppp)
    /// carries it. The IPv4 header checksum is filled in so the kernel's
    /// stack accepts it when injected.
    pub fn build_ip(&self) -> Vec<u8> {
        self.ip_packet(true)
    }

    /// Frames keep a zero checksum (XDP does not read it, and the fuzz
    /// seed corpus is generated from them).
    fn ip_packet(&self, ip_checksum: bool) -> Vec<u8> {
        let mut f = Vec::new();
        let l4 = self.l4_bytes();
        match &self.l3 {
            L3::V4 {
                src,
                dst,
                options,
                frag,
                id,
            } => {
                let ihl = 20 + options.len();
                f.push(0x40 | (ihl / 4) as u8);
                f.push(0);
                f.extend(((ihl + l4.len()) as u16).to_be_bytes());
                f.extend(id.to_be_bytes());
                f.extend(frag.to_be_bytes());
                f.push(64);
                f.push(self.l4_proto());
                f.extend([0, 0]);
                f.extend(src);
                f.extend(dst);
                f.extend(options);
                if ip_checksum {
                    let sum = checksum(&f[..ihl]);
                    f[10..12].copy_from_slice(&sum.to_be_bytes());
                }
            }
            L3::V6 { src, dst, ext } => {
                let mut exts = Vec::new();
                for (i, (_, body)) in ext.iter().enumerate() {
                    let next = ext.get(i + 1).map(|e| e.0).unwrap_or(self.l4_proto());
                    let kind = ext[i].0;
                    let mut h = vec![next, 0];
                    h.extend(body);
                    if kind == 44 {
                        h.truncate(8);
                        h.resize(8, 0);
                    } else if kind == 51 {
                        h.resize(h.len().max(12).div_ceil(4) * 4, 0);
                        h[1] = (h.len() / 4 - 2) as u8;
                    } else {
                        h.resize(h.len().max(8).div_ceil(8) * 8, 0);
                        h[1] = (h.len() / 8 - 1) as u8;
                    }
                    exts.extend(h);
                }
                f.extend([0x60, 0, 0, 0]);
                f.extend(((exts.len() + l4.len()) as u16).to_be_bytes());
                f.push(ext.first().map(|e| e.0).unwrap_or(self.l4_proto()));
                f.push(64);
                f.extend(src);
                f.extend(dst);
                f.extend(exts);
            }
        }
        f.extend(l4);
        f
    }
}

/// The Internet checksum (RFC 1071).
pub fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A raw Ethernet frame with the given ethertype and body.
pub fn raw(ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(MAC_DST);
    f.extend(MAC_SRC);
    f.extend(ethertype.to_be_bytes());
    f.extend(body);
    f
}
