//! STARTTLS: a plaintext session that upgrades to TLS on request. Both sides
//! are read as a series of units (text lines for SMTP, IMAP, POP3 and FTP; XML
//! tags for XMPP; length-prefixed packets for PostgreSQL and MySQL; BER messages
//! for LDAP). The client's preamble ends with its upgrade command; the server's
//! with its positive answer to that command, which it gives only once the flow
//! table has seen the command ([`StarttlsScan::arm`]). A negative answer is a
//! refusal, which the flow table reports (`starttls_refused`).
//!
//! Written here: the units are a few lines of framing per protocol, and no
//! crate reads both sides of all eight from captured bytes.

use super::{Parse, PreambleKind};

/// A protocol that upgrades to TLS in-band.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StarttlsProtocol {
    /// SMTP `STARTTLS` (RFC 3207).
    Smtp,
    /// IMAP `STARTTLS` (RFC 9051).
    Imap,
    /// POP3 `STLS` (RFC 2595).
    Pop3,
    /// FTP `AUTH TLS` (RFC 4217).
    Ftp,
    /// XMPP `<starttls/>` (RFC 6120).
    Xmpp,
    /// PostgreSQL `SSLRequest`.
    Postgres,
    /// LDAP StartTLS extended operation (RFC 4511).
    Ldap,
    /// MySQL SSL request in the handshake response.
    Mysql,
}

/// Well-known ports of each protocol, what tlsmon follows by default.
pub const DEFAULT_STARTTLS_PORTS: &[(u16, StarttlsProtocol)] = &[
    (21, StarttlsProtocol::Ftp),
    (25, StarttlsProtocol::Smtp),
    (110, StarttlsProtocol::Pop3),
    (143, StarttlsProtocol::Imap),
    (389, StarttlsProtocol::Ldap),
    (587, StarttlsProtocol::Smtp),
    (3306, StarttlsProtocol::Mysql),
    (5222, StarttlsProtocol::Xmpp),
    (5432, StarttlsProtocol::Postgres),
];

impl StarttlsProtocol {
    /// Every protocol, for parsing names.
    pub const ALL: [StarttlsProtocol; 8] = [
        StarttlsProtocol::Smtp,
        StarttlsProtocol::Imap,
        StarttlsProtocol::Pop3,
        StarttlsProtocol::Ftp,
        StarttlsProtocol::Xmpp,
        StarttlsProtocol::Postgres,
        StarttlsProtocol::Ldap,
        StarttlsProtocol::Mysql,
    ];

    /// The record's `preamble` value for this protocol.
    pub fn kind(self) -> PreambleKind {
        match self {
            StarttlsProtocol::Smtp => PreambleKind::StarttlsSmtp,
            StarttlsProtocol::Imap => PreambleKind::StarttlsImap,
            StarttlsProtocol::Pop3 => PreambleKind::StarttlsPop3,
            StarttlsProtocol::Ftp => PreambleKind::StarttlsFtp,
            StarttlsProtocol::Xmpp => PreambleKind::StarttlsXmpp,
            StarttlsProtocol::Postgres => PreambleKind::StarttlsPostgres,
            StarttlsProtocol::Ldap => PreambleKind::StarttlsLdap,
            StarttlsProtocol::Mysql => PreambleKind::StarttlsMysql,
        }
    }

    /// The protocol's lower-case name (`smtp`, `postgres`, ...).
    pub fn name(self) -> &'static str {
        &self.kind().as_str()["starttls_".len()..]
    }

    /// The protocol of a lower-case name.
    pub fn from_name(name: &str) -> Option<StarttlsProtocol> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Parses `PROTO:PORT` (`smtp:2525`), how the command line and the
/// configuration name an extra STARTTLS port.
pub fn parse_port_spec(text: &str) -> Result<(u16, StarttlsProtocol), String> {
    let names = || {
        StarttlsProtocol::ALL
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, port) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not PROTOCOL:PORT (e.g. smtp:2525)"))?;
    let protocol = StarttlsProtocol::from_name(name)
        .ok_or_else(|| format!("unknown STARTTLS protocol {name:?} (one of {})", names()))?;
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok((port, protocol)),
        _ => Err(format!("{port:?} is not a port number from 1 to 65535")),
    }
}

/// PostgreSQL's SSLRequest: length 8, request code 80877103.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// MySQL capability flag CLIENT_SSL.
const MYSQL_CLIENT_SSL: u32 = 0x0800;
/// The LDAP StartTLS extended operation's name.
const LDAP_STARTTLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";
/// BER tags of LDAP's ExtendedRequest and ExtendedResponse ([APPLICATION 23/24]).
const LDAP_EXTENDED_REQUEST: u8 = 0x77;
const LDAP_EXTENDED_RESPONSE: u8 = 0x78;

/// What one unit of the session means.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    /// Plaintext before the upgrade: go on.
    Skip,
    /// The upgrade command (client) or its acceptance (server): TLS follows.
    Upgrade,
    /// The server turned the upgrade down.
    Refused(String),
    /// Not this protocol.
    Invalid(String),
}

