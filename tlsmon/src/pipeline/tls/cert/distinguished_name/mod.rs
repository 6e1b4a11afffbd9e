//! Distinguished names of certificates as RFC 4514 strings.
//!
//! x509-parser's own `Display` keeps DER order and joins with ", ", which is not the
//! LDAP string form operators compare against `openssl x509 -nameopt RFC2253`
//! output, and its `as_str` reads only four of the string types a name may use. So
//! the values are turned into text here, by their ASN.1 string type: the decodings
//! are one line each (Latin-1, UTF-16, UCS-4), and asn1-rs's own string types would
//! reject T61String bytes that are not UTF-8 and read an odd-length BMPString as if
//! its last byte were a whole character.

use x509_parser::asn1_rs::{Any, Class, Tag, ToDer};
use x509_parser::prelude::X509Name;

/// A distinguished name in RFC 4514 style: last RDN first, RDNs joined by ',',
/// multi-valued RDNs by '+', special characters escaped. Values of a string type are
/// written as text; other values (and strings whose bytes do not decode) as '#' and
/// the hex of their whole DER encoding, tag and length included (RFC 4514 2.4).
pub(in crate::pipeline::tls) fn rfc4514(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let key = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                        .map(str::to_string)
                        .unwrap_or_else(|_| attr.attr_type().to_id_string());
                    format!("{key}={}", value_text(attr.attr_value()))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// An attribute value as RFC 4514 text: the escaped string, or the '#' form.
fn value_text(value: &Any<'_>) -> String {
    match decode_string(value) {
        Some(text) => escape_value(&text),
        None => match value.to_der_vec() {
            Ok(der) => format!("#{}", hex::encode(der)),
            // Writing a parsed value back cannot fail for lengths that parsed;
            // the content bytes alone still say something.
            Err(_) => format!("#{}", hex::encode(value.data)),
        },
    }
}

/// The text of a value of one of the ASN.1 string types, `None` for other types and
/// for bytes that are not valid in their type's encoding.
fn decode_string(value: &Any<'_>) -> Option<String> {
    if value.header.class() != Class::Universal || value.header.is_constructed() {
        return None;
    }
    let bytes = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(bytes).ok().map(str::to_string),
        // T.61 proper is a code with non-spacing accents that certificate issuers
        // do not follow: they put Latin-1 bytes in T61Strings, and OpenSSL reads
        // them so, each byte the code point of the same number. (Wireshark uses
        // the T.61 table, so beyond ASCII its reading differs.)
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        // UCS-2, big-endian; surrogate pairs are decoded, lone ones are invalid.
        Tag::BmpString => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let units = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        // UCS-4, big-endian.
        Tag::UniversalString => {
            if !bytes.len().is_multiple_of(4) {
                return None;
            }
            bytes
                .chunks_exact(4)
                .map(|quad| {
                    char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]))
                })
                .collect()
        }
        _ => None,
    }
}

/// RFC 4514 section 2.4 escaping of an attribute value.
fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
