use super::*;

fn parse_list(s: &str, radix: u32) -> Vec<u16> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split([',', '-'])
        .map(|v| u16::from_str_radix(v, radix).unwrap())
        .collect()
}

/// Salesforce's ja3 README example string and hash.
#[test]
fn ja3_matches_the_salesforce_readme_example() {
    let f = ClientHelloFields {
        legacy_version: 769,
        supported_versions: &[],
        cipher_suites: &parse_list("47-53-5-10-49161-49162-49171-49172-50-56-19-4", 10),
        extensions: &[0, 10, 11],
        supported_groups: &[23, 24, 25],
        ec_point_formats: &[0],
        signature_algorithms: &[],
        first_alpn: None,
    };
    assert_eq!(
        ja3_string(&f),
        "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
    );
    assert_eq!(ja3(&f), "ada70206e40642a3e4461f35503241d5");
}

/// FoxIO's JA4 technical details example: the original-order raw fingerprint
/// (`JA4_ro`) rebuilt into fields, with GREASE sprinkled in, must give the
/// published `t13d1516h2_8daaf6152771_e5627efa2ab1`.
#[test]
fn ja4_matches_the_foxio_specification_example() {
    let ciphers = parse_list(
        "0a0a,1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
        16,
    );
    let extensions = parse_list(
        "1a1a,001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015,fafa",
        16,
    );
    let sigalgs = parse_list("0403,0804,0401,0503,0805,0501,0806,0601", 16);
    let f = ClientHelloFields {
        legacy_version: 0x0303,
        supported_versions: &[0x3a3a, 0x0304, 0x0303],
        cipher_suites: &ciphers,
        extensions: &extensions,
        supported_groups: &[],
        ec_point_formats: &[],
        signature_algorithms: &sigalgs,
        first_alpn: Some(b"h2"),
    };
    assert_eq!(ja4(&f), "t13d1516h2_8daaf6152771_e5627efa2ab1");
}

/// FoxIO's example of an extension hash without signature algorithms.
#[test]
fn ja4_extension_hash_without_signature_algorithms() {
    let extensions = parse_list(
        "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015",
        16,
    );
    let f = ClientHelloFields {
        legacy_version: 0x0303,
        supported_versions: &[],
        cipher_suites: &[],
        extensions: &extensions,
        supported_groups: &[],
        ec_point_formats: &[],
        signature_algorithms: &[],
        first_alpn: None,
    };
    assert_eq!(ja4(&f), "t12d001600_000000000000_6d807ffa2a79");
}

/// A real Chrome 143 ClientHello as published by browserleaks (its `ja4_r` and
/// `ja3_text` agree with its `ja4` and `ja3_hash`): a second known-answer test that
/// covers X25519MLKEM768 (4588) and ECH (fe0d).
#[test]
fn ja4_and_ja3_match_a_published_chrome_hello() {
    let ciphers = parse_list(
        "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
        16,
    );
    let extensions = parse_list(
        "002d,0033,0010,fe0d,0017,44cd,0000,000b,000a,002b,ff01,0023,0012,0005,000d,001b",
        16,
    );
    let sigalgs = parse_list("0403,0804,0401,0503,0805,0501,0806,0601", 16);
    let f = ClientHelloFields {
        legacy_version: 771,
        supported_versions: &[0x0304, 0x0303],
        cipher_suites: &ciphers,
        extensions: &extensions,
        supported_groups: &[4588, 29, 23, 24],
        ec_point_formats: &[0],
        signature_algorithms: &sigalgs,
        first_alpn: Some(b"h2"),
    };
    assert_eq!(ja4(&f), "t13d1516h2_8daaf6152771_d8a2da3f94cd");
    assert_eq!(
        ja3_string(&f),
        "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,\
         45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0"
    );
    assert_eq!(ja3(&f), "98487aa16281980e7d1120d399efb6a4");
}

