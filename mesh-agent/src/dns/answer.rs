//! What the DNS proxy does with one query, a function of the mesh view:
//! answer it from the names the view knows (Service and ServiceEntry
//! hosts exported to the asking pod's namespace), refuse it (the source is
//! no pod the view knows), or forward it upstream unchanged.
//!
//! Names answered, for a pod of namespace `p`:
//! - a ServiceEntry host, exactly, and a name under a wildcard host
//!   (`*.example.com`) that has VIPs (only hosts with VIPs are services);
//! - a Kubernetes Service `n` of namespace `s` in the cluster domain `d`:
//!   `n.s.svc.d`, `n.s.svc`, `n.s`, and `n` when `s` is `p` (the names a
//!   pod's search list produces).
//!
//! A known name asked for A gets its IPv4 VIPs, for AAAA its IPv6 VIPs
//! (none: an empty NOERROR answer); other record types and unknown names
//! are forwarded.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode},
    rr::{
        rdata::{A, AAAA},
        RData, Record, RecordType,
    },
};

use crate::state::view::{ExportTo, MeshView, ServiceKind};

/// TTL of the answers the agent gives: short, VIPs follow the view.
pub const ANSWER_TTL: u32 = 30;
/// Records in one answer at most (an answer stays well under 512 bytes).
pub const MAX_RECORDS: usize = 16;

/// One service's addresses under a name.
#[derive(Debug, Clone)]
struct Entry {
    vips: Vec<IpAddr>,
    export_to: ExportTo,
}

/// The names of a view, built once per view.
#[derive(Debug, Default)]
pub struct HostIndex {
    /// Fully qualified, lowercase, no trailing dot: Service FQDNs and
    /// ServiceEntry hosts.
    exact: HashMap<String, Vec<Entry>>,
    /// `name.namespace` of Kubernetes Services (for the short forms).
    kube: HashMap<String, Vec<Entry>>,
    /// `*.suffix` ServiceEntry hosts, by `suffix`.
    wildcards: Vec<(String, Entry)>,
}

impl HostIndex {
    pub fn new(view: &MeshView) -> Self {
        // (hostname, namespace) → entry, VIPs merged over ports.
        let mut by_service: HashMap<(&str, &str), (Entry, &ServiceKind, &str)> = HashMap::new();
        for s in view.services() {
            let (entry, _, _) = by_service
                .entry((s.name.hostname.as_str(), s.name.namespace.as_str()))
                .or_insert_with(|| {
                    (
                        Entry {
                            vips: vec![],
                            export_to: s.export_to.clone(),
                        },
                        &s.name.kind,
                        s.name.name.as_str(),
                    )
                });
            if !entry.vips.contains(&s.vip.ip()) {
                entry.vips.push(s.vip.ip());
            }
        }
        let mut index = HostIndex::default();
        for ((hostname, namespace), (entry, kind, name)) in by_service {
            let host = hostname.trim_end_matches('.').to_ascii_lowercase();
            match kind {
                ServiceKind::Kubernetes { .. } => {
                    let short = format!("{name}.{namespace}").to_ascii_lowercase();
                    index.kube.entry(short).or_default().push(entry.clone());
                    index.exact.entry(host).or_default().push(entry);
                }
                ServiceKind::External => match host.strip_prefix("*.") {
                    Some(suffix) => index.wildcards.push((suffix.to_string(), entry)),
                    None => index.exact.entry(host).or_default().push(entry),
                },
            }
        }
        // Longest suffix first: the most specific wildcard wins.
        index
            .wildcards
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        index
    }

