//! One flood of friendly-scanner INVITEs across a veth pair between two
//! namespaces this run creates, dropped in turn by each filter. The packet
//! source is BPF_PROG_TEST_RUN's live-frames mode: an XDP_TX program run
//! in the sender namespace transmits the frame into the receiver's veth
//! end at the rate the kernel allows. The receiving side runs in softirq
//! context on the sender's CPU (veth schedules its NAPI there), so the
//! CPU time per packet is measured on that one pinned CPU.
//!
//! Two floods: one source (a scanner that the daemon bans after its first
//! drops), and 65,536 sources (the generator rewrites the IPv4 source from
//! a counter) that each stay below the ban threshold. During each arm a
//! trusted caller places calls through the same filter (`calls.rs`).

use std::{
    fs,
    os::fd::AsRawFd as _,
    path::PathBuf,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use serde_json::{json, Value};
use sipguard_tests::{
    frames::{v4, MAC_DST, MAC_SRC},
    harness::{
        daemon::scratch,
        netns::{unique, veth},
        Daemon, Netns,
    },
};

use crate::{calls, classes, payload, rawbpf, thread_cpu_ns, xdpfilter};

pub struct Params {
    pub seconds: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arm {
    /// A bare XDP_DROP program: the cost of generating and delivering.
    Floor,
    SipguardNative,
    /// sipguard with the flood's source in its static blocklist: the
    /// cheapest drop, with the daemon's settings (events sampled).
    SipguardBlocked,
    /// The same with `OPS` zeroed after start: a sandbox's settings (no
    /// events, no bans) on the daemon's attached program.
    SipguardBlockedSandbox,
    /// xdp-filter (default features) with the flood's source listed.
    XdpFilter,
    SipguardSkb,
    IptablesString,
    NftSaddr,
}

/// Where the flood comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sources {
    /// One scanner address: banned by the daemon after its first drops.
    One,
    /// 65,536 addresses of one /16, each below the ban threshold.
    Many,
}

/// The /16 the distributed flood's sources are drawn from.
pub const MANY_BASE: [u8; 4] = [10, 77, 0, 0];
pub const MANY_SOURCES: u64 = 1 << 16;

impl Sources {
    fn source(self) -> [u8; 4] {
        match self {
            Sources::One => classes::UNTRUSTED,
            Sources::Many => MANY_BASE,
        }
    }
}

impl Arm {
    /// The distributed flood's arms: the floor, sipguard and the two
    /// netfilter peers (xdp-filter has nothing to match 65,536 unknown
    /// sources by, and skb mode is measured on the single-source flood).
    pub const DISTRIBUTED: [Arm; 4] = [
        Arm::Floor,
        Arm::SipguardNative,
        Arm::IptablesString,
        Arm::NftSaddr,
    ];

    pub const ALL: [Arm; 8] = [
        Arm::Floor,
        Arm::SipguardNative,
        Arm::SipguardBlocked,
        Arm::SipguardBlockedSandbox,
        Arm::XdpFilter,
        Arm::SipguardSkb,
        Arm::IptablesString,
        Arm::NftSaddr,
    ];

    fn key(self) -> &'static str {
        match self {
            Arm::Floor => "xdp_drop_floor",
            Arm::SipguardNative => "sipguard_native",
            Arm::SipguardBlocked => "sipguard_native_blocked",
            Arm::SipguardBlockedSandbox => "sipguard_native_blocked_sandbox",
            Arm::XdpFilter => "xdp_filter_native",
            Arm::SipguardSkb => "sipguard_skb",
            Arm::IptablesString => "iptables_raw_string",
            Arm::NftSaddr => "nft_prerouting_saddr",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Arm::Floor => "bare XDP_DROP (floor)",
            Arm::SipguardNative => "sipguard, native XDP",
            Arm::SipguardBlocked => "sipguard, native, source in static blocklist",
            Arm::SipguardBlockedSandbox => {
                "sipguard, native, source in static blocklist, OPS zeroed (sandbox settings)"
            }
            Arm::XdpFilter => "xdp-filter, native XDP, source listed",
            Arm::SipguardSkb => "sipguard, skb mode",
            Arm::IptablesString => "iptables raw, -m string bm",
            Arm::NftSaddr => "nftables prerouting/raw, saddr set",
        }
    }
}

/// The one CPU the generator (and with it veth's receive softirq) runs on.
fn flood_cpu() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() - 1)
        .unwrap_or(0)
}

