//! What tshark sees of the handshakes in a capture, for cross-checking tlsmon.
//!
//! tshark (Wireshark's dissectors) is an independent reading of the same bytes: per
//! TCP connection it reports the first ClientHello's SNI and JA3, the final
//! ServerHello's version, cipher suite and JA3S, and the plaintext alerts with the
//! side that sent them. Names come from Wireshark's own tables (`tshark -G values`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The random of a HelloRetryRequest (RFC 8446 4.1.3).
const HRR_RANDOM: &str = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c";

const FIELDS: &[&str] = &[
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "tls.handshake.type",
    "tls.handshake.version",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extensions_server_name",
    "tls.handshake.random",
    "tls.alert_message.desc",
    "tls.handshake.ja3",
    "tls.handshake.ja3s",
];

/// Whether tshark can be run here.
pub fn available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Cipher suite and alert names from Wireshark's value tables.
pub struct Names {
    ciphers: HashMap<u16, String>,
    alerts: HashMap<u8, String>,
}

impl Names {
    /// Reads the tables with `tshark -G values`.
    pub fn load() -> Result<Self> {
        let out = run(Command::new("tshark").args(["-G", "values"]))?;
        let mut names = Names {
            ciphers: HashMap::new(),
            alerts: HashMap::new(),
        };
        for line in out.lines() {
            let parts: Vec<&str> = line.split('\t').collect();
            let [kind, field, value, name] = parts[..] else {
                continue;
            };
            if kind != "V" {
                continue;
            }
            match field {
                "tls.handshake.ciphersuite" => {
                    if let Ok(v) = parse_number(value) {
                        names.ciphers.insert(v as u16, name.to_string());
                    }
                }
                // Wireshark says "Handshake Failure"; the RFC name is handshake_failure.
                "tls.alert_message.desc" => {
                    if let Ok(v) = parse_number(value) {
                        let rfc = name.to_ascii_lowercase().replace(' ', "_");
                        names.alerts.insert(v as u8, rfc);
                    }
                }
                _ => {}
            }
        }
        if names.ciphers.is_empty() || names.alerts.is_empty() {
            bail!("tshark -G values listed no TLS cipher suites or alerts");
        }
        Ok(names)
    }

    fn cipher(&self, code: u16) -> String {
        self.ciphers
            .get(&code)
            .cloned()
            .unwrap_or_else(|| format!("0x{code:04x}"))
    }

    fn alert(&self, code: u8) -> String {
        self.alerts
            .get(&code)
            .cloned()
            .unwrap_or_else(|| format!("0x{code:02x}"))
    }
}

/// One TCP connection that carried a ClientHello, as tshark sees it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Address of the side that sent the ClientHello.
    pub client_ip: String,
    /// Its port.
    pub client_port: u16,
    /// Server name of the first ClientHello.
    pub sni: Option<String>,
    /// JA3 of the first ClientHello.
    pub ja3: Option<String>,
    /// Version the final ServerHello chose ("TLSv1.3"), if one was seen.
    pub version: Option<String>,
    /// Cipher suite the final ServerHello chose.
    pub cipher: Option<String>,
    /// JA3S of the final ServerHello.
    pub ja3s: Option<String>,
    /// Plaintext alerts in order: (sender "client"/"server", RFC name).
    pub alerts: Vec<(String, String)>,
}

/// The connections of `capture` that carried a ClientHello, ordered by tcp.stream.
pub fn connections(capture: &Path, names: &Names) -> Result<Vec<Connection>> {
    let mut cmd = Command::new("tshark");
    // Out-of-order reassembly is off by default in Wireshark 4.0.
    cmd.arg("-r")
        .arg(capture)
        .args(["-o", "tcp.reassemble_out_of_order:TRUE", "-T", "fields"])
        .args([
            "-E",
            "separator=\t",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
        ]);
    for field in FIELDS {
        cmd.args(["-e", field]);
    }
    let out = run(&mut cmd)?;
    let mut streams: BTreeMap<u64, Vec<Frame>> = BTreeMap::new();
    for line in out.lines() {
        let frame = Frame::parse(line);
        if let Some(stream) = frame.first("tcp.stream") {
            streams
                .entry(parse_number(stream)?)
                .or_default()
                .push(frame);
        }
    }
    let mut found = Vec::new();
    for frames in streams.values() {
        if let Some(conn) = connection(frames, names)? {
            found.push(conn);
        }
    }
    Ok(found)
}

