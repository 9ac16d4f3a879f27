//! Builds `mesh-ebpf` for the BPF target with the nightly toolchain
//! (aya-build) so the agent can embed the object file.
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mesh-ebpf");
    let root = root.canonicalize()?;
    let root = root.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {root:?}"))?;
    let package = aya_build::Package { name: "mesh-ebpf", root_dir: root, ..Default::default() };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
