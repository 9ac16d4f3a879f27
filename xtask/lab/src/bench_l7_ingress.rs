//! The ingress path of `cargo xtask bench l7`: a stock Envoy and
//! `mesh-waypoint --role gateway` as pods of the same ingress Gateway
//! (docs/contracts/gateway-xds.md), each fed its listener and routes by
//! the control plane (`router~` node ids), both on the proxy CPU. The
//! Gateway has one plain HTTP server on port 80 and the VirtualService
//! bound to it the bench's one route to `bench:9080`.
use std::{net::SocketAddr, path::Path};

use mesh_e2e::{
    cluster::CONTROL_IP,
    envoy::{Envoy, EnvoySpec, XdsKind},
    waypoint::{MeshWaypoint, WaypointSpec},
};

use crate::bench_l7_topology::{Bed, READY};

/// Harness pod (and Kubernetes pod) of the Envoy gateway.
pub const GW_ENVOY: &str = "gw-envoy";
/// Harness pod (and Kubernetes pod) of `mesh-waypoint --role gateway`.
pub const GW_MESH: &str = "gw-mesh";
/// The gateway pods' labels (the Gateway's selector), not captured.
pub const INGRESS_LABELS: &str = "    istio: ingressgateway\n    istio.io/dataplane-mode: none\n";
/// `Host` the load generator sends through the gateways.
pub const INGRESS_HOST: &str = "bench.example.com";
/// The Gateway's port.
pub const INGRESS_PORT: u16 = 80;

/// The Gateway and the VirtualService bound to it.
pub const INGRESS: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: bench-ingress\n  namespace: default\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: 80\n      name: http\n      protocol: HTTP\n    hosts:\n    - bench.example.com\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bench-ingress\n  namespace: default\nspec:\n  hosts:\n  - bench.example.com\n  gateways:\n  - bench-ingress\n  http:\n  - name: all\n    match:\n    - uri:\n        prefix: /\n    route:\n    - destination:\n        host: bench\n        port:\n          number: 9080\n";

impl Bed {
    /// Where a gateway in harness pod `pod` listens.
    pub fn gateway_addr(&self, pod: &str) -> SocketAddr {
        self.cluster.pod(pod).addr(INGRESS_PORT)
    }

    /// Envoy as the ingress gateway pod [`GW_ENVOY`], one worker on the
    /// proxy CPU, once it accepted LDS, RDS, CDS and EDS and answers
    /// through the route.
    pub fn start_envoy_gateway(&self, bin: &Path) -> anyhow::Result<Envoy> {
        let mut spec = EnvoySpec::new(
            self.node(GW_ENVOY, GW_ENVOY),
            SocketAddr::from((CONTROL_IP, 15010)),
        );
        spec.gateway = true;
        spec.concurrency = 1;
        spec.cpu = Some(self.cpus.proxy);
        spec.log_level = "warn".into();
        let netns = self.netns(GW_ENVOY);
        let dir = self.cluster.dir.join("envoy-gateway");
        let mut envoy = Envoy::start(bin, spec, Some(&netns), &dir)?;
        envoy.wait_live(READY)?;
        envoy.wait_xds_accepted(
            &[XdsKind::Lds, XdsKind::Rds, XdsKind::Cds, XdsKind::Eds],
            READY,
        )?;
        self.wait_route(self.gateway_addr(GW_ENVOY), INGRESS_HOST, "envoy gateway")?;
        Ok(envoy)
    }

    /// `mesh-waypoint --role gateway` as pod [`GW_MESH`], one worker on
    /// the proxy CPU, once ready and answering through the route.
    pub fn start_mesh_gateway(&self, bin: &Path) -> anyhow::Result<MeshWaypoint> {
        self.start_mesh_gateway_in(bin, GW_MESH)
    }

    /// [`Bed::start_mesh_gateway`] as pod `pod` (one of the two gateway
    /// pods): a second build in Envoy's place for an A/B of two builds.
    pub fn start_mesh_gateway_in(&self, bin: &Path, pod: &str) -> anyhow::Result<MeshWaypoint> {
        let mut spec = WaypointSpec::new(
            self.node(pod, pod),
            "ingress",
            SocketAddr::from((CONTROL_IP, 15010)),
        );
        spec.gateway = true;
        spec.workers = 1;
        spec.cpu = Some(self.cpus.proxy);
        spec.log = "warn".into();
        let netns = self.netns(pod);
        let dir = self.cluster.dir.join(format!("mesh-gateway-{pod}"));
        let mut gw = MeshWaypoint::start(bin, spec, Some(&netns), &dir)?;
        gw.wait_ready(READY)?;
        self.wait_route(
            self.gateway_addr(pod),
            INGRESS_HOST,
            "mesh-waypoint gateway",
        )?;
        Ok(gw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_selects_the_labelled_pods_and_routes_the_bench_host() {
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(INGRESS)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        let (gw, vs) = (&docs[0], &docs[1]);
        assert!(INGRESS_LABELS.contains("istio: ingressgateway"));
        assert_eq!(gw["spec"]["selector"]["istio"], "ingressgateway");
        let server = &gw["spec"]["servers"][0];
        assert_eq!(server["port"]["number"].as_u64(), Some(INGRESS_PORT.into()));
        assert_eq!(server["hosts"][0].as_str(), Some(INGRESS_HOST));
        assert_eq!(vs["spec"]["hosts"][0].as_str(), Some(INGRESS_HOST));
        assert_eq!(vs["spec"]["gateways"][0], gw["metadata"]["name"]);
    }
}
