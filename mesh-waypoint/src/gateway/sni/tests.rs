use std::sync::Arc;

use super::*;

/// A real ClientHello (rustls, TLS 1.2 and 1.3) for `sni`, as sent.
fn hello(sni: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[test]
fn a_real_client_hello_gives_its_sni_and_every_prefix_asks_for_more() {
    let bytes = hello("Shop.Example.com");
    assert_eq!(
        parse(&bytes),
        Hello::Complete {
            sni: Some("shop.example.com".into())
        }
    );
    for n in 0..bytes.len() {
        assert_eq!(parse(&bytes[..n]), Hello::Incomplete, "prefix of {n} bytes");
    }
    // Bytes after the hello (the client's next flight) do not matter.
    let mut more = bytes.clone();
    more.extend_from_slice(b"\x17\x03\x03\x00\x01x");
    assert!(matches!(parse(&more), Hello::Complete { .. }));
}

#[test]
fn a_hello_split_over_two_records_is_reassembled() {
    let bytes = hello("a.example.com");
    let body = &bytes[RECORD_HEADER..];
    let (first, second) = body.split_at(40);
    let mut split = vec![];
    for part in [first, second] {
        split.extend_from_slice(&[22, 3, 1]);
        split.extend_from_slice(&(part.len() as u16).to_be_bytes());
        split.extend_from_slice(part);
    }
    assert_eq!(
        parse(&split),
        Hello::Complete {
            sni: Some("a.example.com".into())
        }
    );
}

#[test]
fn not_a_hello_or_malformed_lengths_are_invalid() {
    assert!(matches!(
        parse(b"GET / HTTP/1.1\r\n\r\n"),
        Hello::Invalid(_)
    ));
    // A handshake record holding a ServerHello (type 2).
    assert!(matches!(
        parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
        Hello::Invalid(_)
    ));
    // A zero-length record, and one longer than TLS allows.
    assert!(matches!(parse(&[22, 3, 1, 0, 0]), Hello::Invalid(_)));
    assert!(matches!(parse(&[22, 3, 1, 0x48, 0x01]), Hello::Invalid(_)));
    // A hello claiming more than the cap.
    assert_eq!(
        parse(&[22, 3, 1, 0, 4, 1, 0x01, 0, 0]),
        Hello::Invalid("ClientHello too large")
    );
    // A whole hello whose inner lengths overrun it: the cipher suite
    // length of a real hello made huge.
    let mut bytes = hello("a.example.com");
    let suites_at = RECORD_HEADER + 4 + 2 + 32 + 1 + usize::from(bytes[RECORD_HEADER + 4 + 34]);
    bytes[suites_at] = 0xff;
    assert!(
        matches!(parse(&bytes), Hello::Invalid(_)),
        "{:?}",
        parse(&bytes)
    );
}

#[test]
fn every_single_byte_corruption_of_a_hello_is_handled_without_panic() {
    let bytes = hello("b.example.com");
    for i in 0..bytes.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = parse(&b);
            let _ = parse(&b[..i]);
        }
    }
}

#[tokio::test]
async fn reading_stops_at_a_whole_hello_and_refuses_garbage_or_a_close() {
    let bytes = hello("c.example.com");
    let (mut client, mut server) = tokio::io::duplex(64);
    let sent = bytes.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for chunk in sent.chunks(7) {
            client.write_all(chunk).await.unwrap();
        }
        // Keep the pipe open: the reader must not wait for EOF.
        std::future::pending::<()>().await;
    });
    let (buf, sni) = read_client_hello(&mut server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(buf, bytes);
    assert_eq!(sni.as_deref(), Some("c.example.com"));

    let mut garbage: &[u8] = b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00";
    assert!(matches!(
        read_client_hello(&mut garbage, Duration::from_secs(5)).await,
        Err(PeekError::Invalid(_))
    ));
    let mut short: &[u8] = &bytes[..20];
    assert!(matches!(
        read_client_hello(&mut short, Duration::from_secs(5)).await,
        Err(PeekError::Closed)
    ));
    let (_idle, mut silent) = tokio::io::duplex(64);
    assert!(matches!(
        read_client_hello(&mut silent, Duration::from_millis(50)).await,
        Err(PeekError::Timeout(_))
    ));
}
