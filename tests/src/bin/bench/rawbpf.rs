//! Tiny XDP programs loaded with the raw bpf(2) syscall, for the flood:
//! traffic generators (XDP_TX under BPF_PROG_TEST_RUN's live-frames mode,
//! the kernel's fastest packet source; one variant rewrites the IPv4
//! source from a counter) and a bare XDP_DROP floor. They are not sipguard
//! code, so they stay out of the product's object.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{anyhow, Result};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;

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

/// One 8-byte eBPF instruction.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut i = [0u8; 8];
    i[0] = code;
    i[1] = (src << 4) | dst;
    i[2..4].copy_from_slice(&off.to_le_bytes());
    i[4..8].copy_from_slice(&imm.to_le_bytes());
    i
}

fn load(insns: &[[u8; 8]]) -> Result<OwnedFd> {
    let code: Vec<u8> = insns.concat();
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, BPF_PROG_TYPE_XDP);
    put32(&mut attr, 4, insns.len() as u32);
    put64(&mut attr, 8, code.as_ptr() as u64);
    put64(&mut attr, 16, license.as_ptr() as u64);
    let name = b"sg_bench";
    attr[48..48 + name.len()].copy_from_slice(name);
    let fd = bpf(BPF_PROG_LOAD, &mut attr)
        .map_err(|e| anyhow!("loading a {}-instruction XDP program: {e}", insns.len()))?;
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

// Opcodes used below (BPF_CLASS | BPF_OP/SIZE | BPF_SRC).
const MOV64_IMM: u8 = 0xb7;
const MOV64_REG: u8 = 0xbf;
const ADD64_IMM: u8 = 0x07;
const ADD64_REG: u8 = 0x0f;
const AND64_IMM: u8 = 0x57;
const XOR64_IMM: u8 = 0xa7;
const RSH64_IMM: u8 = 0x77;
const TO_BE: u8 = 0xdc;
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const STX_W: u8 = 0x63;
const STX_H: u8 = 0x6b;
const LD_IMM64: u8 = 0x18;
const JGT_REG: u8 = 0x2d;
const EXIT: u8 = 0x95;
const PSEUDO_MAP_VALUE: u8 = 2;

/// An XDP program that returns `action` and does nothing else.
pub fn const_program(action: u32) -> Result<OwnedFd> {
    load(&[
        insn(MOV64_IMM, 0, 0, 0, action as i32),
        insn(EXIT, 0, 0, 0, 0),
    ])
}

/// Where the flood frame keeps what [`counting_source_program`] rewrites:
/// the IPv4 header checksum and the last two bytes of the source address
/// (Ethernet header of 14 bytes, no VLAN, IPv4 without options).
pub const IPV4_CSUM_AT: usize = 14 + 10;
pub const IPV4_SRC_LOW16_AT: usize = 14 + 14;

