//! Any bytes as the first bytes of one side of a connection, read by the
//! preamble reader in a role the first byte picks (a client that may begin a
//! PROXY header, CONNECT or SOCKS; an answer to CONNECT or SOCKS; either side
//! of each STARTTLS protocol), in pieces whose size the first byte also picks:
//! the reader must finish, fail with a reason or ask for more, never panic,
//! hold no more than its bound, and come to the same result as when the bytes
//! come in one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlsmon::pipeline::preamble::{
    Fed, PreambleKind, PreambleReader, Role, StarttlsProtocol, MAX_PREAMBLE_BYTES,
};

fn role(selector: u8) -> Role {
    let protocol = StarttlsProtocol::ALL[usize::from(selector / 4) % StarttlsProtocol::ALL.len()];
    match selector % 6 {
        0 => Role::Client,
        1 => Role::Reply(PreambleKind::HttpConnect),
        2 => Role::Reply(if selector & 0x40 == 0 {
            PreambleKind::Socks4
        } else {
            PreambleKind::Socks5
        }),
        3 => Role::StarttlsClient(protocol),
        4 => Role::StarttlsServer {
            protocol,
            armed: true,
        },
        _ => Role::StarttlsServer {
            protocol,
            armed: false,
        },
    }
}

/// What reading `stream` in pieces of `piece` bytes came to: the result and,
/// once done, the bytes it hands on (what it returned and what it never read).
fn read(role: Role, stream: &[u8], piece: usize) -> (String, Vec<u8>) {
    let mut reader = PreambleReader::new(role);
    let mut offset = 0;
    for chunk in stream.chunks(piece) {
        offset += chunk.len();
        let handed_on = |mut first: Vec<u8>| {
            first.extend_from_slice(&stream[offset..]);
            first
        };
        match reader.feed(chunk) {
            Fed::Held => {}
            Fed::Through(bytes) => {
                assert!(bytes.len() <= offset);
                return ("through".to_string(), handed_on(bytes));
            }
            Fed::Finished { preamble, rest } => {
                assert!(rest.len() <= offset);
                return (format!("finished {preamble:?}"), handed_on(rest));
            }
            Fed::Failed {
                kind,
                reason,
                refused,
            } => return (format!("failed {kind:?} {refused} {reason}"), Vec::new()),
        }
    }
    assert!(stream.len() <= MAX_PREAMBLE_BYTES + 1 || piece > MAX_PREAMBLE_BYTES);
    ("held".to_string(), Vec::new())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let role = role(selector);
    let piece = usize::from(selector % 31) + 1;
    let chunked = read(role, stream, piece);
    let whole = read(role, stream, stream.len().max(1));
    assert_eq!(chunked, whole, "chunking changed the result");
});
