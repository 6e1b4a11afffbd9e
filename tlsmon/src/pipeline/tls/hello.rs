//! ClientHello and ServerHello bodies into [`ClientHello`] / [`ServerHello`].

use tls_parser::{
    parse_tls_client_hello_extension, parse_tls_extension_unknown,
    parse_tls_handshake_client_hello, parse_tls_handshake_msg_server_hello,
    parse_tls_handshake_server_hello, parse_tls_server_hello_extension, TlsExtension,
    TlsExtensionType, TlsMessageHandshake,
};

use super::fingerprint::{self, ClientHelloFields};
use super::names::is_grease;
use super::{ClientHello, ServerHello};

/// The `random` of a ServerHello that is really a HelloRetryRequest (RFC 8446 4.1.3).
const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// One extension: its type (as on the wire) and tls-parser's reading of its content,
/// `None` when tls-parser rejected the content.
type Extension<'a> = (u16, Option<TlsExtension<'a>>);

/// Splits an extensions block into extensions.
///
/// tls-parser's list parsers (`parse_tls_client_hello_extensions`) stop silently at the
/// first extension whose content they reject and drop the rest, but fingerprints need
/// every extension type in order. So each extension is parsed on its own, and one with
/// odd content is still listed by type (via `parse_tls_extension_unknown`).
fn split_extensions(
    mut block: &[u8],
    parse_one: fn(&[u8]) -> tls_parser::IResult<&[u8], TlsExtension<'_>>,
) -> Result<Vec<Extension<'_>>, String> {
    let mut out = Vec::new();
    while !block.is_empty() {
        let ext_type = match block {
            [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
            _ => return Err("truncated extension header".to_string()),
        };
        match parse_one(block) {
            Ok((rest, ext)) => {
                out.push((ext_type, Some(ext)));
                block = rest;
            }
            Err(_) => match parse_tls_extension_unknown(block) {
                Ok((rest, _)) => {
                    out.push((ext_type, None));
                    block = rest;
                }
                Err(_) => return Err(format!("extension 0x{ext_type:04x} is truncated")),
            },
        }
    }
    Ok(out)
}

/// Decodes a ClientHello handshake body (after the 4-byte handshake header).
pub(super) fn parse_client_hello(body: &[u8], message_len: u32) -> Result<ClientHello, String> {
    let (_, ch) = parse_tls_handshake_client_hello(body)
        .map_err(|e| format!("ClientHello does not parse: {e:?}"))?;
    let extensions = match ch.ext {
        Some(block) => split_extensions(block, parse_tls_client_hello_extension)
            .map_err(|e| format!("ClientHello: {e}"))?,
        None => Vec::new(),
    };
    let mut hello = ClientHello {
        legacy_version: ch.version.0,
        random: client_random(ch.random),
        session_id_len: ch.session_id.map_or(0, |s| s.len() as u8),
        message_len,
        ..ClientHello::default()
    };
    let raw_ciphers: Vec<u16> = ch.ciphers.iter().map(|c| c.0).collect();
    let raw_extensions: Vec<u16> = extensions.iter().map(|(t, _)| *t).collect();
    let mut raw_versions = Vec::new();
    let mut raw_groups = Vec::new();
    let mut raw_sigalgs = Vec::new();
    let mut first_alpn: Option<&[u8]> = None;
    for (ext_type, ext) in &extensions {
        if *ext_type == TlsExtensionType::PreSharedKey.0 {
            hello.psk_offered = true;
        }
        let Some(ext) = ext else { continue };
        match ext {
            TlsExtension::SNI(names) => {
                // The first host_name (type 0) entry; RFC 6066 allows only one.
                hello.sni = names
                    .iter()
                    .find(|(kind, _)| kind.0 == 0)
                    .map(|(_, name)| String::from_utf8_lossy(name).into_owned());
            }
            TlsExtension::ALPN(protocols) => {
                first_alpn = protocols.first().copied();
                hello.alpn = protocols
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
            }
            TlsExtension::SupportedVersions(versions) => {
                raw_versions = versions.iter().map(|v| v.0).collect();
            }
            TlsExtension::EllipticCurves(groups) => {
                raw_groups = groups.iter().map(|g| g.0).collect();
            }
            TlsExtension::SignatureAlgorithms(algs) => raw_sigalgs = algs.clone(),
            TlsExtension::EcPointFormats(formats) => hello.ec_point_formats = formats.to_vec(),
            TlsExtension::KeyShare(raw) => hello.key_share_groups = key_share_groups(raw),
            TlsExtension::SessionTicket(ticket) => {
                hello.session_ticket_offered = !ticket.is_empty();
            }
            _ => {}
        }
    }
    let fields = ClientHelloFields {
        legacy_version: hello.legacy_version,
        supported_versions: &raw_versions,
        cipher_suites: &raw_ciphers,
        extensions: &raw_extensions,
        supported_groups: &raw_groups,
        ec_point_formats: &hello.ec_point_formats,
        signature_algorithms: &raw_sigalgs,
        first_alpn,
    };
    hello.ja3 = fingerprint::ja3(&fields);
    hello.ja4 = fingerprint::ja4(&fields);
    hello.supported_versions = without_grease(&raw_versions);
    hello.cipher_suites = without_grease(&raw_ciphers);
    hello.extensions = without_grease(&raw_extensions);
    hello.supported_groups = without_grease(&raw_groups);
    hello.signature_algorithms = without_grease(&raw_sigalgs);
    Ok(hello)
}

