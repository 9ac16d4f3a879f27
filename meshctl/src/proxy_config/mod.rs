//! `meshctl proxy-config <kind> [<agent>]`: what one agent holds, from its
//! admin endpoint — workloads, services, policies and certificates from
//! `/config_dump`, connections from `/stats/connections` (shapes in
//! docs/contracts/agent-admin.md). Filters work like
//! istioctl's: `--namespace`, `--workload`, `--address`. A waypoint's
//! listeners, routes, clusters and endpoints: see [`waypoint`]; a
//! waypoint's or gateway's certificates (`secret`): see [`secrets`].
mod connections;
pub mod dump;
pub mod secrets;
pub mod waypoint;

use clap::ValueEnum;
use serde_json::{json, Value};

use self::dump::{count_of, typed, Certificate, ConfigDump, Policy, Service, Workload};
use crate::render::{self, Output, Table};

/// What to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Workloads (pods) the agent knows, with identity and policies (also `workloads`, `w`).
    #[value(alias = "workloads", alias = "w")]
    Workload,
    /// Services: VIP and endpoints.
    Service,
    /// Authorization policies the agent enforces.
    Policy,
    /// Certificates, never keys: an agent's workload certificates; a waypoint's or gateway's own chain, trust roots and TLS credentials (also `secret`, `secrets`, `s`).
    #[value(alias = "secret", alias = "secrets", alias = "s")]
    Certificate,
    /// Open connections, then recently closed ones.
    Connections,
    /// A waypoint's or ingress gateway's listeners (a gateway: one row per filter chain; also `listeners`, `l`).
    #[value(alias = "listeners", alias = "l")]
    Listener,
    /// A waypoint's routes: virtual hosts, matches, actions (also `routes`, `r`).
    #[value(alias = "routes", alias = "r")]
    Route,
    /// A waypoint's clusters: load balancing, circuit breakers, outlier detection (also `clusters`, `c`).
    #[value(alias = "clusters", alias = "c")]
    Cluster,
    /// A waypoint's endpoints: health, HBONE or plain, active requests, ejections (also `endpoints`, `ep`).
    #[value(alias = "endpoints", alias = "ep")]
    Endpoint,
}

impl Kind {
    /// The admin path holding this kind.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Connections => "/stats/connections",
            _ => "/config_dump",
        }
    }
}

/// Row filters; `None` keeps everything.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub namespace: Option<String>,
    /// A workload name, or a prefix of it (`reviews` matches `reviews-v1-…`).
    pub workload: Option<String>,
    /// An IP: workloads and services with it, connections from or to it.
    pub address: Option<String>,
    /// A certificate identity (`spiffe://…`): a pod target's own.
    pub identity: Option<String>,
    /// istioctl's `--port`: the port of a cluster (`outbound|<port>|…`), a
    /// listener's address or an endpoint's address.
    pub port: Option<u16>,
    /// istioctl's `--direction`: the first part of a cluster name.
    pub direction: Option<Direction>,
    /// istioctl's `--fqdn`: the service host of a cluster or endpoint.
    pub fqdn: Option<String>,
}

/// Which way a cluster carries traffic (the first part of its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    /// As a cluster name spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl Filters {
    fn namespace_ok(&self, ns: &str) -> bool {
        self.namespace.as_deref().is_none_or(|want| want == ns)
    }

    fn workload_ok(&self, w: &Workload) -> bool {
        self.namespace_ok(&w.namespace)
            && self
                .workload
                .as_deref()
                .is_none_or(|want| w.name == want || w.name.starts_with(want) || w.uid == want)
            && self
                .address
                .as_deref()
                .is_none_or(|ip| w.ips.iter().any(|a| a == ip))
    }
}

/// `cluster.local/ns/default/sa/web` (the scheme says nothing in a table).
fn short_identity(identity: &str) -> String {
    identity
        .strip_prefix("spiffe://")
        .unwrap_or(identity)
        .to_string()
}

