//! The XDP peer: xdp-filter from xdp-tools, the standard XDP packet filter.
//! Its own BPF objects, as the distribution ships them, are loaded with aya
//! and their maps filled the way `xdp-filter port` and `xdp-filter ip`
//! fill them; then they run on the same frames as sipguard through
//! BPF_PROG_TEST_RUN, in the same rounds. Nothing of xdp-filter is built
//! or copied here: only its map layout is written down.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};

/// Which of xdp-filter's programs: `xdp-filter load` picks one object per
/// feature set (`--features`); the default loads all features.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Features {
    /// `xdp-filter load IFACE`: Ethernet, IPv4, IPv6, UDP and TCP matching.
    All,
    /// `xdp-filter load -f udp IFACE`: UDP ports only.
    Udp,
    /// `xdp-filter load -f ipv4 IFACE`: IPv4 addresses only.
    Ipv4,
}

impl Features {
    /// The program (and object file stem) in allow mode: listed matches
    /// are dropped, everything else passes.
    fn program(self) -> &'static str {
        match self {
            Features::All => "xdpfilt_alw_all",
            Features::Udp => "xdpfilt_alw_udp",
            Features::Ipv4 => "xdpfilt_alw_ip",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Features::All => "xdp-filter (default: all features)",
            Features::Udp => "xdp-filter -f udp",
            Features::Ipv4 => "xdp-filter -f ipv4",
        }
    }
}

// xdp-filter's map values: match flags in the low bits, a hit counter
// above them (its common_kern_user.h).
const FLAG_SRC: u64 = 1 << 0;
const FLAG_DST: u64 = 1 << 1;
const FLAG_UDP: u64 = 1 << 3;
const COUNTER_SHIFT: u32 = 6;
const PORTS: &str = "filter_ports";
const IPV4: &str = "filter_ipv4";

/// Directories where distributions put xdp-tools' BPF objects.
fn object_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        for e in rd.flatten() {
            let p = e.path().join("bpf");
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    dirs.extend(["/usr/lib/bpf", "/usr/local/lib/bpf"].map(PathBuf::from));
    dirs
}

/// The shipped object of `features`, or why it cannot be had.
pub fn object_path(features: Features) -> Result<PathBuf> {
    let file = format!("{}.o", features.program());
    object_dirs()
        .into_iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "xdp-filter's BPF object {file} is not installed (searched /usr/lib/*/bpf, \
                 /usr/lib/bpf, /usr/local/lib/bpf): install xdp-tools (scripts/setup.sh --tests)"
            )
        })
}

pub struct XdpFilter {
    ebpf: Ebpf,
    features: Features,
    /// Its maps are pinned here (the object asks for pinning by name); the
    /// directory is private to this instance and removed on drop.
    pin_dir: PathBuf,
}

fn nr_cpus() -> Result<usize> {
    aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))
}

fn per_cpu(v: u64) -> Result<PerCpuValues<u64>> {
    PerCpuValues::try_from(vec![v; nr_cpus()?]).context("per-CPU map value")
}

