//! Where the binaries under test are.
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Binaries {
    pub agent: PathBuf,
    pub podctl: PathBuf,
    /// `mesh-control` (same directory as the agent unless `MESH_CONTROL_BIN`).
    pub control: PathBuf,
    /// `mesh-waypoint` (same directory as the agent unless
    /// `MESH_WAYPOINT_BIN`).
    pub waypoint: PathBuf,
    /// `podhttp` (next to `podctl`).
    pub podhttp: PathBuf,
}

impl Binaries {
    /// For integration tests: `podctl` is given by cargo; the agent comes from
    /// `MESH_AGENT_BIN` or the same target directory (built by `cargo xtask test`).
    pub fn for_tests(podctl: &str) -> Self {
        let podctl = PathBuf::from(podctl);
        let agent = std::env::var_os("MESH_AGENT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| podctl.parent().unwrap_or(Path::new(".")).join("mesh-agent"));
        assert!(
            agent.exists(),
            "mesh-agent binary not found at {} — build it (`cargo build -p mesh-agent`) or run \
             `cargo xtask test`, or set MESH_AGENT_BIN",
            agent.display()
        );
        let control = std::env::var_os("MESH_CONTROL_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                agent
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("mesh-control")
            });
        let waypoint = std::env::var_os("MESH_WAYPOINT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                agent
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("mesh-waypoint")
            });
        let podhttp = podctl.parent().unwrap_or(Path::new(".")).join("podhttp");
        Self {
            agent,
            podctl,
            control,
            waypoint,
            podhttp,
        }
    }
}