/// `spiffe://<td>/ns/<ns>/sa/<sa>` → (`<td>`, `<ns>/<sa>`).
fn split_identity(identity: &str) -> Option<(&str, String)> {
    let rest = identity.strip_prefix("spiffe://")?;
    let (td, path) = rest.split_once("/ns/")?;
    let (ns, sa) = path.split_once("/sa/")?;
    Some((td, format!("{ns}/{sa}")))
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn workloads(dump: &ConfigDump, f: &Filters) -> (Table, Vec<Value>, Vec<String>) {
    // The policy names are also under `proxy-config policy --workload`.
    let mut table = Table::new([
        "NAME",
        "NAMESPACE",
        "IP",
        "NODE",
        "IDENTITY",
        "PROTOCOL",
        "POLICIES",
    ])
    .squeeze_first(6);
    let mut data = vec![];
    let mut domains = std::collections::BTreeSet::new();
    let mut rows = vec![];
    for (w, raw) in typed::<Workload>(&dump.workloads) {
        if !f.workload_ok(&w) {
            continue;
        }
        // `<ns>/<sa>` keeps the column short; the trust domain goes below.
        let identity = match split_identity(&w.identity) {
            Some((td, short)) => {
                domains.insert(td.to_string());
                short
            }
            None => short_identity(&w.identity),
        };
        rows.push((w, identity));
        data.push(raw.clone());
    }
    let one_domain = domains.len() <= 1;
    for (w, identity) in rows {
        let identity = if one_domain {
            identity
        } else {
            short_identity(&w.identity)
        };
        table.row([
            w.name.clone(),
            w.namespace.clone(),
            or_dash(w.ips.join(",")),
            or_dash(w.node.clone()),
            or_dash(identity),
            if w.mesh { "HBONE" } else { "TCP" }.to_string(),
            or_dash(w.authorization_policies.join(",")),
        ]);
    }
    let notes = match (one_domain, domains.iter().next()) {
        (true, Some(td)) => vec![format!(
            "IDENTITY is <namespace>/<service account> of spiffe://{td}/ns/<namespace>/sa/<sa>"
        )],
        _ => vec![],
    };
    (table, data, notes)
}

/// `Kubernetes//Pod/ns/name` → `name`.
fn uid_name(uid: &str) -> &str {
    uid.rsplit('/').next().unwrap_or(uid)
}

fn services(dump: &ConfigDump, f: &Filters) -> (Table, Vec<Value>) {
    let mut table = Table::new(["NAME", "NAMESPACE", "VIP", "ENDPOINTS"]);
    let mut data = vec![];
    for (s, raw) in typed::<Service>(&dump.services) {
        let vips = s.vips();
        let ip_of = |vip: &str| {
            vip.parse::<std::net::SocketAddr>()
                .map_or(vip.to_string(), |a| a.ip().to_string())
        };
        let keep = f.namespace_ok(s.namespace())
            && f.address
                .as_deref()
                .is_none_or(|ip| vips.iter().any(|v| ip_of(v) == ip))
            && f.workload.as_deref().is_none_or(|want| {
                s.endpoints
                    .iter()
                    .any(|e| uid_name(&e.uid).starts_with(want))
            });
        if !keep {
            continue;
        }
        let endpoints: Vec<String> = s
            .endpoints
            .iter()
            .map(|e| format!("{}:{}", uid_name(&e.uid), e.port))
            .collect();
        // `reviews.default.svc.cluster.local` → `reviews`: the namespace
        // has its own column (the full hostname is in `-o json`).
        let host = s.hostname();
        let short = host
            .strip_suffix(&format!(".{}.svc", s.namespace()))
            .or_else(|| {
                host.split_once(&format!(".{}.svc.", s.namespace()))
                    .map(|(n, _)| n)
            })
            .unwrap_or(host);
        table.row([
            short.to_string(),
            s.namespace().to_string(),
            or_dash(vips.join(",")),
            or_dash(endpoints.join(",")),
        ]);
        data.push(raw.clone());
    }
    (table, data)
}

fn policies(dump: &ConfigDump, f: &Filters) -> (Table, Vec<Value>, Vec<String>) {
    // `--workload`/`--address`: the policies that apply to those workloads —
    // those listed on them, their namespace's, and the global ones.
    let selected: Option<Vec<Workload>> =
        (f.workload.is_some() || f.address.is_some()).then(|| {
            typed::<Workload>(&dump.workloads)
                .into_iter()
                .map(|(w, _)| w)
                .filter(|w| f.workload_ok(w))
                .collect()
        });
    let list = typed::<Policy>(&dump.policies);
    let with_kernel = list.iter().any(|(p, _)| p.kernel_denies.is_some());
    let mut headers = vec!["NAME", "NAMESPACE", "SCOPE", "ACTION", "RULES", "DRY-RUN"];
    if with_kernel {
        headers.push("KERNEL");
    }
    let mut table = Table::new(headers);
    let mut data = vec![];
    for (p, raw) in list {
        let key = format!("{}/{}", p.namespace, p.name);
        let applies = selected.as_ref().is_none_or(|ws| {
            ws.iter().any(|w| {
                p.scope == "GLOBAL"
                    || (p.scope == "NAMESPACE" && p.namespace == w.namespace)
                    || w.authorization_policies.contains(&key)
            })
        });
        if !applies || !f.namespace_ok(&p.namespace) {
            continue;
        }
        let rules = match &p.rules {
            Value::Array(r) => r.len().to_string(),
            Value::Null => "0".into(),
            _ => "?".into(),
        };
        let mut row = vec![
            p.name.clone(),
            p.namespace.clone(),
            or_dash(p.scope.clone()),
            or_dash(p.action.clone()),
            rules,
            if p.dry_run { "yes" } else { "no" }.to_string(),
        ];
        if with_kernel {
            row.push(
                p.kernel_denies
                    .as_ref()
                    .and_then(count_of)
                    .map_or("-".into(), |n| n.to_string()),
            );
        }
        table.row(row);
        data.push(raw.clone());
    }
    let mut notes = vec![];
    if let Some(n) = dump.kernel_denies.as_ref().and_then(count_of) {
        // Which policy put how many entries into the kernel's deny map.
        let mut by_policy: std::collections::BTreeMap<&str, usize> = Default::default();
        for entry in dump
            .kernel_denies
            .iter()
            .flat_map(|v| v.as_array())
            .flatten()
        {
            if let Some(policy) = entry["policy"].as_str() {
                *by_policy.entry(policy).or_default() += 1;
            }
        }
        let detail: Vec<String> = by_policy.iter().map(|(p, k)| format!("{p}: {k}")).collect();
        notes.push(if detail.is_empty() {
            format!("Kernel deny map: {n} entries")
        } else {
            format!(
                "Kernel deny map (connect() refused in the kernel): {n} entries ({})",
                detail.join(", ")
            )
        });
    }
    (table, data, notes)
}

fn certificates(dump: &ConfigDump, f: &Filters, now_unix: i64) -> (Table, Vec<Value>) {
    let mut table = Table::new(["IDENTITY", "SERIAL", "NOT-AFTER"]);
    let mut data = vec![];
    for (c, raw) in typed::<Certificate>(&dump.certificates) {
        let keep = f
            .namespace
            .as_deref()
            .is_none_or(|ns| c.identity.contains(&format!("/ns/{ns}/")))
            && f.identity.as_deref().is_none_or(|id| c.identity == id);
        if !keep {
            continue;
        }
        table.row([
            short_identity(&c.identity),
            or_dash(c.serial.clone()),
            render::relative(c.not_after_unix, now_unix),
        ]);
        data.push(raw.clone());
    }
    (table, data)
}

/// What `proxy-config <kind>` prints for `doc` (the raw JSON of
/// [`Kind::path`]). `now_unix` makes certificate times testable.
pub fn render(
    kind: Kind,
    doc: &Value,
    filters: &Filters,
    output: Output,
    now_unix: i64,
) -> Result<String, serde_json::Error> {
    if kind == Kind::Connections {
        return connections::render(doc, filters, output);
    }
    if waypoint::is_waypoint_kind(kind) {
        return Ok(waypoint::render(kind, doc, filters, output));
    }
    if kind == Kind::Certificate && secrets::is_proxy_dump(doc) {
        return Ok(secrets::render(doc, filters, output, now_unix));
    }
    let dump: ConfigDump = serde_json::from_value(doc.clone())?;
    let (table, data, notes, what) = match kind {
        Kind::Workload => {
            let (t, d, n) = workloads(&dump, filters);
            (t, d, n, "workloads")
        }
        Kind::Service => {
            let (t, d) = services(&dump, filters);
            (t, d, vec![], "services")
        }
        Kind::Policy => {
            let (t, d, n) = policies(&dump, filters);
            (t, d, n, "policies")
        }
        Kind::Certificate => {
            let (t, d) = certificates(&dump, filters, now_unix);
            (t, d, vec![], "certificates")
        }
        Kind::Connections | Kind::Listener | Kind::Route | Kind::Cluster | Kind::Endpoint => {
            unreachable!("handled above")
        }
    };
    if let Some(text) = render::data(&json!(data), output) {
        return Ok(text);
    }
    let mut out = if table.is_empty() {
        format!("No {what} match.\n")
    } else {
        table.render(render::WIDTH)
    };
    for note in notes {
        out.push_str(&note);
        out.push('\n');
    }
    if !dump.xds.connected && !dump.xds.address.is_empty() {
        let why = dump
            .xds
            .last_error
            .as_deref()
            .unwrap_or("no error recorded");
        out.push_str(&render::truncate(
            &format!(
                "warning: agent {} is not connected to {} ({why}); this is its last known state",
                dump.node, dump.xds.address
            ),
            render::WIDTH,
        ));
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
