// Builds the XDP object with the definition shared with `cargo xtask
// build-ebpf`, into OUT_DIR, where src/kernel/program.rs embeds it.
fn main() -> anyhow::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest)
        .parent()
        .ok_or_else(|| anyhow::anyhow!("sipguard crate has no parent directory"))?;
    xtask::build_ebpf(root)
}
