//! `RouteConfiguration` → [`RouteTable`].
use std::{collections::HashMap, net::IpAddr, sync::Arc};

use envoy_types::pb::envoy::config::{
    core::v3::Metadata,
    route::v3::{
        route::Action as PbAction, route_match::PathSpecifier, FilterConfig, Route as PbRoute,
        RouteConfiguration, VirtualHost as PbVirtualHost,
    },
};
use envoy_types::pb::envoy::extensions::filters::http::{
    fault::v3::HttpFault, rbac::v3::RbacPerRoute,
};
use mesh_xds::proto::wkt::{self, value::Kind};

use super::{
    action, at,
    fault::{FaultConfig, FAULT_FILTER, FAULT_TYPE},
    headers::HeaderEdits,
    matcher::{compile_regex, HeaderMatcher, QueryMatcher},
    rbac::{compile_per_route, RBAC_FILTER_PREFIX, RBAC_PER_ROUTE_TYPE},
    table::{Action, FilterOverrides, PathMatch, Route, RouteMatch, RouteTable, VirtualHost},
    unsupported::warn_once,
    wkt::{any_type, decode_any},
    ConfigError,
};

const FILTER_CONFIG_TYPE: &str = "envoy.config.route.v3.FilterConfig";

pub fn translate(rc: &RouteConfiguration) -> Result<RouteTable, ConfigError> {
    let top_req = HeaderEdits::compile(
        &rc.request_headers_to_add,
        &rc.request_headers_to_remove,
        "request_headers_to_add",
        "request_headers_to_remove",
    )?;
    let top_resp = HeaderEdits::compile(
        &rc.response_headers_to_add,
        &rc.response_headers_to_remove,
        "response_headers_to_add",
        "response_headers_to_remove",
    )?;
    if rc.vhds.is_some() {
        warn_once("RouteConfiguration.vhds", "vhds");
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut vhosts = Vec::with_capacity(rc.virtual_hosts.len());
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        let field = format!("virtual_hosts[{i}]");
        for (j, d) in vh.domains.iter().enumerate() {
            let d = d.to_ascii_lowercase();
            if let Some(prev) = seen.insert(d.clone(), i) {
                return Err(ConfigError::new(
                    format!("{field}.domains[{j}]"),
                    format!("domain {d:?} is already in virtual_hosts[{prev}]"),
                ));
            }
        }
        vhosts.push(Arc::new(virtual_host(vh, &field, &top_req, &top_resp)?));
    }
    Ok(RouteTable::new(rc.name.clone(), vhosts))
}

fn virtual_host(
    vh: &PbVirtualHost,
    field: &str,
    top_req: &HeaderEdits,
    top_resp: &HeaderEdits,
) -> Result<VirtualHost, ConfigError> {
    if vh.domains.is_empty() {
        return Err(ConfigError::new(at(field, "domains"), "no domains"));
    }
    let vh_req = HeaderEdits::compile(
        &vh.request_headers_to_add,
        &vh.request_headers_to_remove,
        &at(field, "request_headers_to_add"),
        &at(field, "request_headers_to_remove"),
    )?;
    let vh_resp = HeaderEdits::compile(
        &vh.response_headers_to_add,
        &vh.response_headers_to_remove,
        &at(field, "response_headers_to_add"),
        &at(field, "response_headers_to_remove"),
    )?;
    let overrides = filter_overrides(&vh.typed_per_filter_config, field)?;
    let mut routes = Vec::with_capacity(vh.routes.len());
    for (i, r) in vh.routes.iter().enumerate() {
        let rf = format!("{field}.routes[{i}]");
        let mut route = route(r, &rf, vh, field)?;
        // Envoy: route edits, then vhost, then route config; a later `set`
        // loses to an earlier one only with most_specific_header_mutations_wins,
        // so the least specific is applied last.
        route
            .request_edits
            .extend([vh_req.clone(), top_req.clone()]);
        route
            .response_edits
            .extend([vh_resp.clone(), top_resp.clone()]);
        route.request_edits.retain(|e| !e.is_empty());
        route.response_edits.retain(|e| !e.is_empty());
        routes.push(Arc::new(route));
    }
    Ok(VirtualHost {
        name: vh.name.clone(),
        domains: vh.domains.clone(),
        routes,
        overrides,
        // TlsRequirementType: NONE = 0, EXTERNAL_ONLY = 1, ALL = 2. Every
        // request a listener accepts is external to the proxy.
        require_tls: vh.require_tls != 0,
    })
}