#[test]
fn ja4_alpn_rules_from_the_specification() {
    assert_eq!(ja4_alpn(None), "00");
    assert_eq!(ja4_alpn(Some(b"")), "00");
    assert_eq!(ja4_alpn(Some(b"h2")), "h2");
    assert_eq!(ja4_alpn(Some(b"http/1.1")), "h1");
    assert_eq!(ja4_alpn(Some(b"x")), "xx");
    assert_eq!(ja4_alpn(Some(&[0xab])), "ab");
    assert_eq!(ja4_alpn(Some(&[0xab, 0xcd])), "ad");
    assert_eq!(ja4_alpn(Some(&[0x30, 0xab])), "3b");
    assert_eq!(ja4_alpn(Some(&[0x30, 0x31, 0xab, 0xcd])), "3d");
    assert_eq!(ja4_alpn(Some(&[0x30, 0xab, 0xcd, 0x31])), "01");
}

#[test]
fn ja4_counts_cap_at_99_and_empty_lists_hash_to_zeros() {
    let many: Vec<u16> = (1..=120).collect();
    let f = ClientHelloFields {
        legacy_version: 0x0301,
        supported_versions: &[],
        cipher_suites: &many,
        extensions: &[],
        supported_groups: &[],
        ec_point_formats: &[],
        signature_algorithms: &[],
        first_alpn: None,
    };
    let fp = ja4(&f);
    assert!(fp.starts_with("t10i990000_"), "{fp}");
    assert!(fp.ends_with("_000000000000"), "{fp}");
    let none = ClientHelloFields {
        cipher_suites: &[],
        ..f
    };
    assert_eq!(ja4(&none), "t10i000000_000000000000_000000000000");
}

#[test]
fn ja3s_joins_version_cipher_and_extensions() {
    assert_eq!(ja3s_string(771, 4865, &[43, 51]), "771,4865,43-51");
    assert_eq!(ja3s(771, 4865, &[43, 51]), md5_hex("771,4865,43-51"));
    assert_eq!(ja3s_string(769, 47, &[]), "769,47,");
}

/// The specification's "TLS and DTLS Version" and "SNI" rules: the highest
/// supported_versions value, GREASE ignored, else the ClientHello's version;
/// 2-character codes including SSL 3.0 ("s3") and unknown values ("00"); "d"
/// when the SNI extension exists, "i" when it does not.
#[test]
fn ja4_version_and_sni_rules_from_the_specification() {
    let base = ClientHelloFields {
        legacy_version: 0x0303,
        supported_versions: &[0x0a0a, 0x0303, 0x0304, 0xfafa],
        cipher_suites: &[0x1301],
        extensions: &[0x002b],
        supported_groups: &[],
        ec_point_formats: &[],
        signature_algorithms: &[],
        first_alpn: None,
    };
    assert!(ja4(&base).starts_with("t13i0101"), "{}", ja4(&base));
    // Only GREASE in supported_versions: the ClientHello's version counts.
    let grease_only = ClientHelloFields {
        supported_versions: &[0x1a1a],
        ..base
    };
    assert!(
        ja4(&grease_only).starts_with("t12i"),
        "{}",
        ja4(&grease_only)
    );
    let ssl3 = ClientHelloFields {
        legacy_version: 0x0300,
        supported_versions: &[],
        ..base
    };
    assert!(ja4(&ssl3).starts_with("ts3i"), "{}", ja4(&ssl3));
    let unknown = ClientHelloFields {
        supported_versions: &[0x7f1c],
        ..base
    };
    assert!(ja4(&unknown).starts_with("t00i"), "{}", ja4(&unknown));
    // SNI present: "d"; it is counted among the extensions but left out of the
    // extension hash, as ALPN is.
    let with_sni = ClientHelloFields {
        extensions: &[0x0000, 0x002b, 0x0010],
        first_alpn: Some(b"h2"),
        ..base
    };
    let fp = ja4(&with_sni);
    assert!(fp.starts_with("t13d0103h2_"), "{fp}");
    assert_eq!(fp.rsplit('_').next(), ja4(&base).rsplit('_').next());
}