/// The generator's SCHED_FIFO priority.
const GENERATOR_PRIORITY: i32 = 1;

/// (system + irq + softirq, all non-idle) jiffies of one CPU.
fn cpu_jiffies(cpu: usize) -> Result<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat")?;
    let tag = format!("cpu{cpu} ");
    let line = stat
        .lines()
        .find(|l| l.starts_with(&tag))
        .ok_or_else(|| anyhow!("no {tag} in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    ensure!(v.len() >= 8, "short /proc/stat line: {line}");
    // user nice system idle iowait irq softirq steal
    let kernel = v[2] + v[5] + v[6];
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Ok((kernel, busy))
}

fn jiffy_ns() -> f64 {
    // SAFETY: sysconf has no preconditions.
    1e9 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// ns on CPU of `ksoftirqd/<cpu>`: softirq work the kernel deferred from
/// the generator's context to that thread.
fn ksoftirqd_ns(cpu: usize) -> Result<f64> {
    let want = format!("ksoftirqd/{cpu}");
    for e in fs::read_dir("/proc")? {
        let p = e?.path();
        if fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == want) {
            let s = fs::read_to_string(p.join("schedstat"))?;
            return s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("bad schedstat of {want}"));
        }
    }
    bail!("no {want} thread")
}

fn vm_rss_kib(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// veth drops XDP_TX frames unless the peer has NAPI: an XDP program or
/// GRO. The arms without a native program turn GRO on (SIOCETHTOOL, so no
/// ethtool binary is needed). Must run on a thread inside the namespace.
fn enable_gro(ifname: &str) -> Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_SGRO: u32 = 0x2c;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut val = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: 1,
    };
    // SAFETY: plain socket(2).
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    ensure!(sock >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: ifreq is plain data; the name fits (checked below).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ensure!(ifname.len() < libc::IFNAMSIZ, "interface name too long");
    for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut val as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL with an ifreq pointing at a live ethtool_value.
    let rc = unsafe { libc::ioctl(sock, SIOCETHTOOL, &mut ifr) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(sock) };
    ensure!(rc == 0, "enabling GRO on {ifname}: {err}");
    Ok(())
}

fn on_thread_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        // SAFETY: setns on this thread only, with a valid netns fd.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        ensure!(
            rc == 0,
            "setns({path}): {}",
            std::io::Error::last_os_error()
        );
        f()
    })
}

fn join<T>(h: std::thread::JoinHandle<Result<T>>) -> Result<T> {
    h.join().map_err(|_| anyhow!("flood thread panicked"))?
}

struct GenResult {
    sent: u64,
    secs: f64,
    thread_cpu_ns: f64,
    ksoftirqd_ns: f64,
    cpu_kernel_jiffies: u64,
    cpu_busy_jiffies: u64,
}

