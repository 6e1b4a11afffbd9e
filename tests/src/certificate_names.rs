//! The subject and issuer of each leaf certificate in a capture, as tshark decodes
//! them, written as RFC 4514 strings: an independent reading of the names tlsmon
//! reports in `server_cert`.
//!
//! tshark's JSON tree (`--no-duplicate-keys`, so repeated fields become arrays)
//! holds each RDN's attribute type (`x509if.oid`) and its value under the field of
//! its string type (`x509sat.teletexString`, `x509sat.bmpString`, ...). The names
//! are put together here: last RDN first, RFC 4514 escaping, the usual short names
//! for the attribute types tlsmon's tests use.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::process::run_checked;

/// Short names (RFC 4514 and OpenSSL's) of attribute types, by OID.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    // emailAddress: tlsmon keeps x509-parser's abbreviation.
    ("1.2.840.113549.1.9.1", "Email"),
];

/// A leaf certificate's names as tshark shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafNames {
    /// The TCP port of the client the certificate was sent to.
    pub client_port: u16,
    /// Subject, RFC 4514.
    pub subject: String,
    /// Issuer, RFC 4514.
    pub issuer: String,
}

/// The leaf (first) certificate of every Certificate message the server side sent
/// in `capture` (TLS 1.2 and older), in capture order.
pub fn leaf_names(capture: &Path) -> Result<Vec<LeafNames>> {
    let out = run_checked(
        Command::new("tshark")
            .arg("-r")
            .arg(capture)
            .args(["-Y", "tls.handshake.type == 11", "-T", "json"])
            .arg("--no-duplicate-keys"),
    )?;
    let frames: Value = serde_json::from_slice(&out.stdout).context("tshark printed no JSON")?;
    let mut found = Vec::new();
    for frame in frames.as_array().context("tshark JSON is not a list")? {
        let layers = &frame["_source"]["layers"];
        let client_port = layers["tcp"]["tcp.dstport"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .context("a Certificate frame without a TCP port")?;
        let Some(certificate) = first_certificate(&layers["tls"]) else {
            bail!("tshark shows a Certificate message but no certificate in it");
        };
        let tbs = &certificate["x509af.signedCertificate_element"];
        found.push(LeafNames {
            client_port,
            subject: rfc4514(&tbs["x509af.subject_tree"])?,
            issuer: rfc4514(&tbs["x509af.issuer_tree"])?,
        });
    }
    Ok(found)
}

/// The first `tls.handshake.certificate_tree` under `tree`, depth first.
fn first_certificate(tree: &Value) -> Option<&Value> {
    match tree {
        Value::Object(map) => {
            if let Some(certs) = map.get("tls.handshake.certificate_tree") {
                return Some(first(certs));
            }
            map.values().find_map(first_certificate)
        }
        Value::Array(items) => items.iter().find_map(first_certificate),
        _ => None,
    }
}

/// The first element of an array, or the value itself.
fn first(value: &Value) -> &Value {
    match value {
        Value::Array(items) => items.first().unwrap_or(&Value::Null),
        other => other,
    }
}

/// Values of a field that may occur once (a value) or several times (an array).
fn each(value: Option<&Value>) -> Vec<&Value> {
    match value {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
    }
}

/// A Name subtree (`x509af.subject_tree` / `x509af.issuer_tree`) as RFC 4514.
fn rfc4514(name: &Value) -> Result<String> {
    let map = name.as_object().context("a name without a tree")?;
    // tshark calls the sequence x509if.rdnSequence in issuers, x509af.rdnSequence
    // in subjects.
    let sequence = map
        .iter()
        .find(|(k, _)| k.ends_with("rdnSequence_tree"))
        .map(|(_, v)| v)
        .context("a name without an RDN sequence")?;
    let mut rdns = Vec::new();
    for rdn in each(sequence.get("x509if.RDNSequence_item_tree")) {
        let mut attributes = Vec::new();
        for attribute in each(rdn.get("x509if.RelativeDistinguishedName_item_element")) {
            let oid = attribute["x509if.oid"]
                .as_str()
                .context("an attribute without a type")?;
            let key = SHORT_NAMES
                .iter()
                .find(|(o, _)| *o == oid)
                .map_or(oid, |(_, short)| short);
            let value = string_value(attribute).with_context(|| format!("attribute {oid}"))?;
            attributes.push(format!("{key}={}", escape(&value)));
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// The decoded string of an attribute, under whichever x509sat string field it is.
fn string_value(tree: &Value) -> Result<String> {
    match tree {
        Value::Object(map) => {
            for (key, value) in map {
                if key.starts_with("x509sat.") && !key.ends_with("_tree") {
                    if let Some(text) = value.as_str().filter(|_| key != "x509sat.DirectoryString")
                    {
                        return Ok(text.to_string());
                    }
                }
                if let Ok(text) = string_value(value) {
                    return Ok(text);
                }
            }
            bail!("no string value")
        }
        _ => bail!("no string value"),
    }
}

/// RFC 4514 section 2.4 escaping.
fn escape(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(*c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == chars.len() => out.push_str("\\ "),
            _ => out.push(*c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_rfc4514_from_tsharks_tree() {
        let issuer = json!({
            "x509if.rdnSequence_tree": {
                "x509if.RDNSequence_item_tree": [
                    {"x509if.RelativeDistinguishedName_item_element": {
                        "x509if.oid": "2.5.4.10",
                        "x509sat.DirectoryString_tree": {"x509sat.teletexString": "A, B"}}},
                    {"x509if.RelativeDistinguishedName_item_element": {
                        "x509if.oid": "1.2.840.113549.1.9.1",
                        "x509sat.IA5String": "ca@x.test"}}
                ]
            }
        });
        assert_eq!(rfc4514(&issuer).unwrap(), "Email=ca@x.test,O=A\\, B");
    }
}
