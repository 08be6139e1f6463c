//! The sipguard XDP programs. `sipguard` (and `sipguard_rawip` for devices
//! without an Ethernet header) parse each frame with the shared logic in
//! `sipguard-common`, look the source up, and either finish the packet or,
//! for untrusted UDP under the `inspect` policy, tail-call
//! `sipguard_inspect`, which runs the shared SIP scanner and finishes it.
//! Finishing = count per interface and reason, events/bans/fragment memory
//! for drops, pass or drop.
#![no_std]
#![no_main]
// Inline asm for the 8-byte packet load in `pkt.rs`.
#![feature(asm_experimental_arch)]

mod bans;
mod clock;
mod events;
mod frags;
mod learn;
mod maps;
mod pkt;

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::generated::bpf_loop,
    macros::xdp,
    maps::ProgramArray,
    programs::XdpContext,
};
use sipguard_common::{
    any_port, counter_index,
    packet::{self, Flow, Link, Stop},
    sip::{self, Step, JUMBO_MAX_STEPS, MAX_STEPS},
    verdict::{
        any_port_verdict, judge_flow, outcome, parse_after, quick_step, stop_reason, Judgement,
        Outcome, Quick,
    },
    Reason, Settings, SipEventInfo, ANY_PORT_SLOT, INSPECTOR_SLOT, MAX_IFINDEX,
};

use crate::{
    bans::PacketState,
    maps::*,
    pkt::{Frame, MultiBuf, Pkt},
};

/// Set to 1 at load time by BPF_PROG_TEST_RUN users (`sipguard replay`,
/// tests): the reason is then encoded in the return value. `.rodata`, so
/// the verifier removes that path from the program the daemon attaches.
#[unsafe(no_mangle)]
static REPORT_REASON: u32 = 0;

#[xdp]
pub fn sipguard(ctx: XdpContext) -> u32 {
    filter::<Pkt>(&ctx, Link::Ethernet, &INSPECTOR)
}

/// Attached by the daemon to interfaces whose packets carry no Ethernet
/// header (ARPHRD_NONE, ARPHRD_PPP, ...): generic XDP hands it the IP header
/// at data[0]. A separate entry point so the Ethernet path pays nothing.
#[xdp]
pub fn sipguard_rawip(ctx: XdpContext) -> u32 {
    filter::<Pkt>(&ctx, Link::RawIp, &INSPECTOR)
}

// The multi-buffer builds (`xdp.frags`, Linux 5.18+): the same programs
// over `MultiBuf`, for native XDP on links whose MTU a single buffer cannot
// hold. A program array holds programs of one kind only (the kernel checks
// `xdp_has_frags` on every tail call map), so they tail-call through
// `INSPECTOR_FRAGS`.

#[xdp(frags)]
pub fn sipguard_frags(ctx: XdpContext) -> u32 {
    filter::<MultiBuf>(&ctx, Link::Ethernet, &INSPECTOR_FRAGS)
}

#[xdp(frags)]
pub fn sipguard_rawip_frags(ctx: XdpContext) -> u32 {
    filter::<MultiBuf>(&ctx, Link::RawIp, &INSPECTOR_FRAGS)
}

#[xdp(frags)]
pub fn sipguard_anyport_frags(ctx: XdpContext) -> u32 {
    any_port_program::<MultiBuf>(&ctx, request_line, &INSPECTOR_FRAGS)
}

#[xdp(frags)]
pub fn sipguard_inspect_frags(ctx: XdpContext) -> u32 {
    inspect_program::<MultiBuf>(&ctx, inspect::<MultiBuf>)
}