/// Floods from `tx` (inside `ns`) for `seconds`, pinned to one CPU.
fn generate(
    ns: &Netns,
    tx: String,
    sources: Sources,
    frame: Vec<u8>,
    seconds: f64,
    started: mpsc::Sender<()>,
    go: mpsc::Receiver<()>,
) -> std::thread::JoinHandle<Result<GenResult>> {
    on_thread_in(ns, move || {
        let cpu = flood_cpu();
        // SAFETY: cpu_set_t is plain data; affinity of this thread only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            ensure!(
                libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0,
                "sched_setaffinity"
            );
        }
        // Other jobs on a shared machine would otherwise take most of this
        // CPU (autogroups make nice ineffective across sessions). SCHED_FIFO
        // for the few seconds of an arm; the kernel still leaves 5 % of the
        // CPU to others, and the other CPUs are untouched.
        let param = libc::sched_param {
            sched_priority: GENERATOR_PRIORITY,
        };
        // SAFETY: scheduling policy of this thread only.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            eprintln!(
                "note: no SCHED_FIFO for the generator: {}",
                std::io::Error::last_os_error()
            );
        }
        let ifindex = sipguard::kernel::attach::ifindex(&tx)?;
        let (prog, _counter) = match sources {
            Sources::One => (rawbpf::const_program(rawbpf::XDP_TX)?, None),
            Sources::Many => {
                let (prog, map) = rawbpf::counting_source_program()?;
                check_counting_source(&prog, &frame)?;
                (prog, Some(map))
            }
        };
        // Warm-up: page pool, NAPI, caches.
        rawbpf::live_frames(&prog, &frame, ifindex, 1 << 14)?;
        let _ = started.send(());
        // The caller reads the drop counters between `started` and `go`.
        go.recv_timeout(Duration::from_secs(30))
            .map_err(|_| anyhow!("no go signal"))?;
        // Each BPF_PROG_TEST_RUN call has a fixed cost of tens of ms of
        // mostly idle wall time (live-frames setup and teardown), so calls
        // are sized to about a second of traffic, the last one to what is
        // left of the arm.
        let (k0, b0) = cpu_jiffies(cpu)?;
        let s0 = ksoftirqd_ns(cpu)?;
        let c0 = thread_cpu_ns();
        let t0 = Instant::now();
        let mut sent = 0u64;
        let mut batch: u32 = 1 << 20;
        while t0.elapsed().as_secs_f64() < seconds {
            let t = Instant::now();
            rawbpf::live_frames(&prog, &frame, ifindex, batch)?;
            sent += batch as u64;
            let rate = batch as f64 / t.elapsed().as_secs_f64().max(1e-6);
            let left = seconds - t0.elapsed().as_secs_f64();
            batch = (rate * left.min(1.0)).clamp(65536.0, (1u64 << 26) as f64) as u32;
        }
        let secs = t0.elapsed().as_secs_f64();
        let c1 = thread_cpu_ns();
        let s1 = ksoftirqd_ns(cpu)?;
        let (k1, b1) = cpu_jiffies(cpu)?;
        Ok(GenResult {
            sent,
            secs,
            thread_cpu_ns: c1 - c0,
            ksoftirqd_ns: s1 - s0,
            cpu_kernel_jiffies: k1 - k0,
            cpu_busy_jiffies: b1 - b0,
        })
    })
}

/// The counting generator, run on the frame three times (each output the
/// next input), must step the source's low 16 bits and keep the IPv4
/// header checksum valid: the stack drops a frame whose checksum is wrong
/// before netfilter sees it.
fn check_counting_source(prog: &std::os::fd::OwnedFd, frame: &[u8]) -> Result<()> {
    let mut f = frame.to_vec();
    let mut last = None;
    for _ in 0..3 {
        let (action, out) = rawbpf::run_once(prog, &f)?;
        ensure!(action == rawbpf::XDP_TX, "the generator returned {action}");
        ensure!(
            out.len() == f.len(),
            "the generator changed the frame's length"
        );
        ensure!(
            sipguard_tests::frames::checksum(&out[14..34]) == 0,
            "the generator left a bad IPv4 checksum"
        );
        let at = rawbpf::IPV4_SRC_LOW16_AT;
        let low = u16::from_be_bytes([out[at], out[at + 1]]);
        if let Some(prev) = last {
            ensure!(
                low == u16::wrapping_add(prev, 1),
                "the source went from {prev} to {low}"
            );
        }
        let csum = rawbpf::IPV4_CSUM_AT;
        let untouched = |b: &[u8]| [&b[..csum], &b[csum + 2..at], &b[at + 2..]].concat();
        ensure!(
            untouched(&out) == untouched(&f),
            "the generator wrote outside the checksum and the source"
        );
        last = Some(low);
        f = out;
    }
    Ok(())
}

