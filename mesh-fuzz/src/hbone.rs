//! The HBONE server's request path before the handler: CONNECT validation
//! (`:authority` must be `ip:port`), the `forwarded` header naming the
//! source pod, and the SPIFFE identity a peer presents.
use std::{net::IpAddr, str::FromStr as _};

use http::{Method, StatusCode, Uri};
use mesh_hbone::{connect_target, forwarded, Identity};

use crate::lines;

/// Input: line 1 the method, line 2 the request target (`ip:port`), line 3
/// a SPIFFE identity, then header lines (`forwarded: …`).
pub fn hbone_connect(data: &[u8]) {
    let lines = lines::split(data);
    let field = |i: usize| lines.get(i).map_or("", String::as_str);
    if let (Ok(method), Ok(uri)) = (
        Method::from_bytes(field(0).as_bytes()),
        field(1).parse::<Uri>(),
    ) {
        match connect_target(&method, &uri) {
            Ok(addr) => {
                assert_eq!(method, Method::CONNECT);
                let authority = uri.authority().expect("accepted without an authority");
                assert_eq!(authority.as_str().parse().ok(), Some(addr));
            }
            Err(status) => assert!(
                status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::BAD_REQUEST,
                "{status}"
            ),
        }
    }
    if let Ok(id) = Identity::from_str(field(2)) {
        // What a valid identity prints must read back as the same identity.
        let again = Identity::from_str(&id.to_string()).expect("printed identity does not parse");
        assert_eq!(again, id);
    }
    for value in lines::headers(lines.iter().skip(3)).get_all("forwarded") {
        if let Ok(text) = value.to_str() {
            let _ = forwarded::parse_for(text);
        }
    }
}

/// Input: a `forwarded` header value. The first `for=` node must parse
/// without panicking, and what the client writes for any address must
/// read back as that address.
pub fn forwarded_header(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = forwarded::parse_for(&text);
    let ip: IpAddr = match data.len() {
        n if n >= 16 => <[u8; 16]>::try_from(&data[..16]).unwrap().into(),
        n if n >= 4 => <[u8; 4]>::try_from(&data[..4]).unwrap().into(),
        _ => return,
    };
    assert_eq!(
        forwarded::parse_for(&forwarded::header_value(ip)),
        Some(ip),
        "{}",
        forwarded::header_value(ip)
    );
}
