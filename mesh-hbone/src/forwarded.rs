//! The `forwarded` header (RFC 7239) on HBONE CONNECT: the client names the
//! source pod's address (`for=`), as ztunnel does, because the TCP peer the
//! server sees is the source node's agent, not the pod.
use std::net::IpAddr;

/// `for=10.0.0.1` or `for="[fd00::1]"` (IPv6 must be quoted and bracketed).
pub fn header_value(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    }
}

/// The first `for=` address of a `forwarded` header value, if it is an IP
/// (obfuscated identifiers and `unknown` give `None`).
pub fn parse_for(value: &str) -> Option<IpAddr> {
    let first = value.split(',').next()?;
    first.split(';').find_map(|pair| {
        let (key, val) = pair.trim().split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let val = val.trim().trim_matches('"');
        let val = val.strip_prefix('[').map_or(val, |v| {
            // `[v6]` or `[v6]:port`
            v.split(']').next().unwrap_or(v)
        });
        let host = match val.parse::<IpAddr>() {
            Ok(ip) => return Some(ip),
            // `v4:port`
            Err(_) => val.rsplit_once(':').map(|(h, _)| h)?,
        };
        host.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for ip in ["10.244.1.2", "fd00::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(parse_for(&header_value(ip)), Some(ip));
        }
    }

    #[test]
    fn reads_the_forms_of_rfc_7239() {
        assert_eq!(
            parse_for("for=192.0.2.60;proto=http;by=203.0.113.43"),
            Some("192.0.2.60".parse().unwrap())
        );
        assert_eq!(
            parse_for("For=\"[2001:db8:cafe::17]:4711\""),
            Some("2001:db8:cafe::17".parse().unwrap())
        );
        assert_eq!(
            parse_for("for=192.0.2.43:80, for=198.51.100.17"),
            Some("192.0.2.43".parse().unwrap())
        );
        assert_eq!(parse_for("for=unknown"), None);
        assert_eq!(parse_for("for=_hidden"), None);
        assert_eq!(parse_for("proto=https"), None);
    }
}
