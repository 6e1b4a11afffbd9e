//! Stream parser tests on hand-built handshakes: GREASE, fragmentation, chunking,
//! state after ChangeCipherSpec, garbage. Captured real handshakes are in
//! `tests_captured.rs`.

use super::*;

/// A TLS extension: type, 2-byte length, data.
pub(super) fn ext(ext_type: u16, data: &[u8]) -> Vec<u8> {
    let mut v = ext_type.to_be_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// A vector with a 2-byte length prefix.
fn vec16(items: &[u8]) -> Vec<u8> {
    let mut v = (items.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(items);
    v
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// A handshake message: type, 3-byte length, body.
pub(super) fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut v = vec![msg_type, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    v.extend_from_slice(body);
    v
}

/// A TLS record with version 0x0301 (as ClientHellos use) or 0x0303.
pub(super) fn record(content_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![content_type, 3, 3];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A ClientHello with GREASE in ciphers, extensions, groups, versions and key shares.
fn greasy_client_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]); // random
    body.push(32);
    body.extend_from_slice(&[0x22; 32]); // session id
    body.extend(vec16(&u16s(&[0x0a0a, 0x1301, 0x1302, 0xc02f])));
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut exts = Vec::new();
    exts.extend(ext(0x1a1a, &[]));
    let host = b"example.com";
    let mut sni = vec![0];
    sni.extend(vec16(host));
    exts.extend(ext(0, &vec16(&sni)));
    exts.extend(ext(10, &vec16(&u16s(&[0x2a2a, 0x11ec, 29, 23]))));
    exts.extend(ext(11, &[1, 0]));
    exts.extend(ext(13, &vec16(&u16s(&[0x0403, 0x0804]))));
    exts.extend(ext(16, &vec16(b"\x02h2\x08http/1.1")));
    exts.extend(ext(43, &[6, 0x3a, 0x3a, 3, 4, 3, 3]));
    let mut shares = u16s(&[0x4a4a, 1]);
    shares.push(0);
    shares.extend(u16s(&[29, 32]));
    shares.extend_from_slice(&[0x33; 32]);
    exts.extend(ext(51, &vec16(&shares)));
    exts.extend(ext(35, &[0xaa; 16]));
    exts.extend(ext(45, &[1, 1]));
    exts.extend(ext(0xfafa, &[0]));
    // pre_shared_key: identities<7..> (one: 2-byte len, id, 4-byte age), binders.
    let mut psk = vec16(&[0, 3, b'i', b'd', b'1', 0, 0, 0, 0]);
    psk.extend(vec16(&[0x20; 33]));
    exts.extend(ext(41, &psk));
    body.extend(vec16(&exts));
    handshake(1, &body)
}

fn parse_all(stream: &[u8], chunk: usize) -> Vec<ParsedMessage> {
    let mut parser = TlsStreamParser::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        parser.feed(piece, &mut out);
    }
    assert_eq!(parser.offset(), stream.len() as u64);
    out
}

fn only_client_hello(messages: &[ParsedMessage]) -> &ClientHello {
    match messages {
        [ParsedMessage {
            message: TlsMessage::ClientHello(hello),
            ..
        }] => hello,
        other => panic!("expected one ClientHello, got {other:?}"),
    }
}

#[test]
fn grease_is_removed_from_every_client_hello_list_and_fingerprint() {
    let msg = greasy_client_hello();
    let stream = record(22, &msg);
    let out = parse_all(&stream, stream.len());
    assert_eq!(out[0].start, 0);
    assert_eq!(out[0].end, stream.len() as u64);
    let hello = only_client_hello(&out);
    assert_eq!(hello.legacy_version, 0x0303);
    assert!(!hello.sslv2_compat);
    assert_eq!(hello.cipher_suites, [0x1301, 0x1302, 0xc02f]);
    assert_eq!(hello.extensions, [0, 10, 11, 13, 16, 43, 51, 35, 45, 41]);
    assert_eq!(hello.supported_groups, [0x11ec, 29, 23]);
    assert_eq!(hello.supported_versions, [0x0304, 0x0303]);
    assert_eq!(hello.key_share_groups, [29]);
    assert_eq!(hello.signature_algorithms, [0x0403, 0x0804]);
    assert_eq!(hello.ec_point_formats, [0]);
    assert_eq!(hello.sni.as_deref(), Some("example.com"));
    assert_eq!(hello.alpn, ["h2", "http/1.1"]);
    assert_eq!(hello.session_id_len, 32);
    assert!(hello.session_ticket_offered);
    assert!(hello.psk_offered);
    assert_eq!(hello.message_len as usize, msg.len());
    // md5("771,4865-4866-49199,0-10-11-13-16-43-51-35-45-41,4588-29-23,0")
    assert_eq!(hello.ja3, "72b65637e89e4ab836c3e69ea5483011");
    // sha256 of "1301,1302,c02f" and of
    // "000a,000b,000d,0023,0029,002b,002d,0033_0403,0804", computed with Python.
    assert_eq!(hello.ja4, "t13d0310h2_40b44b994229_91bdf2d6486d");
}

