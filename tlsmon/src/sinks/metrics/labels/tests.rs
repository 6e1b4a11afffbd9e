use super::*;

#[test]
fn admits_first_k_then_folds() {
    let cap = LabelCap::new(2);
    assert_eq!(cap.admit("a"), Admission::Kept("a".into()));
    assert_eq!(cap.admit("b"), Admission::Kept("b".into()));
    assert_eq!(cap.admit("c"), Admission::Folded);
    assert_eq!(cap.admit("c").value(), OTHER);
    // Already admitted values stay admitted.
    assert_eq!(cap.admit("a"), Admission::Kept("a".into()));
    // Empty and "other" never take a slot.
    assert_eq!(cap.admit(""), Admission::Kept(String::new()));
    assert_eq!(cap.admit(OTHER), Admission::Kept(OTHER.into()));
}

#[test]
fn zero_limit_folds_everything_but_empty() {
    let cap = LabelCap::new(0);
    assert_eq!(cap.admit("x"), Admission::Folded);
    assert_eq!(cap.admit(""), Admission::Kept(String::new()));
}

#[test]
fn admitted_values_are_escaped_and_escaped_forms_share_a_slot() {
    let cap = LabelCap::new(1);
    assert_eq!(
        cap.admit("evil\x1b[2J\0.example"),
        Admission::Kept(r"evil\x1b[2J\x00.example".into())
    );
    // The same value again is the same (escaped) admitted value.
    assert_eq!(
        cap.admit("evil\x1b[2J\0.example").value(),
        r"evil\x1b[2J\x00.example"
    );
    assert_eq!(cap.admit("b"), Admission::Folded);
}

#[test]
fn long_values_are_cut_before_escaping() {
    let cap = LabelCap::new(1);
    let Admission::Kept(v) = cap.admit(&"\x1b".repeat(300)) else {
        panic!("first value must be kept")
    };
    // 255 ESC characters, each written as four bytes; no escape cut in half.
    assert_eq!(v, r"\x1b".repeat(255));
}

#[test]
fn registered_names_are_kept_everything_else_is_unknown() {
    use RegistryLabel::*;
    let cases = [
        (Version, "TLSv1.3", "TLSv1.3"),
        (Version, "SSLv3", "SSLv3"),
        (Version, "0x7f1d", UNKNOWN),
        (Version, "GREASE", UNKNOWN),
        (
            Cipher,
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        (Cipher, "TLS_FALLBACK_SCSV", "TLS_FALLBACK_SCSV"),
        (Cipher, "0xabcd", UNKNOWN),
        (Cipher, "GREASE", UNKNOWN),
        (Cipher, "other", UNKNOWN),
        (Group, "X25519MLKEM768", "X25519MLKEM768"),
        (Group, "0x1a2b", UNKNOWN),
        (Alert, "handshake_failure", "handshake_failure"),
        (Alert, "0x63", UNKNOWN),
        (Alert, "\x1b[2J", UNKNOWN),
        (Cipher, "", ""),
    ];
    for (label, name, value) in cases {
        assert_eq!(label.value(name), value, "{label:?} {name:?}");
    }
}

#[test]
fn long_values_are_cut_on_a_char_boundary() {
    let long = "é".repeat(200); // 400 bytes
    let cap = LabelCap::new(1);
    let Admission::Kept(v) = cap.admit(&long) else {
        panic!("first value must be kept")
    };
    assert_eq!(v.len(), 254);
    assert!(long.starts_with(&v));
}
