//! `sipguard replay`: every packet of a pcap or pcapng capture through the
//! real XDP program (BPF_PROG_TEST_RUN in a private [`Sandbox`], maps filled
//! from the config), so a policy can be tried on real traffic before it
//! goes on the WAN. Pinned maps of a running daemon are never touched.
//!
//! Every packet gets `pass` or `drop` and says which [`Engine`] decided:
//! the kernel where a test run takes the frame (frames above a single
//! buffer through the multi-buffer build), the host evaluator (the same
//! sipguard-common code) where it cannot, and the link for runts, which a
//! NIC discards before XDP runs.

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
use sipguard_common::{
    packet::{self, Link},
    Reason,
};

use crate::{
    kernel::testrun::{Sandbox, XDP_DROP},
    policy::{evaluate::ip_from, Policy},
};

/// The bytes of a frame BPF_PROG_TEST_RUN shows a program without
/// multi-buffer support (PAGE_SIZE - headroom - skb_shared_info). Larger
/// frames (jumbo frames, GRO/TSO super-packets in captures) go through the
/// multi-buffer build, whose test run carries the rest in fragments
/// (Linux 5.18+); on older kernels the host evaluator judges them, and says
/// so.
pub const MAX_TEST_FRAME: usize = sipguard_common::SINGLE_BUFFER_FRAME;

/// The smallest frame BPF_PROG_TEST_RUN accepts for XDP (`ETH_HLEN`).
const MIN_TEST_FRAME: usize = packet::ETH_HLEN;

/// Who decided a replayed packet's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Engine {
    /// The real program, by BPF_PROG_TEST_RUN.
    Kernel,
    /// `Policy::evaluate_link`: the kernel's sipguard-common code run on
    /// the host, for frames no test run takes.
    Host,
    /// Not sipguard: a frame shorter than its link header never reaches
    /// XDP (the NIC or the stack discards it).
    Link,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Kernel => "kernel",
            Engine::Host => "host",
            Engine::Link => "link",
        }
    }
}

/// pcapng files start with a Section Header Block of this type.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// One packet of a capture as the XDP program of its link type would see
/// it: an Ethernet frame, or a raw IP packet (what `sipguard_rawip` sees on
/// a tun/ppp/rawip device). A Linux cooked header is replaced by an
/// Ethernet one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    pub link: Link,
    pub data: Vec<u8>,
    /// The packet's length on the wire, when the capture cut it shorter
    /// (snap length).
    pub cut_from: Option<usize>,
}

/// A frame shorter than this never reaches XDP on its link.
fn link_header_len(link: Link) -> usize {
    match link {
        Link::Ethernet => packet::ETH_HLEN,
        Link::RawIp => 1,
    }
}

/// Link types turned into what XDP sees; other link types are an error
/// naming the type.
fn to_frame(link: DataLink, data: &[u8]) -> Result<(Link, Vec<u8>)> {
    let eth = |proto: [u8; 2], l3: &[u8]| {
        // Addresses are not judged; zero MACs keep the frame well formed.
        let mut f = vec![0u8; 12];
        f.extend(proto);
        f.extend(l3);
        (Link::Ethernet, f)
    };
    // A cooked header cut short: what is left is a runt.
    let cut = || {
        (
            Link::Ethernet,
            data[..data.len().min(MIN_TEST_FRAME - 1)].to_vec(),
        )
    };
    Ok(match link {
        DataLink::ETHERNET => (Link::Ethernet, data.to_vec()),
        // Linux cooked v1: 16-byte header, protocol in its last two bytes.
        DataLink::LINUX_SLL => match data.get(14..16) {
            Some(p) => eth([p[0], p[1]], &data[16..]),
            None => cut(),
        },
        // Linux cooked v2: 20-byte header, protocol in its first two bytes.
        DataLink::LINUX_SLL2 => match (data.get(0..2), data.get(20..)) {
            (Some(p), Some(rest)) => eth([p[0], p[1]], rest),
            _ => cut(),
        },
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => (Link::RawIp, data.to_vec()),
        other => anyhow::bail!(
            "link type {other:?} is not supported (Ethernet, Linux cooked SLL/SLL2 and raw IP are)"
        ),
    })
}