#[inline(always)]
fn filter<P: Frame>(ctx: &XdpContext, link: Link, tails: &ProgramArray) -> u32 {
    // No settings means no SIP ports: everything passes untouched.
    let Some(settings) = SETTINGS.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let pkt = P::new(ctx);
    let quick = quick_step(&pkt, link, settings);
    if quick == Quick::NotSipPort {
        return act(ctx, &pkt, outcome(Reason::PassNotSipPort, settings));
    }
    // Looked up after the quick step: most of a router's traffic is not
    // SIP, and kernels before 6.9 do not inline a per-CPU array's lookup.
    // A per-CPU array of one entry always has entry 0.
    let Some(handed) = INSPECT_FLOW.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    let parsed = parse_after(&pkt, link, quick);
    match &parsed {
        // A copy the compiler knows does not overlap: an assignment through
        // the raw pointer is a call of a byte-at-a-time `memmove` (52 bytes,
        // about 420 instructions on every SIP-port packet), this is 13
        // word loads and stores.
        // SAFETY: a per-CPU value; XDP does not nest on one CPU. The flow
        // is on the stack, `handed` in a map value.
        Ok(flow) => unsafe { core::ptr::copy_nonoverlapping(flow, handed, 1) },
        Err(stop) => {
            let reason = match stop {
                Stop::LaterFragment(k) => frags::later(k),
                stop => stop_reason(stop),
            };
            return finish(
                ctx,
                &pkt,
                Err(stop),
                reason,
                settings,
                &SipEventInfo::NONE,
                &PacketState::new(),
            );
        }
    }
    // SAFETY: as above; see `merge_paths`.
    let flow = unsafe { merge_paths(handed) };
    // Packet pointers read anew: those of the parse carry per-path ranges.
    let pkt = P::reload(ctx);
    let lists = KernelLists::new(settings);
    let judgement = judge_flow(flow, settings, &lists);
    let reason = match judgement {
        Judgement::Done(reason) => reason,
        // One tail-call site for both callees; `INSPECT_FLOW` already
        // holds the flow.
        Judgement::Inspect(_) | Judgement::Recognise(_) => {
            let slot = if matches!(judgement, Judgement::Recognise(_)) {
                ANY_PORT_SLOT
            } else {
                INSPECTOR_SLOT
            };
            hand_over(ctx, tails, slot)
        }
    };
    finish(
        ctx,
        &pkt,
        Ok(flow),
        reason,
        settings,
        &SipEventInfo::NONE,
        &lists.state,
    )
}

/// The flow that `filter` stored in `INSPECT_FLOW` (where the tail-called
/// programs read it), to be read from there. The values are the parser's;
/// what changes is what the verifier knows of them: every field read from
/// map memory is an unknown of its type, so the many parser paths (VLAN
/// tags, PPPoE, IPv4 options, IPv6 extension headers, each leaving its own
/// constants and offset ranges) meet in one state here and the rest of the
/// program is verified once instead of once per path. Kernels before 6.3
/// prune none of those paths otherwise.
///
/// # Safety
/// `slot` points to this CPU's `INSPECT_FLOW` value.
#[inline(always)]
unsafe fn merge_paths<'a>(slot: *const Flow) -> &'a Flow {
    // A compiler barrier: the flow's fields are loaded from the map below,
    // not forwarded from the values just stored.
    // SAFETY: an empty asm statement.
    unsafe { core::arch::asm!("", options(nostack, preserves_flags)) };
    // SAFETY: by the caller's contract.
    unsafe { &*slot }
}

/// Tail-calls the program in `slot` of `INSPECTOR`, which reads the flow
/// that `filter` left in `INSPECT_FLOW`. Returns only when the slot is
/// empty (the daemon and the sandbox always fill both): the packet then
/// passes, counted as uninspected.
#[inline(always)]
fn hand_over(ctx: &XdpContext, tails: &ProgramArray, slot: u32) -> Reason {
    // SAFETY: on success the callee finishes the packet and this program
    // does not continue.
    unsafe { tails.tail_call(ctx, slot) };
    Reason::PassUninspectable
}

/// What a tail-called program starts from: the settings and the flow
/// `hand_over` left in `INSPECT_FLOW`, read in place. A copy would take
/// its size of the inspector's stack, which with the step's frame must fit
/// 512 bytes where kernels before 6.12 round every frame up to 32.
#[inline(always)]
fn handed_over() -> Option<(&'static Settings, &'static Flow)> {
    Some((SETTINGS.get(0)?, INSPECT_FLOW.get(0)?))
}