fn route(
    r: &PbRoute,
    field: &str,
    vh: &PbVirtualHost,
    vh_field: &str,
) -> Result<Route, ConfigError> {
    let mf = at(field, "match");
    let m = r
        .r#match
        .as_ref()
        .ok_or_else(|| ConfigError::new(&mf, "missing"))?;
    let path = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(PathSpecifier::SafeRegex(re)) => {
            PathMatch::Regex(compile_regex(re, &at(&mf, "safe_regex"))?)
        }
        Some(PathSpecifier::PathSeparatedPrefix(p)) => PathMatch::SeparatedPrefix(p.clone()),
        Some(_) => {
            return Err(ConfigError::new(
                &mf,
                "path specifier must be prefix, path, safe_regex or path_separated_prefix",
            ))
        }
        None => return Err(ConfigError::new(&mf, "no path specifier")),
    };
    let case_sensitive = m.case_sensitive.is_none_or(|b| b.value);
    // Envoy ignores `case_sensitive` for safe_regex (Istio writes `(?i)`
    // into the pattern for `ignoreUriCase`); prefix / path honour it.
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| HeaderMatcher::compile(h, &format!("{mf}.headers[{i}]")))
        .collect::<Result<_, _>>()?;
    let query = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| QueryMatcher::compile(q, &format!("{mf}.query_parameters[{i}]")))
        .collect::<Result<_, _>>()?;
    if m.runtime_fraction.is_some() || m.grpc.is_some() || !m.dynamic_metadata.is_empty() {
        warn_once("RouteMatch.runtime_fraction/grpc/dynamic_metadata", &mf);
    }
    let source_ips = source_ips(r.metadata.as_ref(), &at(field, "metadata"))?;
    let action = match &r.action {
        Some(PbAction::Route(a)) => {
            let mut action = action::forward(a, &at(field, "route"))?;
            // The vhost's retry policy applies when the route has none.
            if let (Action::Forward(f), Some(vr)) = (&mut action, &vh.retry_policy) {
                if f.retry.is_none() {
                    f.retry = Some(action::retry_policy(vr, &at(vh_field, "retry_policy"))?);
                }
            }
            action
        }
        Some(PbAction::Redirect(rd)) => action::redirect(rd, &at(field, "redirect"))?,
        Some(PbAction::DirectResponse(d)) => action::direct(d, &at(field, "direct_response"))?,
        Some(_) => {
            return Err(ConfigError::new(
                field,
                "action must be route, redirect or direct_response",
            ))
        }
        None => return Err(ConfigError::new(field, "no action")),
    };
    let request_edits = vec![HeaderEdits::compile(
        &r.request_headers_to_add,
        &r.request_headers_to_remove,
        &at(field, "request_headers_to_add"),
        &at(field, "request_headers_to_remove"),
    )?];
    let response_edits = vec![HeaderEdits::compile(
        &r.response_headers_to_add,
        &r.response_headers_to_remove,
        &at(field, "response_headers_to_add"),
        &at(field, "response_headers_to_remove"),
    )?];
    Ok(Route {
        name: r.name.clone(),
        matcher: RouteMatch {
            path,
            case_sensitive,
            headers,
            query,
            source_ips,
        },
        action,
        request_edits,
        response_edits,
        overrides: filter_overrides(&r.typed_per_filter_config, field)?,
    })
}

/// `filter_metadata["mesh"]["source_ips"]`, a list of IP strings.
fn source_ips(md: Option<&Metadata>, field: &str) -> Result<Option<Vec<IpAddr>>, ConfigError> {
    let Some(mesh) = md.and_then(|m| m.filter_metadata.get("mesh")) else {
        return Ok(None);
    };
    let Some(v) = mesh.fields.get("source_ips") else {
        return Ok(None);
    };
    let f = format!("{field}.filter_metadata[mesh].source_ips");
    let Some(Kind::ListValue(list)) = &v.kind else {
        return Err(ConfigError::new(f, "must be a list of IP strings"));
    };
    list.values
        .iter()
        .enumerate()
        .map(|(i, v)| match &v.kind {
            Some(Kind::StringValue(s)) => s
                .parse()
                .map_err(|_| ConfigError::new(format!("{f}[{i}]"), format!("{s:?} is not an IP"))),
            _ => Err(ConfigError::new(format!("{f}[{i}]"), "not a string")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `typed_per_filter_config`: the fault and RBAC overrides; others are
/// ignored (with a warning).
pub(crate) fn filter_overrides(
    map: &HashMap<String, wkt::Any>,
    field: &str,
) -> Result<FilterOverrides, ConfigError> {
    let mut out = FilterOverrides::default();
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    for name in names {
        let f = format!("{field}.typed_per_filter_config[{name}]");
        let mut any = map[name].clone();
        if any_type(&any) == FILTER_CONFIG_TYPE {
            let fc: FilterConfig = decode_any(&any, FILTER_CONFIG_TYPE, &f)?;
            if fc.disabled {
                if name.starts_with(RBAC_FILTER_PREFIX) {
                    out.rbac.insert(name.clone(), None);
                }
                continue;
            }
            match fc.config {
                Some(inner) => any = inner,
                None => continue,
            }
        }
        if name == FAULT_FILTER {
            let fault: HttpFault = decode_any(&any, FAULT_TYPE, &f)?;
            out.fault = Some(Arc::new(FaultConfig::compile(&fault, &f)?));
        } else if name.starts_with(RBAC_FILTER_PREFIX) {
            let per_route: RbacPerRoute = decode_any(&any, RBAC_PER_ROUTE_TYPE, &f)?;
            let rules = compile_per_route(&per_route, &f)?;
            out.rbac.insert(name.clone(), rules.map(Arc::new));
        } else {
            warn_once(&format!("typed_per_filter_config[{name}]"), &f);
        }
    }
    Ok(out)
}