/// A generator whose frames come from `2^16` sources: each run takes the
/// next value of a counter (an array map's value, addressed directly) as
/// the low 16 bits of the IPv4 source and updates the header checksum
/// incrementally (RFC 1624: HC' = ~(~HC + ~m + m')) from the bytes in the
/// frame, which live-frames mode keeps from one use of a page to the next.
/// Returns XDP_TX. The map fd is returned alongside: the program holds its
/// own reference, the caller's keeps it inspectable.
pub fn counting_source_program() -> Result<(OwnedFd, OwnedFd)> {
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, BPF_MAP_TYPE_ARRAY);
    put32(&mut attr, 4, 4);
    put32(&mut attr, 8, 8);
    put32(&mut attr, 12, 1);
    let map = bpf(BPF_MAP_CREATE, &mut attr).map_err(|e| anyhow!("creating a counter map: {e}"))?;
    // SAFETY: the kernel just returned this fd to us.
    let map = unsafe { OwnedFd::from_raw_fd(map as i32) };
    let (csum, src) = (IPV4_CSUM_AT as i16, IPV4_SRC_LOW16_AT as i16);
    let prog = load(&[
        insn(LDX_W, 2, 1, 0, 0),                                 // r2 = ctx->data
        insn(LDX_W, 3, 1, 4, 0),                                 // r3 = ctx->data_end
        insn(MOV64_REG, 4, 2, 0, 0),                             // r4 = data
        insn(ADD64_IMM, 4, 0, 0, 34),                            // r4 += end of the IPv4 header
        insn(JGT_REG, 4, 3, 24, 0),                              // short frame: send as is
        insn(LD_IMM64, 7, PSEUDO_MAP_VALUE, 0, map.as_raw_fd()), // r7 = &counter
        insn(0, 0, 0, 0, 0),                                     //   (offset 0 in the value)
        insn(LDX_W, 8, 7, 0, 0),                                 // r8 = counter
        insn(ADD64_IMM, 8, 0, 0, 1),                             // r8 += 1
        insn(STX_W, 7, 8, 0, 0),                                 // counter = r8
        insn(AND64_IMM, 8, 0, 0, 0xffff),                        // m' = low 16 bits
        insn(TO_BE, 8, 0, 0, 16),                                //   in network order
        insn(LDX_H, 9, 2, src, 0),                               // m = the frame's current bytes
        insn(LDX_H, 5, 2, csum, 0),                              // HC
        insn(XOR64_IMM, 5, 0, 0, 0xffff),                        // ~HC
        insn(XOR64_IMM, 9, 0, 0, 0xffff),                        // ~m
        insn(ADD64_REG, 5, 9, 0, 0),                             // ~HC + ~m
        insn(ADD64_REG, 5, 8, 0, 0),                             //   + m'
        insn(MOV64_REG, 0, 5, 0, 0),                             // fold the carries, twice
        insn(RSH64_IMM, 0, 0, 0, 16),
        insn(AND64_IMM, 5, 0, 0, 0xffff),
        insn(ADD64_REG, 5, 0, 0, 0),
        insn(MOV64_REG, 0, 5, 0, 0),
        insn(RSH64_IMM, 0, 0, 0, 16),
        insn(AND64_IMM, 5, 0, 0, 0xffff),
        insn(ADD64_REG, 5, 0, 0, 0),
        insn(XOR64_IMM, 5, 0, 0, 0xffff), // HC' = ~(...)
        insn(STX_H, 2, 5, csum, 0),
        insn(STX_H, 2, 8, src, 0),
        insn(MOV64_IMM, 0, 0, 0, XDP_TX as i32),
        insn(EXIT, 0, 0, 0, 0),
    ])?;
    Ok((prog, map))
}

/// Runs `prog` once on `frame` (not live): its verdict and output frame.
pub fn run_once(prog: &OwnedFd, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, prog.as_raw_fd() as u32);
    put32(&mut attr, 8, frame.len() as u32);
    put32(&mut attr, 12, out.len() as u32);
    put64(&mut attr, 16, frame.as_ptr() as u64);
    put64(&mut attr, 24, out.as_mut_ptr() as u64);
    put32(&mut attr, 32, 1);
    bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {e}"))?;
    let retval = u32::from_ne_bytes(attr[4..8].try_into()?);
    let size = u32::from_ne_bytes(attr[12..16].try_into()?) as usize;
    out.truncate(size.min(out.len()));
    Ok((retval, out))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The distributed flood's generator on the real kernel: the source
    /// steps 10.77.0.0 → .0.1 → .0.2, the IPv4 checksum stays valid (as
    /// RFC 1071 computes it from scratch), and nothing else changes.
    #[test]
    fn counting_source_steps_the_source_and_keeps_the_checksum() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: loading an XDP program needs root");
            return;
        }
        let mut frame = sipguard_tests::frames::v4([10, 77, 0, 0], [100, 64, 0, 1])
            .udp(5060, 5060)
            .payload(b"INVITE sip:100@pbx.example.com SIP/2.0\r\n\r\n")
            .build();
        let sum = sipguard_tests::frames::checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
        let (prog, _map) = counting_source_program().expect("loading the generator");
        let mut f = frame.clone();
        for want in [[10, 77, 0, 1], [10, 77, 0, 2]] {
            let (action, out) = run_once(&prog, &f).expect("running the generator");
            assert_eq!(action, XDP_TX);
            assert_eq!(&out[26..30], &want);
            let mut expect = frame.clone();
            expect[26..30].copy_from_slice(&want);
            expect[24..26].copy_from_slice(&[0, 0]);
            let sum = sipguard_tests::frames::checksum(&expect[14..34]);
            expect[24..26].copy_from_slice(&sum.to_be_bytes());
            assert_eq!(out, expect);
            f = out;
        }
    }
}
