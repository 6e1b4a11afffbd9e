//! TLS fingerprints: JA3 and JA3S (Salesforce) and JA4 (FoxIO, client only).
//!
//! JA3: MD5 of `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`,
//! decimal values joined by '-', GREASE left out. JA3S: MD5 of
//! `SSLVersion,Cipher,Extensions`. JA4 follows FoxIO's published JA4 specification
//! (BSD-3-Clause). JA4S and the rest of JA4+ are under a licence that forbids
//! commercial use and are deliberately not implemented.

use md5::{Digest as _, Md5};
use sha2::Sha256;
use std::fmt::Write as _;

use super::names::is_grease;

/// Inputs of the JA3 and JA4 client fingerprints, as they appear on the wire
/// (GREASE may still be present; it is removed here).
#[derive(Clone, Copy, Debug)]
pub struct ClientHelloFields<'a> {
    /// ClientHello `legacy_version`.
    pub legacy_version: u16,
    /// supported_versions extension values.
    pub supported_versions: &'a [u16],
    /// Cipher suites in wire order.
    pub cipher_suites: &'a [u16],
    /// Extension types in wire order.
    pub extensions: &'a [u16],
    /// supported_groups values in wire order.
    pub supported_groups: &'a [u16],
    /// ec_point_formats values.
    pub ec_point_formats: &'a [u8],
    /// signature_algorithms values in wire order.
    pub signature_algorithms: &'a [u16],
    /// Raw bytes of the first ALPN protocol name, if any.
    pub first_alpn: Option<&'a [u8]>,
}

/// The JA3 string (before hashing): `771,4865-4866,0-23,29-23,0`.
pub fn ja3_string(f: &ClientHelloFields<'_>) -> String {
    let points: Vec<u16> = f.ec_point_formats.iter().map(|&p| u16::from(p)).collect();
    format!(
        "{},{},{},{},{}",
        f.legacy_version,
        decimal_list(f.cipher_suites),
        decimal_list(f.extensions),
        decimal_list(f.supported_groups),
        decimal_list(&points)
    )
}

/// JA3 fingerprint: MD5 hex of [`ja3_string`].
pub fn ja3(f: &ClientHelloFields<'_>) -> String {
    md5_hex(&ja3_string(f))
}

/// The JA3S string (before hashing): `SSLVersion,Cipher,Extensions`.
pub fn ja3s_string(legacy_version: u16, cipher: u16, extensions: &[u16]) -> String {
    format!("{legacy_version},{cipher},{}", decimal_list(extensions))
}

/// JA3S fingerprint: MD5 hex of [`ja3s_string`].
pub fn ja3s(legacy_version: u16, cipher: u16, extensions: &[u16]) -> String {
    md5_hex(&ja3s_string(legacy_version, cipher, extensions))
}

/// JA4 fingerprint of a ClientHello sent over TCP, e.g.
/// `t13d1516h2_8daaf6152771_e5627efa2ab1`.
pub fn ja4(f: &ClientHelloFields<'_>) -> String {
    let ciphers: Vec<u16> = no_grease(f.cipher_suites);
    let extensions: Vec<u16> = no_grease(f.extensions);
    let sigalgs: Vec<u16> = no_grease(f.signature_algorithms);

    let version = f
        .supported_versions
        .iter()
        .copied()
        .filter(|&v| !is_grease(v))
        .max()
        .unwrap_or(f.legacy_version);
    let sni = if extensions.contains(&0x0000) {
        'd'
    } else {
        'i'
    };
    let part_a = format!(
        "t{}{sni}{:02}{:02}{}",
        ja4_version(version),
        ciphers.len().min(99),
        extensions.len().min(99),
        ja4_alpn(f.first_alpn)
    );

    let mut sorted_ciphers = ciphers;
    sorted_ciphers.sort_unstable();
    let part_b = if sorted_ciphers.is_empty() {
        EMPTY_HASH.to_string()
    } else {
        sha256_12(&hex_list(&sorted_ciphers))
    };

    let mut sorted_extensions: Vec<u16> = extensions
        .into_iter()
        .filter(|&e| e != 0x0000 && e != 0x0010)
        .collect();
    sorted_extensions.sort_unstable();
    let part_c = if sorted_extensions.is_empty() {
        EMPTY_HASH.to_string()
    } else if sigalgs.is_empty() {
        sha256_12(&hex_list(&sorted_extensions))
    } else {
        sha256_12(&format!(
            "{}_{}",
            hex_list(&sorted_extensions),
            hex_list(&sigalgs)
        ))
    };
    format!("{part_a}_{part_b}_{part_c}")
}

/// What JA4 prints for an empty list instead of hashing nothing.
const EMPTY_HASH: &str = "000000000000";

/// JA4's two-character version code; "00" when unknown.
fn ja4_version(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// JA4's ALPN characters: first and last character of the first protocol, "00" when
/// absent or empty, and the first and last hex digit when either end byte is not
/// ASCII alphanumeric.
fn ja4_alpn(first: Option<&[u8]>) -> String {
    let Some((&head, rest)) = first.and_then(|p| p.split_first()) else {
        return "00".to_string();
    };
    let tail = rest.last().copied().unwrap_or(head);
    if head.is_ascii_alphanumeric() && tail.is_ascii_alphanumeric() {
        format!("{}{}", char::from(head), char::from(tail))
    } else {
        let hex = hex::encode([head, tail]);
        // First hex digit of the first byte, last hex digit of the last byte.
        format!("{}{}", &hex[0..1], &hex[3..4])
    }
}

fn no_grease(values: &[u16]) -> Vec<u16> {
    values.iter().copied().filter(|&v| !is_grease(v)).collect()
}

// Both lists are built in one String: a String per value made these two functions
// a fifth of `analyze`'s time on the benchmark capture.

fn decimal_list(values: &[u16]) -> String {
    let mut out = String::with_capacity(values.len() * 6);
    for &v in values.iter().filter(|&&v| !is_grease(v)) {
        if !out.is_empty() {
            out.push('-');
        }
        let _ = write!(out, "{v}");
    }
    out
}

fn hex_list(values: &[u16]) -> String {
    let mut out = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v:04x}");
    }
    out
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn sha256_12(s: &str) -> String {
    let mut full = hex::encode(Sha256::digest(s.as_bytes()));
    full.truncate(12);
    full
}

#[cfg(test)]
mod tests;