/// SIP on any UDP port, entered by tail call from `filter` for UDP outside
/// the SIP ports: reads the request line (most non-SIP payloads stop at
/// their first byte) and, for SIP, runs steps 2-5 (and the inspector, by
/// tail call, under `inspect`). The reader steps under `bpf_loop`.
#[xdp]
pub fn sipguard_anyport(ctx: XdpContext) -> u32 {
    any_port_program::<Pkt>(&ctx, request_line, &INSPECTOR)
}

/// The same reader for kernels without `bpf_loop` (before 5.17): the same
/// [`any_port::step`], [`any_port::LINE_STEPS`] times in a bounded loop,
/// which the verifier walks step by step (bounded loops: 5.3). The loader
/// installs one of the two in the any-port slot.
#[xdp]
pub fn sipguard_anyport_bounded(ctx: XdpContext) -> u32 {
    any_port_program::<Pkt>(&ctx, request_line_bounded, &INSPECTOR)
}

#[inline(always)]
fn any_port_program<P: Frame>(
    ctx: &XdpContext,
    read_line: impl FnOnce(&XdpContext, &P, &Flow) -> bool,
    tails: &ProgramArray,
) -> u32 {
    let Some((settings, flow)) = handed_over() else {
        return xdp_action::XDP_PASS;
    };
    let pkt = P::new(ctx);
    let request = read_line(ctx, &pkt, flow);
    let lists = KernelLists::new(settings);
    let reason = match any_port_verdict(request, flow, settings, &lists) {
        Judgement::Done(reason) => reason,
        // INSPECT_FLOW still holds the flow.
        Judgement::Inspect(_) => {
            // SAFETY: as in `hand_over`.
            unsafe { tails.tail_call(ctx, INSPECTOR_SLOT) };
            Reason::PassUninspectable
        }
        Judgement::Recognise(_) => Reason::PassUninspectable,
    };
    finish(
        ctx,
        &pkt,
        Ok(flow),
        reason,
        settings,
        &SipEventInfo::NONE,
        &lists.state,
    )
}

/// The SIP inspector, entered by tail call from `filter` with the parsed
/// flow in `INSPECT_FLOW`.
#[xdp]
pub fn sipguard_inspect(ctx: XdpContext) -> u32 {
    inspect_program::<Pkt>(&ctx, inspect::<Pkt>)
}

/// The same inspector for kernels without `bpf_loop` (before 5.17): the
/// same [`sip::step`], as many times, in loops with constant bounds. The
/// loader installs one of the two in the inspector slot.
#[xdp]
pub fn sipguard_inspect_bounded(ctx: XdpContext) -> u32 {
    inspect_program::<Pkt>(&ctx, inspect_bounded)
}

/// The SIP inspector and what it hands to `finish`; `scan` runs the
/// scanner (with or without `bpf_loop`) and decides.
#[inline(always)]
fn inspect_program<P: Frame>(
    ctx: &XdpContext,
    scan: impl FnOnce(&XdpContext, &P, &Flow, &Settings) -> Reason,
) -> u32 {
    let Some((settings, flow)) = handed_over() else {
        return xdp_action::XDP_PASS;
    };
    let pkt = P::new(ctx);
    let reason = scan(ctx, &pkt, flow, settings);
    // Drop events carry what the scan saw (method, User-Agent).
    let info = match SCAN.get(0) {
        Some(scan) if reason.is_drop() => SipEventInfo::from_scan(scan),
        _ => SipEventInfo::NONE,
    };
    finish(
        ctx,
        &pkt,
        Ok(flow),
        reason,
        settings,
        &info,
        &PacketState::new(),
    )
}

/// Counts, records drops and returns the XDP action.
#[inline(always)]
fn finish<P: Frame>(
    ctx: &XdpContext,
    pkt: &P,
    parsed: Result<&Flow, &Stop>,
    reason: Reason,
    settings: &Settings,
    sip: &SipEventInfo,
    state: &PacketState,
) -> u32 {
    let out = outcome(reason, settings);
    if reason.is_drop() {
        on_drop(ctx, parsed, &out, sip, state);
    }
    act(ctx, pkt, out)
}