#[test]
fn one_byte_feeds_and_record_fragmentation_give_the_same_hello() {
    let msg = greasy_client_hello();
    let whole = parse_all(&record(22, &msg), 1);
    // The same message cut into three records of 7, 100 and the rest bytes.
    let mut fragmented = record(22, &msg[..7]);
    fragmented.extend(record(22, &msg[7..107]));
    fragmented.extend(record(22, &msg[107..]));
    for chunk in [1, 2, 3, 5, 6, 64, 4096] {
        let out = parse_all(&fragmented, chunk);
        assert_eq!(out.len(), 1, "chunk {chunk}");
        assert_eq!(out[0].start, 0);
        assert_eq!(out[0].end, fragmented.len() as u64);
        assert_eq!(out[0].message, whole[0].message, "chunk {chunk}");
    }
}

#[test]
fn several_messages_in_one_record_get_their_own_offsets() {
    // ServerHello-like flight: OtherHandshake(13), OtherHandshake(14) in one record,
    // then a second record with an alert.
    let mut payload = handshake(13, &[1, 2, 3]);
    payload.extend(handshake(14, &[]));
    let mut stream = record(22, &payload);
    stream.extend(record(21, &[2, 40]));
    let out = parse_all(&stream, 1);
    assert_eq!(
        out,
        [
            ParsedMessage {
                start: 0,
                end: 12,
                message: TlsMessage::OtherHandshake { msg_type: 13 }
            },
            ParsedMessage {
                start: 12,
                end: 16,
                message: TlsMessage::OtherHandshake { msg_type: 14 }
            },
            ParsedMessage {
                start: 16,
                end: 23,
                message: TlsMessage::Alert {
                    level: 2,
                    description: 40
                }
            },
        ]
    );
}

#[test]
fn handshake_records_after_change_cipher_spec_are_encrypted_in_tls12() {
    let mut stream = record(22, &handshake(16, &[0; 10])); // ClientKeyExchange
    stream.extend(record(20, &[1]));
    stream.extend(record(22, &[0x55; 40])); // encrypted Finished
    stream.extend(record(21, &[0x66; 26])); // encrypted alert
    stream.extend(record(23, &[0x77; 30]));
    let kinds: Vec<TlsMessage> = parse_all(&stream, 3)
        .into_iter()
        .map(|m| m.message)
        .collect();
    assert_eq!(
        kinds,
        [
            TlsMessage::OtherHandshake { msg_type: 16 },
            TlsMessage::ChangeCipherSpec,
            TlsMessage::EncryptedHandshake { len: 40 },
            TlsMessage::EncryptedAlert { len: 26 },
            TlsMessage::ApplicationData { len: 30 },
        ]
    );
}

#[test]
fn tls13_client_second_hello_after_compat_ccs_is_plaintext() {
    let hello = greasy_client_hello();
    let mut stream = record(22, &hello);
    stream.extend(record(20, &[1]));
    stream.extend(record(22, &hello));
    stream.extend(record(23, &[0; 50]));
    let out = parse_all(&stream, 7);
    assert!(matches!(out[0].message, TlsMessage::ClientHello(_)));
    assert_eq!(out[1].message, TlsMessage::ChangeCipherSpec);
    assert_eq!(out[2].message, out[0].message);
    assert_eq!(out[3].message, TlsMessage::ApplicationData { len: 50 });
}

/// A ServerHello of the final layout choosing `version` in supported_versions.
fn server_hello_choosing(version: u16) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x44; 32]); // random
    body.push(0); // session id
    body.extend(u16s(&[0x1301]));
    body.push(0); // compression
    let mut exts = ext(43, &version.to_be_bytes());
    exts.extend(ext(51, &u16s(&[29])));
    body.extend(vec16(&exts));
    handshake(2, &body)
}

#[test]
fn a_tls13_draft_server_hello_after_compat_ccs_is_plaintext() {
    // A HelloRetryRequest-like exchange of draft 23: ServerHello, the compatibility
    // ChangeCipherSpec, and another ServerHello, which is plaintext in every TLS
    // 1.3 version, drafts included.
    for version in [0x0304, 0x7f17, 0x7e02] {
        let hello = server_hello_choosing(version);
        let mut stream = record(22, &hello);
        stream.extend(record(20, &[1]));
        stream.extend(record(22, &hello));
        let out = parse_all(&stream, 5);
        let TlsMessage::ServerHello(sh) = &out[2].message else {
            panic!("{version:#06x}: {:?}", out[2].message);
        };
        assert_eq!(sh.selected_version, version);
        assert_eq!(sh.key_share_group, Some(29));
    }
}

#[test]
fn tls13_offering_client_ciphertext_after_ccs_is_not_taken_for_a_hello() {
    let mut stream = record(22, &greasy_client_hello());
    stream.extend(record(20, &[1]));
    // Starts like a ClientHello header but the "version" bytes are not 03 03.
    let mut finished = vec![1, 0, 0, 36, 0x7e, 0x11];
    finished.resize(40, 0x5a);
    stream.extend(record(22, &finished));
    let out = parse_all(&stream, 1);
    assert_eq!(out.len(), 3);
    assert_eq!(out[2].message, TlsMessage::EncryptedHandshake { len: 40 });
}

