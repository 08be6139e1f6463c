//! A private instance of the real program, run on frames with
//! BPF_PROG_TEST_RUN: used by `sipguard replay`, the fixture tests and the
//! benchmarks. It creates its own maps and never touches pinned ones.

use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions, TestRunResult},
    Ebpf,
};
use sipguard_common::{
    counter_index, map_names, packet::Link, Counter, Reason, PROGRAM_NAME, SINGLE_BUFFER_FRAME,
};

use super::{
    attach, bans, counters,
    decisions::DecisionMaps,
    features::Scanners,
    maps::PolicyMaps,
    program::{self, LoadOptions, EMPTY_PROGRAM_NAME},
    registrars, stateful,
};
use crate::policy::Policy;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// What the kernel program decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelVerdict {
    /// XDP action (`XDP_PASS` / `XDP_DROP`).
    pub action: u32,
    pub reason: Reason,
    pub monitored: bool,
}

pub struct Sandbox {
    ebpf: Ebpf,
    maps: PolicyMaps,
    /// `None` for older builds (compared in benchmarks) without them.
    decisions: Option<DecisionMaps>,
    counters: PerCpuArray<MapData, Counter>,
    report_reason: bool,
    /// `run_link` uses the multi-buffer build for every frame.
    all_multi_buffer: bool,
}

/// BPF_PROG_TEST_RUN of program `name` (XDP or TC) on `frame`, `repeat`
/// times.
fn test_run_of<P>(prog: &mut P, name: &str, frame: &[u8], repeat: u32) -> Result<TestRunResult>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    prog.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::default()
    })
    .with_context(|| {
        format!(
            "BPF_PROG_TEST_RUN of {name} on a {}-byte frame",
            frame.len()
        )
    })
}

impl Sandbox {
    /// Loads the embedded object with the reason reported in the return
    /// value (the attached program never does this).
    pub fn new(policy: &Policy) -> Result<Self> {
        Self::with_options(policy, true)
    }

    /// Loads the object exactly as the daemon does (for timing and for
    /// checking the production return path).
    pub fn production(policy: &Policy) -> Result<Self> {
        Self::with_options(policy, false)
    }

    /// `production` for another build of the object (an ELF file's bytes).
    pub fn production_from(object: &[u8], policy: &Policy) -> Result<Self> {
        Self::from_object(object, policy, false)
    }

    /// `new` with the SIP scanner on byte loads only (`WORD_LOADS` = 0), as
    /// on CPUs without unaligned loads.
    pub fn byte_loads_only(policy: &Policy) -> Result<Self> {
        Self::load(
            program::OBJECT,
            policy,
            LoadOptions {
                report_reason: true,
                byte_loads_only: true,
                ..Default::default()
            },
        )
    }

    /// `new` with the given builds of the inspector and the any-port
    /// reader in their slots (`Scanners::Bounded`: the ones kernels before
    /// 5.17 run), whatever this kernel has.
    pub fn with_scanners(policy: &Policy, scanners: Scanners) -> Result<Self> {
        Self::load(
            program::OBJECT,
            policy,
            LoadOptions {
                report_reason: true,
                scanners,
                ..Default::default()
            },
        )
    }

    /// `new` whose `run_link` runs every frame, of any size, through the
    /// multi-buffer (`xdp.frags`) build, as on a jumbo link; Linux 5.18+.
    pub fn multi_buffer(policy: &Policy) -> Result<Self> {
        let mut sb = Self::new(policy)?;
        sb.load_multi_buffer(Link::Ethernet)?;
        sb.all_multi_buffer = true;
        Ok(sb)
    }

    fn with_options(policy: &Policy, report_reason: bool) -> Result<Self> {
        Self::from_object(program::OBJECT, policy, report_reason)
    }

    fn from_object(object: &[u8], policy: &Policy, report_reason: bool) -> Result<Self> {
        Self::load(
            object,
            policy,
            LoadOptions {
                report_reason,
                ..Default::default()
            },
        )
    }

