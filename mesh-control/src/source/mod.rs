//! The sources of the mesh configuration. The local-directory source:
//! every `*.yaml` / `*.yml` file of one directory (sorted by name, not
//! recursive), each holding any number of Kubernetes / Istio documents,
//! becomes a [`MeshState`]. The Kubernetes source ([`kubernetes`]) turns
//! watched objects into the same documents and the same builder; both hand
//! out a [`SourceWatch`]. Both read the same way: [`documents`] (one
//! document per resource) → `objects` (typed Kubernetes and Istio objects)
//! → `build` (checks across resources, then the [`MeshState`]).
//!
//! Read into the state: `v1` Namespace, Pod, Service, Node,
//! `security.istio.io` PeerAuthentication and AuthorizationPolicy (v1,
//! v1beta1), `networking.istio.io` VirtualService and DestinationRule
//! and ServiceEntry (v1, v1beta1, v1alpha3; each host a Service) and
//! Gateway API `Gateway`s of class `istio-waypoint` (waypoints; v1,
//! v1beta1); Gateway API `Gateway`s of class `istio`, `HTTPRoute`s and
//! `ReferenceGrant`s, converted to Istio Gateways and VirtualServices
//! ([`gateway_api`]); all but the first five are also kept raw. Kept raw only
//! ([`RawResource`]): the other Istio kinds (Gateway, Sidecar, …),
//! Gateway API kinds (Gateways of other classes are checked, then
//! ignored) and `discovery.k8s.io` EndpointSlices (which give a
//! selector-less Service its pods). Anything else is warned about and
//! skipped.
//!
//! A load is all or nothing: one invalid file or resource rejects the whole
//! directory, every problem is reported (file, resource, field), and a
//! watcher keeps serving the last good state ([`watch_directory`]).
mod authz;
mod build;
mod destination_rule;
pub(crate) mod documents;
mod endpoint_slices;
mod error;
mod export_to;
mod fields;
mod gateway;
pub mod gateway_api;
mod ingress_gateway;
pub mod kubernetes;
mod objects;
mod parsed_files;
mod pod_owner;
mod pod_probes;
mod published;
mod regex_budget;
mod routing;
mod service_entry;
#[cfg(test)]
mod test_yaml;
mod virtual_service;
mod watch;

use std::path::Path;

pub use build::DATAPLANE_MODE_LABEL;
pub use error::{LoadError, Problem};
pub(crate) use fields::parse_block;
pub use kubernetes::{watch_kubernetes, KubeSourceError, KubeSourceOptions};
pub use parsed_files::ParsedFiles;
pub use published::SourceWatch;
pub use watch::{watch_directory, DirectoryWatch, DEFAULT_RELOAD_INTERVAL};

use crate::{analyze::Finding, model::MeshState};

/// Settings of the source that are not in the YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Trust domain of the SPIFFE identities. [default: cluster.local]
    pub trust_domain: String,
    /// Istio's root namespace: a PeerAuthentication there without a
    /// selector is mesh-wide. [default: istio-system]
    pub root_namespace: String,
    /// Suffix of service hostnames `<name>.<namespace>.svc.<cluster_domain>`.
    /// [default: cluster.local]
    pub cluster_domain: String,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            trust_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// An accepted Istio / Gateway API resource the state does not model yet.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResource {
    /// As written, e.g. `networking.istio.io/v1alpha3`.
    pub api_version: String,
    pub kind: String,
    /// `default` when the document names none; empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    /// File name inside the directory.
    pub file: String,
    /// The whole document.
    pub value: serde_yaml::Value,
}

/// The result of a successful load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub state: MeshState,
    /// In file order, then document order.
    pub raw: Vec<RawResource>,
    /// Tolerated oddities (skipped kinds, pods without an address, …),
    /// one line each, naming file and resource; includes `findings`.
    pub warnings: Vec<String>,
    /// What the AuthorizationPolicy translation could not do as written
    /// (CUSTOM, L7 attributes, selectors matching nothing, …), computed
    /// once per load so it is logged once, not on every push.
    pub findings: Vec<Finding>,
    /// What the Gateway API resources' status says (routes' parents,
    /// Gateways' listeners).
    pub gateway_api: gateway_api::status::Status,
}