/// Counts the outcome and returns its action.
#[inline(always)]
fn act<P: Frame>(ctx: &XdpContext, pkt: &P, out: Outcome) -> u32 {
    count(ctx, pkt, &out);
    let action = if out.drop {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    };
    // SAFETY: reading a plain static; volatile so it is not const-folded.
    if unsafe { core::ptr::read_volatile(&REPORT_REASON) } != 0 {
        return action | (out.reason as u32) << 8 | (out.monitored as u32) << 16;
    }
    action
}

/// The shared request-line reader driven by `bpf_loop` (state in a per-CPU
/// map value, as for the SIP scanner).
#[inline(always)]
fn request_line<P: Frame>(ctx: &XdpContext, pkt: &P, flow: &Flow) -> bool {
    let Some(line) = start_line(pkt, flow) else {
        return false;
    };
    let mut lc = LineCtx {
        xdp: ctx.ctx,
        line,
        frame_len: pkt.frame_len(),
    };
    // SAFETY: the callback only dereferences `lc`, which outlives the call.
    unsafe {
        bpf_loop(
            any_port::LINE_STEPS,
            line_step::<P> as *mut c_void,
            &mut lc as *mut LineCtx as *mut c_void,
            0,
        );
    }
    line_result(line)
}

/// The same reader without `bpf_loop`: the loop bound is a constant, so
/// the verifier of 5.10 accepts it.
#[inline(always)]
fn request_line_bounded(_ctx: &XdpContext, pkt: &Pkt, flow: &Flow) -> bool {
    let Some(line) = start_line(pkt, flow) else {
        return false;
    };
    for _ in 0..any_port::LINE_STEPS {
        // SAFETY: a per-CPU value; XDP does not nest on one CPU.
        if any_port::step(unsafe { &mut *line }, pkt) == any_port::Step::Done {
            break;
        }
    }
    line_result(line)
}

/// The reader's state for `flow`, or None when the payload cannot start a
/// request line.
#[inline(always)]
fn start_line<P: Frame>(pkt: &P, flow: &Flow) -> Option<*mut any_port::Line> {
    if !any_port::may_start_request(pkt, flow) {
        return None;
    }
    let line = LINE.get_ptr_mut(0)?;
    // SAFETY: a per-CPU value; XDP does not nest on one CPU.
    unsafe { *line = any_port::Line::new(flow, pkt.frame_len()) };
    Some(line)
}

#[inline(always)]
fn line_result(line: *mut any_port::Line) -> bool {
    // SAFETY: a per-CPU map value, written by the reader.
    unsafe { core::ptr::read_volatile(&(*line).result) == any_port::REQUEST }
}

#[repr(C)]
struct LineCtx {
    xdp: *mut xdp_md,
    line: *mut any_port::Line,
    frame_len: usize,
}

extern "C" fn line_step<P: Frame>(_index: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `request_line` gave it,
    // whose `line` points into a map value.
    let lc = unsafe { &mut *(ctx as *mut LineCtx) };
    let xdp = XdpContext::new(lc.xdp);
    let pkt = P::in_loop(&xdp, lc.frame_len);
    match any_port::step(unsafe { &mut *lc.line }, &pkt) {
        any_port::Step::Continue => 0,
        any_port::Step::Done => 1,
    }
}

/// What the inspector's `bpf_loop` callback gets: the XDP context and the
/// frame's length, which it hands to the global step of its frame type.
#[repr(C)]
struct LoopCtx {
    xdp: *mut xdp_md,
    frame_len: usize,
}

