//! Any bytes as one direction of a TLS stream, fed in pieces whose size the first
//! byte picks: the parser must decode or report, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlsmon::handshake::TlsStreamParser;

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
});
