use x509_parser::prelude::{FromDer, X509Name};

use super::*;

/// A Name (SEQUENCE OF RDN) with one single-valued RDN per `(oid, tag, content)`.
fn name_der(attributes: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        assert!(content.len() < 128, "short-form lengths only");
        let mut out = vec![tag, content.len() as u8];
        out.extend_from_slice(content);
        out
    }
    let mut rdns = Vec::new();
    for (oid, tag, content) in attributes {
        let mut attr = tlv(0x06, oid);
        attr.extend(tlv(*tag, content));
        rdns.extend(tlv(0x31, &tlv(0x30, &attr)));
    }
    tlv(0x30, &rdns)
}

/// id-at-commonName (2.5.4.3) and id-at-organizationName (2.5.4.10).
const CN: &[u8] = &[0x55, 0x04, 0x03];
const O: &[u8] = &[0x55, 0x04, 0x0a];

fn printed(attributes: &[(&[u8], u8, &[u8])]) -> String {
    let der = name_der(attributes);
    let (rest, name) = X509Name::from_der(&der).expect("test name parses");
    assert!(rest.is_empty());
    rfc4514(&name)
}

#[test]
fn escapes_rfc4514_specials() {
    assert_eq!(escape_value("a,b+c"), "a\\,b\\+c");
    assert_eq!(escape_value("#x "), "\\#x\\ ");
    assert_eq!(escape_value(" lead"), "\\ lead");
    assert_eq!(escape_value("plain.example"), "plain.example");
}

#[test]
fn last_rdn_comes_first() {
    assert_eq!(
        printed(&[(O, 0x13, b"Example Org"), (CN, 0x0c, b"host.example")]),
        "CN=host.example,O=Example Org"
    );
}

#[test]
fn every_string_type_prints_as_text() {
    // PrintableString, UTF8String, IA5String, VisibleString, NumericString.
    assert_eq!(printed(&[(CN, 0x13, b"Root CA")]), "CN=Root CA");
    assert_eq!(printed(&[(CN, 0x0c, "Zürich €".as_bytes())]), "CN=Zürich €");
    assert_eq!(printed(&[(CN, 0x16, b"ca@example")]), "CN=ca@example");
    assert_eq!(printed(&[(CN, 0x1a, b"visible")]), "CN=visible");
    assert_eq!(printed(&[(CN, 0x12, b"0123 45")]), "CN=0123 45");
    // T61String (TeletexString), read as Latin-1: 0xfc is 'ü'.
    assert_eq!(printed(&[(CN, 0x14, b"M\xfcller CA")]), "CN=Müller CA");
    assert_eq!(printed(&[(CN, 0x14, b"ROOT")]), "CN=ROOT");
    // BMPString: UTF-16BE, a surrogate pair included (U+1F512).
    assert_eq!(
        printed(&[(CN, 0x1e, b"\x00Z\x00\xfc\xd8\x3d\xdd\x12")]),
        "CN=Zü\u{1f512}"
    );
    // UniversalString: UCS-4 big-endian.
    assert_eq!(
        printed(&[(CN, 0x1c, b"\x00\x00\x00A\x00\x00\x20\xac")]),
        "CN=A€"
    );
}

#[test]
fn decoded_strings_are_escaped() {
    assert_eq!(printed(&[(CN, 0x14, b"#a,b")]), "CN=\\#a\\,b");
    assert_eq!(printed(&[(CN, 0x1e, b"\x00 \x00x")]), "CN=\\ x");
}

#[test]
fn values_that_are_not_strings_print_their_whole_encoding() {
    // An INTEGER: '#', then tag, length and content.
    assert_eq!(printed(&[(CN, 0x02, &[0x01, 0x00])]), "CN=#02020100");
    // An OCTET STRING is not a character string either.
    assert_eq!(printed(&[(CN, 0x04, b"ab")]), "CN=#04026162");
}

#[test]
fn strings_whose_bytes_do_not_decode_print_their_whole_encoding() {
    // Odd-length BMPString, a lone surrogate, a UCS-4 value beyond Unicode,
    // and a UTF8String that is not UTF-8.
    assert_eq!(printed(&[(CN, 0x1e, b"\x00A\x00")]), "CN=#1e03004100");
    assert_eq!(printed(&[(CN, 0x1e, b"\xd8\x00")]), "CN=#1e02d800");
    assert_eq!(
        printed(&[(CN, 0x1c, b"\x00\x11\x00\x00")]),
        "CN=#1c0400110000"
    );
    assert_eq!(printed(&[(CN, 0x0c, b"\xff")]), "CN=#0c01ff");
}
