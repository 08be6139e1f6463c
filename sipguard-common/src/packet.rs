//! Ethernet / VLAN / IPv4 / IPv6 / UDP / TCP parsing, generic over how bytes
//! are read. Every read is bounds-checked by the [`Bytes`] implementation; a
//! frame that cannot be parsed yields a [`Stop`] that the verdict logic maps
//! to a defined reason.

/// Read access to a frame. The XDP side implements it over packet memory
/// (with the verifier-visible bounds check), the host over a slice.
pub trait Bytes {
    /// Number of bytes in the frame.
    fn len(&self) -> usize;

    /// `N` bytes at `off`, or `None` when the frame is shorter.
    fn read<const N: usize>(&self, off: usize) -> Option<[u8; N]>;

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        self.read::<1>(off).map(|b| b[0])
    }
    #[inline(always)]
    fn be16(&self, off: usize) -> Option<u16> {
        self.read::<2>(off).map(u16::from_be_bytes)
    }
    /// 8 bytes at `off` as a little-endian word (byte `off` in the low
    /// bits), for scanning several bytes at once. The XDP side overrides it
    /// with one 8-byte load where the kernel allows unaligned packet loads.
    #[inline(always)]
    fn u64_le(&self, off: usize) -> Option<u64> {
        self.read::<8>(off).map(u64::from_le_bytes)
    }
    /// The two words [`Bytes::u64_le`] gives at `off` and `off + 8`, with
    /// one bounds check where the implementation can.
    #[inline(always)]
    fn u64x2_le(&self, off: usize) -> Option<(u64, u64)> {
        Some((self.u64_le(off)?, self.u64_le(off + 8)?))
    }
}

impl Bytes for [u8] {
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    #[inline(always)]
    fn read<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let end = off.checked_add(N)?;
        let s = self.get(off..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }
}

/// The same bytes without word reads ([`Bytes::u64_le`] always `None`), so
/// every scanner path falls back to its byte-at-a-time loop. The unit
/// tests and the SIP fuzz target compare both scans of one message.
#[cfg(any(test, feature = "std"))]
pub struct NoWords<'a>(pub &'a [u8]);

#[cfg(any(test, feature = "std"))]
impl Bytes for NoWords<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn read<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.0.read::<N>(off)
    }
    fn u64_le(&self, _off: usize) -> Option<u64> {
        None
    }
}

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
/// PPPoE discovery (PADI/PADO/...): never IP.
pub const ETH_P_PPPOE_DISC: u16 = 0x8863;
/// PPPoE session: a 6-byte PPPoE header, then a PPP protocol field.
pub const ETH_P_PPPOE_SESS: u16 = 0x8864;
pub const PPPOE_HLEN: usize = 6;
pub const PPP_IPV4: u16 = 0x0021;
pub const PPP_IPV6: u16 = 0x0057;
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// VLAN tags accepted in front of the IP header (802.1Q and 802.1ad/QinQ).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers skipped before giving up (hop-by-hop, routing,
/// destination options, fragment, AH).
pub const MAX_IPV6_EXT: usize = 6;

/// Why parsing stopped before reaching a UDP/TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Ethertype is not IPv4/IPv6.
    NotIp,
    /// IP protocol is neither UDP nor TCP.
    NotUdpTcp,
    /// A non-first IP fragment: there is no L4 header in it. Carries the
    /// datagram it belongs to, so the kernel can match it with its first
    /// fragment.
    LaterFragment(FragKey),
    /// The frame ends inside a header, a header field is impossible, or a
    /// header chain is deeper than the bound: the ports are unknown.
    Unparsed,
}

use crate::abi::{v4_in_16, FragKey};

/// What the verdict logic needs to know about a UDP/TCP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub ipv6: bool,
    /// Source address; IPv4 uses the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// Offset of the L4 payload from the start of the frame.
    pub payload_off: u32,
    /// Length of the L4 payload as the headers say (UDP length, bounded by
    /// the IP payload); bytes past the end of the frame read as absent.
    pub payload_len: u32,
    /// Header fields lie (UDP length larger than the IP payload or smaller
    /// than 8, IP total length larger than the frame). The ports were still
    /// readable, so the packet is judged as SIP-port traffic.
    pub malformed: bool,
    /// First fragment of a fragmented datagram (more fragments follow).
    pub first_fragment: bool,
    /// IP identification (IPv4) or fragment header id (IPv6); 0 when the
    /// packet is not fragmented.
    pub frag_id: u32,
}

