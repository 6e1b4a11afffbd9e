use super::*;

#[test]
fn ecdhe_server_key_exchange_names_its_curve() {
    // curve_type named_curve (3), x25519 (29), then a 1-byte point.
    let body = [3, 0, 29, 1, 0x42];
    assert_eq!(server_key_exchange_group(&body, Some(0xc02f)), Some(29));
    // DHE suite: the body is DH parameters, no named curve.
    assert_eq!(server_key_exchange_group(&body, Some(0x009e)), None);
    assert_eq!(server_key_exchange_group(&body, None), None);
    assert_eq!(server_key_exchange_group(&[3], Some(0xc02f)), None);
}

#[test]
fn empty_or_garbage_certificate_gives_none() {
    let none = |n| LeafPrefix::Decided(None, n);
    assert_eq!(leaf_from_prefix(&[0, 0, 0], true, 100), none(3));
    // An empty chain is known from its length alone.
    assert_eq!(leaf_from_prefix(&[0, 0, 0], false, 100), none(3));
    // The leaf's length runs past the chain's.
    assert_eq!(
        leaf_from_prefix(&[0, 0, 4, 0, 0, 2, 1, 2], true, 100),
        none(6)
    );
    assert_eq!(
        leaf_from_prefix(&[0, 0, 5, 0, 0, 3, 1, 2], false, 100),
        none(6)
    );
    assert_eq!(leaf_from_prefix(&[], true, 100), none(0));
    assert_eq!(leaf_from_prefix(&[0, 1], true, 100), none(2));
    // Lengths that hold together around bytes that are not a certificate.
    assert_eq!(
        leaf_from_prefix(&[0, 0, 5, 0, 0, 2, 1, 2], false, 100),
        none(8)
    );
    // A leaf longer than allowed is not waited for.
    assert_eq!(leaf_from_prefix(&[0, 1, 5, 0, 1, 2], false, 100), none(6));
}

#[test]
fn the_leaf_is_decided_from_the_first_bytes_only() {
    // A chain announced as 1 MiB whose leaf is 3 bytes: 9 bytes decide it.
    let body = [0x10, 0, 0, 0, 0, 3, 0x30, 0x01, 0x00];
    assert_eq!(
        leaf_from_prefix(&[0x10, 0], false, 100),
        LeafPrefix::NeedMore
    );
    assert_eq!(
        leaf_from_prefix(&body[..7], false, 100),
        LeafPrefix::NeedMore
    );
    // The body ended before the leaf did.
    assert_eq!(
        leaf_from_prefix(&body[..7], true, 100),
        LeafPrefix::Decided(None, 7)
    );
    assert_eq!(
        leaf_from_prefix(&body, false, 100),
        LeafPrefix::Decided(None, 9)
    );
}
