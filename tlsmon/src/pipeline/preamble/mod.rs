//! Preambles: what a connection may carry before its ClientHello, parsed with
//! each protocol's rules so that the TLS parser gets the bytes from where TLS
//! starts. A client's stream may begin with a PROXY protocol header (v1 text,
//! v2 binary: [`proxy_protocol`]), an HTTP `CONNECT` request ([`http_connect`])
//! or a SOCKS4/4a/5 request ([`socks`]); the other side of a `CONNECT` or SOCKS
//! exchange answers before its TLS bytes, and that answer is parsed too. On a
//! STARTTLS port ([`starttls`]) both sides speak the plaintext protocol until
//! the upgrade.
//!
//! Every preamble is bounded: one that is not complete within
//! [`MAX_PREAMBLE_BYTES`] fails, and the flow table counts it.

mod http_connect;
mod proxy_protocol;
mod socks;
pub mod starttls;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use starttls::StarttlsScan;
pub use starttls::{StarttlsProtocol, DEFAULT_STARTTLS_PORTS};

/// Most bytes a preamble (or the answer to one) may take before TLS starts.
pub const MAX_PREAMBLE_BYTES: usize = 8192;

/// Which preamble came before the ClientHello.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreambleKind {
    /// PROXY protocol version 1 (text header).
    ProxyV1,
    /// PROXY protocol version 2 (binary header).
    ProxyV2,
    /// An HTTP `CONNECT` request to a forward proxy.
    HttpConnect,
    /// A SOCKS4 or SOCKS4a `CONNECT` request.
    Socks4,
    /// A SOCKS5 greeting and `CONNECT` request.
    Socks5,
    /// SMTP, upgraded with `STARTTLS`.
    StarttlsSmtp,
    /// IMAP, upgraded with `STARTTLS`.
    StarttlsImap,
    /// POP3, upgraded with `STLS`.
    StarttlsPop3,
    /// FTP, upgraded with `AUTH TLS`.
    StarttlsFtp,
    /// XMPP, upgraded with `<starttls/>`.
    StarttlsXmpp,
    /// PostgreSQL, upgraded with an SSLRequest.
    StarttlsPostgres,
    /// LDAP, upgraded with the StartTLS extended operation.
    StarttlsLdap,
    /// MySQL, upgraded with an SSL request.
    StarttlsMysql,
}

impl PreambleKind {
    /// The label value used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PreambleKind::ProxyV1 => "proxy_v1",
            PreambleKind::ProxyV2 => "proxy_v2",
            PreambleKind::HttpConnect => "http_connect",
            PreambleKind::Socks4 => "socks4",
            PreambleKind::Socks5 => "socks5",
            PreambleKind::StarttlsSmtp => "starttls_smtp",
            PreambleKind::StarttlsImap => "starttls_imap",
            PreambleKind::StarttlsPop3 => "starttls_pop3",
            PreambleKind::StarttlsFtp => "starttls_ftp",
            PreambleKind::StarttlsXmpp => "starttls_xmpp",
            PreambleKind::StarttlsPostgres => "starttls_postgres",
            PreambleKind::StarttlsLdap => "starttls_ldap",
            PreambleKind::StarttlsMysql => "starttls_mysql",
        }
    }

    /// True when the other side answers this preamble before its own TLS bytes.
    fn has_reply(self) -> bool {
        matches!(
            self,
            PreambleKind::HttpConnect | PreambleKind::Socks4 | PreambleKind::Socks5
        )
    }
}

/// What a client's preamble said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preamble {
    /// Which preamble it was.
    pub kind: PreambleKind,
    /// The original client, as a PROXY protocol header gives it (`None` for a
    /// header without addresses: `UNKNOWN`, `LOCAL`, UNIX sockets).
    pub source: Option<SocketAddr>,
    /// The target a tunnel was asked for (`host:port`), for CONNECT and SOCKS.
    pub tunnel_target: Option<String>,
}

/// What one parser made of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// More bytes are needed.
    Incomplete,
    /// The preamble is the first `len` bytes.
    Complete {
        /// Bytes the preamble took.
        len: usize,
        /// What it said.
        value: T,
    },
    /// The bytes break the protocol's rules (or the answer refuses the tunnel).
    Invalid(String),
    /// The server turned a STARTTLS upgrade down.
    Refused(String),
}