/// A ClientHello's random as an array (tls-parser hands over the 32 bytes as a slice;
/// a shorter one, which it does not produce, is right-justified like an SSLv2 challenge).
fn client_random(random: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let take = random.len().min(32);
    out[32 - take..].copy_from_slice(&random[random.len() - take..]);
    out
}

/// Groups of a ClientHello key_share extension (`KeyShareEntry client_shares<0..2^16-1>`),
/// GREASE removed. tls-parser hands this extension over as raw bytes; entries that run
/// past the end are ignored.
fn key_share_groups(raw: &[u8]) -> Vec<u16> {
    let mut groups = Vec::new();
    let Some(([hi, lo], entries)) = raw.split_first_chunk::<2>() else {
        return groups;
    };
    let list_len = usize::from(u16::from_be_bytes([*hi, *lo]));
    let mut entries = &entries[..list_len.min(entries.len())];
    while let Some(([g0, g1, l0, l1], rest)) = entries.split_first_chunk::<4>() {
        let group = u16::from_be_bytes([*g0, *g1]);
        let kx_len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if kx_len > rest.len() {
            break;
        }
        if !is_grease(group) {
            groups.push(group);
        }
        entries = &rest[kx_len..];
    }
    groups
}

/// First and last `version` of the TLS 1.3 drafts (18 to 21) whose ServerHello has
/// neither legacy_session_id nor compression_method: version(2) random(32)
/// cipher_suite(2) extensions. From draft 22 on, a ServerHello looks like TLS 1.2's
/// and names the draft in supported_versions.
const DRAFT_SERVER_HELLO_VERSIONS: std::ops::RangeInclusive<u16> = 0x7f12..=0x7f15;

/// Extension type of key_share before TLS 1.3 draft 23 moved it to 51.
const DRAFT_KEY_SHARE: u16 = 40;

/// The draft version tls-parser parses that layout for.
const TLS13_DRAFT18: u16 = 0x7f12;

/// The fields of a ServerHello common to every layout.
struct ServerHelloFields<'a> {
    version: u16,
    random: &'a [u8],
    session_id: Option<&'a [u8]>,
    cipher: u16,
    ext: Option<&'a [u8]>,
}

