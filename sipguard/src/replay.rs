//! `sipguard replay`: every packet of a pcap or pcapng capture through the
//! real XDP program (BPF_PROG_TEST_RUN in a private [`Sandbox`], maps filled
//! from the config), so a policy can be tried on real traffic before it
//! goes on the WAN. Pinned maps of a running daemon are never touched.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::File,
    io::{BufReader, Read},
    net::IpAddr,
    path::Path,
};

use anyhow::{Context as _, Result};
use pcap_file::{
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
    DataLink,
};
use sipguard_common::{packet, Reason};

use crate::{
    kernel::testrun::{Sandbox, XDP_DROP},
    policy::{evaluate::ip_from, Policy},
};

/// The bytes of a frame BPF_PROG_TEST_RUN shows a program without
/// multi-buffer support (kernel 6.18: PAGE_SIZE - headroom -
/// skb_shared_info). Larger frames (jumbo frames, GRO/TSO super-packets in
/// captures) would look truncated there although a link delivers them whole,
/// so replay reports them as skipped rather than with a wrong verdict.
pub const MAX_TEST_FRAME: usize = 3520;

/// pcapng files start with a Section Header Block of this type.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Link types turned into Ethernet frames (what XDP sees on a WAN port).
fn to_ethernet(link: DataLink, data: &[u8]) -> Result<Vec<u8>, String> {
    let eth = |proto: [u8; 2], l3: &[u8]| {
        // Addresses are not judged; zero MACs keep the frame well formed.
        let mut f = vec![0u8; 12];
        f.extend(proto);
        f.extend(l3);
        f
    };
    let raw_ip = |l3: &[u8]| match l3.first().map(|b| b >> 4) {
        Some(4) => Ok(eth([0x08, 0x00], l3)),
        Some(6) => Ok(eth([0x86, 0xdd], l3)),
        _ => Err("raw IP packet with an unknown IP version".to_string()),
    };
    match link {
        DataLink::ETHERNET => Ok(data.to_vec()),
        // Linux cooked v1: 16-byte header, protocol in its last two bytes.
        DataLink::LINUX_SLL => match data.get(14..16) {
            Some(p) => Ok(eth([p[0], p[1]], &data[16..])),
            None => Err("Linux cooked (SLL) packet shorter than its header".into()),
        },
        // Linux cooked v2: 20-byte header, protocol in its first two bytes.
        DataLink::LINUX_SLL2 => match (data.get(0..2), data.get(20..)) {
            (Some(p), Some(rest)) => Ok(eth([p[0], p[1]], rest)),
            _ => Err("Linux cooked (SLL2) packet shorter than its header".into()),
        },
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => raw_ip(data),
        other => Err(format!(
            "link type {other:?} is not supported (Ethernet, Linux cooked SLL/SLL2 and raw IP are)"
        )),
    }
}

/// One packet of a capture as an Ethernet frame, or why it cannot be one.
pub type CapturedFrame = Result<Vec<u8>, String>;

/// Reads every packet of a pcap or pcapng file, in file order.
pub fn read_capture(path: &Path) -> Result<Vec<CapturedFrame>> {
    let mut file = BufReader::new(
        File::open(path).with_context(|| format!("cannot open capture {}", path.display()))?,
    );
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .with_context(|| format!("{}: too short to be a pcap or pcapng file", path.display()))?;
    let file = BufReader::new(File::open(path)?);
    let what = || format!("reading capture {}", path.display());
    let mut out = Vec::new();
    if magic == PCAPNG_MAGIC {
        let mut r = PcapNgReader::new(file).with_context(what)?;
        let mut links: Vec<DataLink> = Vec::new();
        while let Some(block) = r.next_block() {
            let block = block.with_context(what)?;
            let (iface, data) = match block {
                Block::SectionHeader(_) => {
                    links.clear();
                    continue;
                }
                Block::InterfaceDescription(idb) => {
                    links.push(idb.linktype);
                    continue;
                }
                Block::EnhancedPacket(epb) => (epb.interface_id as usize, epb.data),
                Block::SimplePacket(spb) => (0, spb.data),
                Block::Packet(pb) => (pb.interface_id as usize, pb.data),
                _ => continue,
            };
            let frame = match links.get(iface) {
                Some(link) => to_ethernet(*link, &data),
                None => Err(format!("packet refers to undeclared interface {iface}")),
            };
            out.push(frame);
        }
    } else {
        let mut r = PcapReader::new(file)
            .with_context(|| format!("{}: not a pcap or pcapng file", path.display()))?;
        let link = r.header().datalink;
        while let Some(pkt) = r.next_packet() {
            let pkt = pkt.with_context(what)?;
            out.push(to_ethernet(link, &pkt.data));
        }
    }
    Ok(out)
}

/// The verdict for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub index: usize,
    /// `pass`, `drop`, or `skipped` when the packet could not be run.
    pub verdict: &'static str,
    /// A reason name (`Reason::name`), or why the packet was skipped.
    pub reason: String,
    /// Monitor mode turned a drop into a pass.
    pub would_drop: bool,
    pub len: usize,
    /// "src:port -> dst:port proto" when the headers parse.
    pub flow: String,
}

impl Verdict {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "index": self.index,
            "verdict": self.verdict,
            "reason": self.reason,
            "would_drop": self.would_drop,
            "len": self.len,
            "flow": self.flow,
        })
        .to_string()
    }
}

