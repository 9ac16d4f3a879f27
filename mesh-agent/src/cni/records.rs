//! Pod records: one JSON file per sandbox under `--pod-records`, written
//! on CNI ADD (and for pods found by the start-up scan), removed on DEL or
//! when the sandbox's network namespace is gone. They survive agent
//! restarts (hostPath), which is how the reconciler knows which cookies
//! to take out of the enrolment map for pods deleted while it was down.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create the pod records directory {path}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write pod record {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove pod record {path}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub container_id: String,
    pub netns: PathBuf,
    /// The namespace's cookie at ADD: tells a namespace from a later one
    /// at the same path, and is the enrolment map key after it is gone.
    pub netns_cookie: u64,
    pub pod_namespace: String,
    pub pod_name: String,
    #[serde(default)]
    pub pod_uid: String,
    #[serde(default)]
    pub ips: Vec<String>,
    /// Whether the pod is enrolled now.
    pub enrolled: bool,
}

impl PodRecord {
    pub fn pod(&self) -> String {
        format!("{}/{}", self.pod_namespace, self.pod_name)
    }
}

/// The records directory.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

impl RecordStore {
    pub fn open(dir: &Path) -> Result<Self, RecordError> {
        std::fs::create_dir_all(dir).map_err(|source| RecordError::Dir {
            path: dir.into(),
            source,
        })?;
        Ok(Self { dir: dir.into() })
    }

    /// Container ids are the runtime's (hex); anything else is replaced
    /// so a record name can never leave the directory.
    fn path(&self, container_id: &str) -> PathBuf {
        let safe: String = container_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    pub fn save(&self, record: &PodRecord) -> Result<(), RecordError> {
        let path = self.path(&record.container_id);
        let tmp = path.with_extension("json.tmp");
        let write = |source| RecordError::Write {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(record).expect("plain struct serializes");
        std::fs::write(&tmp, text).map_err(write)?;
        std::fs::rename(&tmp, &path).map_err(write)
    }

    pub fn remove(&self, container_id: &str) -> Result<(), RecordError> {
        let path = self.path(container_id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RecordError::Remove { path, source }),
        }
    }

    pub fn get(&self, container_id: &str) -> Option<PodRecord> {
        let text = std::fs::read(self.path(container_id)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Every readable record; unreadable files are logged and skipped
    /// (one bad file must not stop the others from being reconciled).
    pub fn all(&self) -> Vec<PodRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut records: Vec<PodRecord> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| {
                let parsed = std::fs::read(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_slice(&t).map_err(|e| e.to_string()));
                match parsed {
                    Ok(r) => Some(r),
                    Err(error) => {
                        tracing::warn!(path = %p.display(), %error, "unreadable pod record skipped");
                        None
                    }
                }
            })
            .collect();
        records.sort_by(|a: &PodRecord, b| a.container_id.cmp(&b.container_id));
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn records_round_trip_and_stay_inside_the_directory() {
        let dir =
            TempDir(std::env::temp_dir().join(format!("mesh-records-{}", std::process::id())));
        let store = RecordStore::open(&dir.0).unwrap();
        let mut rec = PodRecord {
            container_id: "../../etc/evil".into(),
            netns: "/run/netns/x".into(),
            netns_cookie: 7,
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            pod_uid: String::new(),
            ips: vec![],
            enrolled: true,
        };
        store.save(&rec).unwrap();
        assert!(dir.0.join("______etc_evil.json").exists());
        assert_eq!(store.get(&rec.container_id), Some(rec.clone()));
        rec.enrolled = false;
        store.save(&rec).unwrap();
        std::fs::write(dir.0.join("junk.json"), "{").unwrap();
        assert_eq!(store.all(), vec![rec.clone()]);
        store.remove(&rec.container_id).unwrap();
        store.remove(&rec.container_id).unwrap();
        assert_eq!(store.get(&rec.container_id), None);
    }
}
