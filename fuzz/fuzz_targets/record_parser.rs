//! Any bytes as one direction of a TLS stream, fed in pieces whose size the first
//! byte picks: the parser must decode or report, never panic, and decode the same
//! messages (at the same offsets) as when the stream comes in one piece. Every
//! ClientHello must survive the flow table's compact copy (OfferedHello) unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlsmon::pipeline::tls::{OfferedHello, TlsMessage, TlsStreamParser};

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let piece = match split {
        0 => stream.len().max(1),
        n => usize::from(n % 64) + 1,
    };
    let mut parser = TlsStreamParser::new();
    let mut out = Vec::new();
    for chunk in stream.chunks(piece) {
        parser.feed(chunk, &mut out);
    }
    let mut whole = TlsStreamParser::new();
    let mut at_once = Vec::new();
    whole.feed(stream, &mut at_once);
    assert_eq!(out, at_once, "chunking changed what was decoded");
    assert_eq!(
        parser.opened_with_client_hello(),
        whole.opened_with_client_hello()
    );
    for message in &out {
        let TlsMessage::ClientHello(hello) = &message.message else {
            continue;
        };
        let offered = OfferedHello::of(hello);
        assert_eq!(offered.legacy_version(), hello.legacy_version);
        assert_eq!(offered.message_len(), hello.message_len);
        let versions: Vec<u16> = offered.supported_versions().collect();
        assert_eq!(versions, hello.supported_versions);
        let ciphers: Vec<u16> = offered.cipher_suites().collect();
        assert_eq!(ciphers, hello.cipher_suites);
        let groups: Vec<u16> = offered.supported_groups().collect();
        assert_eq!(groups, hello.supported_groups);
        let alpn: Vec<&str> = offered.alpn().collect();
        assert_eq!(alpn, hello.alpn);
        assert_eq!(offered.sni(), hello.sni.as_deref());
        assert_eq!(offered.ja3().unwrap_or_default(), hello.ja3);
        assert_eq!(offered.ja4(), hello.ja4);
    }
});
