//! Codegen flags for the XDP object that the shared build definition
//! (xtask::build_ebpf via aya-build) cannot pass: aya-build owns RUSTFLAGS.
fn main() {
    // bpf-linker does the final LLVM codegen. Without this feature LLVM
    // splits every multi-byte packet field read (the [u8; N] reads of
    // sipguard_common::packet have alignment 1) into byte loads plus
    // shifts: 22 instructions for a UDP header instead of a few. The
    // verifier allows misaligned packet access on kernels with
    // CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS (x86-64, arm64, armv7); on
    // others (mipsel) it would reject the object: drop this line there.
    // Stack access stays aligned: LLVM aligns its own stack slots.
    println!("cargo:rustc-link-arg-bins=--cpu-features=+allows-misaligned-mem-access");
    println!("cargo:rerun-if-changed=build.rs");
}