    fn load(object: &[u8], policy: &Policy, opts: LoadOptions) -> Result<Self> {
        let report_reason = opts.report_reason;
        let mut ebpf = program::load_object(object, opts)?;
        let counters = ebpf
            .take_map(map_names::COUNTERS)
            .ok_or_else(|| anyhow!("COUNTERS map missing"))?
            .try_into()?;
        let mut maps = PolicyMaps::take(&mut ebpf)?;
        maps.apply(policy)?;
        let decisions = DecisionMaps::take(&mut ebpf).ok();
        let mut sb = Sandbox {
            ebpf,
            maps,
            decisions,
            counters,
            report_reason,
            all_multi_buffer: false,
        };
        sb.apply_decisions(policy)?;
        Ok(sb)
    }

    pub fn apply(&mut self, policy: &Policy) -> Result<()> {
        self.maps.apply(policy)?;
        self.apply_decisions(policy)
    }

    /// The policy's decisions, exactly, in the sandbox's tries (the
    /// lookup hint is set only once there is one, so a policy without
    /// decisions runs the path a daemon without a bouncer runs).
    fn apply_decisions(&mut self, policy: &Policy) -> Result<()> {
        if self.decisions.is_none() {
            anyhow::ensure!(
                policy.decisions.is_empty(),
                "this build of the object has no decision maps"
            );
            return Ok(());
        }
        self.with_decisions(|d, hints| d.replace(hints, &policy.decisions))
    }

    /// Adds decisions as the daemon's bouncer writes them (entry by entry,
    /// nothing removed); how many were written.
    pub fn add_decisions(&mut self, decisions: &[crate::policy::Decision]) -> Result<usize> {
        self.with_decisions(|d, hints| d.upsert(hints, decisions))
    }

    fn with_decisions<T>(
        &mut self,
        f: impl FnOnce(
            &mut DecisionMaps,
            &mut aya::maps::Array<&mut MapData, sipguard_common::StateHints>,
        ) -> Result<T>,
    ) -> Result<T> {
        let decisions = self
            .decisions
            .as_mut()
            .ok_or_else(|| anyhow!("this build of the object has no decision maps"))?;
        let map = self
            .ebpf
            .map_mut(map_names::HINTS)
            .ok_or_else(|| anyhow!("HINTS map missing"))?;
        let mut hints = aya::maps::Array::try_from(map)?;
        f(decisions, &mut hints)
    }

    /// The sandbox's own maps (e.g. to load a large blocklist directly).
    pub fn maps_mut(&mut self) -> &mut PolicyMaps {
        &mut self.maps
    }

    fn test_run(&mut self, name: &str, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
        let prog = program::xdp_program(&mut self.ebpf, name)?;
        let r = test_run_of(prog, name, frame, repeat)?;
        Ok((r.return_value, r.duration))
    }

    /// Runs one frame through the program.
    pub fn run(&mut self, frame: &[u8]) -> Result<KernelVerdict> {
        self.run_link(frame, Link::Ethernet)
    }

    /// Runs one packet through the entry point for `link` (the raw-IP entry
    /// point is loaded on first use, as the daemon does). A frame larger
    /// than a single buffer ([`SINGLE_BUFFER_FRAME`]) goes through the
    /// multi-buffer build, as on a jumbo link: the test run puts what
    /// exceeds the linear part in fragments.
    pub fn run_link(&mut self, frame: &[u8], link: Link) -> Result<KernelVerdict> {
        if frame.len() > SINGLE_BUFFER_FRAME || self.all_multi_buffer {
            return self.run_multi_buffer(frame, link);
        }
        self.run_single_buffer(frame, link)
    }

