//! `mesh-cni install|uninstall`: for the DaemonSet's init container and
//! preStop hook. Copies the plugin into the node's CNI bin directory and
//! appends (or removes) its entry in the first `*.conflist` of the conf
//! directory (the one the runtime uses: they are read in name order).
//! Both are idempotent; every write is a temporary file renamed into place,
//! so the runtime never reads a half-written file.
use std::path::{Path, PathBuf};

use serde_json::Value;

pub const PLUGIN_TYPE: &str = "mesh-cni";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot read CNI conf directory {dir}")]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("no *.conflist in {dir}: the node's primary CNI plugin must be installed first")]
    NoConflist { dir: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: field `plugins` must be a list")]
    NoPlugins { path: PathBuf },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What install/uninstall did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub conflist: PathBuf,
    pub modified: bool,
}

/// The first `*.conflist` by name.
pub fn first_conflist(conf_dir: &Path) -> Result<PathBuf, InstallError> {
    let entries = std::fs::read_dir(conf_dir).map_err(|source| InstallError::ReadDir {
        dir: conf_dir.into(),
        source,
    })?;
    let mut lists: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conflist"))
        .collect();
    lists.sort();
    lists.into_iter().next().ok_or(InstallError::NoConflist {
        dir: conf_dir.into(),
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let name = path
        .file_name()
        .map_or_else(|| "mesh-cni".into(), |n| n.to_string_lossy().into_owned());
    // A dot name without .conflist: the runtime ignores it meanwhile.
    let tmp = path.with_file_name(format!(".{name}.mesh-tmp"));
    let write = |source| InstallError::Write {
        path: path.into(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(write)?;
    // A replaced file keeps its mode (a conflist the node's tooling made
    // 0600 stays 0600; the plugin binary's is set by the caller).
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions()).map_err(write)?;
    }
    std::fs::rename(&tmp, path).map_err(write)
}

fn read_list(path: &Path) -> Result<Value, InstallError> {
    let text = std::fs::read(path).map_err(|source| InstallError::Read {
        path: path.into(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| InstallError::Parse {
        path: path.into(),
        source,
    })
}

fn plugins_mut<'a>(list: &'a mut Value, path: &Path) -> Result<&'a mut Vec<Value>, InstallError> {
    list.get_mut("plugins")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| InstallError::NoPlugins { path: path.into() })
}

/// Copies `binary` to `<bin_dir>/mesh-cni` and makes mesh-cni the last
/// plugin of the first conflist, pointing at `socket`; `exclude` (when
/// not empty) replaces the plugin's default `excludeNamespaces`.
pub fn install(
    binary: &Path,
    bin_dir: &Path,
    conf_dir: &Path,
    socket: &Path,
    exclude: &[String],
) -> Result<Changed, InstallError> {
    let bytes = std::fs::read(binary).map_err(|source| InstallError::Read {
        path: binary.into(),
        source,
    })?;
    let target = bin_dir.join(PLUGIN_TYPE);
    write_atomic(&target, &bytes)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).map_err(
        |source| InstallError::Write {
            path: target.clone(),
            source,
        },
    )?;
    let path = first_conflist(conf_dir)?;
    let mut list = read_list(&path)?;
    let plugins = plugins_mut(&mut list, &path)?;
    let mut entry = serde_json::json!({"type": PLUGIN_TYPE, "agentSocket": socket});
    if !exclude.is_empty() {
        entry["excludeNamespaces"] = serde_json::json!(exclude);
    }
    let ours: Vec<usize> = plugins
        .iter()
        .enumerate()
        .filter(|(_, p)| p.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE))
        .map(|(i, _)| i)
        .collect();
    // Already last and the same: nothing to do.
    if ours.len() == 1 && ours[0] + 1 == plugins.len() && plugins[ours[0]] == entry {
        return Ok(Changed {
            conflist: path,
            modified: false,
        });
    }
    plugins.retain(|p| p.get("type").and_then(Value::as_str) != Some(PLUGIN_TYPE));
    plugins.push(entry);
    let text = serde_json::to_vec_pretty(&list).expect("JSON value serializes");
    write_atomic(&path, &text)?;
    Ok(Changed {
        conflist: path,
        modified: true,
    })
}