fn rx_packets(ns: &Netns, ifname: &str) -> Result<u64> {
    let out = ns.exec_unchecked(&[
        "cat",
        &format!("/sys/class/net/{ifname}/statistics/rx_packets"),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("rx_packets of {ifname}"))
}

fn iptables_drops(ns: &Netns) -> Result<u64> {
    let out = ns.exec(&["iptables", "-t", "raw", "-vnxL", "PREROUTING"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("friendly-scanner"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no string-match rule counter in:\n{text}"))
}

fn nft_drops(ns: &Netns) -> Result<u64> {
    let out = ns.exec(&["nft", "list", "chain", "inet", "sgbench", "pre"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("no counter in:\n{text}"))
}

/// The daemon's config for an arm: the embedded default's rules (or the
/// allowlist policy when the object has no inspector), the legitimate
/// caller trusted. For the distributed flood the ban threshold is set
/// above what any one source sends in an arm (about 500 INVITEs at this
/// rate): each source stays below it, as the sources of a real
/// distributed flood stay below a threshold of 10 a minute, and every
/// packet takes the inspected drop's path with bans counting.
fn sipguard_config(iface: &str, mode: &str, inspect: bool, sources: Sources) -> String {
    let caller = std::net::Ipv4Addr::from(calls::CALLER);
    let bans = match sources {
        Sources::One => "",
        Sources::Many => "bans:\n  threshold: 1000000\n",
    };
    if inspect {
        format!(
            "interfaces: [{iface}]\nxdp_mode: {mode}\npolicy: inspect\nsip_ports: [5060, 5061]\ntrusted: [{caller}]\n{bans}"
        )
    } else {
        format!("interfaces: [{iface}]\nxdp_mode: {mode}\npolicy: drop\nsip_ports: [5060]\ntrusted: [{caller}]\n{bans}")
    }
}

/// The flood frame: a friendly-scanner INVITE from `src` to the
/// receiver's address and MAC, with a valid IPv4 header checksum so the
/// stack does not discard it before netfilter sees it.
pub fn flood_frame(src: [u8; 4]) -> Vec<u8> {
    let mut f = v4(src, classes::PBX)
        .udp(5060, 5060)
        .payload(payload::invite(true, 400 - 42))
        .build();
    let mut sum = 0u32;
    for i in (14..34).step_by(2) {
        sum += u16::from_be_bytes([f[i], f[i + 1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f
}

/// Attaches the program pinned at `path` to `dev` in native mode.
fn attach_pinned(ns: &Netns, dev: &str, path: &std::path::Path) -> Result<()> {
    let out = ns
        .command("ip")
        .args(["link", "set", "dev", dev, "xdpdrv", "pinned"])
        .arg(path)
        .output()?;
    ensure!(
        out.status.success(),
        "attaching {} to {dev}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// user + system CPU time of a process so far, in ns.
fn process_cpu_ns(pid: u32) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from "state".
    let rest = s.rsplit_once(')')?.1;
    let v: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 2).then(|| (v[0] + v[1]) as f64 * jiffy_ns())
}

/// The CPU the legitimate calls run on: any but the flood's.
fn calls_cpu() -> usize {
    flood_cpu().saturating_sub(1)
}

fn run_arm(arm: Arm, sources: Sources, p: &Params, inspect: bool) -> Result<Value> {
    let txns = Netns::new("t");
    let rxns = Netns::new("r");
    let (tx, rx) = (unique("a"), unique("b"));
    veth(&txns, &tx, &rxns, &rx);
    let (callee, caller) = (
        std::net::Ipv4Addr::from(calls::CALLEE).to_string(),
        std::net::Ipv4Addr::from(calls::CALLER).to_string(),
    );
    rxns.exec(&["ip", "link", "set", "dev", &rx, "address", &mac(MAC_DST)]);
    txns.exec(&["ip", "link", "set", "dev", &tx, "address", &mac(MAC_SRC)]);
    rxns.exec(&["ip", "addr", "add", &format!("{callee}/24"), "dev", &rx]);
    txns.exec(&["ip", "addr", "add", &format!("{caller}/24"), "dev", &tx]);
    // Static neighbours: no ARP exchange has to get through the flood.
    for (ns, dev, addr, m) in [
        (&txns, &tx, &callee, MAC_DST),
        (&rxns, &rx, &caller, MAC_SRC),
    ] {
        ns.exec(&[
            "ip",
            "neigh",
            "replace",
            addr,
            "lladdr",
            &mac(m),
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }

    let mut daemon = None;
    let mut peer: Option<xdpfilter::XdpFilter> = None;
    let mut pin: Option<PathBuf> = None;
    let dir = scratch("fl");
    let setup = (|| -> Result<()> {
        match arm {
            Arm::Floor => {
                let prog = rawbpf::const_program(rawbpf::XDP_DROP)?;
                let path = PathBuf::from(format!("/sys/fs/bpf/{}", unique("floor")));
                rawbpf::pin(&prog, &path)?;
                pin = Some(path.clone());
                attach_pinned(&rxns, &rx, &path)?;
            }
            Arm::XdpFilter => {
                // `xdp-filter load` and `xdp-filter ip SRC --mode src`.
                let mut xf = xdpfilter::XdpFilter::load(xdpfilter::Features::All, 10_000)?;
                xf.deny_src_v4([sources.source()])?;
                let path = PathBuf::from(format!("/sys/fs/bpf/{}", unique("xdpfilt")));
                xf.pin_program(&path)?;
                pin = Some(path.clone());
                peer = Some(xf);
                attach_pinned(&rxns, &rx, &path)?;
            }
            Arm::SipguardNative
            | Arm::SipguardSkb
            | Arm::SipguardBlocked
            | Arm::SipguardBlockedSandbox => {
                let mode = if arm == Arm::SipguardSkb {
                    let rx = rx.clone();
                    join(on_thread_in(&rxns, move || enable_gro(&rx)))?;
                    "skb"
                } else {
                    "native"
                };
                let mut config = sipguard_config(&rx, mode, inspect, sources);
                if matches!(arm, Arm::SipguardBlocked | Arm::SipguardBlockedSandbox) {
                    let src = std::net::Ipv4Addr::from(sources.source());
                    config += &format!("blocked: [{src}]\n");
                }
                let d = Daemon::start(&rxns, &config, &[]);
                if arm == Arm::SipguardBlockedSandbox {
                    // The daemon writes OPS at start and on reload only.
                    let mut ops = sipguard::kernel::stateful::ops_pinned(&d.pin_dir())?;
                    ops.set(0, sipguard_common::abi::OpsSettings::default(), 0)?;
                }
                daemon = Some(d);
            }
            Arm::IptablesString => {
                let rx = rx.clone();
                join(on_thread_in(&rxns, move || enable_gro(&rx)))?;
                rxns.exec(&[
                    "iptables",
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-p",
                    "udp",
                    "--dport",
                    "5060",
                    "-m",
                    "string",
                    "--algo",
                    "bm",
                    "--string",
                    "friendly-scanner",
                    "-j",
                    "DROP",
                ]);
            }
            Arm::NftSaddr => {
                let rx = rx.clone();
                join(on_thread_in(&rxns, move || enable_gro(&rx)))?;
                let file = dir.join("bench.nft");
                fs::write(
                    &file,
                    format!("table inet sgbench {{\n  set trusted4 {{ type ipv4_addr; flags interval; elements = {{ {caller} }} }}\n  \
                     chain pre {{\n    type filter hook prerouting priority raw; policy accept;\n    \
                     udp dport 5060 ip saddr != @trusted4 counter drop\n  }}\n}}\n"),
                )?;
                rxns.exec(&["nft", "-f", file.to_str().unwrap_or_default()]);
            }
        }
        Ok(())
    })();
    if let Some(p) = &pin {
        let _ = fs::remove_file(p);
    }
    setup?;

    let drops = |d: &Option<Daemon>| -> Result<u64> {
        match arm {
            Arm::Floor => rx_packets(&rxns, &rx),
            Arm::XdpFilter => peer
                .as_ref()
                .ok_or_else(|| anyhow!("xdp-filter not loaded"))?
                .src_v4_hits(sources.source()),
            Arm::SipguardNative
            | Arm::SipguardSkb
            | Arm::SipguardBlocked
            | Arm::SipguardBlockedSandbox => {
                let d = d.as_ref().ok_or_else(|| anyhow!("no daemon"))?;
                d.stats_json()["dropped"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("stats --json has no 'dropped'"))
            }
            Arm::IptablesString => iptables_drops(&rxns),
            Arm::NftSaddr => nft_drops(&rxns),
        }
    };

    let pid = daemon.as_ref().map(Daemon::pid);
    std::thread::sleep(Duration::from_millis(300));
    let rss_idle = pid.and_then(|p| vm_rss_kib(p, "VmRSS:"));
    let (tx_started, rx_started) = mpsc::channel();
    let (tx_go, rx_go) = mpsc::channel();
    let gen = generate(
        &txns,
        tx.clone(),
        sources,
        flood_frame(sources.source()),
        p.seconds,
        tx_started,
        rx_go,
    );
    if rx_started.recv_timeout(Duration::from_secs(10)).is_err() {
        drop(tx_go);
        join(gen)?;
        bail!("the generator did not start");
    }
    // The floor drops everything, calls included: no legitimate side.
    let calls = match arm {
        Arm::Floor => None,
        _ => Some(calls::Calls::start(
            &txns,
            &rxns,
            flood_cpu(),
            GENERATOR_PRIORITY + 1,
            calls_cpu(),
        )?),
    };
    let d0 = drops(&daemon)?;
    let r0 = rx_packets(&rxns, &rx)?;
    let daemon_cpu0 = pid.and_then(process_cpu_ns);
    let _ = tx_go.send(());
    let mut rss_flood = 0u64;
    while !gen.is_finished() {
        if let Some(kib) = pid.and_then(|p| vm_rss_kib(p, "VmRSS:")) {
            rss_flood = rss_flood.max(kib);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let g = join(gen)?;
    let daemon_cpu1 = pid.and_then(process_cpu_ns);
    let calls = calls.map(calls::Calls::finish).transpose()?;
    let d1 = drops(&daemon)?;
    let r1 = rx_packets(&rxns, &rx)?;
    // Counters were read after the warm-up and before the timed part; the
    // receive softirq runs synchronously with the sender, so nothing is in
    // flight at either reading. The legitimate calls pass (they are not in
    // the drop counters) and add their INVITEs to the veth's rx_packets.
    let dropped = d1.saturating_sub(d0);
    let received = r1.saturating_sub(r0);
    let daemon_cpu = daemon_cpu0.zip(daemon_cpu1).map(|(a, b)| b - a);
    if let Some(mut d) = daemon.take() {
        let st = d.stop();
        ensure!(st.success(), "sipguard exited with {st}");
    }
    let _ = fs::remove_dir_all(&dir);
    let jns = jiffy_ns();
    let per = |x: f64| {
        if dropped > 0 {
            x / dropped as f64
        } else {
            f64::NAN
        }
    };
    Ok(json!({
        "key": arm.key(),
        "label": arm.label(),
        "seconds": g.secs,
        "sent": g.sent,
        "received": received,
        "dropped": dropped,
        "dropped_pps": dropped as f64 / g.secs,
        "sent_pps": g.sent as f64 / g.secs,
        "cpu_ns_per_packet": per(g.thread_cpu_ns + g.ksoftirqd_ns),
        "thread_cpu_ns_per_packet": per(g.thread_cpu_ns),
        "ksoftirqd_ns_per_packet": per(g.ksoftirqd_ns),
        "cpu_stat_kernel_ns_per_packet": per(g.cpu_kernel_jiffies as f64 * jns),
        "cpu_stat_busy_ns_per_packet": per(g.cpu_busy_jiffies as f64 * jns),
        "daemon_rss_kib_idle": rss_idle,
        "daemon_rss_kib_flood": pid.map(|_| rss_flood),
        "daemon_cpu_ns_per_packet": daemon_cpu.map(per),
        "daemon_cpu_share": daemon_cpu.map(|c| c / (g.secs * 1e9)),
        "calls": calls.map(calls::CallCounts::json),
    }))
}

fn arms(sources: Sources, list: &[Arm], p: &Params, inspect: bool) -> Result<Vec<Value>> {
    let mut arms = Vec::new();
    for &arm in list {
        let what = match sources {
            Sources::One => "one source",
            Sources::Many => "65,536 sources",
        };
        eprintln!("flood ({what}): {} for {:.0} s ...", arm.label(), p.seconds);
        let r = run_arm(arm, sources, p, inspect)
            .with_context(|| format!("flood arm '{}' ({what})", arm.label()))?;
        eprintln!(
            "  dropped {:.2} Mpps (sent {:.2} Mpps), {:.0} ns CPU/packet, calls {}",
            r["dropped_pps"].as_f64().unwrap_or(0.0) / 1e6,
            r["sent_pps"].as_f64().unwrap_or(0.0) / 1e6,
            r["cpu_ns_per_packet"].as_f64().unwrap_or(f64::NAN),
            r["calls"]
        );
        arms.push(r);
    }
    Ok(arms)
}

pub fn run(p: &Params, inspect: bool) -> Result<Value> {
    let single = arms(Sources::One, &Arm::ALL, p, inspect)?;
    let distributed = arms(Sources::Many, &Arm::DISTRIBUTED, p, inspect)?;
    Ok(json!({
        "seconds_per_arm": p.seconds,
        "cpu": flood_cpu(),
        "calls_cpu": calls_cpu(),
        "frame_bytes": flood_frame(classes::UNTRUSTED).len(),
        "load_avg_at_end": fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        "sipguard_policy": if inspect { "inspect (User-Agent rule)" } else { "drop (allowlist)" },
        "arms": single,
        "distributed": {
            "sources": MANY_SOURCES,
            "base": std::net::Ipv4Addr::from(MANY_BASE).to_string(),
            "arms": distributed,
        },
    }))
}
