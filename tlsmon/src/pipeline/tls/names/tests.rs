use super::*;

#[test]
fn names_versions() {
    assert_eq!(version_name(0x0300), "SSLv3");
    assert_eq!(version_name(0x0301), "TLSv1.0");
    assert_eq!(version_name(0x0303), "TLSv1.2");
    assert_eq!(version_name(0x0304), "TLSv1.3");
    assert_eq!(version_name(0x0002), "SSLv2");
    assert_eq!(version_name(0xfefd), "DTLSv1.2");
    assert_eq!(version_name(0x7f1d), "0x7f1d");
}

#[test]
fn tls13_drafts_are_named_as_on_the_wire_and_count_as_tls13() {
    assert_eq!(version_name(0x7f0e), "TLSv1.3-draft14");
    assert_eq!(version_name(0x7f17), "TLSv1.3-draft23");
    assert_eq!(version_name(0x7f1c), "TLSv1.3-draft28");
    assert_eq!(version_name(0x7e01), "TLSv1.3-experiment1");
    assert_eq!(version_name(0x7e02), "TLSv1.3-experiment2");
    for v in (0x7f0e..=0x7f1c).chain([0x7e01, 0x7e02, 0x0304]) {
        assert!(is_tls13_version(v), "{v:#06x}");
        assert!(is_version_name(&version_name(v)), "{v:#06x}");
    }
    for v in [0x0303, 0x7f0d, 0x7f1d, 0x7e00, 0x7e03, 0xfefc] {
        assert!(!is_tls13_version(v), "{v:#06x}");
    }
}

#[test]
fn names_ciphers_from_the_iana_registry() {
    assert_eq!(cipher_name(0x1301), "TLS_AES_128_GCM_SHA256");
    assert_eq!(cipher_name(0x1303), "TLS_CHACHA20_POLY1305_SHA256");
    assert_eq!(cipher_name(0xc02f), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    assert_eq!(cipher_name(0x00ff), "TLS_EMPTY_RENEGOTIATION_INFO_SCSV");
    assert_eq!(cipher_name(0x5600), "TLS_FALLBACK_SCSV");
    assert_eq!(cipher_name(0x2a2a), "GREASE");
    assert_eq!(cipher_name(0xabcd), "0xabcd");
}

#[test]
fn names_groups_including_post_quantum_hybrids() {
    assert_eq!(group_name(29), "x25519");
    assert_eq!(group_name(23), "secp256r1");
    assert_eq!(group_name(0x0100), "ffdhe2048");
    assert_eq!(group_name(0x11ec), "X25519MLKEM768");
    assert_eq!(group_name(0x11eb), "SecP256r1MLKEM768");
    assert_eq!(group_name(0x11ed), "SecP384r1MLKEM1024");
    assert_eq!(group_name(0x0201), "MLKEM768");
    assert_eq!(group_name(0xdada), "GREASE");
    assert_eq!(group_name(0x1a2b), "0x1a2b");
}

#[test]
fn names_alerts() {
    assert_eq!(alert_name(40), "handshake_failure");
    assert_eq!(alert_name(70), "protocol_version");
    assert_eq!(alert_name(112), "unrecognized_name");
    assert_eq!(alert_name(42), "bad_certificate");
    assert_eq!(alert_name(48), "unknown_ca");
    assert_eq!(alert_name(116), "certificate_required");
    assert_eq!(alert_name(0), "close_notify");
    assert_eq!(alert_name(0xff), "0xff");
}

#[test]
fn registered_names_are_told_from_grease_and_hex() {
    // Every code point's name is registered exactly when a table names it.
    let mut registered = [0usize; 3];
    for v in 0..=u16::MAX {
        let known = !is_grease(v);
        let checks = [
            (
                is_version_name(&version_name(v)),
                known && lookup(VERSIONS, v).is_some(),
            ),
            (
                is_cipher_name(&cipher_name(v)),
                known && tls_parser::TlsCipherSuite::from_id(v).is_some(),
            ),
            (
                is_group_name(&group_name(v)),
                known && lookup(GROUPS, v).is_some(),
            ),
        ];
        for (i, (got, want)) in checks.into_iter().enumerate() {
            assert_eq!(got, want, "code point {v:#06x}, registry {i}");
            registered[i] += usize::from(got);
        }
    }
    // Distinct code points have distinct names, so the registered names are as
    // many as the tables' entries.
    assert_eq!(
        registered,
        [VERSIONS.len(), tls_parser::CIPHERS.len(), GROUPS.len()]
    );
    let alerts = (0..=u8::MAX)
        .filter(|&d| is_alert_name(&alert_name(d)))
        .count();
    assert_eq!(alerts, ALERTS.len());
    for not_registered in ["GREASE", "0x7f1d", "0xabcd", "0x63", "", "other", "unknown"] {
        assert!(!is_version_name(not_registered));
        assert!(!is_cipher_name(not_registered));
        assert!(!is_group_name(not_registered));
        assert!(!is_alert_name(not_registered));
    }
    assert_eq!(version_name(0x3a3a), GREASE);
}

#[test]
fn grease_is_exactly_the_sixteen_rfc8701_values() {
    let all: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
    let expected: Vec<u16> = (0..16u16)
        .map(|i| (i << 12) | 0x0a00 | (i << 4) | 0x0a)
        .collect();
    assert_eq!(all, expected);
    assert!(is_grease(0x0a0a) && is_grease(0xfafa));
    assert!(!is_grease(0x0a1a));
}
