use super::Reader;

#[test]
fn reads_the_rfc_9000_sample_varints() {
    // RFC 9000 appendix A.1.
    let cases: [(&[u8], u64); 4] = [
        (
            &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
            151_288_809_941_952_652,
        ),
        (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
        (&[0x7b, 0xbd], 15_293),
        (&[0x25], 37),
    ];
    for (bytes, want) in cases {
        let mut r = Reader::new(bytes);
        assert_eq!(r.varint(), Some(want));
        assert!(r.is_empty());
    }
}

#[test]
fn a_cut_varint_reads_as_none_and_consumes_nothing() {
    let mut r = Reader::new(&[0x9d, 0x7f]);
    assert_eq!(r.varint(), None);
    assert_eq!(r.pos(), 0);
    assert_eq!(r.take(3), None);
    assert_eq!(r.take(usize::MAX), None);
}