impl XdpFilter {
    /// Loads xdp-filter's program for `features`; `ipv4_entries` sizes its
    /// IPv4 address table (xdp-filter's own default is 10,000).
    pub fn load(features: Features, ipv4_entries: u32) -> Result<Self> {
        let path = object_path(features)?;
        let object = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        static INSTANCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/sgbench-xdpfilt-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&pin_dir)
            .with_context(|| format!("creating {}", pin_dir.display()))?;
        // Its maps ask to be pinned by name: in this private directory.
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(&pin_dir);
        loader.map_max_entries(IPV4, ipv4_entries.max(1));
        let ebpf = match loader.load(&object) {
            Ok(e) => e,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&pin_dir);
                return Err(e).with_context(|| format!("loading {}", path.display()));
            }
        };
        // From here on, dropping `this` removes the pins.
        let mut this = XdpFilter {
            ebpf,
            features,
            pin_dir,
        };
        this.prog()?
            .load()
            .with_context(|| format!("verifying {}", features.program()))?;
        Ok(this)
    }

    pub fn features(&self) -> Features {
        self.features
    }

    fn prog(&mut self) -> Result<&mut Xdp> {
        let name = self.features.program();
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("no program {name} in xdp-filter's object"))?
            .try_into()
            .context("xdp-filter's program is not XDP")
    }

    /// `xdp-filter port PORT --mode dst --proto udp`.
    pub fn deny_udp_dst_port(&mut self, port: u16) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(PORTS)
            .ok_or_else(|| anyhow!("{} has no {PORTS} map", self.features.program()))?;
        let mut ports: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(map)?;
        // Indexed by the port as it sits in the packet (network order).
        ports.set(port.to_be() as u32, per_cpu(FLAG_DST | FLAG_UDP)?, 0)?;
        Ok(())
    }

    /// `xdp-filter ip ADDR --mode src` for every address; returns how many
    /// the table holds.
    pub fn deny_src_v4(&mut self, addrs: impl IntoIterator<Item = [u8; 4]>) -> Result<usize> {
        let map = self
            .ebpf
            .map_mut(IPV4)
            .ok_or_else(|| anyhow!("{} has no {IPV4} map", self.features.program()))?;
        let mut table: PerCpuHashMap<&mut MapData, u32, u64> = PerCpuHashMap::try_from(map)?;
        let cpus = nr_cpus()?;
        let mut n = 0;
        for a in addrs {
            // Keyed by the address as it sits in the packet.
            table
                .insert(
                    u32::from_ne_bytes(a),
                    PerCpuValues::try_from(vec![FLAG_SRC; cpus])?,
                    0,
                )
                .with_context(|| format!("adding {a:?} to {IPV4}"))?;
            n += 1;
        }
        Ok(n)
    }

    /// How many packets the listed source `addr` has dropped (xdp-filter
    /// counts hits in the entry's value, above the flag bits).
    pub fn src_v4_hits(&self, addr: [u8; 4]) -> Result<u64> {
        let map = self
            .ebpf
            .map(IPV4)
            .ok_or_else(|| anyhow!("{} has no {IPV4} map", self.features.program()))?;
        let table: PerCpuHashMap<&MapData, u32, u64> = PerCpuHashMap::try_from(map)?;
        let v = table
            .get(&u32::from_ne_bytes(addr), 0)
            .with_context(|| format!("{addr:?} is not in {IPV4}"))?;
        Ok(v.iter().map(|x| x >> COUNTER_SHIFT).sum())
    }

    /// The IPv4 table's memory as its fdinfo says (the table is
    /// preallocated: the figure is for its full size from the start).
    pub fn ipv4_memory(&self) -> Result<u64> {
        let map = self
            .ebpf
            .map(IPV4)
            .ok_or_else(|| anyhow!("{} has no {IPV4} map", self.features.program()))?;
        let data: &MapData = match map {
            aya::maps::Map::PerCpuHashMap(d) => d,
            _ => bail!("{IPV4} is not a per-CPU hash"),
        };
        sipguard::kernel::maps::map_memlock(data)
    }

    fn test_run(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
        let name = self.features.program();
        let r = self
            .prog()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
        Ok((r.return_value, r.duration))
    }

    /// The XDP action for one frame.
    pub fn run(&mut self, frame: &[u8]) -> Result<u32> {
        Ok(self.test_run(frame, 1)?.0)
    }

    pub fn time(&mut self, frame: &[u8], repeat: u32) -> Result<Duration> {
        Ok(self.test_run(frame, repeat)?.1)
    }

    /// Pins the program so `ip link set ... xdpdrv pinned PATH` attaches it.
    pub fn pin_program(&mut self, path: &Path) -> Result<()> {
        self.prog()?
            .pin(path)
            .with_context(|| format!("pinning xdp-filter at {}", path.display()))
    }
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// One job of the peer, measured beside the sipguard class doing the same
/// job on the same frame.
pub struct Job {
    pub key: String,
    pub name: String,
    /// The sipguard class whose frame it runs and to which it is compared.
    pub class_key: &'static str,
    pub instance: usize,
    pub drop: bool,
}

