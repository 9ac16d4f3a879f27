//! The stable finding codes. A code never changes meaning once released;
//! retired codes are not reused.

/// A file or resource the control plane rejects (syntax, validation).
pub const INVALID: &str = "MESH0001";
/// Something the control plane tolerates while loading and logs (a
/// skipped kind, tab indentation, a pod without an address, …).
pub const LOAD_NOTE: &str = "MESH0002";

/// VirtualService destination host is no known Service or ServiceEntry.
pub const VS_UNKNOWN_HOST: &str = "MESH0101";
/// VirtualService destination subset no DestinationRule defines.
pub const VS_UNKNOWN_SUBSET: &str = "MESH0102";
/// DestinationRule subset whose labels match no pod of its host.
pub const DR_SUBSET_NO_PODS: &str = "MESH0103";

/// AuthorizationPolicy with action CUSTOM (no external authorizer).
pub const AUTHZ_CUSTOM: &str = "MESH0201";
/// ALLOW rule with L7 attributes: dropped at L4 (allows less).
pub const AUTHZ_L7_ALLOW_DROPPED: &str = "MESH0202";
/// DENY/AUDIT rule with L7 attributes: they are ignored (denies more).
pub const AUTHZ_L7_IGNORED: &str = "MESH0203";
/// AuthorizationPolicy selector matching no mesh workload.
pub const AUTHZ_SELECTOR_EMPTY: &str = "MESH0204";
/// targetRef to a kind agents do not enforce (Gateway, ServiceEntry, …).
pub const AUTHZ_TARGET_NOT_ENFORCED: &str = "MESH0205";
/// targetRef to a Service that does not exist.
pub const AUTHZ_TARGET_UNKNOWN_SERVICE: &str = "MESH0206";
/// Principal not in `<trust-domain>/ns/<namespace>/sa/<account>` form.
pub const AUTHZ_PRINCIPAL_FORM: &str = "MESH0207";
/// Address-based rule: matched for mesh clients only (plaintext from
/// outside the mesh is not evaluated per connection).
pub const AUTHZ_ADDRESS_PLAINTEXT: &str = "MESH0208";

/// PeerAuthentication selector matching no workload.
pub const PA_SELECTOR_EMPTY: &str = "MESH0301";

/// Mesh-bound VirtualService whose hosts name no Service of the mesh.
pub const VS_HOSTS_NO_SERVICE: &str = "MESH0104";
/// VirtualService bound only to gateways no `networking.istio.io` Gateway
/// defines.
pub const VS_GATEWAY_ONLY: &str = "MESH0105";
/// `networking.istio.io` Gateway whose selector matches no pod.
pub const GATEWAY_UNBACKED: &str = "MESH0106";
/// VirtualService / DestinationRule for a service without a waypoint: the
/// L7 rules do not apply.
pub const L7_WITHOUT_WAYPOINT: &str = "MESH0107";
/// VirtualService route a waypoint cannot run (skipped).
pub const L7_ROUTE_UNSUPPORTED: &str = "MESH0108";
/// Gateway server the ingress gateway does not serve yet (TCP, TLS,
/// PASSTHROUGH, AUTO_PASSTHROUGH, ISTIO_MUTUAL, …).
pub const GATEWAY_SERVER_UNSUPPORTED: &str = "MESH0109";
/// VirtualService / DestinationRule not exported (`exportTo`) to the
/// namespace of the waypoint serving its host: that waypoint ignores it.
pub const NOT_EXPORTED: &str = "MESH0110";
/// DestinationRule another rule for the same service takes precedence
/// over (istiod's lookup: waypoint's namespace, service's, root's).
pub const DR_SHADOWED: &str = "MESH0111";

/// ServiceEntry host that is a Kubernetes Service's hostname: the Service
/// keeps it; the entry adds nothing to it.
pub const SE_HOST_IS_SERVICE: &str = "MESH0112";
/// ServiceEntry with a DNS resolution and a wildcard host: the wildcard
/// gets no VIP, so connections to names it covers bypass the endpoints.
pub const SE_WILDCARD_DNS: &str = "MESH0113";
/// ServiceEntry host another entry of the namespace defines first.
pub const SE_DUPLICATE_HOST: &str = "MESH0114";
/// ServiceEntry part the mesh does not carry (CIDR ranges, UDP ports).
pub const SE_UNSUPPORTED: &str = "MESH0115";

/// HTTPRoute parent that does not accept it (no such Gateway, Service or
/// listener; not allowed by the listener; no shared hostname).
pub const GW_API_ROUTE_NOT_ACCEPTED: &str = "MESH0401";
/// HTTPRoute backendRef that does not resolve (missing Service or port,
/// another kind, another namespace without a ReferenceGrant).
pub const GW_API_REF_UNRESOLVED: &str = "MESH0402";
/// Gateway API listener not served (TLS, TCP, UDP, Passthrough, a
/// certificate of another namespace, no HTTPRoute kind allowed).
pub const GW_API_LISTENER_NOT_SERVED: &str = "MESH0403";
