//! Istio's cluster names, `<direction>|<port>|<subset>|<service host>`:
//! what metrics and spans name as the destination service and port when
//! the matched virtual host does not (a gateway's `*`).

/// The parts of an Istio cluster name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IstioClusterName<'a> {
    pub port: u16,
    /// Empty when the cluster covers the whole service.
    pub subset: &'a str,
    pub host: &'a str,
}

impl<'a> IstioClusterName<'a> {
    /// `outbound|9080|v1|reviews.default.svc.cluster.local` (or
    /// `inbound|…`); `None` for any other name (`PassthroughCluster`,
    /// a user-named STATIC cluster).
    pub fn parse(name: &'a str) -> Option<Self> {
        let mut parts = name.split('|');
        let direction = parts.next()?;
        let port = parts.next()?.parse().ok()?;
        let subset = parts.next()?;
        let host = parts.next()?;
        let known = matches!(direction, "outbound" | "inbound");
        (known && !host.is_empty() && parts.next().is_none()).then_some(Self { port, subset, host })
    }
}

#[cfg(test)]
mod tests {
    use super::IstioClusterName;

    #[test]
    fn names_with_four_parts_and_a_port_parse() {
        let c =
            IstioClusterName::parse("outbound|9080|v1|reviews.default.svc.cluster.local").unwrap();
        assert_eq!(
            (c.port, c.subset, c.host),
            (9080, "v1", "reviews.default.svc.cluster.local")
        );
        let c = IstioClusterName::parse("inbound|80||httpbin").unwrap();
        assert_eq!((c.port, c.subset, c.host), (80, "", "httpbin"));
    }

    #[test]
    fn other_names_do_not() {
        for name in [
            "PassthroughCluster",
            "outbound|x|v1|reviews",
            "outbound|9080|v1|",
            "outbound|9080|v1|a|b",
            "sideways|9080||a",
            "outbound|9080",
        ] {
            assert_eq!(IstioClusterName::parse(name), None, "{name}");
        }
    }
}
