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
    assert_eq!(leaf_certificate(&[0, 0, 0]), None);
    assert_eq!(leaf_certificate(&[0, 0, 5, 0, 0, 2, 1, 2]), None);
    assert_eq!(leaf_certificate(&[]), None);
}