impl Flow {
    /// A UDP flow to port 5060 whose payload is a whole buffer starting at
    /// offset 0: how tests and fuzzers feed bare SIP messages to the
    /// inspector.
    pub fn bare_udp_payload(src_v4: [u8; 4], len: usize) -> Flow {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&src_v4);
        Flow {
            ipv6: false,
            src,
            dst: [0; 16],
            proto: IPPROTO_UDP,
            sport: 5060,
            dport: 5060,
            payload_off: 0,
            payload_len: len as u32,
            malformed: false,
            first_fragment: false,
            frag_id: 0,
        }
    }

    #[inline(always)]
    pub fn src_v4(&self) -> [u8; 4] {
        [self.src[0], self.src[1], self.src[2], self.src[3]]
    }
}

/// Where a packet starts: what the interface puts in front of the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// An Ethernet header (optionally VLAN tags and PPPoE).
    Ethernet,
    /// No link-layer header: the packet starts with the IP header (tun in
    /// `tun` mode, ppp, wireguard, ... under generic XDP).
    RawIp,
}

/// Parses a packet that starts with the link header `link` says.
#[inline(always)]
pub fn parse_link<B: Bytes + ?Sized>(pkt: &B, link: Link) -> Result<Flow, Stop> {
    match link {
        Link::Ethernet => parse(pkt),
        Link::RawIp => parse_raw_ip(pkt),
    }
}

/// Parses a packet that starts with the IPv4 or IPv6 header; the version
/// nibble says which (there is no ethertype).
#[inline(always)]
pub fn parse_raw_ip<B: Bytes + ?Sized>(pkt: &B) -> Result<Flow, Stop> {
    // Two bytes, not one: a 1-byte read at offset 0 compiles to a
    // `data >= data_end` test the verifier does not turn into a range.
    let b: [u8; 2] = pkt.read(0).ok_or(Stop::Unparsed)?;
    match b[0] >> 4 {
        4 => parse_ipv4(pkt, 0),
        6 => parse_ipv6(pkt, 0),
        _ => Err(Stop::NotIp),
    }
}

/// Parses a frame starting at its Ethernet header.
#[inline(always)]
pub fn parse<B: Bytes + ?Sized>(pkt: &B) -> Result<Flow, Stop> {
    let mut ethertype = pkt.be16(12).ok_or(Stop::Unparsed)?;
    let mut off = ETH_HLEN;
    let mut tags = 0;
    while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        if tags == MAX_VLAN_TAGS {
            return Err(Stop::Unparsed);
        }
        ethertype = pkt.be16(off + 2).ok_or(Stop::Unparsed)?;
        off += 4;
        tags += 1;
    }
    if ethertype == ETH_P_PPPOE_SESS {
        return parse_pppoe(pkt, off);
    }
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(pkt, off),
        ETH_P_IPV6 => parse_ipv6(pkt, off),
        _ => Err(Stop::NotIp),
    }
}