/// Reads one side of a STARTTLS session up to where TLS starts.
#[derive(Debug)]
pub struct StarttlsScan {
    protocol: StarttlsProtocol,
    client: bool,
    /// The server's answers are judged once the client asked for the upgrade.
    armed: bool,
    /// Bytes of the units read so far.
    pos: usize,
    /// Units read so far.
    units: u32,
}

impl StarttlsScan {
    /// A scan of the client's side (`client`) or the server's; a server's scan
    /// starts `armed` when the client's command was already seen.
    pub fn new(protocol: StarttlsProtocol, client: bool, armed: bool) -> Self {
        StarttlsScan {
            protocol,
            client,
            armed,
            pos: 0,
            units: 0,
        }
    }

    /// The client asked for the upgrade: the server's next answer decides.
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// Reads the units `held` completes; `Complete` at the first TLS byte.
    pub fn scan(&mut self, held: &[u8]) -> Parse<()> {
        loop {
            let rest = &held[self.pos..];
            // The answer was not seen (live capture starts at the client's first
            // payload) or not needed (MySQL): TLS is where a TLS record starts.
            if !self.client && self.armed {
                match tls_record_start(rest) {
                    Some(true) => {
                        return Parse::Complete {
                            len: self.pos,
                            value: (),
                        }
                    }
                    Some(false) => {}
                    None => return Parse::Incomplete,
                }
            }
            let len = match unit_len(self.protocol, rest) {
                None => return Parse::Incomplete,
                Some(Err(reason)) => return Parse::Invalid(reason),
                Some(Ok(len)) => len,
            };
            let unit = &rest[..len];
            let judged = if self.client {
                judge_client(self.protocol, unit, self.units)
            } else if self.armed {
                judge_server(self.protocol, unit)
            } else {
                Judged::Skip
            };
            self.pos += len;
            self.units += 1;
            match judged {
                Judged::Skip => {}
                Judged::Upgrade => {
                    return Parse::Complete {
                        len: self.pos,
                        value: (),
                    }
                }
                Judged::Refused(reason) => return Parse::Refused(reason),
                Judged::Invalid(reason) => return Parse::Invalid(reason),
            }
        }
    }
}

/// Whether `b` begins a TLS handshake or alert record header (what a server's
/// TLS begins with); `None` while too few bytes came to tell.
fn tls_record_start(b: &[u8]) -> Option<bool> {
    match b {
        [22 | 21, 3, 0..=4, ..] => Some(true),
        [] | [22 | 21] | [22 | 21, 3] => None,
        _ => Some(false),
    }
}

/// Length of the unit at the start of `b`; `None` when it is not complete.
fn unit_len(protocol: StarttlsProtocol, b: &[u8]) -> Option<Result<usize, String>> {
    match protocol {
        StarttlsProtocol::Smtp
        | StarttlsProtocol::Imap
        | StarttlsProtocol::Pop3
        | StarttlsProtocol::Ftp => b.iter().position(|&c| c == b'\n').map(|i| Ok(i + 1)),
        StarttlsProtocol::Xmpp => b.iter().position(|&c| c == b'>').map(|i| Ok(i + 1)),
        StarttlsProtocol::Postgres => postgres_unit(b),
        StarttlsProtocol::Mysql => {
            let header = b.get(..4)?;
            let len = 4 + u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
            (b.len() >= len).then_some(Ok(len))
        }
        StarttlsProtocol::Ldap => ber_len(b),
    }
}

/// PostgreSQL: the client's SSLRequest is eight bytes, the server's answer one.
fn postgres_unit(b: &[u8]) -> Option<Result<usize, String>> {
    match b.first()? {
        b'S' | b'N' => Some(Ok(1)),
        0 => (b.len() >= 8).then_some(Ok(8)),
        other => Some(Err(format!("PostgreSQL: unexpected byte {other:#04x}"))),
    }
}

/// Length of the BER element at the start of `b` (definite lengths only).
fn ber_len(b: &[u8]) -> Option<Result<usize, String>> {
    let first = *b.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, first as usize)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Some(Err(format!("LDAP: BER length form {first:#04x}")));
        }
        let bytes = b.get(2..2 + n)?;
        (
            2 + n,
            bytes.iter().fold(0usize, |acc, &x| acc << 8 | x as usize),
        )
    };
    let total = header + len;
    (b.len() >= total).then_some(Ok(total))
}

fn text_line(unit: &[u8]) -> String {
    String::from_utf8_lossy(unit)
        .trim_end_matches(['\r', '\n'])
        .to_string()
}