fn captured(link: DataLink, data: &[u8], orig_len: usize) -> Result<CapturedFrame> {
    let (l, frame) = to_frame(link, data)?;
    Ok(CapturedFrame {
        link: l,
        data: frame,
        cut_from: (orig_len > data.len()).then_some(orig_len),
    })
}

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
            let (iface, data, orig_len) = match block {
                Block::SectionHeader(_) => {
                    links.clear();
                    continue;
                }
                Block::InterfaceDescription(idb) => {
                    links.push(idb.linktype);
                    continue;
                }
                Block::EnhancedPacket(epb) => (
                    epb.interface_id as usize,
                    epb.data,
                    epb.original_len as usize,
                ),
                Block::SimplePacket(spb) => (0, spb.data, spb.original_len as usize),
                Block::Packet(pb) => (pb.interface_id as usize, pb.data, pb.original_len as usize),
                _ => continue,
            };
            let n = out.len();
            let link = links.get(iface).with_context(|| {
                format!(
                    "{}: packet {n} refers to undeclared interface {iface}",
                    path.display()
                )
            })?;
            out.push(
                captured(*link, &data, orig_len)
                    .with_context(|| format!("{}: packet {n}", path.display()))?,
            );
        }
    } else {
        let mut r = PcapReader::new(file)
            .with_context(|| format!("{}: not a pcap or pcapng file", path.display()))?;
        let link = r.header().datalink;
        while let Some(pkt) = r.next_packet() {
            let pkt = pkt.with_context(what)?;
            out.push(captured(link, &pkt.data, pkt.orig_len as usize).with_context(what)?);
        }
    }
    Ok(out)
}

/// The verdict for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub index: usize,
    /// `pass` or `drop`.
    pub verdict: &'static str,
    /// A reason name (`Reason::name`), then, where the kernel did not run
    /// the packet, why.
    pub reason: String,
    pub engine: Engine,
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
            "engine": self.engine.name(),
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

/// Runs every frame through a private instance of the program, or, where
/// no test run takes it, through the host evaluator.
pub fn replay(policy: &Policy, frames: &[CapturedFrame]) -> Result<Vec<Verdict>> {
    let mut sb = Sandbox::new(policy)?;
    let multi_buffer = crate::kernel::features::has_multi_buffer();
    let mut out = Vec::with_capacity(frames.len());
    for (index, f) in frames.iter().enumerate() {
        let frame = &f.data;
        let len = frame.len();
        let flow = match f.link {
            Link::Ethernet => describe_flow(frame),
            Link::RawIp => String::new(),
        };
        let mut v = Verdict {
            index,
            verdict: "pass",
            reason: String::new(),
            engine: Engine::Kernel,
            would_drop: false,
            len,
            flow,
        };
        let header = link_header_len(f.link);
        let host = |v: &mut Verdict, why: String| {
            let o = policy.evaluate_link(frame, f.link);
            v.verdict = if o.drop { "drop" } else { "pass" };
            v.reason = format!("{} ({why})", o.reason.name());
            v.engine = Engine::Host;
            v.would_drop = o.monitored;
        };
        if len < header {
            v.verdict = "drop";
            v.reason = format!(
                "runt: {len} bytes, shorter than the {header}-byte link header; the NIC \
                 discards such a frame before XDP runs"
            );
            v.engine = Engine::Link;
        } else if len > MAX_TEST_FRAME && !multi_buffer {
            host(
                &mut v,
                format!(
                    "{len} bytes: a single-buffer test run takes at most {MAX_TEST_FRAME}, and this \
                     kernel has no multi-buffer XDP (Linux 5.18+); judged by the host evaluator, \
                     the same code"
                ),
            );
        } else if len < MIN_TEST_FRAME {
            host(
                &mut v,
                format!(
                    "{len} bytes: a test run takes at least {MIN_TEST_FRAME}; judged by the \
                     host evaluator, the same code"
                ),
            );
        } else {
            match sb.run_link(frame, f.link) {
                Ok(k) => {
                    v.verdict = if k.action == XDP_DROP { "drop" } else { "pass" };
                    v.reason = k.reason.name().to_string();
                    v.would_drop = k.monitored;
                }
                Err(e) => host(
                    &mut v,
                    format!(
                        "the kernel could not run it: {}; judged by the host evaluator, the same code",
                        e.root_cause()
                    ),
                ),
            }
        }
        if let Some(wire) = f.cut_from {
            v.reason
                .push_str(&format!(" [capture cut it: {len} of {wire} bytes judged]"));
        }
        out.push(v);
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
        "#{:<6} {:<5} {:<6} {:<28} {:>5} B  {}",
        v.index,
        v.verdict,
        v.engine.name(),
        reason,
        v.len,
        v.flow
    )
}

