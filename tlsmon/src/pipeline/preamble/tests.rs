use std::net::SocketAddr;

use super::*;

/// The first bytes of a TLS 1.2 ClientHello record (enough to be "not a preamble").
const HELLO_START: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0, 0, 1, 3];

fn feed_all(role: Role, parts: &[&[u8]]) -> Vec<Fed> {
    let mut reader = PreambleReader::new(role);
    parts.iter().map(|p| reader.feed(p)).collect()
}

fn v2_header(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut h = proxy_protocol::V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
    h.extend_from_slice(addresses);
    h.extend_from_slice(tlvs);
    h
}

#[test]
fn tls_from_the_first_byte_passes_through_untouched() {
    assert_eq!(
        feed_all(Role::Client, &[HELLO_START]),
        vec![Fed::Through(HELLO_START.to_vec())]
    );
    // "P" could begin "PROXY ": held until the next byte decides.
    assert_eq!(
        feed_all(Role::Client, &[b"P", b"OST /"]),
        vec![Fed::Held, Fed::Through(b"POST /".to_vec())]
    );
}

#[test]
fn a_client_hello_needs_no_reader_but_a_possible_preamble_start_does() {
    let reader = PreambleReader::new(Role::Client);
    assert!(reader.passes_through(HELLO_START));
    assert!(!reader.passes_through(b"PRO"));
    assert!(!reader.passes_through(&[5, 1, 0]));
    assert!(!PreambleReader::new(Role::Reply(PreambleKind::Socks5)).passes_through(HELLO_START));
}

#[test]
fn proxy_v1_gives_the_original_client_and_the_tls_offset() {
    // The example of HAProxy's PROXY protocol specification, section 2.1.
    let header = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    let stream = [&header[..], HELLO_START].concat();
    let (offset, preamble) = parse_client_stream(&stream).unwrap();
    assert_eq!(offset, header.len());
    let preamble = preamble.unwrap();
    assert_eq!(preamble.kind, PreambleKind::ProxyV1);
    assert_eq!(
        preamble.source,
        Some("192.168.0.1:56324".parse::<SocketAddr>().unwrap())
    );
    let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n";
    let (_, preamble) = parse_client_stream(&[&v6[..], HELLO_START].concat()).unwrap();
    assert_eq!(
        preamble.unwrap().source,
        Some("[2001:db8::1]:40000".parse().unwrap())
    );
    // "PROXY UNKNOWN": the receiver must ignore the addresses.
    let (offset, preamble) = parse_client_stream(b"PROXY UNKNOWN\r\n\x16").unwrap();
    assert_eq!((offset, preamble.unwrap().source), (15, None));
}

