//! The stack each function of a loaded program uses, as the x86-64 JIT
//! reserved it. The verifier computes a stack depth per function and prints
//! it only in its log, which is kept only for a rejected program; the JIT
//! turns that same depth (rounded up to 8 bytes) into the `sub rsp, N` of
//! the function's prologue, and the kernel hands the JIT image back to
//! root (BPF_OBJ_GET_INFO_BY_FD). Used by the kernel matrix's verifier
//! table.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context as _, Result};

/// The leading fields of the kernel's `struct bpf_prog_info` up to
/// `jited_func_lens` (the kernel accepts a shorter struct and fills what
/// fits).
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    flags: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

fn prog_info(fd: i32, info: &mut ProgInfoHead) -> Result<()> {
    // union bpf_attr's info member: bpf_fd, info_len, info.
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&(fd as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(std::mem::size_of::<ProgInfoHead>() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info as *mut ProgInfoHead as u64).to_ne_bytes());
    super::pins::bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).context("BPF_OBJ_GET_INFO_BY_FD")?;
    Ok(())
}

/// Bytes of stack of each function of the program behind `fd` (the entry
/// point first, then its BPF-to-BPF callees), from the JIT's prologues.
/// None where this is not known: no JIT image (interpreter, or not root)
/// or not an x86-64 JIT.
pub fn stack_frames(fd: impl AsFd) -> Result<Option<Vec<u32>>> {
    if !cfg!(target_arch = "x86_64") {
        return Ok(None);
    }
    let fd = fd.as_fd().as_raw_fd();
    let mut info = ProgInfoHead::default();
    prog_info(fd, &mut info)?;
    if info.jited_prog_len == 0 {
        return Ok(None);
    }
    let mut image = vec![0u8; info.jited_prog_len as usize];
    let funcs = info.nr_jited_func_lens.max(1) as usize;
    let mut lens = vec![0u32; funcs];
    let mut again = ProgInfoHead {
        jited_prog_len: image.len() as u32,
        jited_prog_insns: image.as_mut_ptr() as u64,
        nr_jited_func_lens: info.nr_jited_func_lens,
        jited_func_lens: lens.as_mut_ptr() as u64,
        ..ProgInfoHead::default()
    };
    prog_info(fd, &mut again)?;
    if info.nr_jited_func_lens == 0 {
        lens[0] = image.len() as u32;
    }
    let mut frames = Vec::with_capacity(funcs);
    let mut at = 0usize;
    for len in lens {
        let end = (at + len as usize).min(image.len());
        frames.push(prologue_frame(&image[at..end]));
        at = end;
    }
    Ok(Some(frames))
}

/// The N of the first `sub rsp, imm32` (48 81 ec) in a function's prologue;
/// 0 when there is none (a function without stack).
fn prologue_frame(code: &[u8]) -> u32 {
    let head = &code[..code.len().min(32)];
    head.windows(7)
        .find(|w| w[..3] == [0x48, 0x81, 0xec])
        .map(|w| u32::from_le_bytes([w[3], w[4], w[5], w[6]]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::prologue_frame;

    #[test]
    fn finds_the_frame_in_a_prologue() {
        // nop5; xor eax,eax; push rbp; mov rbp,rsp; sub rsp,0x1e0; push rax
        let code = [
            0x0f, 0x1f, 0x44, 0x00, 0x00, 0x31, 0xc0, 0x55, 0x48, 0x89, 0xe5, 0x48, 0x81, 0xec,
            0xe0, 0x01, 0x00, 0x00, 0x50,
        ];
        assert_eq!(prologue_frame(&code), 480);
        // No stack: no sub.
        let bare = [
            0x0f, 0x1f, 0x44, 0x00, 0x00, 0x66, 0x90, 0x55, 0x48, 0x89, 0xe5, 0x31,
        ];
        assert_eq!(prologue_frame(&bare), 0);
    }
}
