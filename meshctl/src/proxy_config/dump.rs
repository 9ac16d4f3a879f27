//! The agent's admin JSON as meshctl reads it
//! (docs/contracts/agent-admin.md). Every field has a default, so an agent that adds fields
//! or omits one still renders; unknown fields are ignored.
use serde::Deserialize;
use serde_json::Value;

/// `GET /config_dump` of an agent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConfigDump {
    pub node: String,
    pub xds: XdsInfo,
    pub workloads: Vec<Value>,
    pub services: Vec<Value>,
    pub policies: Vec<Value>,
    pub certificates: Vec<Value>,
    /// Entries in the kernel's deny map: a count or the entries themselves.
    pub kernel_denies: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct XdsInfo {
    pub address: String,
    pub connected: bool,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Workload {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub identity: String,
    pub node: String,
    pub ips: Vec<String>,
    pub mesh: bool,
    pub canonical_name: String,
    pub canonical_revision: String,
    pub authorization_policies: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    pub uid: String,
    pub port: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    /// `<namespace>/<hostname>`.
    pub key: String,
    /// `ip:port`; a list is tolerated.
    pub vip: Value,
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    pub fn namespace(&self) -> &str {
        self.key.split_once('/').map_or("", |(ns, _)| ns)
    }
    pub fn hostname(&self) -> &str {
        self.key
            .split_once('/')
            .map_or(self.key.as_str(), |(_, h)| h)
    }
    pub fn vips(&self) -> Vec<String> {
        match &self.vip {
            Value::String(s) => vec![s.clone()],
            Value::Array(list) => list
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => vec![],
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Policy {
    pub name: String,
    pub namespace: String,
    pub scope: String,
    pub action: String,
    pub dry_run: bool,
    /// The proto's rules as JSON: a list.
    pub rules: Value,
    pub kernel_denies: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Certificate {
    pub identity: String,
    pub serial: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

/// `GET /stats/connections`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Connections {
    pub totals: Value,
    pub recent: Vec<Value>,
    pub active: Vec<Value>,
}

/// One connection (a `ConnectionRecord`; open ones may lack the totals).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Connection {
    pub id: u64,
    pub direction: String,
    pub route: String,
    pub source_identity: String,
    pub destination_identity: String,
    pub source: String,
    pub original_destination: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ms: u64,
    pub opened_at_ms: u64,
    pub error: String,
}

/// A count for `kernel_denies`: the number, or the length of a list/map.
pub fn count_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::Array(a) => Some(a.len() as u64),
        Value::Object(o) => Some(o.len() as u64),
        _ => None,
    }
}

/// Parses every element; one that does not parse is shown with defaults
/// rather than failing the whole listing.
pub fn typed<T: serde::de::DeserializeOwned + Default>(items: &[Value]) -> Vec<(T, &Value)> {
    items
        .iter()
        .map(|v| (serde_json::from_value(v.clone()).unwrap_or_default(), v))
        .collect()
}
