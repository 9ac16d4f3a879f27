//! Builds `mesh-ebpf` for the BPF target with the nightly toolchain
//! (aya-build) so the agent can embed the object file. The toolchain is
//! `nightly` unless `MESH_EBPF_TOOLCHAIN` names another (ARCHITECTURE.md,
//! decision 48: its LLVM major must match bpf-linker's, 22).
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mesh-ebpf");
    let root = root.canonicalize()?;
    let root = root
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {root:?}"))?;
    let package = aya_build::Package {
        name: "mesh-ebpf",
        root_dir: root,
        ..Default::default()
    };
    // `cargo xtask` sets this when it had to install a dated nightly.
    println!("cargo:rerun-if-env-changed=MESH_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("MESH_EBPF_TOOLCHAIN").ok();
    let toolchain = match toolchain.as_deref() {
        Some(name) if !name.is_empty() => aya_build::Toolchain::Custom(name),
        _ => aya_build::Toolchain::Nightly,
    };
    aya_build::build_ebpf([package], toolchain)
}