/// Decodes a ServerHello handshake body (after the 4-byte handshake header), including
/// a HelloRetryRequest, which TLS 1.3 sends as a ServerHello with a special random,
/// and the shorter ServerHello of TLS 1.3 drafts 18 to 21 (chosen by its version).
pub(super) fn parse_server_hello(body: &[u8]) -> Result<ServerHello, String> {
    let version = body
        .get(..2)
        .map_or(0, |v| u16::from_be_bytes([v[0], v[1]]));
    if DRAFT_SERVER_HELLO_VERSIONS.contains(&version) {
        return parse_draft_server_hello(body, version);
    }
    let (_, sh) = parse_tls_handshake_server_hello(body).map_err(|e| {
        format!("ServerHello (legacy version 0x{version:04x}) does not parse: {e:?}")
    })?;
    server_hello_from(ServerHelloFields {
        version: sh.version.0,
        random: sh.random,
        session_id: sh.session_id,
        cipher: sh.cipher.0,
        ext: sh.ext,
    })
}

/// Decodes the ServerHello of TLS 1.3 drafts 18 to 21. tls-parser knows this layout
/// but dispatches on version 0x7f12 only, although drafts 19 to 21 kept it; so the
/// body is handed to it as draft 18 (a copy with that version) and `version` is put
/// back afterwards.
fn parse_draft_server_hello(body: &[u8], version: u16) -> Result<ServerHello, String> {
    let mut as_draft18 = body.to_vec();
    as_draft18[..2].copy_from_slice(&TLS13_DRAFT18.to_be_bytes());
    let parsed = parse_tls_handshake_msg_server_hello(&as_draft18).map_err(|e| {
        format!("ServerHello (TLS 1.3 draft version 0x{version:04x}) does not parse: {e:?}")
    })?;
    let (rest, TlsMessageHandshake::ServerHelloV13Draft18(sh)) = parsed else {
        return Err(format!(
            "ServerHello (TLS 1.3 draft version 0x{version:04x}) does not parse as a draft"
        ));
    };
    // tls-parser skips an extensions block whose length runs past the end; the
    // message length says where the body ends, so leftover bytes mean a bad layout.
    if !rest.is_empty() {
        return Err(format!(
            "ServerHello (TLS 1.3 draft version 0x{version:04x}) has {} bytes after its \
             extensions",
            rest.len()
        ));
    }
    server_hello_from(ServerHelloFields {
        version,
        random: sh.random,
        session_id: None,
        cipher: sh.cipher.0,
        ext: sh.ext,
    })
}

/// A [`ServerHello`] from the fields of any layout.
fn server_hello_from(sh: ServerHelloFields<'_>) -> Result<ServerHello, String> {
    let extensions = match sh.ext {
        Some(block) => split_extensions(block, parse_tls_server_hello_extension)
            .map_err(|e| format!("ServerHello: {e}"))?,
        None => Vec::new(),
    };
    let mut hello = ServerHello {
        legacy_version: sh.version,
        selected_version: sh.version,
        cipher_suite: sh.cipher,
        session_id: sh.session_id.map(<[u8]>::to_vec).unwrap_or_default(),
        is_hello_retry_request: sh.random == HELLO_RETRY_REQUEST_RANDOM,
        ..ServerHello::default()
    };
    let raw_extensions: Vec<u16> = extensions.iter().map(|(t, _)| *t).collect();
    for (ext_type, ext) in &extensions {
        if *ext_type == TlsExtensionType::PreSharedKey.0 {
            hello.psk_selected = true;
        }
        match ext {
            Some(TlsExtension::SupportedVersions(v)) if v.len() == 1 => {
                hello.selected_version = v[0].0;
            }
            // Both the ServerHello's KeyShareEntry and the HelloRetryRequest's
            // selected_group start with the 2-byte group; tls-parser leaves it raw.
            Some(TlsExtension::KeyShare(raw)) => {
                hello.key_share_group = raw
                    .split_first_chunk::<2>()
                    .map(|(g, _)| u16::from_be_bytes(*g));
            }
            // Drafts before 23 numbered key_share 40, which tls-parser leaves unknown.
            Some(TlsExtension::Unknown(kind, raw)) if kind.0 == DRAFT_KEY_SHARE => {
                hello.key_share_group = raw
                    .split_first_chunk::<2>()
                    .map(|(g, _)| u16::from_be_bytes(*g));
            }
            Some(TlsExtension::ALPN(protocols)) => {
                hello.alpn = protocols
                    .first()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
            }
            _ => {}
        }
    }
    hello.extensions = without_grease(&raw_extensions);
    hello.ja3s = fingerprint::ja3s(hello.legacy_version, hello.cipher_suite, &raw_extensions);
    Ok(hello)
}