/// The scan under `bpf_loop`, each iteration one call of the global
/// [`sipguard_scan_step`].
///
/// The scanner state lives in a per-CPU map value, not on the stack: the
/// verifier tracks stack contents exactly, so every simulated callback
/// iteration would see new constants (a growing length, a position) and
/// never converge. The step itself is not in the callback: a callback is
/// verified in its caller's states, again until they converge, and a 6.18
/// kernel (6.18.44-fc-v1272) gave up on the step inlined there at the
/// 1,000,000-instruction limit (an earlier build of it needed 85,712);
/// behind a global function the whole program takes 81,631 there.
#[inline(always)]
fn inspect<P: Frame + GlobalStep>(
    ctx: &XdpContext,
    pkt: &P,
    flow: &Flow,
    settings: &Settings,
) -> Reason {
    let Some(scan) = SCAN.get_ptr_mut(0) else {
        return Reason::PassPartial;
    };
    // SAFETY: a per-CPU value; XDP does not nest on one CPU.
    unsafe { (*scan).reset(flow, pkt.frame_len()) };
    let frame_len = pkt.frame_len();
    // Loaded back, not forwarded from `reset`: the helper that copies the
    // window needs its length precise, and derived from the frame length
    // and the flow that precision keeps apart states differing in them
    // (6.1: 792,197 processed instructions instead of 259,662).
    // SAFETY: as above.
    let end = sipguard_common::scan_io::ld(unsafe { &(*scan).end });
    // Bytes that cannot be made readable are not scanned: the scan state
    // stays as reset (nothing seen, `inspected_partial`).
    let steps = if pkt.prepare_scan(end) {
        sip::max_steps(frame_len)
    } else {
        0
    };
    let Some(count) = STEPS.get_ptr_mut(0) else {
        return Reason::PassPartial;
    };
    // SAFETY: a per-CPU value; see `STEPS`.
    let steps = unsafe {
        core::ptr::write_volatile(count, steps);
        core::ptr::read_volatile(count)
    };
    let mut lc = LoopCtx {
        xdp: ctx.ctx,
        frame_len,
    };
    // SAFETY: the callback only dereferences `lc`, which outlives the call.
    unsafe {
        bpf_loop(
            steps,
            scan_step::<P> as *mut c_void,
            &mut lc as *mut LoopCtx as *mut c_void,
            0,
        );
    }
    // SAFETY: as above.
    sip::decide(unsafe { &*scan }, settings, &KernelLists::new(settings))
}

/// The scan without `bpf_loop`: the step is a global function
/// ([`sipguard_scan_step`]), which the verifier checks once on its own,
/// whatever calls it; the loop around it costs the verifier a few
/// instructions per iteration. Inlined, every step would be verified
/// again for each state the steps before it can leave (on 6.18, 30,104
/// instructions for a program of one step, 514,529 for four), so no
/// chain of tail calls, 33 programs at most, could reach [`MAX_STEPS`].
/// A frame above a standard one gets [`JUMBO_MAX_STEPS`] in runs of
/// [`MAX_STEPS`] ([`sipguard_scan_steps`], global too): one loop of that
/// many iterations would leave the verifier more pending branches than
/// the 8,192 it follows.
#[inline(always)]
fn inspect_bounded(ctx: &XdpContext, pkt: &Pkt, flow: &Flow, settings: &Settings) -> Reason {
    const RUNS: u32 = JUMBO_MAX_STEPS / MAX_STEPS;
    let Some(scan) = SCAN.get_ptr_mut(0) else {
        return Reason::PassPartial;
    };
    // SAFETY: a per-CPU value; XDP does not nest on one CPU.
    unsafe { (*scan).reset(flow, pkt.frame_len()) };
    let runs = sip::max_steps(pkt.frame_len()) / MAX_STEPS;
    for run in 0..RUNS {
        if run >= runs || sipguard_scan_steps(ctx.ctx) == STEP_DONE {
            break;
        }
    }
    // SAFETY: as above.
    sip::decide(unsafe { &*scan }, settings, &KernelLists::new(settings))
}

const _: () = assert!(JUMBO_MAX_STEPS % MAX_STEPS == 0);

/// What the global steps return when the scan is over.
const STEP_DONE: i64 = 1;

/// Up to [`MAX_STEPS`] of [`sipguard_scan_step`], for [`inspect_bounded`].
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sipguard_scan_steps(ctx: *mut xdp_md) -> i64 {
    for _ in 0..MAX_STEPS {
        if sipguard_scan_step(ctx) == STEP_DONE {
            return STEP_DONE;
        }
    }
    0
}