/// Loads `dir` once. Any problem rejects the whole directory.
pub fn load_directory(dir: &Path, config: &SourceConfig) -> Result<Snapshot, LoadError> {
    load_directory_with(dir, config, &mut ParsedFiles::default())
}

/// [`load_directory`], parsing again only the files whose text differs
/// from their parse in `parsed` (which then holds this load's).
pub fn load_directory_with(
    dir: &Path,
    config: &SourceConfig,
    parsed: &mut ParsedFiles,
) -> Result<Snapshot, LoadError> {
    let directory_error = |error| LoadError::Directory {
        path: dir.to_path_buf(),
        error,
    };
    let mut files = vec![];
    let mut problems = vec![];
    for (name, path) in documents::yaml_files(dir).map_err(directory_error)? {
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => files.push((name, text)),
                Err(_) => problems.push(file_problem(&name, "not UTF-8 text")),
            },
            Err(error) => problems.push(file_problem(&name, &format!("cannot be read: {error}"))),
        }
    }
    let loaded = load_parsed(&parsed.parse(files), config);
    let result = if loaded.problems.is_empty() {
        Ok(loaded.snapshot)
    } else {
        Err(loaded.problems)
    };
    match result {
        Ok(snapshot) if problems.is_empty() => Ok(snapshot),
        Ok(_) => Err(LoadError::Invalid {
            path: dir.to_path_buf(),
            problems,
        }),
        Err(more) => {
            problems.extend(more);
            Err(LoadError::Invalid {
                path: dir.to_path_buf(),
                problems,
            })
        }
    }
}

/// Loads in-memory files (`(file name, content)`, in the order given):
/// what [`load_directory`] does after reading, for tests and tools.
pub fn load_files(
    files: &[(String, String)],
    config: &SourceConfig,
) -> Result<Snapshot, Vec<Problem>> {
    let loaded = load_all(files, config);
    if loaded.problems.is_empty() {
        Ok(loaded.snapshot)
    } else {
        Err(loaded.problems)
    }
}

/// Everything one load found, kept even when it has problems: the
/// analyzer reports every problem and still checks what did parse.
pub(crate) struct Loaded {
    /// Built from the resources without problems.
    pub snapshot: Snapshot,
    pub problems: Vec<Problem>,
}

/// [`load_files`] without the all-or-nothing rule.
pub(crate) fn load_all(files: &[(String, String)], config: &SourceConfig) -> Loaded {
    load_parsed(&ParsedFiles::default().parse(files.to_vec()), config)
}

/// Parsed files, in order → [`Loaded`].
fn load_parsed(
    files: &[std::sync::Arc<parsed_files::ParsedFile>],
    config: &SourceConfig,
) -> Loaded {
    let problems = files
        .iter()
        .flat_map(|f| f.problems.iter().cloned())
        .collect();
    let warnings = files
        .iter()
        .flat_map(|f| f.warnings.iter().cloned())
        .collect();
    let docs = files.iter().flat_map(|f| f.docs.iter());
    load_documents(docs, problems, warnings, config)
}

/// Parsed documents → [`Loaded`]; `problems` and `warnings` are those of
/// parsing so far.
pub(crate) fn load_documents<'d>(
    docs: impl IntoIterator<Item = &'d documents::Document>,
    mut problems: Vec<Problem>,
    mut warnings: Vec<String>,
    config: &SourceConfig,
) -> Loaded {
    let mut objects = objects::Objects::default();
    for doc in docs {
        objects::read(doc, &mut objects, &mut problems, &mut warnings);
    }
    let mut state = build::build(&objects, config, &mut problems, &mut warnings);
    let gateway_api = gateway_api::add_to_state(&objects, &mut state);
    let mut findings =
        crate::translate::authorization::translate(&state, &config.root_namespace).findings;
    findings.extend(crate::analyze::service_entry::findings(&state));
    warnings.extend(findings.iter().map(ToString::to_string));
    Loaded {
        snapshot: Snapshot {
            state,
            raw: objects.raw,
            warnings,
            findings,
            gateway_api,
        },
        problems,
    }
}

fn file_problem(file: &str, message: &str) -> Problem {
    Problem {
        file: file.to_string(),
        resource: String::new(),
        field: String::new(),
        message: message.to_string(),
    }
}