/// Decodes an SSLv2-compatible ClientHello (RFC 5246 appendix E.2): `record` is the
/// whole record including its 2-byte header. tls-parser has no SSLv2 support, and the
/// layout is five fixed fields and three byte strings, so it is read here.
pub(super) fn parse_sslv2_client_hello(record: &[u8]) -> Result<ClientHello, String> {
    let field = |at: usize| -> Result<u16, String> {
        record
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "SSLv2 ClientHello is truncated".to_string())
    };
    let version = field(3)?;
    let cipher_specs_len = usize::from(field(5)?);
    let session_id_len = usize::from(field(7)?);
    let challenge_len = usize::from(field(9)?);
    if cipher_specs_len % 3 != 0 {
        return Err(format!(
            "SSLv2 ClientHello cipher_spec_length {cipher_specs_len} is not a multiple of 3"
        ));
    }
    if session_id_len > 32 {
        return Err(format!(
            "SSLv2 ClientHello session_id_length {session_id_len} exceeds 32"
        ));
    }
    let specs_end = 11 + cipher_specs_len;
    if specs_end + session_id_len + challenge_len != record.len() {
        return Err("SSLv2 ClientHello lengths do not add up to the record length".to_string());
    }
    // Three-byte cipher specs; those with a zero first byte are TLS cipher suites,
    // the others are SSLv2-only kinds with no TLS code point.
    let raw_ciphers: Vec<u16> = record[11..specs_end]
        .chunks_exact(3)
        .filter(|spec| spec[0] == 0)
        .map(|spec| u16::from_be_bytes([spec[1], spec[2]]))
        .collect();
    let fields = ClientHelloFields {
        legacy_version: version,
        supported_versions: &[],
        cipher_suites: &raw_ciphers,
        extensions: &[],
        supported_groups: &[],
        ec_point_formats: &[],
        signature_algorithms: &[],
        first_alpn: None,
    };
    let challenge = &record[specs_end + session_id_len..];
    Ok(ClientHello {
        legacy_version: version,
        random: client_random(challenge),
        sslv2_compat: true,
        cipher_suites: without_grease(&raw_ciphers),
        session_id_len: session_id_len as u8,
        message_len: record.len() as u32,
        ja3: fingerprint::ja3(&fields),
        ja4: fingerprint::ja4(&fields),
        ..ClientHello::default()
    })
}

fn without_grease(values: &[u16]) -> Vec<u16> {
    values.iter().copied().filter(|&v| !is_grease(v)).collect()
}

/// What a handshake record reports of a ClientHello, kept while the handshake is in
/// progress: the offered versions, cipher suites, groups and ALPN names, the SNI,
/// JA3 and JA4, in one allocation. A [`ClientHello`] holds a dozen, which for an
/// unanswered handshake was most of what a tracked flow cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferedHello {
    legacy_version: u16,
    message_len: u32,
    /// The JA3 MD5 digest (its hex form is what is reported).
    ja3: Option<[u8; 16]>,
    /// Big-endian u16 lists (supported_versions, cipher suites, supported_groups, the
    /// byte length of each ALPN name), then text (JA4, the SNI, the ALPN names).
    blob: Box<[u8]>,
    /// Where each part of `blob` ends: versions, ciphers, groups, ALPN lengths, JA4, SNI.
    ends: [u32; 6],
    has_sni: bool,
}

