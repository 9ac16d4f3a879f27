//! ServiceEntry: its hosts and `spec.exportTo` (validated,
//! [`super::export_to`]) into [`ServiceEntry`]; the rest is kept raw until
//! ServiceEntries are translated. Hosts are read as written, without
//! checks, so nothing accepted before is rejected.
use serde_yaml::Value;

use super::{export_to::export_to, fields::Reporter};
use crate::model::ServiceEntry;

/// The ServiceEntry in `value`; `None` when `exportTo` has a problem.
pub(crate) fn service_entry(
    rep: &mut Reporter<'_>,
    value: &Value,
    name: &str,
    namespace: &str,
) -> Option<ServiceEntry> {
    let before = rep.count();
    let spec = value.get("spec").unwrap_or(&Value::Null);
    let hosts = spec
        .get("hosts")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(ToString::to_string)
        .collect();
    let export_to = export_to(
        rep,
        spec.get("exportTo").unwrap_or(&Value::Null),
        "spec.exportTo",
        namespace,
    );
    (rep.count() == before).then(|| ServiceEntry {
        name: name.to_string(),
        namespace: namespace.to_string(),
        file: rep.file.to_string(),
        hosts,
        export_to,
    })
}