fn judge_client(protocol: StarttlsProtocol, unit: &[u8], index: u32) -> Judged {
    let upgrade = match protocol {
        StarttlsProtocol::Smtp => text_line(unit).eq_ignore_ascii_case("STARTTLS"),
        StarttlsProtocol::Imap => text_line(unit)
            .split_once(' ')
            .is_some_and(|(_, command)| command.eq_ignore_ascii_case("STARTTLS")),
        StarttlsProtocol::Pop3 => text_line(unit).eq_ignore_ascii_case("STLS"),
        StarttlsProtocol::Ftp => {
            let line = text_line(unit).to_ascii_uppercase();
            matches!(line.as_str(), "AUTH TLS" | "AUTH TLS-C" | "AUTH SSL")
        }
        StarttlsProtocol::Xmpp => contains(unit, b"<starttls") && unit.ends_with(b"/>"),
        StarttlsProtocol::Postgres => {
            if unit != PG_SSL_REQUEST {
                return Judged::Invalid("PostgreSQL: the client sent no SSLRequest".into());
            }
            true
        }
        StarttlsProtocol::Mysql => {
            let flags = unit
                .get(4..8)
                .map(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]));
            if index > 0 || unit.len() != 36 || flags.is_none_or(|f| f & MYSQL_CLIENT_SSL == 0) {
                return Judged::Invalid("MySQL: the client sent no SSL request".into());
            }
            true
        }
        StarttlsProtocol::Ldap => {
            ldap_op(unit) == Some(LDAP_EXTENDED_REQUEST) && contains(unit, LDAP_STARTTLS_OID)
        }
    };
    // XMPP's closing form `<starttls ...></starttls>` ends at its closing tag.
    if protocol == StarttlsProtocol::Xmpp && contains(unit, b"</starttls") {
        return Judged::Upgrade;
    }
    if upgrade {
        Judged::Upgrade
    } else {
        Judged::Skip
    }
}

fn judge_server(protocol: StarttlsProtocol, unit: &[u8]) -> Judged {
    let line = text_line(unit);
    let refused = |what: &str| Judged::Refused(format!("the server answered {what:?}"));
    match protocol {
        StarttlsProtocol::Smtp | StarttlsProtocol::Ftp => {
            // "250-..." continues a reply; the last line has a space (or nothing).
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let last = line.as_bytes().get(3).is_none_or(|&c| c == b' ');
            match code {
                _ if !last => Judged::Skip,
                Some(200..=399) => Judged::Upgrade,
                Some(400..=599) => refused(&line),
                _ => Judged::Invalid(format!("not a reply line: {line:?}")),
            }
        }
        StarttlsProtocol::Imap => {
            let mut words = line.split(' ');
            match (words.next(), words.next().map(str::to_ascii_uppercase)) {
                (Some("*" | "+"), _) => Judged::Skip,
                (Some(_), Some(status)) if status == "OK" => Judged::Upgrade,
                (Some(_), Some(status)) if status == "NO" || status == "BAD" => refused(&line),
                _ => Judged::Invalid(format!("not a response line: {line:?}")),
            }
        }
        StarttlsProtocol::Pop3 => {
            if line.starts_with("+OK") {
                Judged::Upgrade
            } else if line.starts_with("-ERR") {
                refused(&line)
            } else {
                Judged::Invalid(format!("not a response line: {line:?}"))
            }
        }
        StarttlsProtocol::Xmpp => {
            if contains(unit, b"<proceed") {
                Judged::Upgrade
            } else if contains(unit, b"<failure") {
                refused(&line)
            } else {
                Judged::Skip
            }
        }
        StarttlsProtocol::Postgres => match unit {
            b"S" => Judged::Upgrade,
            b"N" => refused("N"),
            _ => Judged::Invalid("PostgreSQL: not an answer to SSLRequest".into()),
        },
        // The server answers only by starting TLS (seen before the judge).
        StarttlsProtocol::Mysql => Judged::Skip,
        StarttlsProtocol::Ldap => {
            if ldap_op(unit) != Some(LDAP_EXTENDED_RESPONSE) {
                return Judged::Skip;
            }
            match ldap_result_code(unit) {
                Some(0) => Judged::Upgrade,
                Some(code) => Judged::Refused(format!("the server answered resultCode {code}")),
                None => Judged::Invalid("LDAP: ExtendedResponse without resultCode".into()),
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An LDAPMessage: SEQUENCE { messageID INTEGER, protocolOp ... }: the
/// protocolOp's tag and where its contents start.
fn ldap_op_at(unit: &[u8]) -> Option<(u8, usize)> {
    if *unit.first()? != 0x30 {
        return None;
    }
    let header = ber_header_len(unit)?;
    let id = unit.get(header..)?;
    if *id.first()? != 0x02 {
        return None;
    }
    let id_len = match ber_len(id)? {
        Ok(len) => len,
        Err(_) => return None,
    };
    let op_at = header + id_len;
    let op = unit.get(op_at..)?;
    Some((*op.first()?, op_at + ber_header_len(op)?))
}

fn ldap_op(unit: &[u8]) -> Option<u8> {
    ldap_op_at(unit).map(|(tag, _)| tag)
}

/// The resultCode (ENUMERATED, the first element of an LDAPResult).
fn ldap_result_code(unit: &[u8]) -> Option<u8> {
    let (_, contents) = ldap_op_at(unit)?;
    match unit.get(contents..contents + 3)? {
        [0x0a, 1, code] => Some(*code),
        _ => None,
    }
}

fn ber_header_len(b: &[u8]) -> Option<usize> {
    let first = *b.get(1)?;
    Some(if first < 0x80 {
        2
    } else {
        2 + (first & 0x7f) as usize
    })
}