    /// Runs one packet through the single-buffer entry point for `link`
    /// whatever its size: of a frame above [`SINGLE_BUFFER_FRAME`] it sees
    /// only the linear part, as no real link would show it.
    pub fn run_single_buffer(&mut self, frame: &[u8], link: Link) -> Result<KernelVerdict> {
        let name = attach::program_for(link);
        if program::xdp_program(&mut self.ebpf, name)?.fd().is_err() {
            program::load_program(&mut self.ebpf, name, false)?;
        }
        self.verdict_of(name, frame)
    }

    /// Runs one packet, of any size, through the multi-buffer
    /// (`xdp.frags`) entry point for `link`, loaded on first use.
    pub fn run_multi_buffer(&mut self, frame: &[u8], link: Link) -> Result<KernelVerdict> {
        let name = self.load_multi_buffer(link)?;
        self.verdict_of(name, frame)
    }

    /// Loads the multi-buffer build for `link` (once); its entry point.
    pub fn load_multi_buffer(&mut self, link: Link) -> Result<&'static str> {
        let name = attach::frags_program_for(link);
        program::load_frags(&mut self.ebpf, name, false)?;
        Ok(name)
    }

    fn verdict_of(&mut self, name: &str, frame: &[u8]) -> Result<KernelVerdict> {
        anyhow::ensure!(
            self.report_reason,
            "Sandbox::production() cannot report reasons; use run_action"
        );
        let (rv, _) = self.test_run(name, frame, 1)?;
        let reason = Reason::from_u32((rv >> 8) & 0xff)
            .ok_or_else(|| anyhow!("kernel returned unknown reason in {rv:#x}"))?;
        Ok(KernelVerdict {
            action: rv & 0xff,
            reason,
            monitored: rv & (1 << 16) != 0,
        })
    }

    /// Runs one frame and returns the bare XDP action.
    pub fn run_action(&mut self, frame: &[u8]) -> Result<u32> {
        let (rv, _) = self.test_run(PROGRAM_NAME, frame, 1)?;
        Ok(if self.report_reason { rv & 0xff } else { rv })
    }

    /// Kernel-measured average time per run over `repeat` runs.
    pub fn time(&mut self, frame: &[u8], repeat: u32) -> Result<Duration> {
        Ok(self.test_run(PROGRAM_NAME, frame, repeat)?.1)
    }

    /// The same for the empty XDP program in the same object: the baseline.
    pub fn time_empty(&mut self, frame: &[u8], repeat: u32) -> Result<Duration> {
        if self
            .ebpf
            .program(EMPTY_PROGRAM_NAME)
            .is_some_and(|p| p.fd().is_err())
        {
            program::load_program(&mut self.ebpf, EMPTY_PROGRAM_NAME, false)?;
        }
        Ok(self.test_run(EMPTY_PROGRAM_NAME, frame, repeat)?.1)
    }

    /// The verifier's instruction count for the filter program.
    pub fn verified_instructions(&self) -> Result<Option<u32>> {
        self.verified_instructions_of(PROGRAM_NAME)
    }

    /// The verifier's instruction count for any loaded program of the object
    /// (e.g. the tail-called inspector).
    pub fn verified_instructions_of(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.info_of(name)?.verified_instruction_count())
    }

    /// Bytes of machine code the kernel's JIT made of program `name` (0:
    /// it runs in the interpreter).
    pub fn jited_bytes_of(&self, name: &str) -> Result<u32> {
        Ok(self.info_of(name)?.size_jitted())
    }

    fn info_of(&self, name: &str) -> Result<aya::programs::ProgramInfo> {
        let prog = self
            .ebpf
            .program(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?;
        Ok(prog.info()?)
    }

    /// The stack bytes of each function of a loaded program of the object
    /// (entry point first), where the JIT tells ([`super::jit`]).
    pub fn stack_frames_of(&self, name: &str) -> Result<Option<Vec<u32>>> {
        let prog = self
            .ebpf
            .program(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?;
        super::jit::stack_frames(prog.fd()?)
    }

    /// Puts a learned registrar with an absolute expiry (CLOCK_BOOTTIME
    /// ns, see [`stateful::boot_ns`]) into the sandbox's maps.
    pub fn set_learned(&mut self, addr: std::net::IpAddr, expiry_ns: u64) -> Result<()> {
        self.mark_hints(|h| h.learned = 1)?;
        match addr {
            std::net::IpAddr::V4(a) => self.learn_in(map_names::LEARNED_V4, a.octets(), expiry_ns),
            std::net::IpAddr::V6(a) => self.learn_in(map_names::LEARNED_V6, a.octets(), expiry_ns),
        }
    }

    fn learn_in<K: aya::Pod>(&mut self, name: &str, key: K, expiry_ns: u64) -> Result<()> {
        let m = self
            .ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("{name} missing"))?;
        let mut h: aya::maps::HashMap<&mut MapData, K, u64> = aya::maps::HashMap::try_from(m)?;
        h.insert(key, expiry_ns, 0)?;
        Ok(())
    }

    /// The learned entries (address, expiry ns) in the sandbox's maps.
    pub fn learned(&self) -> Result<Vec<(std::net::IpAddr, u64)>> {
        let mut out = self.learned_in::<[u8; 4]>(map_names::LEARNED_V4)?;
        out.extend(self.learned_in::<[u8; 16]>(map_names::LEARNED_V6)?);
        out.sort();
        Ok(out)
    }

    fn learned_in<K>(&self, name: &str) -> Result<Vec<(std::net::IpAddr, u64)>>
    where
        K: aya::Pod,
        std::net::IpAddr: From<K>,
    {
        let m = self
            .ebpf
            .map(name)
            .ok_or_else(|| anyhow!("{name} missing"))?;
        let h: aya::maps::HashMap<&MapData, K, u64> = aya::maps::HashMap::try_from(m)?;
        h.iter()
            .map(|kv| {
                kv.map(|(k, v)| (std::net::IpAddr::from(k), v))
                    .map_err(Into::into)
            })
            .collect()
    }

    /// Sets the learning TTL (0: off), as the daemon does from the config.
    pub fn set_learn_ttl(&mut self, ttl_ns: u64) -> Result<()> {
        registrars::set_ttl(&mut self.ebpf, ttl_ns)
    }

    /// Runs one Ethernet frame through the TC egress learner; returns its
    /// TC action (always TC_ACT_OK = 0).
    pub fn run_learner(&mut self, frame: &[u8]) -> Result<u32> {
        let name = sipguard_common::LEARN_PROGRAM_NAME;
        let prog: &mut aya::programs::SchedClassifier = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?
            .try_into()?;
        if prog.fd().is_err() {
            prog.load()?;
        }
        Ok(test_run_of(prog, name, frame, 1)?.return_value)
    }

    /// Turns on stateful features (events, bans, fragment tracking). A new
    /// sandbox has them off: its verdicts then depend on the frame and the
    /// policy alone, as the host's do.
    pub fn set_ops(&mut self, ops: sipguard_common::OpsSettings) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(sipguard_common::map_names::OPS)
            .ok_or_else(|| anyhow!("OPS map missing"))?;
        let mut arr: aya::maps::Array<&mut MapData, sipguard_common::OpsSettings> =
            aya::maps::Array::try_from(map)?;
        arr.set(0, ops, 0)?;
        Ok(())
    }

    /// The sticky `HINTS` bits, as `sipguard ban` and the kernel set them.
    fn mark_hints(&mut self, mark: impl FnOnce(&mut sipguard_common::StateHints)) -> Result<()> {
        // Older builds (compared in benchmarks) have no hints and always
        // look everything up.
        let Some(map) = self.ebpf.map_mut(sipguard_common::map_names::HINTS) else {
            return Ok(());
        };
        let mut arr: aya::maps::Array<&mut MapData, sipguard_common::StateHints> =
            aya::maps::Array::try_from(map)?;
        stateful::mark_hints(&mut arr, mark)
    }

    /// Bans `addr` without end, as `sipguard ban` does on the pinned maps
    /// (IPv6 by the default /64), so a frame from it takes the banned path.
    pub fn ban(&mut self, addr: std::net::IpAddr) -> Result<()> {
        use sipguard_common::{AddrKey, BanEntry, BAN_FOREVER, BAN_MANUAL};
        let entry = BanEntry::new(BAN_FOREVER, BAN_MANUAL, 0);
        self.mark_hints(|h| h.bans = 1)?;
        let map = self
            .ebpf
            .map_mut(sipguard_common::map_names::BANS)
            .ok_or_else(|| anyhow!("BANS map missing"))?;
        if let aya::maps::Map::LruHashMap(data) = &*map {
            if data.info()?.value_size() == 16 {
                // An older build (benchmark comparisons): its entry is the
                // first 16 bytes of today's (end, origin, count).
                let mut old = [0u8; 16];
                old[..8].copy_from_slice(&entry.expires_ns.to_ne_bytes());
                old[8..12].copy_from_slice(&entry.origin.to_ne_bytes());
                let mut bans: aya::maps::HashMap<&mut MapData, AddrKey, [u8; 16]> =
                    aya::maps::HashMap::try_from(map)?;
                return bans
                    .insert(bans::key_for(addr, 64), old, 0)
                    .context("updating BANS");
            }
        }
        self.set_ban(addr, entry)
    }

    /// Writes `addr`'s `BANS` entry (IPv6 by the default /64).
    pub fn set_ban(
        &mut self,
        addr: std::net::IpAddr,
        entry: sipguard_common::BanEntry,
    ) -> Result<()> {
        self.mark_hints(|h| h.bans = 1)?;
        self.bans()?
            .insert(bans::key_for(addr, 64), entry, 0)
            .context("updating BANS")
    }

    /// `addr`'s `BANS` entry (IPv6 by the default /64), if any.
    pub fn ban_entry(
        &mut self,
        addr: std::net::IpAddr,
    ) -> Result<Option<sipguard_common::BanEntry>> {
        match self.bans()?.get(&bans::key_for(addr, 64), 0) {
            Ok(e) => Ok(Some(e)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn bans(
        &mut self,
    ) -> Result<aya::maps::HashMap<&mut MapData, sipguard_common::AddrKey, sipguard_common::BanEntry>>
    {
        let map = self
            .ebpf
            .map_mut(sipguard_common::map_names::BANS)
            .ok_or_else(|| anyhow!("BANS map missing"))?;
        Ok(aya::maps::HashMap::try_from(map)?)
    }

    /// The drop event ring buffer (taken out of the sandbox on first use).
    pub fn take_events(&mut self) -> Result<aya::maps::RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(sipguard_common::map_names::EVENTS)
            .ok_or_else(|| anyhow!("EVENTS map missing or already taken"))?;
        Ok(map.try_into()?)
    }

    /// One `OPS_STATS` slot summed over CPUs.
    pub fn ops_stat(&self, idx: u32) -> Result<u64> {
        let map = self
            .ebpf
            .map(sipguard_common::map_names::OPS_STATS)
            .ok_or_else(|| anyhow!("OPS_STATS map missing"))?;
        let arr: aya::maps::PerCpuArray<&MapData, u64> = aya::maps::PerCpuArray::try_from(map)?;
        Ok(arr.get(&idx, 0)?.iter().sum())
    }

    /// Counter of (slot 0, mode, reason): BPF_PROG_TEST_RUN's ifindex has
    /// no slot.
    pub fn counter(&self, reason: Reason, monitored: bool) -> Result<Counter> {
        counters::read_cell(&self.counters, counter_index(0, monitored, reason as u32))
    }
}