fn describe_flow(frame: &[u8]) -> String {
    let Ok(f) = packet::parse(frame) else {
        return String::new();
    };
    let addr = |a: [u8; 16]| ip_from(f.ipv6, a);
    let proto = if f.proto == packet::IPPROTO_UDP {
        "udp"
    } else {
        "tcp"
    };
    match (addr(f.src), addr(f.dst)) {
        (s @ IpAddr::V6(_), d) => format!("[{s}]:{} -> [{d}]:{} {proto}", f.sport, f.dport),
        (s, d) => format!("{s}:{} -> {d}:{} {proto}", f.sport, f.dport),
    }
}

/// Runs every frame through a private instance of the program.
pub fn replay(policy: &Policy, frames: &[CapturedFrame]) -> Result<Vec<Verdict>> {
    let mut sb = Sandbox::new(policy)?;
    let mut out = Vec::with_capacity(frames.len());
    for (index, frame) in frames.iter().enumerate() {
        let (frame, len) = match frame {
            Ok(f) => (f, f.len()),
            Err(why) => {
                out.push(Verdict {
                    index,
                    verdict: "skipped",
                    reason: why.clone(),
                    would_drop: false,
                    len: 0,
                    flow: String::new(),
                });
                continue;
            }
        };
        let flow = describe_flow(frame);
        if len < packet::ETH_HLEN {
            out.push(Verdict {
                index,
                verdict: "skipped",
                reason: "shorter than an Ethernet header".into(),
                would_drop: false,
                len,
                flow,
            });
            continue;
        }
        if len > MAX_TEST_FRAME {
            out.push(Verdict {
                index,
                verdict: "skipped",
                reason: format!(
                    "larger than the {MAX_TEST_FRAME} bytes a test run shows the program"
                ),
                would_drop: false,
                len,
                flow,
            });
            continue;
        }
        match sb.run(frame) {
            Ok(k) => out.push(Verdict {
                index,
                verdict: if k.action == XDP_DROP { "drop" } else { "pass" },
                reason: k.reason.name().to_string(),
                would_drop: k.monitored,
                len,
                flow,
            }),
            Err(e) => out.push(Verdict {
                index,
                verdict: "skipped",
                reason: format!("the kernel could not run it: {}", e.root_cause()),
                would_drop: false,
                len,
                flow,
            }),
        }
    }
    Ok(out)
}

/// One line per packet.
pub fn format_line(v: &Verdict) -> String {
    let mut reason = v.reason.clone();
    if v.would_drop {
        reason.push_str(" (would drop: monitor mode)");
    }
    format!(
        "#{:<6} {:<7} {:<28} {:>5} B  {}",
        v.index, v.verdict, reason, v.len, v.flow
    )
}

/// Totals and a per-reason breakdown.
pub fn summary(verdicts: &[Verdict]) -> String {
    let mut by_reason: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    let mut would_drop = 0;
    for v in verdicts {
        *totals.entry(v.verdict).or_default() += 1;
        let reason = if v.verdict == "skipped" {
            "skipped"
        } else {
            v.reason.as_str()
        };
        *by_reason.entry((v.verdict, reason)).or_default() += 1;
        would_drop += v.would_drop as usize;
    }
    let get = |k: &str| totals.get(k).copied().unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} packets: {} passed, {} dropped, {} skipped{}",
        verdicts.len(),
        get("pass"),
        get("drop"),
        get("skipped"),
        if would_drop > 0 {
            format!(" ({would_drop} passed only because of monitor mode)")
        } else {
            String::new()
        }
    );
    for ((verdict, reason), n) in by_reason {
        let _ = writeln!(s, "  {verdict:<7} {reason:<28} {n}");
    }
    s
}

/// Reason name → Reason, for callers that parse replay output.
pub fn reason_by_name(name: &str) -> Option<Reason> {
    Reason::ALL.iter().copied().find(|r| r.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_types_become_ethernet() {
        let ip4 = [
            0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let want: Vec<u8> = [&[0u8; 12][..], &[0x08, 0x00], &ip4].concat();
        let mut sll = vec![0u8, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
        sll.extend(ip4);
        assert_eq!(to_ethernet(DataLink::LINUX_SLL, &sll), Ok(want.clone()));
        let mut sll2 = vec![
            0x08u8, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend(ip4);
        assert_eq!(to_ethernet(DataLink::LINUX_SLL2, &sll2), Ok(want.clone()));
        assert_eq!(to_ethernet(DataLink::RAW, &ip4), Ok(want.clone()));
        let mut ip6 = vec![0x60u8; 1];
        ip6.extend([0u8; 39]);
        assert_eq!(
            to_ethernet(DataLink::IPV6, &ip6).map(|f| [f[12], f[13]]),
            Ok([0x86, 0xdd])
        );
        assert_eq!(to_ethernet(DataLink::ETHERNET, &want), Ok(want.clone()));
        assert!(to_ethernet(DataLink::LINUX_SLL, &[0u8; 10]).is_err());
        assert!(to_ethernet(DataLink::RAW, &[0x10u8]).is_err());
        assert!(to_ethernet(DataLink::IEEE802_11, &want)
            .unwrap_err()
            .contains("not supported"));
    }
}
