//! The namespace lab: real SIP software on both sides of sipguard.
//!
//! ```text
//!   WAN namespace                                PBX namespace
//!   provider 192.0.2.10  2001:db8:5::10  ─veth─▶ sipguard (XDP on this veth)
//!   scanner  192.0.2.66  2001:db8:5::66          SIPp UAS   :5060 (v4 and v6)
//!                                                Kamailio   :5080 (v4 and v6)
//! ```
//!
//! The provider runs SIPp as UAC (calls with SDP); the scanner runs the
//! SIPVicious tools. What each side sent and what reached the PBX is counted
//! by two packet captures: one on the WAN veth (everything the tools sent)
//! and one on the PBX veth. AF_PACKET taps see received frames only after
//! XDP has passed them (native XDP runs in the driver before an skb exists;
//! generic XDP runs before the taps in `__netif_receive_skb_core`), so the
//! PBX capture is exactly what reached the endpoints. The monitor-mode lab
//! is the control: there the same capture sees every request.
//!
//! The namespaces and addresses are the harness's standard [`Wan`];
//! everything started here is a [`Proc`] (killed by PID on drop), so a
//! failing assertion cleans up too.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    thread::sleep,
    time::{Duration, Instant},
};

use crate::{
    addresses::{PBX4, PBX6, PROVIDER4, PROVIDER6, SCANNER4, SCANNER6},
    harness::{
        process::{tool, wait_until},
        Daemon, Netns, Proc, Wan,
    },
};
/// SIPp UAS: the endpoint the provider calls.
pub const SIPP_PORT: u16 = 5060;
/// Kamailio: the registrar the scanners enumerate and brute-force.
pub const KAMAILIO_PORT: u16 = 5080;

const UAS_XML: &str = include_str!("../lab/uas.xml");
const UAC_XML: &str = include_str!("../lab/uac.xml");
const KAMAILIO_CFG: &str = include_str!("../lab/kamailio.cfg");

/// Longest any single scanner run may take before it is killed.
const TOOL_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `policy: drop`: allowlist only.
    Drop,
    /// `policy: inspect`: the SIP inspector decides.
    Inspect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Monitor,
}