/// Which preamble a stream may begin with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The first stream of a connection: a client preamble, if its first bytes
    /// begin one.
    Client,
    /// The answer to the client's preamble of this kind.
    Reply(PreambleKind),
    /// The client's side of a STARTTLS session.
    StarttlsClient(StarttlsProtocol),
    /// The server's side of a STARTTLS session; `armed` once the client's
    /// upgrade command was seen.
    StarttlsServer {
        /// The protocol.
        protocol: StarttlsProtocol,
        /// The client already asked for the upgrade.
        armed: bool,
    },
}

impl Role {
    /// The role of the second stream of a connection whose first stream began
    /// with `client` (`None`: no preamble reader).
    pub fn of_reply(client: Option<PreambleKind>) -> Option<Role> {
        client.filter(|k| k.has_reply()).map(Role::Reply)
    }
}

/// What feeding bytes to a [`PreambleReader`] gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// Kept: the preamble is not complete yet.
    Held,
    /// No preamble: these bytes (everything held, then the new ones) are TLS's.
    Through(Vec<u8>),
    /// The preamble ended; `rest` are the first bytes after it. `preamble` is
    /// what a client's said (`None` for an answer).
    Finished {
        /// What the client's preamble said.
        preamble: Option<Preamble>,
        /// Bytes after the preamble.
        rest: Vec<u8>,
    },
    /// The preamble broke its rules, was refused, or ran past the bound.
    Failed {
        /// Which preamble it was.
        kind: PreambleKind,
        /// Why, for humans.
        reason: String,
        /// A server refused a STARTTLS upgrade (a failure to report).
        refused: bool,
    },
}

/// Holds the first bytes of a stream until its preamble is complete.
#[derive(Debug)]
pub struct PreambleReader {
    role: Role,
    kind: Option<PreambleKind>,
    held: Vec<u8>,
    /// Where a STARTTLS session's reading stands.
    starttls: Option<StarttlsScan>,
}

impl PreambleReader {
    /// A reader for a stream in `role`.
    pub fn new(role: Role) -> Self {
        let (kind, starttls) = match role {
            Role::Client => (None, None),
            Role::Reply(kind) => (Some(kind), None),
            Role::StarttlsClient(protocol) => (
                Some(protocol.kind()),
                Some(StarttlsScan::new(protocol, true, false)),
            ),
            Role::StarttlsServer { protocol, armed } => (
                Some(protocol.kind()),
                Some(StarttlsScan::new(protocol, false, armed)),
            ),
        };
        PreambleReader {
            role,
            kind,
            held: Vec::new(),
            starttls,
        }
    }

    /// The client asked for a STARTTLS upgrade: the server's next answer decides.
    pub fn arm(&mut self) {
        if let Some(scan) = self.starttls.as_mut() {
            scan.arm();
        }
    }

    /// The preamble this stream began with, once recognised.
    pub fn kind(&self) -> Option<PreambleKind> {
        self.kind
    }

    /// True when `next`, the stream's first bytes, begin no preamble: the reader
    /// is not needed (the common case, a ClientHello, costs no copy).
    pub fn passes_through(&self, next: &[u8]) -> bool {
        self.role == Role::Client
            && self.held.is_empty()
            && recognise(next) == Recognised::NotPreamble
    }

    /// Takes the stream's next in-order bytes. Once this returns anything but
    /// [`Fed::Held`], the reader is done and must not be fed again.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        // Never hold more than the bound (plus one byte to know it was passed).
        let room = (MAX_PREAMBLE_BYTES + 1).saturating_sub(self.held.len());
        let taken = bytes.len().min(room);
        self.held.extend_from_slice(&bytes[..taken]);
        let kind = match self.kind {
            Some(kind) => kind,
            None => match recognise(&self.held) {
                Recognised::Undecided => return Fed::Held,
                Recognised::NotPreamble => {
                    let mut all = std::mem::take(&mut self.held);
                    all.extend_from_slice(&bytes[taken..]);
                    return Fed::Through(all);
                }
                Recognised::Kind(kind) => {
                    self.kind = Some(kind);
                    kind
                }
            },
        };
        let parsed = match (self.role, self.starttls.as_mut()) {
            (_, Some(scan)) => {
                let said = matches!(self.role, Role::StarttlsClient(_)).then(|| Preamble {
                    kind,
                    source: None,
                    tunnel_target: None,
                });
                scan.scan(&self.held).map(|()| said)
            }
            (Role::Client, None) => parse_client(kind, &self.held),
            (_, None) => parse_reply(kind, &self.held).map(|()| None),
        };
        match parsed {
            Parse::Incomplete if self.held.len() > MAX_PREAMBLE_BYTES => Fed::Failed {
                kind,
                reason: format!("not complete within {MAX_PREAMBLE_BYTES} bytes"),
                refused: false,
            },
            Parse::Incomplete => Fed::Held,
            Parse::Invalid(reason) => Fed::Failed {
                kind,
                reason,
                refused: false,
            },
            Parse::Refused(reason) => Fed::Failed {
                kind,
                reason,
                refused: true,
            },
            Parse::Complete { len, value } => {
                let mut rest = self.held.split_off(len);
                rest.extend_from_slice(&bytes[taken..]);
                self.held = Vec::new();
                Fed::Finished {
                    preamble: value,
                    rest,
                }
            }
        }
    }
}

