//! Gateway API status as findings: what the Kubernetes source writes as
//! `False` conditions (an HTTPRoute parent not accepted, a backend not
//! resolved, a listener not served) is reported in directory mode too.
use super::{codes, Finding, Severity};
use crate::source::{
    gateway_api::status::{Condition, ConditionType},
    Snapshot,
};

fn finding(code: &'static str, resource: String, file: &str, c: &Condition) -> Finding {
    let suggestion = match c.kind {
        ConditionType::Accepted => {
            "check the parentRef (Gateway of class istio or Service, sectionName, port), the listener's allowedRoutes and hostnames"
        }
        ConditionType::ResolvedRefs => {
            "create the referenced Service (or port), or a ReferenceGrant in its namespace; until then its share of traffic fails (500, or 503 in a weighted split)"
        }
        ConditionType::Programmed => {
            "use an HTTP listener, or HTTPS with tls.mode Terminate and a Secret of the Gateway's namespace"
        }
    };
    Finding {
        severity: Severity::Warning,
        code,
        resource,
        file: (!file.is_empty()).then(|| file.to_string()),
        field: (!c.field.is_empty()).then(|| c.field.clone()),
        message: format!(
            "{}={} ({}): {}",
            c.kind.as_str(),
            if c.status { "True" } else { "False" },
            c.reason.as_str(),
            c.message
        ),
        suggestion: suggestion.into(),
    }
}

pub(super) fn check(snapshot: &Snapshot, findings: &mut Vec<Finding>) {
    for r in &snapshot.gateway_api.routes {
        for p in &r.parents {
            for c in p.conditions.iter().filter(|c| !c.status) {
                let code = match c.kind {
                    ConditionType::ResolvedRefs => codes::GW_API_REF_UNRESOLVED,
                    _ => codes::GW_API_ROUTE_NOT_ACCEPTED,
                };
                findings.push(finding(code, r.resource(), &r.file, c));
            }
        }
    }
    for g in &snapshot.gateway_api.gateways {
        for l in &g.listeners {
            // Programmed=False follows from the others: one finding each.
            for c in l
                .conditions
                .iter()
                .filter(|c| !c.status && c.kind != ConditionType::Programmed)
            {
                findings.push(finding(
                    codes::GW_API_LISTENER_NOT_SERVED,
                    g.resource(),
                    &g.file,
                    c,
                ));
            }
        }
    }
}