#[test]
fn a_proxy_v1_header_split_anywhere_is_the_same_header() {
    let header = b"PROXY TCP4 10.0.0.7 10.0.0.1 41000 443\r\n";
    let stream = [&header[..], HELLO_START].concat();
    for cut in 1..header.len() {
        let fed = feed_all(Role::Client, &[&stream[..cut], &stream[cut..]]);
        assert_eq!(fed[0], Fed::Held, "cut at {cut}");
        match &fed[1] {
            Fed::Finished { preamble, rest } => {
                assert_eq!(rest.as_slice(), HELLO_START, "cut at {cut}");
                assert_eq!(
                    preamble.as_ref().unwrap().source,
                    Some("10.0.0.7:41000".parse().unwrap())
                );
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn broken_proxy_v1_headers_fail_with_a_reason() {
    for bad in [
        &b"PROXY TCP4 300.0.0.1 10.0.0.1 1 2\r\n"[..],
        b"PROXY TCP5 10.0.0.1 10.0.0.2 1 2\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n",
    ] {
        assert!(parse_client_stream(bad).is_err(), "{bad:?}");
    }
    // 107 bytes without a line end: longer than any v1 header, whether the CRLF
    // comes later in the same piece or never (the fuzz target found the two
    // ways reporting differently).
    let long = [&b"PROXY TCP4 "[..], &[b'1'; 120]].concat();
    let err = parse_client_stream(&long).unwrap_err();
    let later_crlf = [&long[..], b"\r\n"].concat();
    assert_eq!(parse_client_stream(&later_crlf).unwrap_err(), err);
}

#[test]
fn proxy_v2_gives_the_original_client_and_skips_tlvs() {
    // PROXY command, TCP over IPv4: 10.1.2.3:50000 -> 10.9.9.9:443, one TLV.
    let addresses = [10, 1, 2, 3, 10, 9, 9, 9, 0xc3, 0x50, 0x01, 0xbb];
    let tlv = [0x04, 0x00, 0x03, b'a', b'b', b'c']; // PP2_TYPE_NOOP
    let header = v2_header(0x1, 0x11, &addresses, &tlv);
    let stream = [&header[..], HELLO_START].concat();
    let (offset, preamble) = parse_client_stream(&stream).unwrap();
    assert_eq!(offset, header.len());
    let preamble = preamble.unwrap();
    assert_eq!(preamble.kind, PreambleKind::ProxyV2);
    assert_eq!(preamble.source, Some("10.1.2.3:50000".parse().unwrap()));
    // LOCAL (a load balancer's health check): no client to report.
    let local = v2_header(0x0, 0x00, &[], &[]);
    let (offset, preamble) = parse_client_stream(&[&local[..], HELLO_START].concat()).unwrap();
    assert_eq!((offset, preamble.unwrap().source), (16, None));
    // Split in the signature and in the addresses.
    for cut in [3, 12, 20] {
        let fed = feed_all(Role::Client, &[&stream[..cut], &stream[cut..]]);
        assert_eq!(fed[0], Fed::Held, "cut at {cut}");
        assert!(matches!(&fed[1], Fed::Finished { rest, .. } if rest == HELLO_START));
    }
}

#[test]
fn a_proxy_v2_header_longer_than_the_bound_fails() {
    let tlv_len = MAX_PREAMBLE_BYTES;
    let mut tlv = vec![0x04];
    tlv.extend_from_slice(&(tlv_len as u16).to_be_bytes());
    tlv.resize(3 + tlv_len, 0);
    let header = v2_header(0x1, 0x11, &[10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2], &tlv);
    let mut reader = PreambleReader::new(Role::Client);
    let mut last = Fed::Held;
    for chunk in header.chunks(1000) {
        last = reader.feed(chunk);
        if last != Fed::Held {
            break;
        }
    }
    assert!(
        matches!(&last, Fed::Failed { kind: PreambleKind::ProxyV2, reason, .. } if reason.contains("8192")),
        "{last:?}"
    );
}

#[test]
fn http_connect_names_the_target_and_a_2xx_opens_the_tunnel() {
    // RFC 9110 section 9.3.6's example.
    let request = b"CONNECT server.example.com:80 HTTP/1.1\r\nHost: server.example.com\r\n\r\n";
    let (offset, preamble) = parse_client_stream(&[&request[..], HELLO_START].concat()).unwrap();
    assert_eq!(offset, request.len());
    let preamble = preamble.unwrap();
    assert_eq!(preamble.kind, PreambleKind::HttpConnect);
    assert_eq!(
        preamble.tunnel_target.as_deref(),
        Some("server.example.com:80")
    );
    let reply = Role::Reply(PreambleKind::HttpConnect);
    let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
    assert_eq!(
        feed_all(reply, &[&ok[..10], &[&ok[10..], &[0x16][..]].concat()]),
        vec![
            Fed::Held,
            Fed::Finished {
                preamble: None,
                rest: vec![0x16]
            }
        ]
    );
    let refused = feed_all(
        reply,
        &[b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"],
    );
    assert!(matches!(&refused[0], Fed::Failed { reason, .. } if reason.contains("407")));
}

#[test]
fn socks4_and_4a_requests_name_their_target() {
    let socks4 = [4, 1, 0x01, 0xbb, 10, 0, 0, 5, b'u', 0];
    let (offset, p) = parse_client_stream(&[&socks4[..], HELLO_START].concat()).unwrap();
    assert_eq!(offset, socks4.len());
    assert_eq!(p.unwrap().tunnel_target.as_deref(), Some("10.0.0.5:443"));
    let socks4a = [&[4, 1, 0x01, 0xbb, 0, 0, 0, 1, 0][..], b"example.org\0"].concat();
    let (offset, p) = parse_client_stream(&[&socks4a[..], HELLO_START].concat()).unwrap();
    assert_eq!(offset, socks4a.len());
    let p = p.unwrap();
    assert_eq!(p.kind, PreambleKind::Socks4);
    assert_eq!(p.tunnel_target.as_deref(), Some("example.org:443"));
    let reply = Role::Reply(PreambleKind::Socks4);
    assert!(matches!(
        &feed_all(reply, &[&[0, 0x5a, 0, 0, 0, 0, 0, 0, 0x16]])[0],
        Fed::Finished { rest, .. } if rest == &[0x16]
    ));
    assert!(matches!(
        &feed_all(reply, &[&[0, 0x5b, 0, 0, 0, 0, 0, 0]])[0],
        Fed::Failed { .. }
    ));
}

#[test]
fn socks5_with_and_without_credentials() {
    // RFC 1928: greeting (no authentication), CONNECT to a domain name.
    let plain = [
        &[5, 1, 0][..],
        &[5, 1, 0, 3, 11],
        b"example.org",
        &[0x01, 0xbb],
    ]
    .concat();
    let (offset, p) = parse_client_stream(&[&plain[..], HELLO_START].concat()).unwrap();
    assert_eq!(offset, plain.len());
    assert_eq!(p.unwrap().tunnel_target.as_deref(), Some("example.org:443"));
    // RFC 1929 username/password, then CONNECT to an IPv6 address.
    let mut with_auth = vec![5, 2, 0, 2, 1, 1, b'u', 2, b'p', b'w', 5, 1, 0, 4];
    with_auth.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    with_auth.extend_from_slice(&[0x20, 0xfb]);
    let (offset, p) = parse_client_stream(&[&with_auth[..], HELLO_START].concat()).unwrap();
    assert_eq!(offset, with_auth.len());
    assert_eq!(
        p.unwrap().tunnel_target.as_deref(),
        Some("[2001:db8::7]:8443")
    );

    let reply = Role::Reply(PreambleKind::Socks5);
    let granted = [5, 2, 1, 0, 5, 0, 0, 1, 10, 0, 0, 1, 0x1f, 0x90, 0x16];
    assert!(matches!(
        &feed_all(reply, &[&granted[..5], &granted[5..]])[1],
        Fed::Finished { rest, .. } if rest == &[0x16]
    ));
    assert!(matches!(
        &feed_all(reply, &[&[5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]])[0],
        Fed::Failed { reason, .. } if reason.contains("reply 5")
    ));
    assert!(matches!(
        &feed_all(reply, &[&[5, 0xff]])[0],
        Fed::Failed { .. }
    ));
    // BIND is not a tunnel to a target.
    assert!(parse_client_stream(&[5, 1, 0, 5, 2, 0, 1, 10, 0, 0, 1, 0, 80]).is_err());
}

#[test]
fn a_reply_role_exists_only_for_preambles_that_are_answered() {
    assert_eq!(Role::of_reply(None), None);
    assert_eq!(Role::of_reply(Some(PreambleKind::ProxyV2)), None);
    assert_eq!(
        Role::of_reply(Some(PreambleKind::Socks5)),
        Some(Role::Reply(PreambleKind::Socks5))
    );
}

/// Feeds a STARTTLS session's sides in order, as the flow table does: the
/// server's reader is armed once the client's has seen the upgrade command.
fn starttls_session(
    protocol: StarttlsProtocol,
    turns: &[(bool, &[u8])],
) -> (Option<Fed>, Option<Fed>) {
    let mut client = PreambleReader::new(Role::StarttlsClient(protocol));
    let mut server = PreambleReader::new(Role::StarttlsServer {
        protocol,
        armed: false,
    });
    let (mut client_done, mut server_done) = (None, None);
    for (from_client, bytes) in turns {
        if *from_client && client_done.is_none() {
            match client.feed(bytes) {
                Fed::Held => {}
                fed => {
                    server.arm();
                    client_done = Some(fed);
                }
            }
        } else if !*from_client && server_done.is_none() {
            match server.feed(bytes) {
                Fed::Held => {}
                fed => server_done = Some(fed),
            }
        }
    }
    (client_done, server_done)
}

fn upgraded(fed: &Option<Fed>, rest: &[u8]) -> bool {
    matches!(fed, Some(Fed::Finished { rest: r, .. }) if r == rest)
}

#[test]
fn smtp_starttls_upgrades_after_the_220_and_a_454_is_a_refusal() {
    // RFC 3207 section 5's example, then the first TLS bytes.
    let turns: [(bool, &[u8]); 6] = [
        (false, b"220 mail.example.com ESMTP\r\n"),
        (true, b"EHLO mail.example.org\r\n"),
        (
            false,
            b"250-mail.example.com\r\n250-8BITMIME\r\n250 STARTTLS\r\n",
        ),
        (true, b"STARTTLS\r\n\x16\x03\x01"),
        (false, b"220 Go ahead\r\n\x16\x03\x03"),
        (true, b""),
    ];
    let (client, server) = starttls_session(StarttlsProtocol::Smtp, &turns);
    assert!(upgraded(&client, &[0x16, 3, 1]), "{client:?}");
    assert!(upgraded(&server, &[0x16, 3, 3]), "{server:?}");
    let refused: [(bool, &[u8]); 3] = [
        (false, b"220 mail.example.com ESMTP\r\n"),
        (true, b"STARTTLS\r\n"),
        (false, b"454 TLS not available due to temporary reason\r\n"),
    ];
    let (_, server) = starttls_session(StarttlsProtocol::Smtp, &refused);
    assert!(
        matches!(&server, Some(Fed::Failed { refused: true, reason, .. }) if reason.contains("454")),
        "{server:?}"
    );
}

#[test]
fn imap_pop3_ftp_and_xmpp_upgrades() {
    let imap: [(bool, &[u8]); 5] = [
        (false, b"* OK IMAP4rev1 ready\r\n"),
        (true, b"a001 CAPABILITY\r\n"),
        (
            false,
            b"* CAPABILITY IMAP4rev1 STARTTLS\r\na001 OK done\r\n",
        ),
        (true, b"a002 STARTTLS\r\n"),
        (false, b"a002 OK Begin TLS negotiation now\r\n\x16"),
    ];
    let (client, server) = starttls_session(StarttlsProtocol::Imap, &imap);
    assert!(upgraded(&client, b"") && upgraded(&server, &[0x16]));
    let pop3: [(bool, &[u8]); 3] = [
        (false, b"+OK POP3 ready\r\n"),
        (true, b"STLS\r\n"),
        (false, b"-ERR not now\r\n"),
    ];
    let (_, server) = starttls_session(StarttlsProtocol::Pop3, &pop3);
    assert!(matches!(server, Some(Fed::Failed { refused: true, .. })));
    let ftp: [(bool, &[u8]); 3] = [
        (false, b"220-Welcome\r\n220 FTP ready\r\n"),
        (true, b"AUTH TLS\r\n"),
        (false, b"234 AUTH TLS successful\r\n"),
    ];
    let (client, server) = starttls_session(StarttlsProtocol::Ftp, &ftp);
    assert!(upgraded(&client, b"") && upgraded(&server, b""));
    let xmpp: [(bool, &[u8]); 4] = [
        (true, b"<?xml version='1.0'?><stream:stream to='example.com' version='1.0'>"),
        (false, b"<stream:stream from='example.com' id='1'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"),
        (true, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        (false, b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\x16\x03\x03"),
    ];
    let (client, server) = starttls_session(StarttlsProtocol::Xmpp, &xmpp);
    assert!(upgraded(&client, b""), "{client:?}");
    assert!(upgraded(&server, &[0x16, 3, 3]), "{server:?}");
}

#[test]
fn binary_starttls_postgres_ldap_and_mysql() {
    let pg: [(bool, &[u8]); 2] = [(true, &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), (false, b"N")];
    let (client, server) = starttls_session(StarttlsProtocol::Postgres, &pg);
    assert!(upgraded(&client, b""));
    assert!(matches!(server, Some(Fed::Failed { refused: true, .. })));
    // A StartupMessage without SSLRequest: no upgrade will come.
    let plain: [(bool, &[u8]); 1] = [(true, &[0, 0, 0, 9, 0, 3, 0, 0, 0])];
    let (client, _) = starttls_session(StarttlsProtocol::Postgres, &plain);
    assert!(matches!(client, Some(Fed::Failed { refused: false, .. })));

    // RFC 4511 ExtendedRequest with the StartTLS OID, and a success response.
    let mut request = vec![0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16];
    request.extend_from_slice(b"1.3.6.1.4.1.1466.20037");
    let success = [
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
    ];
    let ldap: [(bool, &[u8]); 2] = [(true, &request), (false, &success)];
    let (client, server) = starttls_session(StarttlsProtocol::Ldap, &ldap);
    assert!(upgraded(&client, b"") && upgraded(&server, b""));
    let mut unavailable = success;
    unavailable[9] = 52;
    let (_, server) = starttls_session(
        StarttlsProtocol::Ldap,
        &[(true, &request), (false, &unavailable)],
    );
    assert!(
        matches!(&server, Some(Fed::Failed { refused: true, reason, .. }) if reason.contains("52"))
    );

    // MySQL: the server's greeting, the client's 32-byte SSL request, TLS.
    let greeting = [&[10, 0, 0, 0, 10][..], b"8.0\0", &[0; 5]].concat();
    let mut ssl_request = vec![32, 0, 0, 1, 0x00, 0x08, 0, 0];
    ssl_request.resize(36, 0);
    let mysql: [(bool, &[u8]); 3] = [
        (false, &greeting),
        (true, &[&ssl_request[..], &[0x16]].concat()),
        (false, &[0x16, 3, 3]),
    ];
    let (client, server) = starttls_session(StarttlsProtocol::Mysql, &mysql);
    assert!(upgraded(&client, &[0x16]), "{client:?}");
    assert!(upgraded(&server, &[0x16, 3, 3]), "{server:?}");
}

#[test]
fn a_plaintext_session_that_never_upgrades_stops_at_the_bound() {
    let mut client = PreambleReader::new(Role::StarttlsClient(StarttlsProtocol::Smtp));
    let line = b"RCPT TO:<someone@example.org>\r\n";
    let mut last = Fed::Held;
    for _ in 0..(MAX_PREAMBLE_BYTES / line.len() + 2) {
        last = client.feed(line);
        if last != Fed::Held {
            break;
        }
    }
    assert!(
        matches!(last, Fed::Failed { refused: false, .. }),
        "{last:?}"
    );
    assert_eq!(
        StarttlsProtocol::from_name("postgres"),
        Some(StarttlsProtocol::Postgres)
    );
    assert_eq!(StarttlsProtocol::Smtp.name(), "smtp");
}