impl OfferedHello {
    /// The compact copy of `hello`.
    pub fn of(hello: &ClientHello) -> Self {
        let sni = hello.sni.as_deref().unwrap_or("");
        let lists = [
            &hello.supported_versions,
            &hello.cipher_suites,
            &hello.supported_groups,
        ];
        let codes: usize = lists.iter().map(|l| l.len()).sum::<usize>() + hello.alpn.len();
        let text = hello.ja4.len() + sni.len() + hello.alpn.iter().map(String::len).sum::<usize>();
        let mut blob = Vec::with_capacity(2 * codes + text);
        // Lengths fit in u32: a ClientHello is bounded by MAX_HANDSHAKE_MESSAGE.
        let at = |blob: &Vec<u8>| u32::try_from(blob.len()).unwrap_or(u32::MAX);
        let mut ends = [0u32; 6];
        for (i, list) in lists.iter().enumerate() {
            blob.extend(list.iter().flat_map(|v| v.to_be_bytes()));
            ends[i] = at(&blob);
        }
        for name in &hello.alpn {
            // A name is at most 255 bytes on the wire, 765 after lossy UTF-8 decoding.
            let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            blob.extend_from_slice(&len.to_be_bytes());
        }
        ends[3] = at(&blob);
        blob.extend_from_slice(hello.ja4.as_bytes());
        ends[4] = at(&blob);
        blob.extend_from_slice(sni.as_bytes());
        ends[5] = at(&blob);
        for name in &hello.alpn {
            blob.extend_from_slice(name.as_bytes());
        }
        let mut ja3 = [0u8; 16];
        let ja3 = hex::decode_to_slice(&hello.ja3, &mut ja3)
            .ok()
            .map(|()| ja3);
        OfferedHello {
            legacy_version: hello.legacy_version,
            message_len: hello.message_len,
            ja3,
            blob: blob.into_boxed_slice(),
            ends,
            has_sni: hello.sni.is_some(),
        }
    }

    /// Part `index` of `blob` (see [`OfferedHello::ends`]).
    fn part(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |i| self.ends[i] as usize);
        let end = self.ends[index] as usize;
        self.blob.get(start..end).unwrap_or_default()
    }

    fn codes(&self, index: usize) -> impl ExactSizeIterator<Item = u16> + '_ {
        self.part(index)
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
    }

    fn text(&self, index: usize) -> &str {
        // Every text part was copied from a String whole.
        std::str::from_utf8(self.part(index)).unwrap_or_default()
    }

    /// `legacy_version` field.
    pub fn legacy_version(&self) -> u16 {
        self.legacy_version
    }

    /// Size of the handshake message (see [`ClientHello::message_len`]).
    pub fn message_len(&self) -> u32 {
        self.message_len
    }

    /// supported_versions extension, in the client's order, GREASE removed.
    pub fn supported_versions(&self) -> impl ExactSizeIterator<Item = u16> + '_ {
        self.codes(0)
    }

    /// Cipher suites, in the client's order, GREASE removed.
    pub fn cipher_suites(&self) -> impl ExactSizeIterator<Item = u16> + '_ {
        self.codes(1)
    }

    /// supported_groups extension, in the client's order, GREASE removed.
    pub fn supported_groups(&self) -> impl ExactSizeIterator<Item = u16> + '_ {
        self.codes(2)
    }

    /// ALPN protocol names, in the client's order.
    pub fn alpn(&self) -> impl Iterator<Item = &str> + '_ {
        let names = self.blob.get(self.ends[5] as usize..).unwrap_or_default();
        let mut rest = std::str::from_utf8(names).unwrap_or_default();
        self.codes(3).map(move |len| {
            let (name, after) = rest
                .split_at_checked(usize::from(len))
                .unwrap_or((rest, ""));
            rest = after;
            name
        })
    }

    /// First host_name of the server_name extension.
    pub fn sni(&self) -> Option<&str> {
        self.has_sni.then(|| self.text(5))
    }

    /// JA3 fingerprint (MD5 hex).
    pub fn ja3(&self) -> Option<String> {
        self.ja3.map(hex::encode)
    }

    /// JA4 fingerprint.
    pub fn ja4(&self) -> &str {
        self.text(4)
    }
}
