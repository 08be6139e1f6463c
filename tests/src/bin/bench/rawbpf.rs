//! Two-instruction XDP programs loaded with the raw bpf(2) syscall, for the
//! flood: a traffic generator (XDP_TX under BPF_PROG_TEST_RUN's live-frames
//! mode, the kernel's fastest packet source) and a bare XDP_DROP floor.
//! They are not sipguard code, so they stay out of the product's object.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{anyhow, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

pub const XDP_DROP: u32 = 1;
pub const XDP_TX: u32 = 3;

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> io::Result<i64> {
    // SAFETY: attr is a zero-padded bpf_attr of attr.len() bytes that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn put32(a: &mut [u8], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(a: &mut [u8], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// An XDP program that returns `action` and does nothing else.
pub fn const_program(action: u32) -> Result<OwnedFd> {
    // r0 = action; exit
    let mut insns = [0u8; 16];
    insns[0] = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, dst r0
    insns[4..8].copy_from_slice(&(action as i32).to_le_bytes());
    insns[8] = 0x95; // BPF_JMP | BPF_EXIT
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, BPF_PROG_TYPE_XDP);
    put32(&mut attr, 4, 2);
    put64(&mut attr, 8, insns.as_ptr() as u64);
    put64(&mut attr, 16, license.as_ptr() as u64);
    let name = b"sg_bench";
    attr[48..48 + name.len()].copy_from_slice(name);
    let fd = bpf(BPF_PROG_LOAD, &mut attr)
        .map_err(|e| anyhow!("loading a 2-instruction XDP program: {e}"))?;
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Pins a program so `ip link set ... xdpdrv pinned PATH` can attach it.
pub fn pin(prog: &OwnedFd, path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())?;
    let mut attr = [0u8; 128];
    put64(&mut attr, 0, c.as_ptr() as u64);
    put32(&mut attr, 8, prog.as_raw_fd() as u32);
    bpf(BPF_OBJ_PIN, &mut attr).map_err(|e| anyhow!("pinning at {}: {e}", path.display()))?;
    Ok(())
}

/// Runs `prog` `repeat` times on `frame` in live-frames mode with the
/// frames arriving on `ifindex` (of the calling thread's netns): XDP_TX
/// turns into a transmit on that interface, i.e. into the veth peer.
pub fn live_frames(prog: &OwnedFd, frame: &[u8], ifindex: u32, repeat: u32) -> Result<()> {
    // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
    let mut ctx = [0u32; 6];
    ctx[1] = frame.len() as u32;
    ctx[3] = ifindex;
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, prog.as_raw_fd() as u32);
    put32(&mut attr, 8, frame.len() as u32);
    put64(&mut attr, 16, frame.as_ptr() as u64);
    put32(&mut attr, 32, repeat);
    put32(&mut attr, 40, std::mem::size_of_val(&ctx) as u32);
    put64(&mut attr, 48, ctx.as_ptr() as u64);
    put32(&mut attr, 64, BPF_F_TEST_XDP_LIVE_FRAMES);
    bpf(BPF_PROG_TEST_RUN, &mut attr)
        .map_err(|e| anyhow!("BPF_PROG_TEST_RUN live frames on ifindex {ifindex}: {e}"))?;
    Ok(())
}
