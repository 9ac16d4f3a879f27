//! Indexes that keep matching policies to workloads proportional to the
//! matches, not to policies × workloads: the xDS conversion runs on every
//! change of the mesh state, and a mesh of 10 000 pods and 1 000 policies
//! would otherwise test ten million selector/pod pairs each time.
//!
//! - [`ByLabel`]: the workloads carrying each `key=value` label, so a
//!   selector's candidates are the pods with its first label;
//! - [`WorkloadPolicies`]: the publishable selector and `targetRefs`
//!   policies, by namespace and by targeted service, so a workload's
//!   `authorization_policies` come from its own buckets.
//!
//! Both answer exactly what a scan of every pair would; the tests compare
//! them with that scan.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{MeshState, Workload};

use super::{agent_target, publishable, resource_name, selects, target_service};

/// Workloads by label, in `MeshState` order.
pub(super) struct ByLabel<'s> {
    by_label: HashMap<(&'s str, &'s str), Vec<&'s Workload>>,
    all: Vec<&'s Workload>,
}

impl<'s> ByLabel<'s> {
    pub(super) fn new(state: &'s MeshState) -> Self {
        let mut by_label: HashMap<(&str, &str), Vec<&Workload>> = HashMap::new();
        for w in state.workloads.values() {
            for (k, v) in &w.labels {
                by_label
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(w);
            }
        }
        ByLabel {
            by_label,
            all: state.workloads.values().collect(),
        }
    }

    /// The workloads `selector` picks for a policy of `namespace`: those of
    /// the same namespace, or of any namespace when it is the root one; in
    /// `MeshState` order.
    pub(super) fn selected<'a>(
        &'a self,
        selector: &'a BTreeMap<String, String>,
        namespace: &'a str,
        root_namespace: &'a str,
    ) -> impl Iterator<Item = &'s Workload> + 'a {
        let candidates: &[&Workload] = match selector.iter().next() {
            Some((k, v)) => self
                .by_label
                .get(&(k.as_str(), v.as_str()))
                .map_or(&[][..], Vec::as_slice),
            None => &self.all,
        };
        candidates.iter().copied().filter(move |w| {
            (namespace == w.namespace || namespace == root_namespace)
                && selects(selector, &w.labels)
        })
    }
}

/// A selector and the index of its policy's name.
type Selecting<'s> = (&'s BTreeMap<String, String>, usize);

/// The publishable policies that can name a workload, bucketed.
pub struct WorkloadPolicies<'s> {
    /// Selector policies by namespace (not the root namespace's).
    by_namespace: HashMap<&'s str, Vec<Selecting<'s>>>,
    /// Selector policies of the root namespace: they select in every namespace.
    root: Vec<Selecting<'s>>,
    /// `targetRefs` policies by the key of a Service they target.
    by_service: HashMap<&'s str, Vec<usize>>,
    /// Resource names, by the indexes above.
    names: Vec<String>,
}

impl<'s> WorkloadPolicies<'s> {
    pub fn new(state: &'s MeshState, root_namespace: &str) -> Self {
        let mut index = WorkloadPolicies {
            by_namespace: HashMap::new(),
            root: Vec::new(),
            by_service: HashMap::new(),
            names: Vec::new(),
        };
        for policy in &state.authorization_policies {
            if !publishable(state, policy, root_namespace) {
                continue;
            }
            let i = index.names.len();
            index.names.push(resource_name(policy));
            match &policy.selector {
                Some(selector) if policy.namespace == root_namespace => {
                    index.root.push((selector, i));
                }
                Some(selector) => index
                    .by_namespace
                    .entry(policy.namespace.as_str())
                    .or_default()
                    .push((selector, i)),
                None => {
                    for target in &policy.target_refs {
                        if !agent_target(state, policy, target, root_namespace) {
                            continue;
                        }
                        if let Some((key, _)) = target_service(state, policy, target) {
                            index.by_service.entry(key.as_str()).or_default().push(i);
                        }
                    }
                }
            }
        }
        index
    }

