//! Rebuild when bpf-linker changes, so a new linker relinks the programs
//! (aya-template's pattern).
use which::which;

fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