/// Protocol and destination port of the most common frame (untagged
/// Ethernet, IPv4, not a later fragment, UDP or TCP), with one bounds check
/// for the headers instead of the full parse: lets the verdict settle
/// non-SIP traffic first. `Some((proto, dport))` only when [`parse`] would
/// return `Ok(flow)` with the same `proto` and `dport`; `None` means "ask
/// [`parse`]". The third value is where [`parse`] puts `payload_off`.
#[inline(always)]
pub fn quick_l4<B: Bytes + ?Sized>(pkt: &B) -> Option<(u8, u16, usize)> {
    // Ethertype and the fixed IPv4 header.
    let h: [u8; 22] = pkt.read(12)?;
    if h[0] != 0x08 || h[1] != 0x00 || h[2] >> 4 != 4 {
        return None;
    }
    let ihl = ((h[2] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([h[4], h[5]]) as usize;
    if ihl < 20 || total < ihl || u16::from_be_bytes([h[8], h[9]]) & 0x1fff != 0 {
        return None;
    }
    let proto = h[11];
    let need = match proto {
        IPPROTO_UDP => 8,
        IPPROTO_TCP => 20,
        _ => return None,
    };
    let l4 = ETH_HLEN + ihl;
    // parse() needs the whole UDP/TCP header.
    pkt.read::<1>(l4 + need - 1)?;
    Some((proto, pkt.be16(l4 + 2)?, l4 + need))
}

/// [`parse`] for a frame [`quick_l4`] answered for: it is untagged IPv4,
/// so the Ethernet and VLAN steps are skipped. Same result as [`parse`].
#[inline(always)]
pub fn parse_after_quick<B: Bytes + ?Sized>(pkt: &B) -> Result<Flow, Stop> {
    parse_ipv4(pkt, ETH_HLEN)
}

/// A PPPoE session frame at `off`. The version/type/code and length fields
/// are not checked: the IP header's own lengths are what the stack uses.
/// The PPP protocol field may be compressed to one byte (PFC: an odd first
/// byte), as the kernel's PPP layer accepts.
#[inline(always)]
fn parse_pppoe<B: Bytes + ?Sized>(pkt: &B, off: usize) -> Result<Flow, Stop> {
    let first = pkt.u8_at(off + PPPOE_HLEN).ok_or(Stop::Unparsed)?;
    let (proto, ip) = if first & 1 != 0 {
        (first as u16, off + PPPOE_HLEN + 1)
    } else {
        (
            pkt.be16(off + PPPOE_HLEN).ok_or(Stop::Unparsed)?,
            off + PPPOE_HLEN + 2,
        )
    };
    match proto {
        PPP_IPV4 => parse_ipv4(pkt, ip),
        PPP_IPV6 => parse_ipv6(pkt, ip),
        // LCP, IPCP, IPV6CP, PAP, CHAP, ...: PPP control traffic.
        _ => Err(Stop::NotIp),
    }
}

#[inline(always)]
fn parse_ipv4<B: Bytes + ?Sized>(pkt: &B, off: usize) -> Result<Flow, Stop> {
    let h: [u8; 20] = pkt.read(off).ok_or(Stop::Unparsed)?;
    if h[0] >> 4 != 4 {
        return Err(Stop::Unparsed);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if ihl < 20 || total < ihl {
        return Err(Stop::Unparsed);
    }
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let first_fragment = frag & 0x2000 != 0;
    let frag_id = u16::from_be_bytes([h[4], h[5]]) as u32;
    if frag & 0x1fff != 0 {
        return Err(Stop::LaterFragment(FragKey {
            src: v4_in_16([h[12], h[13], h[14], h[15]]),
            dst: v4_in_16([h[16], h[17], h[18], h[19]]),
            id: frag_id,
            family: 4,
        }));
    }
    let proto = h[9];
    if proto != IPPROTO_UDP && proto != IPPROTO_TCP {
        return Err(Stop::NotUdpTcp);
    }
    let src = v4_in_16([h[12], h[13], h[14], h[15]]);
    let dst = v4_in_16([h[16], h[17], h[18], h[19]]);
    let l4 = off + ihl;
    // The IP header claims more bytes than arrived: a lying total length.
    // Compared with the frame length rather than probed with a read: the
    // kernel's reads stop at 16 KiB, so a probe would call a big frame
    // truncated on the kernel side only.
    let truncated = off + total > pkt.len();
    parse_l4(
        pkt,
        false,
        src,
        dst,
        proto,
        l4,
        total - ihl,
        first_fragment,
        frag_id,
        truncated,
    )
}

#[inline(always)]
fn parse_ipv6<B: Bytes + ?Sized>(pkt: &B, off: usize) -> Result<Flow, Stop> {
    let h: [u8; 40] = pkt.read(off).ok_or(Stop::Unparsed)?;
    if h[0] >> 4 != 6 {
        return Err(Stop::Unparsed);
    }
    let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
    let mut next = h[6];
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    let start = off + 40;
    let mut l4 = start;
    let mut first_fragment = false;
    let mut frag_id = 0u32;
    let mut i = 0;
    while i < MAX_IPV6_EXT {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let e: [u8; 2] = pkt.read(l4).ok_or(Stop::Unparsed)?;
                next = e[0];
                l4 += (e[1] as usize + 1) * 8;
            }
            IPPROTO_AH => {
                let e: [u8; 2] = pkt.read(l4).ok_or(Stop::Unparsed)?;
                next = e[0];
                l4 += (e[1] as usize + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                let e: [u8; 8] = pkt.read(l4).ok_or(Stop::Unparsed)?;
                let fo = u16::from_be_bytes([e[2], e[3]]);
                frag_id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                if fo & 0xfff8 != 0 {
                    return Err(Stop::LaterFragment(FragKey {
                        src,
                        dst,
                        id: frag_id,
                        family: 6,
                    }));
                }
                first_fragment = fo & 1 != 0;
                next = e[0];
                l4 += 8;
            }
            _ => break,
        }
        i += 1;
    }
    if next != IPPROTO_UDP && next != IPPROTO_TCP {
        return Err(match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
                Stop::Unparsed
            }
            _ => Stop::NotUdpTcp,
        });
    }
    let ext = l4 - start;
    if ext > payload {
        return Err(Stop::Unparsed);
    }
    let truncated = start + payload > pkt.len();
    parse_l4(
        pkt,
        true,
        src,
        dst,
        next,
        l4,
        payload - ext,
        first_fragment,
        frag_id,
        truncated,
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn parse_l4<B: Bytes + ?Sized>(
    pkt: &B,
    ipv6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    l4: usize,
    // Bytes of IP payload after the extension headers, as the IP header says.
    claimed: usize,
    first_fragment: bool,
    // Kept only for a first fragment.
    frag_id: u32,
    ip_truncated: bool,
) -> Result<Flow, Stop> {
    // The flow is built here, in the caller's return slot: moving it out
    // and back (setting a field after this returns) compiles to a memmove
    // call, which costs kernels before 6.3 the precision of every register
    // along each parser path.
    let mut flow = Flow {
        ipv6,
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        payload_off: 0,
        payload_len: 0,
        malformed: ip_truncated,
        first_fragment,
        frag_id: if first_fragment { frag_id } else { 0 },
    };
    if proto == IPPROTO_UDP {
        let u: [u8; 8] = pkt.read(l4).ok_or(Stop::Unparsed)?;
        flow.sport = u16::from_be_bytes([u[0], u[1]]);
        flow.dport = u16::from_be_bytes([u[2], u[3]]);
        let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
        // A first fragment carries less than the UDP length: not a lie.
        if ulen < 8 || claimed < 8 || (!first_fragment && ulen > claimed) {
            flow.malformed = true;
        }
        let want = ulen.saturating_sub(8);
        let have = claimed.saturating_sub(8);
        flow.payload_off = (l4 + 8) as u32;
        // Reads past the end of the frame fail anyway; this is what the
        // headers promise, bounded by the IP payload.
        flow.payload_len = if want < have { want } else { have } as u32;
    } else {
        let t: [u8; 20] = pkt.read(l4).ok_or(Stop::Unparsed)?;
        flow.sport = u16::from_be_bytes([t[0], t[1]]);
        flow.dport = u16::from_be_bytes([t[2], t[3]]);
        let doff = ((t[12] >> 4) as usize) * 4;
        if doff < 20 || doff > claimed {
            flow.malformed = true;
        }
        flow.payload_off = (l4 + doff) as u32;
        flow.payload_len = claimed.saturating_sub(doff) as u32;
    }
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend(ethertype.to_be_bytes());
        f
    }

    fn ipv4_udp(payload: &[u8], dport: u16) -> Vec<u8> {
        let mut f = eth(ETH_P_IPV4);
        let total = (20 + 8 + payload.len()) as u16;
        f.extend([0x45, 0]);
        f.extend(total.to_be_bytes());
        f.extend([
            0,
            1,
            0,
            0,
            64,
            IPPROTO_UDP,
            0,
            0,
            192,
            0,
            2,
            1,
            198,
            51,
            100,
            2,
        ]);
        f.extend(40000u16.to_be_bytes());
        f.extend(dport.to_be_bytes());
        f.extend(((8 + payload.len()) as u16).to_be_bytes());
        f.extend([0, 0]);
        f.extend(payload);
        f
    }

    #[test]
    fn ipv4_udp_flow() {
        let f = ipv4_udp(b"OPTIONS sip:x SIP/2.0\r\n\r\n", 5060);
        let flow = parse(&f[..]).unwrap();
        assert!(!flow.ipv6);
        assert_eq!(flow.src_v4(), [192, 0, 2, 1]);
        assert_eq!(
            (flow.sport, flow.dport, flow.proto),
            (40000, 5060, IPPROTO_UDP)
        );
        assert_eq!(flow.payload_off, 42);
        assert_eq!(flow.payload_len, 25);
        assert!(!flow.malformed);
    }

    #[test]
    fn vlan_tags_are_skipped_up_to_two() {
        let inner = ipv4_udp(b"x", 5060);
        let tagged = |tags: &[u16]| {
            let mut f = inner[..12].to_vec();
            for t in tags {
                f.extend(t.to_be_bytes());
                f.extend([0, 7]);
            }
            f.extend(&inner[12..]);
            f
        };
        assert_eq!(parse(&tagged(&[ETH_P_8021Q])[..]).unwrap().payload_off, 46);
        assert_eq!(
            parse(&tagged(&[ETH_P_8021AD, ETH_P_8021Q])[..])
                .unwrap()
                .payload_off,
            50
        );
        assert_eq!(
            parse(&tagged(&[ETH_P_8021AD, ETH_P_8021Q, ETH_P_8021Q])[..]),
            Err(Stop::Unparsed)
        );
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        let mut f = eth(ETH_P_IPV6);
        let mut body = vec![IPPROTO_DSTOPTS, 0, 0, 0, 0, 0, 0, 0]; // hop-by-hop
        body.extend([IPPROTO_UDP, 1]); // dest options, 16 bytes
        body.extend([0u8; 14]);
        body.extend([0x13, 0xc4, 0x13, 0xc4, 0, 9, 0, 0, b'x']);
        f.extend([0x60, 0, 0, 0]);
        f.extend((body.len() as u16).to_be_bytes());
        f.extend([IPPROTO_HOPOPTS, 64]);
        f.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain([0u8; 12].iter()));
        f.extend([0u8; 16]);
        f.extend(body);
        let flow = parse(&f[..]).unwrap();
        assert!(flow.ipv6);
        assert_eq!(flow.dport, 5060);
        assert_eq!(flow.payload_off as usize, 14 + 40 + 8 + 16 + 8);
        assert_eq!(flow.payload_len, 1);
        assert_eq!(&flow.src[..4], &[0x20, 0x01, 0x0d, 0xb8]);
    }

    fn pppoe(inner: &[u8], proto: &[u8]) -> Vec<u8> {
        let mut f = inner[..12].to_vec();
        f.extend(ETH_P_PPPOE_SESS.to_be_bytes());
        f.extend([0x11, 0x00, 0x12, 0x34]);
        f.extend(((inner.len() - 14 + proto.len()) as u16).to_be_bytes());
        f.extend(proto);
        f.extend(&inner[14..]);
        f
    }

    #[test]
    fn pppoe_sessions_carry_ip() {
        let inner = ipv4_udp(b"x", 5060);
        let f = pppoe(&inner, &[0x00, 0x21]);
        assert_eq!(parse(&f[..]).unwrap().payload_off, 42 + 8);
        let pfc = pppoe(&inner, &[0x21]);
        assert_eq!(parse(&pfc[..]).unwrap().payload_off, 42 + 7);
        assert_eq!(
            parse(&pppoe(&inner, &[0xc0, 0x21])[..]),
            Err(Stop::NotIp),
            "LCP"
        );
        assert_eq!(
            parse(&pppoe(&inner, &[0x80, 0x21])[..]),
            Err(Stop::NotIp),
            "IPCP"
        );
        for n in 14..22 {
            assert_eq!(parse(&f[..n]), Err(Stop::Unparsed), "{n} bytes");
        }
        let mut disc = f.clone();
        disc[12..14].copy_from_slice(&ETH_P_PPPOE_DISC.to_be_bytes());
        assert_eq!(parse(&disc[..]), Err(Stop::NotIp));
    }

    #[test]
    fn raw_ip_has_no_link_header() {
        let f = ipv4_udp(b"x", 5060);
        let flow = parse_link(&f[14..], Link::RawIp).unwrap();
        assert_eq!((flow.dport, flow.payload_off), (5060, 28));
        assert_eq!(parse_raw_ip(&[0x00u8, 1, 2][..]), Err(Stop::NotIp));
        assert_eq!(parse_raw_ip(&[][..] as &[u8]), Err(Stop::Unparsed));
    }

    #[test]
    fn fragments_and_other_protocols() {
        let mut f = ipv4_udp(b"x", 5060);
        f[20] = 0x00;
        f[21] = 0x10; // offset 16 * 8
        match parse(&f[..]) {
            Err(Stop::LaterFragment(k)) => {
                assert_eq!(k.family, 4);
                assert_eq!(k.id, u16::from_be_bytes([f[18], f[19]]) as u32);
                assert_eq!(k.src[..4], f[26..30]);
                assert_eq!(k.dst[..4], f[30..34]);
            }
            other => panic!("{other:?}"),
        }
        let mut f = ipv4_udp(b"x", 5060);
        f[23] = 1; // ICMP
        assert_eq!(parse(&f[..]), Err(Stop::NotUdpTcp));
        assert_eq!(parse(&eth(0x0806)[..]), Err(Stop::NotIp));
    }

    /// quick_l4 may only answer when parse() agrees: every prefix of a set
    /// of frames, each with every header byte set to a few values.
    #[test]
    fn quick_l4_agrees_with_parse() {
        let mut tcp = ipv4_udp(&[0u8; 24], 80);
        tcp[23] = IPPROTO_TCP;
        let mut frames = vec![
            ipv4_udp(b"INVITE sip:x SIP/2.0\r\n", 5060),
            ipv4_udp(b"", 53),
            tcp,
        ];
        let mut opts = ipv4_udp(b"xyz", 5060);
        opts[14] = 0x46;
        opts.splice(34..34, [1u8, 1, 1, 1]);
        frames.push(opts);
        let mut answered = 0;
        for base in &frames {
            for pos in 0..base.len().min(64) {
                for v in [
                    0u8, 1, 0x06, 0x08, 0x11, 0x20, 0x40, 0x45, 0x4f, 0x86, 0xdd, 0xff,
                ] {
                    let mut f = base.clone();
                    f[pos] = v;
                    for n in [f.len(), 33, 34, 41, 42, 45, 53] {
                        let g = &f[..n.min(f.len())];
                        if let Some((proto, dport, payload_off)) = quick_l4(g) {
                            answered += 1;
                            let flow = parse(g).unwrap_or_else(|e| {
                                panic!("quick_l4 answered, parse said {e:?}: {g:02x?}")
                            });
                            assert_eq!((flow.proto, flow.dport), (proto, dport), "{g:02x?}");
                            if proto == IPPROTO_UDP {
                                assert_eq!(flow.payload_off as usize, payload_off, "{g:02x?}");
                            }
                            assert_eq!(parse_after_quick(g), Ok(flow), "{g:02x?}");
                        }
                    }
                }
            }
        }
        assert!(answered > 1000, "quick_l4 answered only {answered} times");
    }

    #[test]
    fn lies_and_truncation() {
        let full = ipv4_udp(b"INVITE", 5060);
        for n in 0..42 {
            assert_eq!(parse(&full[..n]), Err(Stop::Unparsed), "{n} bytes");
        }
        for n in 42..full.len() {
            assert!(parse(&full[..n]).unwrap().malformed, "{n} bytes");
        }
        let mut lying = full.clone();
        lying[38] = 0x10; // UDP length 4096 > IP payload
        assert!(parse(&lying[..]).unwrap().malformed);
        let mut padded = full.clone();
        padded.extend([0u8; 18]);
        assert!(!parse(&padded[..]).unwrap().malformed);
    }
}