    /// Names (`<namespace>/<name>`) of the policies that select `w` by
    /// selector or `targetRefs`, sorted; none for a workload outside the
    /// mesh (see [`super::policies_for_workload`]).
    pub fn of(&self, w: &Workload) -> Vec<String> {
        if !w.mesh {
            return vec![];
        }
        let mut found = BTreeSet::new();
        let selector_policies = self
            .by_namespace
            .get(w.namespace.as_str())
            .into_iter()
            .flatten()
            .chain(&self.root);
        for (selector, i) in selector_policies {
            if selects(selector, &w.labels) {
                found.insert(*i);
            }
        }
        for key in w.services.keys() {
            found.extend(self.by_service.get(key.as_str()).into_iter().flatten());
        }
        let names: BTreeSet<&String> = found.into_iter().map(|i| &self.names[i]).collect();
        names.into_iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{load_files, SourceConfig};

    const ROOT: &str = "istio-system";

    /// Three namespaces of pods with overlapping labels, services, and
    /// policies of every kind that names workloads (or not).
    fn state() -> MeshState {
        let mut yaml = String::from("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}]}\n");
        for ns in ["a", "b", "c"] {
            yaml += &format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio.io/dataplane-mode: ambient}}}}\n");
            yaml += &format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}\n");
        }
        for i in 0..24 {
            let ns = ["a", "b", "c"][i % 3];
            let app = ["web", "db", "cache"][i % 4 % 3];
            let tier = ["front", "back"][i % 2];
            yaml += &format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: {ns}, labels: {{app: {app}, tier: {tier}}}}}\nspec: {{nodeName: n1}}\nstatus: {{podIP: 10.244.0.{}}}\n", i + 1);
        }
        let policy = |ns: &str, name: &str, spec: &str| {
            format!("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}")
        };
        for p in [
            policy("a", "web", "  selector: {matchLabels: {app: web}}\n"),
            policy("a", "web-front", "  selector: {matchLabels: {app: web, tier: front}}\n"),
            policy("b", "back", "  selector: {matchLabels: {tier: back}}\n"),
            policy("b", "all", "  selector: {}\n"),
            policy("c", "ns-wide", "  action: DENY\n"),
            policy(ROOT, "root-db", "  selector: {matchLabels: {app: db}}\n"),
            policy(ROOT, "mesh-wide", "  action: DENY\n"),
            policy("c", "svc", "  targetRefs: [{kind: Service, name: web}]\n"),
            policy("a", "nobody", "  selector: {matchLabels: {app: none}}\n"),
            policy("b", "custom", "  selector: {matchLabels: {app: web}}\n  action: CUSTOM\n  provider: {name: ext}\n"),
        ] {
            yaml += &p;
        }
        let files = [("00.yaml".to_string(), yaml)];
        load_files(&files, &SourceConfig::default())
            .unwrap_or_else(|p| panic!("{p:#?}"))
            .state
    }

    #[test]
    fn the_indexes_answer_what_a_scan_of_every_pair_does() {
        let state = state();
        assert_eq!(state.workloads.len(), 24);
        let index = WorkloadPolicies::new(&state, ROOT);
        let mut listed = 0;
        for w in state.workloads.values() {
            let scan: BTreeSet<String> = state
                .authorization_policies
                .iter()
                .filter(|p| {
                    publishable(&state, p, ROOT) && super::super::applies_to(&state, p, w, ROOT)
                })
                .map(resource_name)
                .collect();
            let scan: Vec<String> = scan.into_iter().collect();
            assert_eq!(index.of(w), scan, "{}/{}", w.namespace, w.name);
            listed += scan.len();
        }
        assert!(listed > 24, "the fixture lists policies ({listed})");

        let by_label = ByLabel::new(&state);
        for p in &state.authorization_policies {
            let Some(selector) = &p.selector else {
                continue;
            };
            let scan: Vec<&str> = state
                .workloads
                .values()
                .filter(|w| {
                    (p.namespace == w.namespace || p.namespace == ROOT)
                        && selects(selector, &w.labels)
                })
                .map(|w| w.uid.as_str())
                .collect();
            let indexed: Vec<&str> = by_label
                .selected(selector, &p.namespace, ROOT)
                .map(|w| w.uid.as_str())
                .collect();
            assert_eq!(indexed, scan, "{}", p.name);
        }
    }
}