/// Removes mesh-cni from the first conflist and its binary from `bin_dir`.
pub fn uninstall(bin_dir: &Path, conf_dir: &Path) -> Result<Changed, InstallError> {
    let path = first_conflist(conf_dir)?;
    let mut list = read_list(&path)?;
    let plugins = plugins_mut(&mut list, &path)?;
    let before = plugins.len();
    plugins.retain(|p| p.get("type").and_then(Value::as_str) != Some(PLUGIN_TYPE));
    let modified = plugins.len() != before;
    if modified {
        let text = serde_json::to_vec_pretty(&list).expect("JSON value serializes");
        write_atomic(&path, &text)?;
    }
    let target = bin_dir.join(PLUGIN_TYPE);
    match std::fs::remove_file(&target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(InstallError::Write {
                path: target,
                source,
            })
        }
    }
    Ok(Changed {
        conflist: path,
        modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("mesh-cni-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(p.join("bin")).unwrap();
            std::fs::create_dir_all(p.join("net.d")).unwrap();
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap"}]}"#;

    #[test]
    fn install_keeps_the_conflist_mode_and_writes_exclusions() {
        use std::os::unix::fs::PermissionsExt as _;
        let t = TempDir::new("mode");
        let bin = t.0.join("plugin-binary");
        std::fs::write(&bin, b"#!/bin/true\n").unwrap();
        let list = t.0.join("net.d/10-k8s.conflist");
        std::fs::write(&list, LIST).unwrap();
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o600)).unwrap();
        let exclude = ["kube-system".to_string(), "infra".to_string()];
        let sock = Path::new("/s");
        install(&bin, &t.0.join("bin"), &t.0.join("net.d"), sock, &exclude).unwrap();
        let mode = std::fs::metadata(&list).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        let written = read_list(&list).unwrap();
        assert_eq!(
            written["plugins"][2]["excludeNamespaces"],
            serde_json::json!(["kube-system", "infra"])
        );
        let binary = std::fs::metadata(t.0.join("bin/mesh-cni")).unwrap();
        assert_eq!(binary.permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn install_appends_once_and_uninstall_restores() {
        let t = TempDir::new("install");
        let bin = t.0.join("plugin-binary");
        std::fs::write(&bin, b"#!/bin/true\n").unwrap();
        std::fs::write(t.0.join("net.d/10-k8s.conflist"), LIST).unwrap();
        std::fs::write(t.0.join("net.d/20-other.conflist"), LIST).unwrap();
        std::fs::write(t.0.join("net.d/05-single.conf"), "{}").unwrap();
        let sock = Path::new("/var/run/mesh/cni.sock");
        let first = install(&bin, &t.0.join("bin"), &t.0.join("net.d"), sock, &[]).unwrap();
        assert!(first.modified);
        assert!(first.conflist.ends_with("10-k8s.conflist"));
        let again = install(&bin, &t.0.join("bin"), &t.0.join("net.d"), sock, &[]).unwrap();
        assert!(!again.modified, "second install must change nothing");
        let list = read_list(&first.conflist).unwrap();
        let types: Vec<&str> = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "mesh-cni"]);
        assert_eq!(list["plugins"][2]["agentSocket"], "/var/run/mesh/cni.sock");
        assert!(t.0.join("bin/mesh-cni").exists());
        // The other conflist is untouched.
        assert_eq!(
            std::fs::read_to_string(t.0.join("net.d/20-other.conflist")).unwrap(),
            LIST
        );
        // A new socket path replaces the entry, still last and single.
        install(
            &bin,
            &t.0.join("bin"),
            &t.0.join("net.d"),
            Path::new("/s"),
            &[],
        )
        .unwrap();
        let list = read_list(&first.conflist).unwrap();
        assert_eq!(list["plugins"].as_array().unwrap().len(), 3);
        assert_eq!(list["plugins"][2]["agentSocket"], "/s");

        let removed = uninstall(&t.0.join("bin"), &t.0.join("net.d")).unwrap();
        assert!(removed.modified);
        let expected: Value = serde_json::from_str(LIST).unwrap();
        assert_eq!(read_list(&first.conflist).unwrap(), expected);
        assert!(!t.0.join("bin/mesh-cni").exists());
        let again = uninstall(&t.0.join("bin"), &t.0.join("net.d")).unwrap();
        assert!(!again.modified);
    }

    #[test]
    fn missing_conflist_and_bad_json_are_named() {
        let t = TempDir::new("install-bad");
        let bin = t.0.join("plugin-binary");
        std::fs::write(&bin, b"x").unwrap();
        let err = install(
            &bin,
            &t.0.join("bin"),
            &t.0.join("net.d"),
            Path::new("/s"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("no *.conflist") && err.contains("net.d"),
            "{err}"
        );
        std::fs::write(t.0.join("net.d/10.conflist"), r#"{"plugins":{}}"#).unwrap();
        let err = install(
            &bin,
            &t.0.join("bin"),
            &t.0.join("net.d"),
            Path::new("/s"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("plugins") && err.contains("10.conflist"),
            "{err}"
        );
    }
}
