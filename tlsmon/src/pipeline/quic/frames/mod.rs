//! Frames of a decrypted Initial packet (RFC 9000 section 19): CRYPTO and
//! CONNECTION_CLOSE are kept, PADDING, PING and ACK are read past, and every other
//! frame type is skipped by its encoding.

use super::varint::Reader;

/// A frame tlsmon acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Bytes of the TLS handshake at `offset` in this packet space's CRYPTO stream.
    Crypto {
        /// Stream offset of `data`.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// The sender closes the connection.
    ConnectionClose {
        /// Error code (a transport code for 0x1c, an application code for 0x1d).
        code: u64,
        /// True for the application variant (0x1d).
        application: bool,
    },
}

/// A frame that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A field runs past the end of the packet.
    #[error("frame truncated")]
    Truncated,
    /// A frame type not defined by RFC 9000 or RFC 9221 (its length is unknown).
    #[error("unknown frame type 0x{0:x}")]
    UnknownType(u64),
}

/// Reads every frame of `payload`, calling `each` with the ones tlsmon acts on.
pub fn for_each_frame<'a>(
    payload: &'a [u8],
    mut each: impl FnMut(Frame<'a>),
) -> Result<(), FrameError> {
    let mut r = Reader::new(payload);
    while !r.is_empty() {
        let frame_type = r.varint().ok_or(FrameError::Truncated)?;
        if let Some(frame) = read_frame(frame_type, &mut r)? {
            each(frame);
        }
    }
    Ok(())
}

/// Reads the body of one frame of `frame_type`.
fn read_frame<'a>(frame_type: u64, r: &mut Reader<'a>) -> Result<Option<Frame<'a>>, FrameError> {
    let t = FrameError::Truncated;
    match frame_type {
        // PADDING, PING, HANDSHAKE_DONE: the type is the whole frame.
        0x00 | 0x01 | 0x1e => {}
        // ACK and ACK with ECN counts.
        0x02 | 0x03 => {
            let _largest = r.varint().ok_or(t)?;
            let _delay = r.varint().ok_or(t)?;
            let ranges = r.varint().ok_or(t)?;
            let _first = r.varint().ok_or(t)?;
            // Each range is at least two bytes: a count past what is left lies.
            if ranges > r.remaining() as u64 {
                return Err(t);
            }
            for _ in 0..ranges {
                r.varint().ok_or(t)?;
                r.varint().ok_or(t)?;
            }
            if frame_type == 0x03 {
                for _ in 0..3 {
                    r.varint().ok_or(t)?;
                }
            }
        }
        // RESET_STREAM: stream id, error code, final size.
        0x04 => skip_varints(r, 3)?,
        // STOP_SENDING: stream id, error code.
        0x05 => skip_varints(r, 2)?,
        0x06 => {
            let offset = r.varint().ok_or(t)?;
            let data = r.take_varint_len().ok_or(t)?;
            return Ok(Some(Frame::Crypto { offset, data }));
        }
        // NEW_TOKEN.
        0x07 => {
            r.take_varint_len().ok_or(t)?;
        }
        // STREAM with its OFF (0x04), LEN (0x02) and FIN (0x01) bits.
        0x08..=0x0f => {
            r.varint().ok_or(t)?;
            if frame_type & 0x04 != 0 {
                r.varint().ok_or(t)?;
            }
            if frame_type & 0x02 != 0 {
                r.take_varint_len().ok_or(t)?;
            } else {
                r.rest();
            }
        }
        // MAX_DATA, MAX_STREAMS (2), DATA_BLOCKED, STREAMS_BLOCKED (2),
        // RETIRE_CONNECTION_ID: one integer.
        0x10 | 0x12 | 0x13 | 0x14 | 0x16 | 0x17 | 0x19 => skip_varints(r, 1)?,
        // MAX_STREAM_DATA, STREAM_DATA_BLOCKED: two integers.
        0x11 | 0x15 => skip_varints(r, 2)?,
        // NEW_CONNECTION_ID: sequence, retire prior to, CID, 16-byte reset token.
        0x18 => {
            skip_varints(r, 2)?;
            let len = usize::from(r.u8().ok_or(t)?);
            r.take(len).ok_or(t)?;
            r.take(16).ok_or(t)?;
        }
        // PATH_CHALLENGE, PATH_RESPONSE: 8 bytes.
        0x1a | 0x1b => {
            r.take(8).ok_or(t)?;
        }
        0x1c | 0x1d => {
            let code = r.varint().ok_or(t)?;
            if frame_type == 0x1c {
                let _frame_type = r.varint().ok_or(t)?;
            }
            let _reason = r.take_varint_len().ok_or(t)?;
            let application = frame_type == 0x1d;
            return Ok(Some(Frame::ConnectionClose { code, application }));
        }
        // DATAGRAM (RFC 9221) without and with a length.
        0x30 => {
            r.rest();
        }
        0x31 => {
            r.take_varint_len().ok_or(t)?;
        }
        other => return Err(FrameError::UnknownType(other)),
    }
    Ok(None)
}

fn skip_varints(r: &mut Reader<'_>, n: usize) -> Result<(), FrameError> {
    for _ in 0..n {
        r.varint().ok_or(FrameError::Truncated)?;
    }
    Ok(())
}

/// The name of a QUIC transport error code (RFC 9000 section 20.1), or
/// `crypto_error(<alert>)` for 0x0100-0x01ff.
pub fn transport_error_name(code: u64) -> String {
    let name = match code {
        0x00 => "NO_ERROR",
        0x01 => "INTERNAL_ERROR",
        0x02 => "CONNECTION_REFUSED",
        0x03 => "FLOW_CONTROL_ERROR",
        0x04 => "STREAM_LIMIT_ERROR",
        0x05 => "STREAM_STATE_ERROR",
        0x06 => "FINAL_SIZE_ERROR",
        0x07 => "FRAME_ENCODING_ERROR",
        0x08 => "TRANSPORT_PARAMETER_ERROR",
        0x09 => "CONNECTION_ID_LIMIT_ERROR",
        0x0a => "PROTOCOL_VIOLATION",
        0x0b => "INVALID_TOKEN",
        0x0c => "APPLICATION_ERROR",
        0x0d => "CRYPTO_BUFFER_EXCEEDED",
        0x0e => "KEY_UPDATE_ERROR",
        0x0f => "AEAD_LIMIT_REACHED",
        0x10 => "NO_VIABLE_PATH",
        0x11 => "VERSION_NEGOTIATION_ERROR",
        0x0100..=0x01ff => return format!("CRYPTO_ERROR 0x{code:04x}"),
        _ => return format!("0x{code:x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests;
