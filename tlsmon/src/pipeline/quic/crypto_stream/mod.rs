//! One direction's Initial CRYPTO stream: frames arrive in any order, split over
//! several packets, repeated; whole TLS handshake messages come out in order.
//!
//! Bounded: only the first [`MAX_CRYPTO_BYTES`] of the stream are kept (a
//! ClientHello, even a post-quantum one, and a ServerHello fit many times over);
//! bytes past the bound are dropped and counted in [`CryptoStream::cut`], and so is
//! a message that does not fit.

use std::collections::BTreeMap;

/// Bytes of a direction's Initial CRYPTO stream kept, from offset 0.
pub const MAX_CRYPTO_BYTES: usize = 16 * 1024;

/// Length of a TLS handshake message header (type and 24-bit length).
const HANDSHAKE_HEADER_LEN: usize = 4;

/// The in-order bytes of one direction and the pieces that arrived early.
#[derive(Debug, Default)]
pub struct CryptoStream {
    /// Contiguous bytes from offset 0.
    assembled: Vec<u8>,
    /// Pieces past `assembled`, by offset (each within the bound).
    early: BTreeMap<u64, Vec<u8>>,
    /// Bytes held in `early`.
    early_bytes: usize,
    /// Offset in `assembled` of the next handshake message.
    next_message: usize,
    /// Bytes dropped because they lay past the bound (or a message was too big).
    cut: u64,
    /// Set once a message could not fit: nothing more comes out.
    overflowed: bool,
    /// Set once the messages that matter were read: later bytes are not kept.
    released: bool,
}

impl CryptoStream {
    /// Takes the bytes of one CRYPTO frame.
    pub fn insert(&mut self, offset: u64, data: &[u8]) {
        if self.released {
            return;
        }
        let end = offset.saturating_add(data.len() as u64);
        let bound = MAX_CRYPTO_BYTES as u64;
        let kept_end = end.min(bound);
        if kept_end < end {
            self.cut += end - kept_end.max(offset);
        }
        if offset >= kept_end {
            return;
        }
        let data = &data[..(kept_end - offset) as usize];
        let have = self.assembled.len() as u64;
        if offset <= have {
            let skip = (have - offset) as usize;
            if skip < data.len() {
                self.assembled.extend_from_slice(&data[skip..]);
                self.connect_early();
            }
        } else if !self.early.contains_key(&offset)
            && self.early_bytes + data.len() <= MAX_CRYPTO_BYTES
        {
            self.early_bytes += data.len();
            self.early.insert(offset, data.to_vec());
        }
    }

    /// Moves early pieces that now touch the assembled bytes.
    fn connect_early(&mut self) {
        while let Some((&offset, _)) = self.early.first_key_value() {
            let have = self.assembled.len() as u64;
            if offset > have {
                break;
            }
            let Some((_, piece)) = self.early.pop_first() else {
                break;
            };
            self.early_bytes -= piece.len();
            let skip = (have - offset) as usize;
            if skip < piece.len() {
                self.assembled.extend_from_slice(&piece[skip..]);
            }
        }
    }

    /// The next whole handshake message (header included), if it has arrived.
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        if self.overflowed || self.released {
            return None;
        }
        let header = self
            .assembled
            .get(self.next_message..self.next_message + HANDSHAKE_HEADER_LEN)?;
        let body_len =
            usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
        let end = self.next_message + HANDSHAKE_HEADER_LEN + body_len;
        if end > MAX_CRYPTO_BYTES {
            self.overflowed = true;
            self.cut += (end - MAX_CRYPTO_BYTES) as u64;
            return None;
        }
        let message = self.assembled.get(self.next_message..end)?.to_vec();
        self.next_message = end;
        Some(message)
    }

    /// Bytes dropped by the bound so far.
    pub fn cut(&self) -> u64 {
        self.cut
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> usize {
        self.assembled.len() + self.early_bytes
    }

    /// Frees what is held (the messages that mattered were read).
    pub fn release(&mut self) {
        self.assembled = Vec::new();
        self.early = BTreeMap::new();
        self.early_bytes = 0;
        self.released = true;
    }
}

#[cfg(test)]
mod tests;