/// Totals, who decided, and a per-reason breakdown.
pub fn summary(verdicts: &[Verdict]) -> String {
    let mut by_reason: BTreeMap<(&str, Engine, &str), usize> = BTreeMap::new();
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    let mut engines: BTreeMap<Engine, usize> = BTreeMap::new();
    let mut would_drop = 0;
    for v in verdicts {
        *totals.entry(v.verdict).or_default() += 1;
        *engines.entry(v.engine).or_default() += 1;
        // The reason name without the note on why the kernel did not run it.
        let reason = match v.engine {
            Engine::Link => "runt",
            Engine::Kernel | Engine::Host => v.reason.split(' ').next().unwrap_or(""),
        };
        *by_reason.entry((v.verdict, v.engine, reason)).or_default() += 1;
        would_drop += v.would_drop as usize;
    }
    let get = |k: &str| totals.get(k).copied().unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} packets: {} passed, {} dropped{}",
        verdicts.len(),
        get("pass"),
        get("drop"),
        if would_drop > 0 {
            format!(" ({would_drop} passed only because of monitor mode)")
        } else {
            String::new()
        }
    );
    let decided: Vec<String> = engines
        .iter()
        .map(|(e, n)| format!("{} {n}", e.name()))
        .collect();
    let _ = writeln!(s, "  decided by: {}", decided.join(", "));
    for ((verdict, engine, reason), n) in by_reason {
        let _ = writeln!(s, "  {verdict:<7} {reason:<28} {:<6} {n}", engine.name());
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
    fn link_types_become_what_xdp_sees() {
        let ip4 = [
            0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let want: Vec<u8> = [&[0u8; 12][..], &[0x08, 0x00], &ip4].concat();
        let eth = |v: &Vec<u8>| (Link::Ethernet, v.clone());
        let mut sll = vec![0u8, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
        sll.extend(ip4);
        assert_eq!(to_frame(DataLink::LINUX_SLL, &sll).unwrap(), eth(&want));
        let mut sll2 = vec![
            0x08u8, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend(ip4);
        assert_eq!(to_frame(DataLink::LINUX_SLL2, &sll2).unwrap(), eth(&want));
        assert_eq!(
            to_frame(DataLink::RAW, &ip4).unwrap(),
            (Link::RawIp, ip4.to_vec())
        );
        assert_eq!(to_frame(DataLink::ETHERNET, &want).unwrap(), eth(&want));
        // A cooked header cut short leaves a runt.
        assert_eq!(
            to_frame(DataLink::LINUX_SLL, &[7u8; 10]).unwrap(),
            eth(&vec![7u8; 10])
        );
        assert!(to_frame(DataLink::IEEE802_11, &want)
            .unwrap_err()
            .to_string()
            .contains("link type IEEE802_11 is not supported"));
    }
}
