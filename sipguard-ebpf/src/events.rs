//! Drop events: sampled per source in the kernel (at most one per source per
//! interval, carrying how many were suppressed), limited per CPU per second,
//! and sent through a ring buffer; a full ring buffer or a used-up budget
//! is counted, never silent.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use sipguard_common::{
    abi::*,
    packet::{Flow, Stop},
    verdict::Outcome,
};

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map(name = "EVENT_SAMPLER")]
pub static EVENT_SAMPLER: LruHashMap<AddrKey, SampleState> =
    LruHashMap::with_max_entries(SAMPLER_ENTRIES, 0);

/// This CPU's events of the current second, for `events_per_second`:
/// sampling per source bounds a flood from few sources, this one from many
/// (65,536 sources below the ban threshold are 65,536 events a second,
/// and logging them takes the daemon a whole CPU).
#[map(name = "EVENT_BUDGET")]
static EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct EventBudget {
    /// When the current second began (0: none yet).
    second_ns: u64,
    /// Events let through since.
    sent: u32,
    _pad0: u32,
}

const SECOND_NS: u64 = 1_000_000_000;

/// Takes one event from this CPU's budget; false when it is used up.
#[inline(always)]
fn within_budget(ops: &OpsSettings, t: u64) -> bool {
    let limit = ops.events_per_second;
    if limit == 0 {
        return true;
    }
    let Some(b) = EVENT_BUDGET.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: a per-CPU value; XDP does not nest on one CPU.
    unsafe {
        if t.wrapping_sub((*b).second_ns) >= SECOND_NS {
            (*b).second_ns = t;
            (*b).sent = 0;
        }
        if (*b).sent >= limit {
            return false;
        }
        (*b).sent += 1;
    }
    true
}

#[map(name = "OPS_STATS")]
pub static OPS_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

#[map(name = "OPS")]
pub static OPS: Array<OpsSettings> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn stat(idx: u32) {
    if let Some(c) = OPS_STATS.get_ptr_mut(idx) {
        // Per-CPU: no other writer.
        unsafe { *c += 1 };
    }
}

/// What an event says about the packet's addresses.
pub struct Addrs {
    pub ipv6: bool,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

#[inline(always)]
pub fn addrs(parsed: Result<&Flow, &Stop>) -> Option<Addrs> {
    match parsed {
        Ok(f) => Some(Addrs {
            ipv6: f.ipv6,
            src: f.src,
            dst: f.dst,
            proto: f.proto,
            sport: f.sport,
            dport: f.dport,
        }),
        Err(Stop::LaterFragment(k)) => Some(Addrs {
            ipv6: k.family == 6,
            src: k.src,
            dst: k.dst,
            proto: 0,
            sport: 0,
            dport: 0,
        }),
        Err(_) => None,
    }
}

/// Sends an event for a dropped (or would-drop) packet unless its source
/// already had one within the interval. A banned source (`ban`: its `BANS`
/// entry, found by the verdict; null otherwise) is sampled in that entry,
/// per ban, which spares the flood's steady state the `EVENT_SAMPLER`
/// lookup; every other drop per source in `EVENT_SAMPLER`.
#[inline(always)]
pub fn emit(
    ctx: &XdpContext,
    ops: &OpsSettings,
    a: &Addrs,
    out: &Outcome,
    sip: &SipEventInfo,
    t: u64,
    ban: *mut BanEntry,
) {
    let key = AddrKey::new(a.ipv6, &a.src, 128);
    // SAFETY: `ban` is null or a valid `BANS` value pointer of this run.
    // Two CPUs hitting the same source at once may lose one increment of a
    // `suppressed` here (the bpfel core has no atomic read-modify-write);
    // the per-CPU STAT_EVENTS_SUPPRESSED is exact.
    let due = unsafe {
        if ban.is_null() {
            due_for_source(ops, &key, t)
        } else {
            due_for_ban(ops, &mut *ban, t)
        }
    };
    let Some(suppressed) = due else {
        stat(STAT_EVENTS_SUPPRESSED);
        return;
    };
    // A lost event (full ring) is counted as lost, and the source is
    // sampled as if it had been sent: otherwise every later packet of a
    // flood would retry (and count as lost) while the ring is full. Its
    // next event carries this one in `suppressed`. An event over this
    // CPU's budget is held back and carried the same way.
    let carried = if !within_budget(ops, t) {
        stat(STAT_EVENTS_OVER_BUDGET);
        suppressed + 1
    } else if send(ctx, a, out, sip, t, suppressed) {
        stat(STAT_EVENTS_SENT);
        0
    } else {
        stat(STAT_EVENTS_LOST);
        suppressed + 1
    };
    if ban.is_null() {
        let _ = EVENT_SAMPLER.insert(
            &key,
            &SampleState {
                last_ns: t,
                suppressed: carried as u64,
            },
            0,
        );
    } else {
        // SAFETY: as above.
        unsafe {
            (*ban).event_ns = t;
            (*ban).suppressed = carried;
        }
    }
}

/// `Some(drops not reported since the last event)` when the source may
/// have an event now; otherwise counts the drop as suppressed.
#[inline(always)]
fn due_for_source(ops: &OpsSettings, key: &AddrKey, t: u64) -> Option<u32> {
    let Some(s) = EVENT_SAMPLER.get_ptr_mut(key) else {
        return Some(0);
    };
    // SAFETY: a valid map value pointer.
    unsafe {
        if t.wrapping_sub((*s).last_ns) < ops.event_interval_ns {
            (*s).suppressed += 1;
            return None;
        }
        Some((*s).suppressed as u32)
    }
}

/// The same for a banned source, in its `BANS` entry.
#[inline(always)]
fn due_for_ban(ops: &OpsSettings, b: &mut BanEntry, t: u64) -> Option<u32> {
    if b.event_ns != 0 && t.wrapping_sub(b.event_ns) < ops.event_interval_ns {
        b.suppressed = b.suppressed.wrapping_add(1);
        return None;
    }
    Some(b.suppressed)
}

/// Writes one event to the ring buffer; `false` when it is full.
#[inline(always)]
fn send(
    ctx: &XdpContext,
    a: &Addrs,
    out: &Outcome,
    sip: &SipEventInfo,
    t: u64,
    suppressed: u32,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        return false;
    };
    let ev = DropEvent {
        time_ns: t,
        src: a.src,
        dst: a.dst,
        ifindex: ctx.ingress_ifindex() as u32,
        reason: out.reason as u32,
        suppressed,
        sport: a.sport,
        dport: a.dport,
        family: if a.ipv6 { 6 } else { 4 },
        proto: a.proto,
        action: if out.monitored {
            ACTION_WOULD_DROP
        } else {
            ACTION_DROP
        },
        sip_method: sip.method,
        ua_len: sip.ua_len,
        _pad0: [0; 3],
        user_agent: sip.user_agent,
    };
    entry.write(ev);
    entry.submit(0);
    true
}