impl<T> Parse<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Parse<U> {
        match self {
            Parse::Incomplete => Parse::Incomplete,
            Parse::Complete { len, value } => Parse::Complete {
                len,
                value: f(value),
            },
            Parse::Invalid(reason) => Parse::Invalid(reason),
            Parse::Refused(reason) => Parse::Refused(reason),
        }
    }
}

/// What the first bytes of a client's stream show.
#[derive(Debug, PartialEq, Eq)]
enum Recognised {
    /// Too few bytes to tell.
    Undecided,
    /// Not a preamble: TLS (or anything else) from the first byte.
    NotPreamble,
    /// The start of this preamble.
    Kind(PreambleKind),
}

/// Decides from a client's first bytes which preamble, if any, they begin.
/// None of these starts can begin a TLS record or an SSLv2 ClientHello.
fn recognise(first: &[u8]) -> Recognised {
    const SIGNATURES: [(&[u8], PreambleKind); 3] = [
        (proxy_protocol::V2_SIGNATURE, PreambleKind::ProxyV2),
        (b"PROXY ", PreambleKind::ProxyV1),
        (b"CONNECT ", PreambleKind::HttpConnect),
    ];
    let mut undecided = false;
    for (signature, kind) in SIGNATURES {
        if first.starts_with(signature) {
            return Recognised::Kind(kind);
        }
        undecided |= first.len() < signature.len() && signature.starts_with(first);
    }
    match first {
        [] => Recognised::Undecided,
        [4] => Recognised::Undecided,
        [4, 1, ..] => Recognised::Kind(PreambleKind::Socks4),
        [5, ..] => Recognised::Kind(PreambleKind::Socks5),
        _ if undecided => Recognised::Undecided,
        _ => Recognised::NotPreamble,
    }
}

fn parse_client(kind: PreambleKind, held: &[u8]) -> Parse<Option<Preamble>> {
    let parsed = match kind {
        PreambleKind::ProxyV1 => proxy_protocol::parse_v1(held),
        PreambleKind::ProxyV2 => proxy_protocol::parse_v2(held),
        PreambleKind::HttpConnect => http_connect::parse_request(held),
        PreambleKind::Socks4 => socks::parse_socks4_request(held),
        PreambleKind::Socks5 => socks::parse_socks5_request(held),
        // Recognised by port, read by a StarttlsScan: never here.
        _ => Parse::Invalid("not a client preamble".to_string()),
    };
    parsed.map(|said| {
        Some(Preamble {
            kind,
            source: said.source,
            tunnel_target: said.tunnel_target,
        })
    })
}

fn parse_reply(kind: PreambleKind, held: &[u8]) -> Parse<()> {
    match kind {
        PreambleKind::HttpConnect => http_connect::parse_response(held),
        PreambleKind::Socks4 => socks::parse_socks4_reply(held),
        PreambleKind::Socks5 => socks::parse_socks5_reply(held),
        // Never asked: a PROXY header has no answer, STARTTLS has its own reader.
        _ => Parse::Complete { len: 0, value: () },
    }
}

/// What a client preamble said, before its kind is attached.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Said {
    /// The original client (PROXY protocol).
    pub source: Option<SocketAddr>,
    /// The tunnel's target (CONNECT, SOCKS).
    pub tunnel_target: Option<String>,
}

/// Parses whatever preamble `stream` begins with, as a client's: where TLS
/// starts and what the preamble said. For the fuzz target and tests.
pub fn parse_client_stream(stream: &[u8]) -> Result<(usize, Option<Preamble>), String> {
    let mut reader = PreambleReader::new(Role::Client);
    match reader.feed(stream) {
        Fed::Held => Err("incomplete".to_string()),
        Fed::Through(_) => Ok((0, None)),
        Fed::Finished { preamble, rest } => Ok((stream.len() - rest.len(), preamble)),
        Fed::Failed { reason, .. } => Err(reason),
    }
}