/// One [`sip::step`] on this CPU's `SCAN` over a single-buffer frame, for
/// both inspectors. Global (`no_mangle`, not inlined): the verifier checks
/// a global function once, with arguments it only knows by type (the XDP
/// context here, 5.6+), so the settings and the scan state are looked up
/// again inside.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sipguard_scan_step(ctx: *mut xdp_md) -> i64 {
    step_on(Pkt::scanned(&XdpContext::new(ctx), 0))
}

/// [`sipguard_scan_step`] over a multi-buffer frame of `frame_len` bytes:
/// it reads the copy of the frame's window (`pkt::Window`), not the
/// context, so it takes none (an argument the function does not read is
/// not set up by the compiler at the call, and the verifier refuses a
/// context argument it cannot see).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sipguard_scan_step_frags(frame_len: u64) -> i64 {
    step_on(pkt::Window::in_loop(frame_len as usize))
}

#[inline(always)]
fn step_on<B: packet::Bytes>(pkt: Option<B>) -> i64 {
    let (Some(pkt), Some(settings), Some(scan)) = (pkt, SETTINGS.get(0), SCAN.get_ptr_mut(0))
    else {
        return STEP_DONE;
    };
    let lists = KernelLists::new(settings);
    // SAFETY: a per-CPU value; XDP does not nest on one CPU.
    match sip::step(unsafe { &mut *scan }, &pkt, &lists) {
        Step::Continue => 0,
        Step::Done => STEP_DONE,
    }
}

/// The frame types' global steps.
trait GlobalStep {
    fn global_step(ctx: *mut xdp_md, frame_len: usize) -> i64;
}

impl GlobalStep for Pkt {
    #[inline(always)]
    fn global_step(ctx: *mut xdp_md, _frame_len: usize) -> i64 {
        sipguard_scan_step(ctx)
    }
}

impl GlobalStep for MultiBuf {
    #[inline(always)]
    fn global_step(_ctx: *mut xdp_md, frame_len: usize) -> i64 {
        sipguard_scan_step_frags(frame_len as u64)
    }
}

/// The inspector's `bpf_loop` callback.
extern "C" fn scan_step<P: GlobalStep>(_index: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `inspect` gave it, to a
    // `LoopCtx` on its stack.
    let lc = unsafe { &mut *(ctx as *mut LoopCtx) };
    // The verifier wants 0 or 1 from a callback, and a global function's
    // result is any value to it; the compiler knows the function returns
    // 0 or 1 and would drop a plain mask, so the result goes through
    // `black_box` first.
    core::hint::black_box(P::global_step(lc.xdp, lc.frame_len)) & STEP_DONE
}

/// Does nothing: the baseline that benchmarks divide by.
#[xdp]
pub fn empty_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Events, ban counting and fragment memory for a dropped (or would-drop)
/// packet. The SIP inspector passes what it learned in `sip`.
#[inline(always)]
fn on_drop(
    ctx: &XdpContext,
    parsed: Result<&packet::Flow, &Stop>,
    out: &Outcome,
    sip: &SipEventInfo,
    state: &PacketState,
) {
    let Some(ops) = events::OPS.get(0) else {
        return;
    };
    if ops.flags == 0 {
        return;
    }
    let Some(a) = events::addrs(parsed) else {
        return;
    };
    let t = state.clock.now();
    if let Ok(flow) = parsed {
        frags::remember(ops, flow, t);
    }
    bans::note_drop(ops, &a, out.reason, t);
    if ops.flags & sipguard_common::OPS_EVENTS != 0 {
        events::emit(ctx, ops, &a, out, sip, t, state.ban.get());
    }
}

#[inline(always)]
fn count<P: Frame>(ctx: &XdpContext, pkt: &P, out: &Outcome) {
    let ifindex = ctx.ingress_ifindex() as u32;
    let slot = if ifindex < MAX_IFINDEX {
        IFACE_SLOTS.get(ifindex).copied().unwrap_or(0)
    } else {
        0
    };
    let idx = counter_index(slot, out.monitored, out.reason as u32);
    if let Some(c) = COUNTERS.get_ptr_mut(idx) {
        // Per-CPU values: no other writer, no atomics needed.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += pkt.frame_len() as u64;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