fn connection(frames: &[Frame], names: &Names) -> Result<Option<Connection>> {
    let endpoint = |f: &Frame| -> Option<(String, String)> {
        let ip = f.first("ip.src").or_else(|| f.first("ipv6.src"))?;
        Some((ip.to_string(), f.first("tcp.srcport")?.to_string()))
    };
    let is_set = |v: Option<&str>| matches!(v, Some("1" | "True"));
    let opens = |f: &Frame| is_set(f.first("tcp.flags.syn")) && !is_set(f.first("tcp.flags.ack"));
    let hello_from = |f: &Frame| f.handshake_types().contains(&1);
    let Some(client) = frames
        .iter()
        .find(|f| opens(f))
        .or_else(|| frames.iter().find(|f| hello_from(f)))
        .and_then(endpoint)
    else {
        return Ok(None);
    };
    let side = |f: &Frame| {
        if endpoint(f).as_ref() == Some(&client) {
            "client"
        } else {
            "server"
        }
    };
    let Some(hello) = frames.iter().find(|f| side(f) == "client" && hello_from(f)) else {
        return Ok(None);
    };
    let mut conn = Connection {
        client_ip: client.0.clone(),
        client_port: parse_number(&client.1)? as u16,
        sni: hello
            .first("tls.handshake.extensions_server_name")
            .map(str::to_string),
        ja3: hello.first("tls.handshake.ja3").map(str::to_string),
        ..Connection::default()
    };
    let final_server_hello = frames.iter().rev().find(|f| {
        side(f) == "server"
            && f.handshake_types().contains(&2)
            && f.first("tls.handshake.random")
                .map(|r| r.replace(':', ""))
                .as_deref()
                != Some(HRR_RANDOM)
    });
    if let Some(sh) = final_server_hello {
        // In a frame with a ServerHello, the first version fields are the ServerHello's.
        let version = match sh.first("tls.handshake.extensions.supported_version") {
            Some(v) => v,
            None => sh
                .first("tls.handshake.version")
                .context("ServerHello without a version")?,
        };
        conn.version = Some(version_name(parse_number(version)? as u16));
        let suite = sh
            .first("tls.handshake.ciphersuite")
            .context("ServerHello without a cipher suite")?;
        conn.cipher = Some(names.cipher(parse_number(suite)? as u16));
        conn.ja3s = sh.first("tls.handshake.ja3s").map(str::to_string);
    }
    for f in frames {
        for desc in f.all("tls.alert_message.desc") {
            let name = names.alert(parse_number(desc)? as u8);
            conn.alerts.push((side(f).to_string(), name));
        }
    }
    Ok(Some(conn))
}

/// tlsmon's (and RFC 8446's) version names.
fn version_name(code: u16) -> String {
    match code {
        0x0300 => "SSLv3".to_string(),
        0x0301 => "TLSv1.0".to_string(),
        0x0302 => "TLSv1.1".to_string(),
        0x0303 => "TLSv1.2".to_string(),
        0x0304 => "TLSv1.3".to_string(),
        other => format!("0x{other:04x}"),
    }
}

/// One tshark output line: each field's values.
struct Frame {
    values: HashMap<&'static str, Vec<String>>,
}

impl Frame {
    fn parse(line: &str) -> Self {
        let values = FIELDS
            .iter()
            .zip(line.split('\t'))
            .filter(|(_, v)| !v.is_empty())
            .map(|(field, v)| (*field, v.split('|').map(str::to_string).collect()))
            .collect();
        Frame { values }
    }

    fn first(&self, field: &str) -> Option<&str> {
        self.values
            .get(field)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    fn all(&self, field: &str) -> impl Iterator<Item = &str> {
        self.values
            .get(field)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    fn handshake_types(&self) -> Vec<u64> {
        self.all("tls.handshake.type")
            .filter_map(|t| parse_number(t).ok())
            .collect()
    }
}

/// Decimal or 0x-prefixed hexadecimal, as tshark prints numbers.
fn parse_number(text: &str) -> Result<u64> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.with_context(|| format!("tshark printed {text:?} where a number belongs"))
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("tshark printed non-UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_as_tshark_prints_them() {
        assert_eq!(parse_number("0x1301").unwrap(), 0x1301);
        assert_eq!(parse_number("29").unwrap(), 29);
        assert!(parse_number("x25519").is_err());
    }

    #[test]
    fn splits_fields_and_occurrences() {
        let mut line = vec![""; FIELDS.len()];
        line[0] = "3";
        line[6] = "2|11|12";
        let frame = Frame::parse(&line.join("\t"));
        assert_eq!(frame.first("tcp.stream"), Some("3"));
        assert_eq!(frame.handshake_types(), vec![2, 11, 12]);
        assert_eq!(frame.first("ip.src"), None);
    }

    #[test]
    fn names_versions_like_tlsmon() {
        assert_eq!(version_name(0x0304), "TLSv1.3");
        assert_eq!(version_name(0x0303), "TLSv1.2");
        assert_eq!(version_name(0x7f1c), "0x7f1c");
    }
}