/// xdp-filter set up for each equivalent job, default and minimal feature
/// sets side by side.
pub struct Peers {
    pub instances: Vec<XdpFilter>,
    pub jobs: Vec<Job>,
    /// The 1M-address table of each feature set: (entries, memlock bytes).
    pub table_1m: Vec<(Features, usize, u64)>,
}

/// Source address of the 1-entry list (sipguard's blocked /24 holds it).
pub const LISTED: [u8; 4] = [203, 0, 113, 9];

impl Peers {
    /// `big` is the 1M-entry list's addresses; `sip_port` the port
    /// sipguard treats as SIP.
    pub fn new(big: &[[u8; 4]], sip_port: u16) -> Result<Self> {
        let mut instances = Vec::new();
        let mut jobs = Vec::new();
        let mut table_1m = Vec::new();
        let add_job = |jobs: &mut Vec<Job>,
                       inst: usize,
                       f: Features,
                       what: &str,
                       class_key: &'static str,
                       drop: bool| {
            jobs.push(Job {
                key: format!("{}:{class_key}", f.program()),
                name: what.to_string(),
                class_key,
                instance: inst,
                drop,
            });
        };
        for (f_port, f_ip) in [
            (Features::All, Features::All),
            (Features::Udp, Features::Ipv4),
        ] {
            // `xdp-filter port 5060`: every UDP packet to the SIP port drops.
            let mut port = XdpFilter::load(f_port, 10_000)?;
            port.deny_udp_dst_port(sip_port)?;
            instances.push(port);
            let i = instances.len() - 1;
            add_job(
                &mut jobs,
                i,
                f_port,
                "drop by UDP destination port",
                "untrusted_invite_drop",
                true,
            );
            add_job(
                &mut jobs,
                i,
                f_port,
                "pass, port not listed",
                "non_sip_udp",
                false,
            );
            // `xdp-filter ip ADDR --mode src`, one address.
            let mut one = XdpFilter::load(f_ip, 10_000)?;
            one.deny_src_v4([LISTED])?;
            instances.push(one);
            let i = instances.len() - 1;
            add_job(
                &mut jobs,
                i,
                f_ip,
                "drop a listed source, 1 entry",
                "blocked_small",
                true,
            );
            add_job(
                &mut jobs,
                i,
                f_ip,
                "pass, source not listed (1 entry)",
                "trusted_invite",
                false,
            );
            // The same with 1,000,000 addresses.
            let mut big_filter = XdpFilter::load(f_ip, big.len() as u32)?;
            let n = big_filter.deny_src_v4(big.iter().copied())?;
            table_1m.push((f_ip, n, big_filter.ipv4_memory()?));
            instances.push(big_filter);
            let i = instances.len() - 1;
            add_job(
                &mut jobs,
                i,
                f_ip,
                "drop a listed source, 1M entries",
                "blocked_1m_32",
                true,
            );
            add_job(
                &mut jobs,
                i,
                f_ip,
                "pass, source not listed (1M entries)",
                "trusted_invite_1m",
                false,
            );
        }
        Ok(Peers {
            instances,
            jobs,
            table_1m,
        })
    }

    /// Each job's frame must get the job's verdict (XDP_DROP = 1,
    /// XDP_PASS = 2), or the comparison would be of different work.
    pub fn check(&mut self, frame_of: impl Fn(&str) -> Option<Vec<u8>>) -> Result<()> {
        for j in &self.jobs {
            let frame = frame_of(j.class_key)
                .ok_or_else(|| anyhow!("no sipguard class {}", j.class_key))?;
            let action = self.instances[j.instance].run(&frame)?;
            ensure!(
                action == if j.drop { 1 } else { 2 },
                "{}: XDP action {action}, expected {}",
                j.name,
                if j.drop { "XDP_DROP" } else { "XDP_PASS" }
            );
        }
        Ok(())
    }
}