fn read_log(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

fn tail(p: &Path) -> String {
    let s = read_log(p);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

// ---------------------------------------------------------------- captures

/// One captured UDP datagram's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// tcpdump on one interface of one namespace, written to a pcap file.
pub struct Capture {
    proc: Proc,
    file: PathBuf,
    log: PathBuf,
}

impl Capture {
    pub fn start(ns: &Netns, iface: &str, filter: &str, dir: &Path, tag: &str) -> Capture {
        let file = dir.join(format!("{tag}.pcap"));
        let log = dir.join(format!("{tag}.tcpdump.log"));
        let mut cmd = ns.command(tool(&["tcpdump"]).to_str().expect("utf-8 path"));
        cmd.args([
            "-i",
            iface,
            "-nn",
            "-U",
            "--immediate-mode",
            "-s",
            "256",
            "-w",
        ])
        .arg(&file)
        .arg(filter);
        let mut proc = Proc::spawn(&format!("tcpdump {tag}"), cmd, &log);
        wait_until(
            &format!("tcpdump on {iface} to start"),
            Duration::from_secs(10),
            || {
                assert!(
                    proc.try_status().is_none(),
                    "tcpdump {tag} exited:\n{}",
                    tail(&log)
                );
                read_log(&log).contains("listening on")
            },
        );
        Capture { proc, file, log }
    }

    /// Stops the capture and returns every UDP datagram in it. Fails if the
    /// kernel dropped any frame before tcpdump read it: a lost frame would
    /// look like a filtered one.
    pub fn finish(mut self) -> Vec<Datagram> {
        sleep(Duration::from_millis(300));
        self.proc.stop(libc::SIGINT, Duration::from_secs(5));
        let log = read_log(&self.log);
        let dropped = log
            .lines()
            .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
            .unwrap_or_else(|| panic!("tcpdump did not report its drop count:\n{log}"));
        assert_eq!(dropped.trim(), "0", "the capture lost frames:\n{log}");
        parse_pcap(&fs::read(&self.file).expect("reading a capture"))
    }
}

/// Reads a classic pcap file of Ethernet frames (what tcpdump -w writes on a
/// veth); keeps UDP over IPv4 and IPv6 (no extension headers: none of the
/// lab's tools send them).
pub fn parse_pcap(b: &[u8]) -> Vec<Datagram> {
    assert!(b.len() >= 24, "pcap file too short");
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    assert!(
        magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d,
        "not a little-endian pcap file (magic {magic:#x})"
    );
    let linktype = u32::from_le_bytes([b[20], b[21], b[22], b[23]]);
    assert_eq!(linktype, 1, "expected Ethernet frames in the capture");
    let be16 = |s: &[u8], o: usize| u16::from_be_bytes([s[o], s[o + 1]]);
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let caplen =
            u32::from_le_bytes([b[off + 8], b[off + 9], b[off + 10], b[off + 11]]) as usize;
        let f = &b[off + 16..(off + 16 + caplen).min(b.len())];
        off += 16 + caplen;
        if f.len() < 14 {
            continue;
        }
        let l3 = &f[14..];
        let (src, dst, l4) = match be16(f, 12) {
            0x0800 if l3.len() >= 20 && l3[9] == 17 => {
                let ihl = usize::from(l3[0] & 0x0f) * 4;
                let a: [u8; 4] = l3[12..16].try_into().unwrap();
                let d: [u8; 4] = l3[16..20].try_into().unwrap();
                (
                    IpAddr::from(a),
                    IpAddr::from(d),
                    l3.get(ihl..).unwrap_or(&[]),
                )
            }
            0x86dd if l3.len() >= 40 && l3[6] == 17 => {
                let a: [u8; 16] = l3[8..24].try_into().unwrap();
                let d: [u8; 16] = l3[24..40].try_into().unwrap();
                (IpAddr::from(a), IpAddr::from(d), &l3[40..])
            }
            _ => continue,
        };
        if l4.len() >= 4 {
            out.push(Datagram {
                src,
                sport: be16(l4, 0),
                dst,
                dport: be16(l4, 2),
            });
        }
    }
    out
}

// ---------------------------------------------------------------- scanners

/// One SIPVicious invocation, run from the scanner address over IPv4 and
/// IPv6 at the same time. Each family gets its own source port so the
/// captures can tell the runs apart.
#[derive(Debug, Clone)]
pub struct ScannerRun {
    pub name: &'static str,
    /// The PyPI console script (older packages call it `svmap`, ...).
    pub program: &'static str,
    pub args: &'static [&'static str],
    /// Destination port(s), as the tool's `-p` takes them.
    pub ports: &'static str,
}

/// The lab's attacks: every run is bounded in count (ranges) and time.
pub const SCANNERS: &[ScannerRun] = &[
    ScannerRun {
        name: "svmap OPTIONS",
        program: "svmap",
        args: &[],
        ports: "5060,5080",
    },
    ScannerRun {
        name: "svmap INVITE",
        program: "svmap",
        args: &["-m", "INVITE"],
        ports: "5060,5080",
    },
    ScannerRun {
        name: "svmap compact",
        program: "svmap",
        args: &["-c"],
        ports: "5060,5080",
    },
    ScannerRun {
        name: "svwar REGISTER",
        program: "svwar",
        args: &["-e100-119"],
        ports: "5080",
    },
    ScannerRun {
        name: "svwar INVITE",
        program: "svwar",
        args: &["-m", "INVITE", "-e100-119"],
        ports: "5080",
    },
    ScannerRun {
        name: "svcrack",
        program: "svcrack",
        args: &["-u", "100", "-r1-20", "--maximumtime", "2"],
        ports: "5080",
    },
];

/// What one scanner run did, from the captures and the counters.
#[derive(Debug, Clone, Default)]
pub struct ToolFigures {
    pub name: String,
    /// Requests the tool sent, per family (WAN capture).
    pub sent: [u64; 2],
    /// Requests that reached the PBX, per family (PBX capture).
    pub reached: [u64; 2],
    /// Packets the tool received back, both families (WAN capture).
    pub answers: u64,
    /// Counter deltas by reason over the run (`name` or `name(would_drop)`).
    pub counters: BTreeMap<String, u64>,
    pub exit: [Option<i32>; 2],
}

