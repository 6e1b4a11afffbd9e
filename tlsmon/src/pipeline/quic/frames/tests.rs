use super::{for_each_frame, transport_error_name, Frame, FrameError};

fn frames(payload: &[u8]) -> Result<Vec<Frame<'_>>, FrameError> {
    let mut out = Vec::new();
    for_each_frame(payload, |f| out.push(f))?;
    Ok(out)
}

#[test]
fn reads_crypto_and_close_past_padding_ping_and_ack() {
    let payload = [
        0x00, 0x00, 0x01, // padding, padding, ping
        0x02, 0x05, 0x00, 0x01, 0x00, 0x02, 0x01, // ack: 1 extra range
        0x06, 0x40, 0x10, 0x03, b'a', b'b', b'c', // crypto at 16
        0x1c, 0x41, 0x78, 0x06, 0x02, b'n', b'o', // close CRYPTO_ERROR 0x178
    ];
    assert_eq!(
        frames(&payload).unwrap(),
        vec![
            Frame::Crypto {
                offset: 16,
                data: b"abc"
            },
            Frame::ConnectionClose {
                code: 0x178,
                application: false
            },
        ]
    );
}

#[test]
fn lying_lengths_and_unknown_types_are_errors_not_panics() {
    assert_eq!(
        frames(&[0x06, 0x00, 0x05, b'a']),
        Err(FrameError::Truncated)
    );
    assert_eq!(
        frames(&[0x02, 0x00, 0x00, 0x3f, 0x00]),
        Err(FrameError::Truncated)
    );
    assert_eq!(frames(&[0x21]), Err(FrameError::UnknownType(0x21)));
    assert_eq!(frames(&[0x1c, 0x0a]), Err(FrameError::Truncated));
}

#[test]
fn names_transport_errors() {
    assert_eq!(transport_error_name(0x0a), "PROTOCOL_VIOLATION");
    assert_eq!(transport_error_name(0x178), "CRYPTO_ERROR 0x0178");
    assert_eq!(transport_error_name(0x4242), "0x4242");
}