    /// The VIPs `name` (lowercase, no trailing dot) has for a pod of
    /// `namespace`; `None`: the name is not the mesh's.
    pub fn lookup(&self, name: &str, namespace: &str) -> Option<Vec<IpAddr>> {
        let visible = |entries: &[Entry]| -> Vec<IpAddr> {
            entries
                .iter()
                .filter(|e| e.export_to.visible_to(Some(namespace)))
                .flat_map(|e| e.vips.iter().copied())
                .collect()
        };
        let found = |entries: Option<&Vec<Entry>>| {
            entries.map(|e| visible(e)).filter(|vips| !vips.is_empty())
        };
        if let Some(vips) = found(self.exact.get(name)) {
            return Some(vips);
        }
        let labels: Vec<&str> = name.split('.').collect();
        let short = match labels.as_slice() {
            [n] => Some(format!("{n}.{namespace}")),
            [n, s] | [n, s, "svc"] => Some(format!("{n}.{s}")),
            _ => None,
        };
        if let Some(vips) = short.and_then(|short| found(self.kube.get(&short))) {
            return Some(vips);
        }
        self.wildcards
            .iter()
            .filter(|(suffix, _)| {
                name.strip_suffix(suffix.as_str())
                    .and_then(|head| head.strip_suffix('.'))
                    .is_some_and(|head| !head.is_empty())
            })
            .map(|(_, e)| visible(std::slice::from_ref(e)))
            .find(|vips| !vips.is_empty())
    }
}

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// The source is no pod of the view: send these bytes (REFUSED).
    Refuse(Vec<u8>),
    /// Not the mesh's name: forward the query, as received, upstream.
    Forward,
    /// Not a DNS query the agent can read or answer: drop it.
    Drop,
}

/// Decides what to do with `query` (its raw bytes) from `src`.
pub fn decide(view: &MeshView, index: &HostIndex, src: SocketAddr, query: &[u8]) -> Decision {
    let Ok(request) = Message::from_vec(query) else {
        return Decision::Drop;
    };
    if request.metadata.message_type != MessageType::Query {
        return Decision::Drop;
    }
    let Some(pod) = view.workload_by_ip(src.ip()) else {
        return encode(&error(&request, ResponseCode::Refused));
    };
    let [question] = request.queries.as_slice() else {
        return Decision::Forward;
    };
    if request.metadata.op_code != OpCode::Query {
        return Decision::Forward;
    }
    let want_v4 = match question.query_type {
        RecordType::A => true,
        RecordType::AAAA => false,
        _ => return Decision::Forward,
    };
    let name = question
        .name
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let Some(vips) = index.lookup(&name, &pod.namespace) else {
        return Decision::Forward;
    };
    let mut response = reply(&request, ResponseCode::NoError);
    response.metadata.authoritative = true;
    response.add_query(question.clone());
    let records = vips
        .into_iter()
        .filter(|ip| ip.is_ipv4() == want_v4)
        .take(MAX_RECORDS)
        .map(|ip| {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            Record::from_rdata(question.name.clone(), ANSWER_TTL, data)
        });
    response.add_answers(records);
    match response.to_vec() {
        Ok(bytes) => Decision::Answer(bytes),
        Err(_) => Decision::Drop,
    }
}

/// A response header for `request`, as RFC 1035 and 6840 say: id, opcode,
/// RD and CD copied.
fn reply(request: &Message, code: ResponseCode) -> Message {
    let mut response = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.recursion_available = true;
    response.metadata.response_code = code;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(hickory_proto::op::DEFAULT_MAX_PAYLOAD_LEN);
        response.edns = Some(edns);
    }
    response
}

/// An error answer to `request`, echoing its question.
fn error(request: &Message, code: ResponseCode) -> Message {
    let mut response = reply(request, code);
    response.add_queries(request.queries.iter().cloned());
    response
}

fn encode(message: &Message) -> Decision {
    match message.to_vec() {
        Ok(bytes) => Decision::Refuse(bytes),
        Err(_) => Decision::Drop,
    }
}

/// A SERVFAIL for a query the upstream did not answer; `None` when the
/// query cannot be read.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    error(&request, ResponseCode::ServFail).to_vec().ok()
}

/// A view and its host index, built from it (the server keeps the last
/// one and rebuilds it when the view changes).
#[derive(Debug, Clone)]
pub struct Indexed {
    pub view: Arc<MeshView>,
    pub index: Arc<HostIndex>,
}

impl Indexed {
    pub fn new(view: Arc<MeshView>) -> Self {
        let index = Arc::new(HostIndex::new(&view));
        Self { view, index }
    }
}