impl ToolFigures {
    pub fn sent_total(&self) -> u64 {
        self.sent[0] + self.sent[1]
    }
    pub fn reached_total(&self) -> u64 {
        self.reached[0] + self.reached[1]
    }
    /// Real drops (enforce mode) over the run.
    pub fn dropped(&self) -> u64 {
        self.counters
            .iter()
            .filter(|(k, _)| is_drop_reason(k) && !k.ends_with("(would_drop)"))
            .map(|(_, v)| v)
            .sum()
    }
    pub fn would_drop(&self) -> u64 {
        self.counters
            .iter()
            .filter(|(k, _)| k.ends_with("(would_drop)"))
            .map(|(_, v)| v)
            .sum()
    }
    pub fn drops_by_reason(&self) -> BTreeMap<String, u64> {
        self.counters
            .iter()
            .filter(|(k, _)| is_drop_reason(k))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

fn is_drop_reason(key: &str) -> bool {
    let base = key.trim_end_matches("(would_drop)");
    sipguard_common::Reason::ALL
        .iter()
        .any(|r| r.name() == base && r.is_drop())
}

#[derive(Debug, Clone, Default)]
pub struct CallFigures {
    pub family: &'static str,
    pub attempted: u64,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    pub exit: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub title: String,
    pub tools: Vec<ToolFigures>,
    pub calls: Vec<CallFigures>,
    /// Requests in the SIPp UAS logs that the provider did not send.
    pub foreign_requests_at_sipp: u64,
}

impl Report {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n=== sipguard lab: {} ===", self.title);
        let _ = writeln!(
            s,
            "{:<16} {:>9} {:>9} {:>8} {:>8}  DROPS BY REASON (counters)",
            "TOOL", "SENT v4/6", "REACH v4/6", "ANSWERS", "EXIT"
        );
        for t in &self.tools {
            let drops = t.drops_by_reason();
            let drops = if drops.is_empty() {
                "-".to_string()
            } else {
                drops
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let code = |c: Option<i32>| c.map_or("-".into(), |c| c.to_string());
            let _ = writeln!(
                s,
                "{:<16} {:>9} {:>10} {:>8} {:>8}  {}",
                t.name,
                format!("{}/{}", t.sent[0], t.sent[1]),
                format!("{}/{}", t.reached[0], t.reached[1]),
                t.answers,
                format!("{}/{}", code(t.exit[0]), code(t.exit[1])),
                drops
            );
        }
        for c in &self.calls {
            let _ = writeln!(
                s,
                "calls {:<4}: attempted {}, completed {}, failed {}, retransmissions {}, sipp exit {}",
                c.family,
                c.attempted,
                c.successful,
                c.failed,
                c.retransmissions,
                c.exit.map_or("-".into(), |c| c.to_string())
            );
        }
        let _ = writeln!(
            s,
            "requests not from the provider in SIPp's message logs: {}",
            self.foreign_requests_at_sipp
        );
        s
    }
}

// ---------------------------------------------------------------- the lab

pub struct Lab {
    pub policy: Policy,
    pub mode: Mode,
    pub dir: PathBuf,
    endpoints: Vec<Proc>,
    daemon: Option<Daemon>,
    // Declared last: dropped after every process above has been stopped.
    pub net: Wan,
}

/// `SIPGUARD_LAB_XDP_MODE=skb` runs the lab on generic XDP.
fn xdp_mode() -> String {
    std::env::var("SIPGUARD_LAB_XDP_MODE").unwrap_or_else(|_| "native".into())
}

impl Lab {
    /// Builds the namespaces, starts the endpoints and sipguard with
    /// `config_extra` appended to the lab's config.
    pub fn start(policy: Policy, mode: Mode, config_extra: &str) -> Lab {
        let net = Wan::new();
        let dir = std::env::temp_dir().join(format!("{}-lab", net.pbx.name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the lab directory");
        let mut lab = Lab {
            policy,
            mode,
            dir,
            endpoints: Vec::new(),
            daemon: None,
            net,
        };
        lab.start_endpoints();
        lab.start_sipguard(config_extra);
        lab
    }

    fn start_endpoints(&mut self) {
        fs::write(self.dir.join("uas.xml"), UAS_XML).expect("writing uas.xml");
        fs::write(self.dir.join("uac.xml"), UAC_XML).expect("writing uac.xml");
        let kcfg = KAMAILIO_CFG
            .replace("@PBX4@", &PBX4.to_string())
            .replace("@PBX6@", &PBX6.to_string())
            .replace("@PORT@", &KAMAILIO_PORT.to_string());
        fs::write(self.dir.join("kamailio.cfg"), kcfg).expect("writing kamailio.cfg");

        let sipp = tool(&["sipp"]);
        for (fam, addr) in [("v4", PBX4.to_string()), ("v6", PBX6.to_string())] {
            let mut cmd = self.net.pbx.command(sipp.to_str().expect("utf-8 path"));
            cmd.args(["-sf"]).arg(self.dir.join("uas.xml"));
            cmd.args([
                "-i",
                &addr,
                "-p",
                &SIPP_PORT.to_string(),
                "-nostdin",
                "-trace_msg",
                "-message_file",
            ]);
            cmd.arg(self.dir.join(format!("uas-{fam}.msg")));
            let log = self.dir.join(format!("uas-{fam}.log"));
            self.endpoints
                .push(Proc::spawn(&format!("sipp uas {fam}"), cmd, &log));
        }
        let kam = tool(&["kamailio"]);
        let mut cmd = self.net.pbx.command(kam.to_str().expect("utf-8 path"));
        cmd.arg("-f").arg(self.dir.join("kamailio.cfg"));
        cmd.args(["-DD", "-E", "-m", "16", "-M", "4", "-w"])
            .arg(&self.dir);
        cmd.arg("-Y")
            .arg(&self.dir)
            .arg("-P")
            .arg(self.dir.join("kamailio.pid"));
        self.endpoints
            .push(Proc::spawn("kamailio", cmd, &self.dir.join("kamailio.log")));

        let want = [
            format!("{PBX4}:{SIPP_PORT}"),
            format!("[{PBX6}]:{SIPP_PORT}"),
            format!("{PBX4}:{KAMAILIO_PORT}"),
            format!("[{PBX6}]:{KAMAILIO_PORT}"),
        ];
        let pbx = &self.net.pbx;
        let endpoints = &mut self.endpoints;
        let dir = &self.dir;
        wait_until(
            "the SIP endpoints to listen",
            Duration::from_secs(15),
            || {
                for p in endpoints.iter_mut() {
                    assert!(
                        p.try_status().is_none(),
                        "{} exited early; logs in {}",
                        p.what,
                        dir.display()
                    );
                }
                let ss = String::from_utf8_lossy(&pbx.exec(&["ss", "-Hunl"]).stdout).into_owned();
                want.iter().all(|w| ss.contains(w.as_str()))
            },
        );
    }

    fn start_sipguard(&mut self, extra: &str) {
        let policy = match self.policy {
            Policy::Drop => "drop",
            Policy::Inspect => "inspect",
        };
        let mode = match self.mode {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        };
        let cfg = format!(
            "interfaces: [{}]\nxdp_mode: {}\nmode: {mode}\npolicy: {policy}\nsip_ports: [{SIPP_PORT}, {KAMAILIO_PORT}]\n\
             trusted: [{PROVIDER4}, \"{PROVIDER6}\"]\n{extra}",
            self.net.pbx_if,
            xdp_mode()
        );
        fs::write(self.dir.join("sipguard.yaml"), &cfg).expect("writing a copy of the config");
        self.daemon = Some(Daemon::start(&self.net.pbx, &cfg, &[]));
    }

    /// The counters by reason (`name`, `name(would_drop)`) from `sipguard stats --json`.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let v = self
            .daemon
            .as_ref()
            .expect("sipguard is running")
            .stats_json();
        let mut m = BTreeMap::new();
        if let Some(r) = v["reasons"].as_object() {
            for (k, e) in r {
                m.insert(
                    k.clone(),
                    e["packets"].as_u64().expect("packets is a number"),
                );
            }
        }
        m
    }

    /// Starts SIPp as UAC from the provider address towards the SIPp UAS:
    /// `rate` calls per second until [`Calls::finish`].
    pub fn start_calls(&self, family: &'static str, rate: u32) -> Calls {
        let (local, remote) = match family {
            "v4" => (PROVIDER4.to_string(), format!("{PBX4}:{SIPP_PORT}")),
            _ => (PROVIDER6.to_string(), format!("[{PBX6}]:{SIPP_PORT}")),
        };
        let stats = self.dir.join(format!("uac-{family}.csv"));
        let mut cmd = self
            .net
            .wan
            .command(tool(&["sipp"]).to_str().expect("utf-8 path"));
        cmd.arg("-sf").arg(self.dir.join("uac.xml"));
        cmd.args([
            "-i",
            &local,
            "-p",
            &SIPP_PORT.to_string(),
            &remote,
            "-s",
            "200",
        ]);
        cmd.args([
            "-r",
            &rate.to_string(),
            "-d",
            "200",
            "-m",
            "100000",
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
        ]);
        cmd.arg("-stf").arg(&stats);
        let log = self.dir.join(format!("uac-{family}.log"));
        Calls {
            family,
            proc: Proc::spawn(&format!("sipp uac {family}"), cmd, &log),
            stats,
        }
    }

    /// Runs one scanner over IPv4 and IPv6 at once (each bounded by
    /// `TOOL_DEADLINE`) and returns the counter deltas and exit codes;
    /// sent/reached are filled in later from the captures.
    pub fn run_scanner(&self, run: &ScannerRun, index: usize) -> ToolFigures {
        let before = self.counters();
        let mut procs = Vec::new();
        for (fam, target) in [(0usize, IpAddr::from(PBX4)), (1, PBX6.into())] {
            let prog = tool(&[&format!("sipvicious_{}", run.program), run.program]);
            let mut cmd = self.net.wan.command(prog.to_str().expect("utf-8 path"));
            cmd.args(["-P", &scanner_port(index, fam).to_string(), "-p", run.ports]);
            cmd.args(run.args);
            if fam == 1 {
                cmd.arg("-6");
            }
            cmd.arg(target.to_string());
            let log = self.dir.join(format!("scan{index}-{fam}.log"));
            procs.push(Proc::spawn(
                &format!("{} v{}", run.name, if fam == 0 { 4 } else { 6 }),
                cmd,
                &log,
            ));
        }
        let mut exit = [None, None];
        let start = Instant::now();
        for (i, p) in procs.iter_mut().enumerate() {
            exit[i] = match p.wait_for(TOOL_DEADLINE.saturating_sub(start.elapsed())) {
                Some(s) => s.code(),
                None => {
                    // Over time: stop it and report it as killed (no code).
                    p.stop(libc::SIGKILL, Duration::from_secs(2));
                    None
                }
            };
        }
        // Late retransmissions still count for this tool.
        sleep(Duration::from_millis(200));
        let after = self.counters();
        let mut counters = BTreeMap::new();
        for (k, v) in &after {
            let d = v - before.get(k).copied().unwrap_or(0);
            if d != 0 {
                counters.insert(k.clone(), d);
            }
        }
        ToolFigures {
            name: run.name.into(),
            counters,
            exit,
            ..Default::default()
        }
    }

    /// Starts the two captures: scanner traffic leaving the WAN side, and
    /// scanner traffic arriving at the PBX side after XDP.
    pub fn start_captures(&self) -> (Capture, Capture) {
        let filter = format!("udp and (host {SCANNER4} or host {SCANNER6})");
        let net = &self.net;
        let wan = Capture::start(&net.wan, &net.wan_if, &filter, &self.dir, "wan");
        let pbx = Capture::start(&net.pbx, &net.pbx_if, &filter, &self.dir, "pbx");
        (wan, pbx)
    }

    /// Requests in the SIPp UAS message logs that did not come from the
    /// provider's UAC (every one of its requests has the same From).
    pub fn foreign_requests_at_sipp(&self) -> u64 {
        let mut n = 0;
        for fam in ["v4", "v6"] {
            let log = read_log(&self.dir.join(format!("uas-{fam}.msg")));
            for entry in log
                .split("-----------------------------------------------")
                .skip(1)
            {
                let Some((head, msg)) = entry.split_once(" bytes :") else {
                    continue;
                };
                if !head.contains("message received") {
                    continue;
                }
                let msg = msg.trim_start();
                if !msg.starts_with("SIP/2.0") && !msg.contains("From: \"Provider\" <sip:provider@")
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// The whole scenario: calls in both families while every scanner runs
    /// in turn; returns the figures (assertions are the caller's).
    pub fn run_scenario(&self, title: &str) -> Report {
        let (wan_cap, pbx_cap) = self.start_captures();
        let mut calls = [self.start_calls("v4", 4), self.start_calls("v6", 4)];
        // Calls are flowing before the first scanner starts.
        for c in calls.iter_mut() {
            c.wait_for_first_call();
        }
        let mut tools: Vec<ToolFigures> = SCANNERS
            .iter()
            .enumerate()
            .map(|(i, r)| self.run_scanner(r, i))
            .collect();
        let calls: Vec<CallFigures> = calls.into_iter().map(Calls::finish).collect();
        let wan = wan_cap.finish();
        let pbx = pbx_cap.finish();
        for (i, t) in tools.iter_mut().enumerate() {
            for fam in 0..2 {
                let port = scanner_port(i, fam);
                let from_scanner = |d: &&Datagram| is_scanner(d.src) && d.sport == port;
                t.sent[fam] = wan.iter().filter(from_scanner).count() as u64;
                t.reached[fam] = pbx.iter().filter(from_scanner).count() as u64;
                t.answers += wan
                    .iter()
                    .filter(|d| is_scanner(d.dst) && d.dport == port)
                    .count() as u64;
            }
        }
        // Every scanner datagram is one of the runs above: nothing else may
        // leave the scanner address (a wrong source-address setup would).
        let attributed: u64 = tools.iter().map(ToolFigures::sent_total).sum();
        let from_scanner = wan.iter().filter(|d| is_scanner(d.src)).count() as u64;
        assert_eq!(
            attributed, from_scanner,
            "scanner datagrams not attributable to a tool run"
        );
        Report {
            title: format!("{title}, XDP {}", xdp_mode()),
            tools,
            calls,
            foreign_requests_at_sipp: self.foreign_requests_at_sipp(),
        }
    }
}

fn is_scanner(a: IpAddr) -> bool {
    a == IpAddr::from(SCANNER4) || a == IpAddr::from(SCANNER6)
}

/// Source port of run `index` in family `fam` (0 = IPv4, 1 = IPv6).
pub fn scanner_port(index: usize, fam: usize) -> u16 {
    40000 + (index as u16) * 10 + fam as u16
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.endpoints.clear();
        // Its guard kills it and removes its pins.
        self.daemon = None;
        if std::env::var_os("SIPGUARD_LAB_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("lab files kept in {}", self.dir.display());
        }
    }
}

/// A running SIPp UAC.
pub struct Calls {
    family: &'static str,
    proc: Proc,
    stats: PathBuf,
}

impl Calls {
    fn wait_for_first_call(&mut self) {
        let stats = self.stats.clone();
        let proc = &mut self.proc;
        wait_until(
            "the first lab call to complete",
            Duration::from_secs(10),
            || {
                assert!(proc.try_status().is_none(), "{} exited early", proc.what);
                call_stats(&stats).is_some_and(|c| c.successful > 0)
            },
        );
    }

    /// Stops placing calls (SIGUSR1: SIPp finishes the calls in progress,
    /// then exits) and returns the final statistics.
    pub fn finish(mut self) -> CallFigures {
        let status = self.proc.stop(libc::SIGUSR1, Duration::from_secs(15));
        // SIPp may still be flushing its last line under load: a few reads.
        let mut got = call_stats(&self.stats);
        for _ in 0..20 {
            if got.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            got = call_stats(&self.stats);
        }
        let mut c = got.unwrap_or_else(|| {
            panic!(
                "no statistics from sipp uac {} ({}: {:?})",
                self.family,
                self.stats.display(),
                fs::read_to_string(&self.stats)
                    .map(|t| t.lines().count())
                    .map_err(|e| e.to_string())
            )
        });
        c.family = self.family;
        c.exit = status.code();
        c
    }
}

/// The last complete line of a SIPp `-trace_stat` file. SIPp appends a line
/// per period and one at exit; a reader can meet a line half written, so
/// lines that do not parse whole are skipped, newest first.
fn call_stats(path: &Path) -> Option<CallFigures> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next()?.split(';').collect();
    let parse = |line: &str| -> Option<CallFigures> {
        let last: Vec<&str> = line.split(';').collect();
        if last.len() < head.len() {
            return None;
        }
        let get = |name: &str| -> Option<u64> {
            last.get(head.iter().position(|h| *h == name)?)?
                .trim()
                .parse()
                .ok()
        };
        Some(CallFigures {
            family: "",
            attempted: get("OutgoingCall(C)")?,
            successful: get("SuccessfulCall(C)")?,
            failed: get("FailedCall(C)")?,
            retransmissions: get("Retransmissions(C)")?,
            exit: None,
        })
    };
    lines.rev().filter(|l| !l.trim().is_empty()).find_map(parse)
}
