use super::{CryptoStream, MAX_CRYPTO_BYTES};

fn message(len: usize, fill: u8) -> Vec<u8> {
    let mut m = vec![1, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    m.extend(std::iter::repeat_n(fill, len));
    m
}

#[test]
fn out_of_order_and_repeated_pieces_make_one_message() {
    let m = message(100, 7);
    let mut s = CryptoStream::default();
    s.insert(60, &m[60..]);
    s.insert(20, &m[20..70]);
    assert_eq!(s.next_message(), None);
    s.insert(20, &m[20..70]);
    s.insert(0, &m[..30]);
    assert_eq!(s.next_message(), Some(m));
    assert_eq!(s.next_message(), None);
    assert_eq!(s.cut(), 0);
}

#[test]
fn bytes_past_the_bound_are_cut_and_counted() {
    let mut s = CryptoStream::default();
    s.insert(MAX_CRYPTO_BYTES as u64 - 10, &[0; 30]);
    assert_eq!(s.cut(), 20);
    s.insert(u64::MAX - 5, &[0; 5]);
    assert_eq!(s.cut(), 25);
    assert!(s.held_bytes() <= MAX_CRYPTO_BYTES);
}

#[test]
fn a_message_larger_than_the_bound_is_cut_not_waited_for() {
    let mut s = CryptoStream::default();
    s.insert(0, &[1, 0x01, 0x00, 0x00]);
    assert_eq!(s.next_message(), None);
    assert!(s.cut() > 0);
}