#[test]
fn oversized_hello_is_malformed_and_stops() {
    let mut stream = record(22, &[1, 0x01, 0x00, 0x01]); // 65537-byte ClientHello
    stream.extend(record(22, &[0; 100]));
    let out = parse_all(&stream, 2);
    match &out[..] {
        [ParsedMessage {
            start: 0,
            message: TlsMessage::Malformed { reason },
            ..
        }] => assert!(reason.contains("65537"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// A Certificate handshake message announcing a `chain_len`-byte chain whose leaf is
/// `leaf` (the chain's other bytes are for the caller to add).
fn certificate_head(chain_len: usize, leaf: &[u8]) -> Vec<u8> {
    let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    let mut v = vec![11];
    v.extend(u24(chain_len + 3));
    v.extend(u24(chain_len));
    v.extend(u24(leaf.len()));
    v.extend_from_slice(leaf);
    v
}

/// Records of at most 16 KiB carrying `bytes` as handshake payload.
fn handshake_records(bytes: &[u8]) -> Vec<u8> {
    bytes.chunks(16_384).flat_map(|c| record(22, c)).collect()
}

#[test]
fn a_certificate_chain_of_any_size_is_decided_on_its_leaf_and_skipped() {
    // A 3 MiB chain (past the 64 KiB a message may be held whole), then a
    // ServerHelloDone in the record that ends the chain, then CCS.
    let chain_len = 3 << 20;
    let leaf = [0x30, 0x03, 1, 2, 3];
    let mut message = certificate_head(chain_len, &leaf);
    message.resize(4 + 3 + chain_len, 0xaa);
    message.extend(handshake(14, &[]));
    let mut stream = handshake_records(&message);
    stream.extend(record(20, &[1]));
    for piece in [1, 700, 16_389, stream.len()] {
        let mut parser = TlsStreamParser::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(piece) {
            parser.feed(chunk, &mut out);
            assert!(
                parser.buffered_bytes() <= MAX_RECORD_PAYLOAD + 64,
                "{piece}"
            );
        }
        let names: Vec<_> = out.iter().map(|m| m.message.clone()).collect();
        assert_eq!(
            names,
            [
                TlsMessage::Certificate(None),
                TlsMessage::OtherHandshake { msg_type: 14 },
                TlsMessage::ChangeCipherSpec,
            ],
            "{piece}"
        );
        // The ServerHelloDone starts mid-record, just after the chain.
        let records_before = (4 + 3 + chain_len as u64).div_ceil(16_384);
        assert_eq!(out[1].start, 4 + 3 + chain_len as u64 + 5 * records_before);
        assert_eq!(parser.offset(), stream.len() as u64);
    }
}

#[test]
fn a_change_cipher_spec_inside_a_skipped_message_is_placed_the_same_whatever_the_chunking() {
    // A 255,906-byte message of type 3 (decided at its header, then skipped), cut
    // by a ChangeCipherSpec: found by the record_parser fuzz target.
    let mut stream = record(22, &[3, 3, 231, 162, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    stream.extend(record(20, &[1]));
    let whole = parse_all(&stream, stream.len());
    assert_eq!(whole.len(), 2);
    assert_eq!(whole[1].start, 19);
    for chunk in 1..stream.len() {
        assert_eq!(parse_all(&stream, chunk), whole, "chunks of {chunk}");
    }
}

#[test]
fn skipped_bytes_the_parser_does_not_need_change_nothing() {
    let chain_len = 100_000;
    let mut message = certificate_head(chain_len, &[0x30, 0x00]);
    message.resize(4 + 3 + chain_len, 0xbb);
    message.extend(handshake(14, &[]));
    let mut stream = handshake_records(&message);
    stream.extend(record(23, &[7; 300]));
    stream.extend(record(21, &[2, 40]));
    let mut whole = TlsStreamParser::new();
    let mut expected = Vec::new();
    whole.feed(&stream, &mut expected);

    // Feed only what the parser needs; step over the rest unseen.
    let mut parser = TlsStreamParser::new();
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut fed = 0usize;
    while at < stream.len() {
        let needed = parser.next_needed().min(stream.len() as u64) as usize;
        if needed > at {
            assert!(parser.skip((needed - at) as u64, &mut out));
            at = needed;
            continue;
        }
        parser.feed(&stream[at..at + 1], &mut out);
        at += 1;
        fed += 1;
    }
    assert_eq!(out, expected);
    assert_eq!(out.len(), 4);
    assert!(fed < 200, "fed {fed} bytes");
    // Bytes it needs cannot be skipped.
    let mut parser = TlsStreamParser::new();
    assert!(!parser.skip(1, &mut out));
    assert!(parser.skip(0, &mut out));
}

#[test]
fn garbage_first_bytes_are_not_tls() {
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"\x16\x01\x00",
        b"SSH-2.0-x",
        b"\x00",
    ] {
        let out = parse_all(garbage, 1);
        assert_eq!(out.len(), 1, "{garbage:?}");
        assert_eq!(out[0].message, TlsMessage::NotTls, "{garbage:?}");
        assert_eq!(out[0].start, 0);
    }
}

#[test]
fn broken_records_after_a_good_start_are_malformed() {
    let mut bad_type = record(22, &handshake(14, &[]));
    bad_type.extend_from_slice(&[0x30, 3, 3, 0, 1, 0]);
    let mut bad_version = record(22, &handshake(14, &[]));
    bad_version.extend_from_slice(&[22, 2, 0, 0, 1, 0]);
    let mut too_long = record(22, &handshake(14, &[]));
    too_long.extend_from_slice(&[23, 3, 3, 0xff, 0xff]);
    for stream in [bad_type, bad_version, too_long] {
        let out = parse_all(&stream, 1);
        assert_eq!(out.len(), 2);
        assert!(
            matches!(out[1].message, TlsMessage::Malformed { .. }),
            "{out:?}"
        );
        assert_eq!(out[1].start, 9);
    }
}

#[test]
fn sslv2_compatible_client_hello() {
    // msg_type 1, version 0x0300, 9 bytes of cipher specs (one SSLv2-only), no
    // session id, 16-byte challenge.
    let mut body = vec![1, 3, 0, 0, 9, 0, 0, 0, 16];
    body.extend_from_slice(&[0, 0, 4, 0, 0, 5, 0x07, 0x00, 0xc0]);
    body.extend_from_slice(&[0xcc; 16]);
    let mut stream = vec![0x80 | (body.len() >> 8) as u8, body.len() as u8];
    stream.extend_from_slice(&body);
    let after = record(22, &handshake(16, &[1, 2]));
    stream.extend_from_slice(&after);
    let out = parse_all(&stream, 1);
    let ParsedMessage {
        start: 0,
        end,
        message: TlsMessage::ClientHello(hello),
    } = &out[0]
    else {
        panic!("{out:?}");
    };
    assert_eq!(*end as usize, 2 + body.len());
    assert!(hello.sslv2_compat);
    assert_eq!(hello.legacy_version, 0x0300);
    assert_eq!(hello.cipher_suites, [4, 5]);
    assert_eq!(hello.message_len as usize, 2 + body.len());
    // md5("768,4-5,,,") and sha256("0004,0005"), computed with Python.
    assert_eq!(hello.ja3, "b83fc53c3f3f7050efc5ad1a39c4a209");
    assert_eq!(hello.ja4, "ts3i020000_6e254592683c_000000000000");
    assert_eq!(out[1].message, TlsMessage::OtherHandshake { msg_type: 16 });
}

/// xorshift64*: a small deterministic generator, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random and mutated inputs in random chunkings never panic, offsets stay within
/// the stream and in order, and nothing follows NotTls/Malformed.
#[test]
fn random_and_mutated_streams_never_panic() {
    let mut seed_stream = record(22, &greasy_client_hello());
    seed_stream.extend(record(20, &[1]));
    seed_stream.extend(record(22, &handshake(2, &[3, 3])));
    seed_stream.extend(record(21, &[2, 40]));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let mut data = if round % 3 == 0 {
            (0..rng.below(600)).map(|_| rng.next() as u8).collect()
        } else {
            seed_stream.clone()
        };
        for _ in 0..rng.below(8) {
            if data.is_empty() {
                break;
            }
            let at = rng.below(data.len());
            match rng.below(3) {
                0 => data[at] = rng.next() as u8,
                1 => data.truncate(at),
                _ => data.insert(at, rng.next() as u8),
            }
        }
        let mut parser = TlsStreamParser::new();
        let mut out = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(40));
            parser.feed(&rest[..n], &mut out);
            rest = &rest[n..];
        }
        assert_eq!(parser.offset(), data.len() as u64);
        let mut last_end = 0;
        for (i, m) in out.iter().enumerate() {
            assert!(m.start <= m.end && m.end <= data.len() as u64, "{m:?}");
            assert!(m.start >= last_end.min(m.start), "{m:?}");
            last_end = m.end;
            if let TlsMessage::Malformed { reason } = &m.message {
                assert!(!reason.starts_with("internal"), "{reason}");
            }
            if matches!(m.message, TlsMessage::NotTls | TlsMessage::Malformed { .. }) {
                assert_eq!(i, out.len() - 1, "message after a stop: {out:?}");
            }
        }
        assert!(parser.buffered_bytes() <= MAX_RECORD_PAYLOAD + MAX_HANDSHAKE_MESSAGE + 4);
    }
}

#[test]
fn a_parser_between_records_holds_no_buffer() {
    let hello = record(22, &greasy_client_hello());
    // Whole records (read where they lie), records split over chunks, and a
    // handshake message split over two records (buffered, then let go).
    let message = handshake(14, &[]);
    let mut split_message = record(22, &message[..2]);
    split_message.extend(record(22, &message[2..]));
    for (stream, chunk) in [
        (hello.clone(), hello.len()),
        (hello.clone(), 7),
        (hello.clone(), 1),
        (split_message, 3),
    ] {
        let mut parser = TlsStreamParser::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            parser.feed(piece, &mut out);
        }
        assert_eq!(out.len(), 1, "chunk {chunk}: {out:?}");
        assert_eq!(parser.buffer_capacity(), 0, "chunk {chunk}");
    }
    // Halfway through a record, the bytes so far are held.
    let mut parser = TlsStreamParser::new();
    parser.feed(&hello[..100], &mut Vec::new());
    assert_eq!(parser.buffered_bytes(), 100 - 5);
}

#[test]
fn a_stream_that_opens_with_a_client_hello_says_so_before_it_is_complete() {
    let hello = record(22, &greasy_client_hello());
    let opened = |bytes: &[u8]| {
        let mut parser = TlsStreamParser::new();
        let mut out = Vec::new();
        parser.feed(bytes, &mut out);
        (parser.opened_with_client_hello(), out.len())
    };
    assert_eq!(opened(&hello[..5]), (false, 0), "no payload byte yet");
    assert_eq!(opened(&hello[..6]), (true, 0));
    assert_eq!(opened(&hello[..60]), (true, 0));
    assert_eq!(opened(&hello), (true, 1));
    let server_hello = record(22, &handshake(2, &[3, 3]));
    assert_eq!(opened(&server_hello[..7]), (false, 0));
    assert_eq!(opened(&record(23, &[1, 2, 3])), (false, 1));
    // An SSLv2-compatible ClientHello, known from its 5-byte header.
    assert_eq!(opened(&[0x80, 0x2e, 1, 3, 1]), (true, 0));
    // A ClientHello that turns out malformed still opened the stream.
    let broken = record(22, &handshake(1, &[3, 3, 0]));
    let mut parser = TlsStreamParser::new();
    let mut out = Vec::new();
    parser.feed(&broken, &mut out);
    assert!(matches!(
        out[..],
        [ParsedMessage {
            message: TlsMessage::Malformed { .. },
            ..
        }]
    ));
    assert!(parser.opened_with_client_hello());
}

#[test]
fn the_compact_client_hello_reports_what_the_full_one_holds() {
    let stream = record(22, &greasy_client_hello());
    let out = parse_all(&stream, stream.len());
    let hello = only_client_hello(&out);
    let offered = OfferedHello::of(hello);
    assert_eq!(offered.legacy_version(), 0x0303);
    assert_eq!(offered.message_len(), hello.message_len);
    assert_eq!(
        offered.supported_versions().collect::<Vec<_>>(),
        [0x0304, 0x0303]
    );
    assert_eq!(
        offered.cipher_suites().collect::<Vec<_>>(),
        [0x1301, 0x1302, 0xc02f]
    );
    assert_eq!(
        offered.supported_groups().collect::<Vec<_>>(),
        [0x11ec, 29, 23]
    );
    assert_eq!(offered.alpn().collect::<Vec<_>>(), ["h2", "http/1.1"]);
    assert_eq!(offered.sni(), Some("example.com"));
    assert_eq!(offered.ja3().as_deref(), Some(hello.ja3.as_str()));
    assert_eq!(offered.ja4(), hello.ja4);
    // Nothing offered, nothing reported (and no SNI is not an empty SNI).
    let empty = OfferedHello::of(&ClientHello::default());
    assert_eq!(empty.sni(), None);
    assert_eq!(empty.alpn().count(), 0);
    assert_eq!(empty.cipher_suites().len(), 0);
    assert_eq!(empty.ja3(), None);
    let blank_sni = ClientHello {
        sni: Some(String::new()),
        ..ClientHello::default()
    };
    assert_eq!(OfferedHello::of(&blank_sni).sni(), Some(""));
}

// Stream parser tests on handshakes recorded from real TLS stacks (OpenSSL 3.0 and
// GnuTLS 3.7 on loopback): `testdata/record.sh` recorded each direction's bytes and
// tshark's decoding of the same capture (`testdata/tshark_fields.txt`), which the
// cross-check below compares field by field.
mod captured {

    use std::collections::BTreeMap;

    use super::fingerprint::{ja3_string, ja3s_string, ClientHelloFields};
    use super::*;

    const SCENARIOS: [&str; 11] = [
        "openssl_tls13",
        "openssl_tls12",
        "openssl_tls12_from_tls13_client",
        "openssl_hrr",
        "openssl_cipher_mismatch",
        "openssl_version_mismatch",
        "openssl_tls12_unknown_ca",
        "openssl_fragmented_hello",
        "gnutls_tls13",
        "openssl_tls13_resumed",
        "openssl_tls12_resumed",
    ];

    fn testdata(file: &str) -> Vec<u8> {
        let path = format!(
            "{}/src/pipeline/tls/testdata/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn feed_in_chunks(data: &[u8], chunk: usize) -> Vec<ParsedMessage> {
        let mut parser = TlsStreamParser::new();
        let mut out = Vec::new();
        for piece in data.chunks(chunk) {
            parser.feed(piece, &mut out);
        }
        assert_eq!(parser.offset(), data.len() as u64);
        assert_eq!(parser.buffered_bytes(), 0, "bytes left over at the end");
        out
    }

    /// Parses one direction of a scenario, checking that every chunking (down to one byte
    /// at a time) gives the same messages.
    fn direction(scenario: &str, side: &str) -> Vec<ParsedMessage> {
        let data = testdata(&format!("{scenario}.{side}.bin"));
        let whole = feed_in_chunks(&data, data.len().max(1));
        for chunk in [1, 2, 3, 4, 5, 7, 100, 511, 1460] {
            assert_eq!(
                feed_in_chunks(&data, chunk),
                whole,
                "{scenario}.{side} chunk {chunk}"
            );
        }
        whole
    }

    /// A compact label per message, for asserting whole sequences.
    fn label(m: &ParsedMessage) -> String {
        match &m.message {
            TlsMessage::ClientHello(_) => "ClientHello".into(),
            TlsMessage::ServerHello(h) if h.is_hello_retry_request => "HelloRetryRequest".into(),
            TlsMessage::ServerHello(_) => "ServerHello".into(),
            TlsMessage::Certificate(c) => format!("Certificate({})", c.is_some()),
            TlsMessage::ServerKeyExchange { group } => format!("ServerKeyExchange({group:?})"),
            TlsMessage::OtherHandshake { msg_type } => format!("Handshake({msg_type})"),
            TlsMessage::EncryptedHandshake { len } => format!("EncryptedHandshake({len})"),
            TlsMessage::Alert { level, description } => format!("Alert({level},{description})"),
            TlsMessage::EncryptedAlert { len } => format!("EncryptedAlert({len})"),
            TlsMessage::ChangeCipherSpec => "CCS".into(),
            TlsMessage::ApplicationData { len } => format!("AppData({len})"),
            TlsMessage::NotTls => "NotTls".into(),
            TlsMessage::Malformed { reason } => format!("Malformed({reason})"),
        }
    }

    fn labels(messages: &[ParsedMessage]) -> Vec<String> {
        messages.iter().map(label).collect()
    }

    fn client_hellos(messages: &[ParsedMessage]) -> Vec<&ClientHello> {
        messages
            .iter()
            .filter_map(|m| match &m.message {
                TlsMessage::ClientHello(h) => Some(h),
                _ => None,
            })
            .collect()
    }

    fn server_hellos(messages: &[ParsedMessage]) -> Vec<&ServerHello> {
        messages
            .iter()
            .filter_map(|m| match &m.message {
                TlsMessage::ServerHello(h) => Some(h),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_capture_parses_cleanly_and_records_tile_the_stream() {
        for scenario in SCENARIOS {
            for side in ["client", "server"] {
                let messages = direction(scenario, side);
                assert!(!messages.is_empty(), "{scenario}.{side}");
                let mut covered = 0;
                for m in &messages {
                    assert!(
                        !matches!(m.message, TlsMessage::NotTls | TlsMessage::Malformed { .. }),
                        "{scenario}.{side}: {m:?}"
                    );
                    assert_eq!(m.start, covered, "{scenario}.{side}: gap before {m:?}");
                    covered = m.end;
                }
                let len = testdata(&format!("{scenario}.{side}.bin")).len() as u64;
                assert_eq!(covered, len, "{scenario}.{side}");
            }
        }
    }

    /// tshark 4.0's JA3/JA3S, SNI, cipher, selected version and alerts for every capture,
    /// against ours.
    #[test]
    fn hellos_and_alerts_match_tshark_field_by_field() {
        let expected = String::from_utf8(testdata("tshark_fields.txt")).unwrap();
        let mut by_scenario: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for line in expected.lines() {
            let (scenario, rest) = line.split_once('|').unwrap();
            by_scenario
                .entry(scenario)
                .or_default()
                .push(rest.to_string());
        }
        assert_eq!(by_scenario.len(), SCENARIOS.len());
        for scenario in SCENARIOS {
            let client = direction(scenario, "client");
            let server = direction(scenario, "server");
            let mut ours = Vec::new();
            for h in client_hellos(&client) {
                let fields = ClientHelloFields {
                    legacy_version: h.legacy_version,
                    supported_versions: &h.supported_versions,
                    cipher_suites: &h.cipher_suites,
                    extensions: &h.extensions,
                    supported_groups: &h.supported_groups,
                    ec_point_formats: &h.ec_point_formats,
                    signature_algorithms: &h.signature_algorithms,
                    first_alpn: None,
                };
                let sni = h.sni.clone().unwrap_or_default();
                ours.push(format!(
                    "client_hello|{}|{}|{sni}",
                    ja3_string(&fields),
                    h.ja3
                ));
            }
            for h in server_hellos(&server) {
                let version = if h.extensions.contains(&43) {
                    format!("0x{:04x}", h.selected_version)
                } else {
                    String::new()
                };
                ours.push(format!(
                    "server_hello|{}|{}|0x{:04x}|{version}",
                    ja3s_string(h.legacy_version, h.cipher_suite, &h.extensions),
                    h.ja3s,
                    h.cipher_suite
                ));
            }
            let mut alerts: Vec<String> = client
                .iter()
                .chain(&server)
                .filter_map(|m| match m.message {
                    TlsMessage::Alert { level, description } => {
                        Some(format!("alert|{level}|{description}"))
                    }
                    _ => None,
                })
                .collect();
            alerts.sort();
            ours.extend(alerts);
            assert_eq!(ours, by_scenario[scenario], "{scenario}");
        }
    }

    /// Our JA4 of every captured ClientHello against `testdata/ja4_reference.py`, a
    /// separate Python implementation of FoxIO's specification.
    #[test]
    fn ja4_matches_the_reference_implementation() {
        let expected = String::from_utf8(testdata("ja4_reference.txt")).unwrap();
        let mut ours = Vec::new();
        for scenario in SCENARIOS {
            for h in client_hellos(&direction(scenario, "client")) {
                ours.push(format!("{scenario}|{}", h.ja4));
            }
        }
        ours.sort();
        let mut reference: Vec<&str> = expected.lines().collect();
        reference.sort();
        assert_eq!(ours, reference);
    }

    #[test]
    fn openssl_tls13_full_handshake() {
        let client = direction("openssl_tls13", "client");
        let server = direction("openssl_tls13", "server");
        assert_eq!(
            labels(&client),
            [
                "ClientHello",
                "CCS",
                "AppData(69)",
                "AppData(23)",
                "AppData(19)"
            ]
        );
        assert_eq!(&labels(&server)[..3], ["ServerHello", "CCS", "AppData(32)"]);
        let ch = client_hellos(&client)[0];
        assert_eq!(ch.sni.as_deref(), Some("tlsmon.test"));
        assert_eq!(ch.alpn, ["h2", "http/1.1"]);
        assert_eq!(ch.supported_versions, [0x0304]);
        assert_eq!(ch.cipher_suites, [0x1302, 0x1303, 0x1301, 0x00ff]);
        assert_eq!(ch.key_share_groups, [29]);
        assert_eq!(ch.supported_groups[..3], [29, 23, 30]);
        assert_eq!(ch.message_len, 258);
        assert_eq!(ch.ja4, "t13d0411h2_16476d049b0b_78f1d400d464");
        let sh = server_hellos(&server)[0];
        assert_eq!(sh.selected_version, 0x0304);
        assert_eq!(sh.cipher_suite, 0x1302);
        assert_eq!(sh.key_share_group, Some(29));
        assert!(!sh.is_hello_retry_request && !sh.psk_selected);
        // TLS 1.3 echoes the client's legacy session id (middlebox compatibility).
        assert_eq!(sh.session_id.len(), 32);
    }

    #[test]
    fn openssl_tls12_certificate_key_exchange_and_encrypted_finished() {
        let client = direction("openssl_tls12", "client");
        let server = direction("openssl_tls12", "server");
        assert_eq!(
            labels(&client),
            [
                "ClientHello",
                "Handshake(16)",
                "CCS",
                "EncryptedHandshake(40)",
                "AppData(30)",
                "EncryptedAlert(26)"
            ]
        );
        assert_eq!(
            labels(&server),
            [
                "ServerHello",
                "Certificate(true)",
                "ServerKeyExchange(Some(23))",
                "Handshake(14)",
                "Handshake(4)",
                "CCS",
                "EncryptedHandshake(40)",
                "AppData(30)",
                "EncryptedAlert(26)"
            ]
        );
        // The Certificate came in two records (512 + 327 bytes, -max_send_frag 512).
        assert_eq!((server[1].start, server[1].end), (70, 919));
        // Values `openssl x509 -nameopt RFC2253 -enddate` prints for the same certificate.
        assert_eq!(
            server[1].message,
            TlsMessage::Certificate(Some(ServerCert {
                subject: "CN=tlsmon.test,O=tlsmon test".into(),
                issuer: "CN=tlsmon.test,O=tlsmon test".into(),
                not_after: "2036-11-23T23:09:23Z".into(),
            }))
        );
        let sh = server_hellos(&server)[0];
        assert_eq!((sh.selected_version, sh.cipher_suite), (0x0303, 0xc02f));
        assert_eq!(sh.key_share_group, None);
    }

    #[test]
    fn tls13_capable_client_on_tls12_has_an_encrypted_finished_after_ccs() {
        let client = direction("openssl_tls12_from_tls13_client", "client");
        assert_eq!(
            labels(&client),
            [
                "ClientHello",
                "Handshake(16)",
                "CCS",
                "EncryptedHandshake(40)",
                "AppData(30)",
                "EncryptedAlert(26)"
            ]
        );
        let ch = client_hellos(&client)[0];
        assert!(ch.supported_versions.contains(&0x0304));
        let server = direction("openssl_tls12_from_tls13_client", "server");
        let sh = server_hellos(&server)[0];
        assert_eq!(sh.selected_version, 0x0303);
    }

    #[test]
    fn openssl_hello_retry_request() {
        let client = direction("openssl_hrr", "client");
        let server = direction("openssl_hrr", "server");
        assert_eq!(
            labels(&client)[..4],
            ["ClientHello", "CCS", "ClientHello", "AppData(69)"]
        );
        assert_eq!(
            labels(&server)[..4],
            ["HelloRetryRequest", "CCS", "ServerHello", "AppData(23)"]
        );
        let hellos = client_hellos(&client);
        assert_eq!(hellos[0].key_share_groups, [23]);
        assert_eq!(hellos[1].key_share_groups, [29]);
        let replies = server_hellos(&server);
        assert!(replies[0].is_hello_retry_request);
        assert_eq!(replies[0].key_share_group, Some(29));
        assert_eq!(replies[0].selected_version, 0x0304);
        assert!(!replies[1].is_hello_retry_request);
        assert_eq!(replies[1].key_share_group, Some(29));
    }

    #[test]
    fn openssl_failures_end_in_plaintext_alerts() {
        let server = direction("openssl_cipher_mismatch", "server");
        assert_eq!(labels(&server), ["Alert(2,40)"]);
        let ch = client_hellos(&direction("openssl_cipher_mismatch", "client"))[0].clone();
        assert_eq!(ch.cipher_suites, [0x002f, 0x00ff]);

        let server = direction("openssl_version_mismatch", "server");
        assert_eq!(labels(&server), ["Alert(2,70)"]);
        let ch = client_hellos(&direction("openssl_version_mismatch", "client"))[0].clone();
        assert!(ch.supported_versions.is_empty());
        assert_eq!(ch.ja4, "t12d280700_d943125447b4_e7e480e5a997");

        let client = direction("openssl_tls12_unknown_ca", "client");
        assert_eq!(labels(&client), ["ClientHello", "Alert(2,48)"]);
        let server = direction("openssl_tls12_unknown_ca", "server");
        assert_eq!(
            labels(&server),
            [
                "ServerHello",
                "Certificate(true)",
                "ServerKeyExchange(Some(29))",
                "Handshake(14)"
            ]
        );
    }

    #[test]
    fn client_hello_fragmented_over_two_records() {
        let client = direction("openssl_fragmented_hello", "client");
        // Records of 512 and 277 bytes carry one 789-byte ClientHello.
        assert_eq!((client[0].start, client[0].end), (0, 799));
        let ch = client_hellos(&client)[0];
        assert_eq!(ch.message_len, 789);
        assert_eq!(ch.alpn.len(), 61);
        assert_eq!(ch.alpn[0], "proto-01");
        assert_eq!(ch.alpn[60], "h2");
    }

    #[test]
    fn gnutls_client_hello() {
        let client = direction("gnutls_tls13", "client");
        let ch = client_hellos(&client)[0];
        assert_eq!(ch.supported_versions, [0x0304, 0x0303, 0x0302, 0x0301]);
        assert_eq!(ch.key_share_groups, [23, 29]);
        assert_eq!(
            ch.extensions,
            [5, 10, 11, 13, 16, 22, 23, 35, 51, 43, 65281, 0, 45, 28]
        );
        assert_eq!(ch.alpn, ["h2"]);
        assert_eq!(ch.ja4, "t13d2914h2_723694b0fccc_2cc26d266019");
        let sh = server_hellos(&direction("gnutls_tls13", "server"))[0].clone();
        assert_eq!(sh.key_share_group, Some(23));
    }

    #[test]
    fn resumption_signals() {
        let ch = client_hellos(&direction("openssl_tls13_resumed", "client"))[0].clone();
        assert!(ch.psk_offered);
        assert_eq!(ch.extensions.last(), Some(&41));
        let sh = server_hellos(&direction("openssl_tls13_resumed", "server"))[0].clone();
        assert!(sh.psk_selected);

        let client = direction("openssl_tls12_resumed", "client");
        let ch = client_hellos(&client)[0];
        assert!(ch.session_ticket_offered);
        assert_eq!(ch.session_id_len, 32);
        let server = direction("openssl_tls12_resumed", "server");
        // Abbreviated handshake: no Certificate, the server's CCS comes first.
        assert_eq!(
            labels(&server),
            [
                "ServerHello",
                "CCS",
                "EncryptedHandshake(40)",
                "AppData(30)",
                "EncryptedAlert(26)"
            ]
        );
        assert_eq!(server_hellos(&server)[0].session_id.len(), 32);
    }
}

/// Every connection the kernel starts tracking (tlsmon-common's check on its first 6
/// bytes) is one userspace also sees as opening with a ClientHello: otherwise its
/// bytes would be copied up and then not counted as a handshake.
#[test]
fn every_kernel_recognised_start_opens_with_a_client_hello_here() {
    use tlsmon_common::client_hello::{is_client_hello_start, PEEK_LEN};
    let mut recognised = 0;
    for b0 in [0u8, 20, 21, 22, 23, 24, 0x47, 0x80, 0x81, 0xff] {
        for b1 in [0u8, 2, 3, 0x2e, 0x7f] {
            for b2 in [0u8, 1, 2, 3, 4, 5] {
                for b3 in [0u8, 1, 3, 0x40, 0x48, 0xff] {
                    for b4 in [0u8, 2, 3, 4, 5, 9, 0xff] {
                        for b5 in [0u8, 1, 2] {
                            let head: [u8; PEEK_LEN] = [b0, b1, b2, b3, b4, b5];
                            if !is_client_hello_start(&head) {
                                continue;
                            }
                            recognised += 1;
                            let mut parser = TlsStreamParser::new();
                            parser.feed(&head, &mut Vec::new());
                            assert!(parser.opened_with_client_hello(), "{head:02x?}");
                        }
                    }
                }
            }
        }
    }
    // Both branches (TLS record and SSLv2) were exercised.
    assert!(recognised > 100, "{recognised}");
}

/// A ServerHello of TLS 1.3 draft `version` (18 to 21): version, random, cipher
/// suite and extensions, without legacy_session_id and compression_method.
fn draft_server_hello(version: u16) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend_from_slice(&[0x5a; 32]); // random
    body.extend(u16s(&[0x1301]));
    let mut share = u16s(&[29, 32]);
    share.extend_from_slice(&[0x44; 32]);
    // key_share under its draft number (40).
    body.extend(vec16(&ext(40, &share)));
    handshake(2, &body)
}

#[test]
fn tls13_draft_server_hellos_parse_by_their_version() {
    // JA3S: md5("<version>,4865,40"), computed with Python's hashlib.
    let ja3s = [
        (0x7f12, "b8a8031b301aef7618403061e9f33065"),
        (0x7f13, "5b03bf96ef736b2933225410b648d9b9"),
        (0x7f14, "83d1c924123cf6cdf32b6125a8af7975"),
        (0x7f15, "83ecc100f7e6ec6d668b49afc4d7bd51"),
    ];
    for (version, expected_ja3s) in ja3s {
        let stream = record(22, &draft_server_hello(version));
        let out = parse_all(&stream, 7);
        let [ParsedMessage {
            message: TlsMessage::ServerHello(sh),
            end,
            ..
        }] = &out[..]
        else {
            panic!("draft 0x{version:04x}: expected one ServerHello, got {out:?}");
        };
        assert_eq!(*end, stream.len() as u64);
        assert_eq!(sh.legacy_version, version);
        assert_eq!(sh.selected_version, version);
        assert_eq!(sh.cipher_suite, 0x1301);
        assert_eq!(sh.extensions, [40]);
        assert_eq!(sh.key_share_group, Some(29));
        assert!(sh.session_id.is_empty());
        assert!(!sh.is_hello_retry_request);
        assert_eq!(sh.ja3s, expected_ja3s);
    }
}

#[test]
fn a_tls12_layout_under_a_draft_version_is_malformed() {
    // Session id and compression where a draft ServerHello has extensions.
    let mut body = 0x7f12u16.to_be_bytes().to_vec();
    body.extend_from_slice(&[0x5a; 32]);
    body.push(32);
    body.extend_from_slice(&[0x11; 32]);
    body.extend(u16s(&[0x1301]));
    body.push(0);
    let out = parse_all(&record(22, &handshake(2, &body)), 64);
    assert!(
        matches!(&out[..], [ParsedMessage { message: TlsMessage::Malformed { reason }, .. }]
            if reason.contains("draft")),
        "{out:?}"
    );
}
