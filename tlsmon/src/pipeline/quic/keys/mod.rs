//! Initial packet protection (RFC 9001 section 5, RFC 9369 section 3.3): keys
//! derived from the client's first Destination Connection ID, header protection
//! removed, payload opened with AES-128-GCM.
//!
//! No crypto is written here: rustls's `quic` module derives the keys (v1 and v2
//! salts and labels) and its aws-lc-rs provider does AES and AES-GCM.

use rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
use rustls::quic::{DirectionalKeys, Keys, Version};
use rustls::Side;

use super::header::KnownVersion;

/// Length of the header protection sample (RFC 9001 section 5.4.2).
const SAMPLE_LEN: usize = 16;
/// The sample starts this far after the start of the packet number field, as if
/// the packet number were always 4 bytes long.
const SAMPLE_OFFSET: usize = 4;

/// Why a protected packet could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short to hold a header protection sample.
    #[error("packet too short for header protection")]
    TooShort,
    /// The AEAD tag does not match: wrong keys, a corrupt or a forged packet.
    #[error("packet failed authentication")]
    Authentication,
}

/// The Initial keys of both directions of one connection.
pub struct InitialKeys {
    client: DirectionalKeys,
    server: DirectionalKeys,
}

impl std::fmt::Debug for InitialKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitialKeys")
    }
}

impl InitialKeys {
    /// Keys for a connection whose client chose `dcid` (first Initial, or the one
    /// after a Retry).
    pub fn derive(version: KnownVersion, dcid: &[u8]) -> Self {
        let version = match version {
            KnownVersion::V1 => Version::V1,
            KnownVersion::V2 => Version::V2,
        };
        // TLS13_AES_128_GCM_SHA256 is always a TLS 1.3 suite with QUIC support in
        // the aws-lc-rs provider; the `let ... else` keeps that assumption visible.
        let rustls::SupportedCipherSuite::Tls13(suite) = TLS13_AES_128_GCM_SHA256 else {
            unreachable!("TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite")
        };
        let quic = suite.quic.expect("aws-lc-rs supports QUIC for AES-128-GCM");
        // As the client: `local` protects what the client sends.
        let keys = Keys::initial(version, suite, quic, dcid, Side::Client);
        InitialKeys {
            client: keys.local,
            server: keys.remote,
        }
    }

    /// Opens a packet the client (`from_client`) or the server sent, in place:
    /// `packet` is the whole packet, `pn_offset` where its packet number starts,
    /// `largest_pn` the largest packet number opened in that direction so far
    /// (to expand the truncated one, RFC 9000 appendix A.3). The plaintext is
    /// `packet[opened.header_len..opened.header_len + opened.plain_len]`.
    pub fn open(
        &self,
        from_client: bool,
        packet: &mut [u8],
        pn_offset: usize,
        largest_pn: Option<u64>,
    ) -> Result<Opened, OpenError> {
        let keys = if from_client {
            &self.client
        } else {
            &self.server
        };
        let sample_start = pn_offset + SAMPLE_OFFSET;
        let sample_end = sample_start + SAMPLE_LEN;
        if pn_offset == 0 || packet.len() < sample_end {
            return Err(OpenError::TooShort);
        }
        let mut sample = [0u8; SAMPLE_LEN];
        sample.copy_from_slice(&packet[sample_start..sample_end]);
        let (head, rest) = packet.split_at_mut(pn_offset);
        // rustls reads the packet number length from the unmasked first byte and
        // unmasks only that many of the four bytes passed.
        keys.header
            .decrypt_in_place(&sample, &mut head[0], &mut rest[..4])
            .map_err(|_| OpenError::TooShort)?;
        let pn_len = usize::from(head[0] & 0x03) + 1;
        let truncated = rest[..pn_len]
            .iter()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        let pn = expand_packet_number(largest_pn, truncated, pn_len);
        let header_len = pn_offset + pn_len;
        let (header, payload) = packet.split_at_mut(header_len);
        let plain_len = keys
            .packet
            .decrypt_in_place(pn, header, payload)
            .map_err(|_| OpenError::Authentication)?
            .len();
        Ok(Opened {
            pn,
            header_len,
            plain_len,
        })
    }
}

/// The full packet number closest to the next expected one (RFC 9000 appendix A.3).
fn expand_packet_number(largest: Option<u64>, truncated: u64, pn_len: usize) -> u64 {
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let win = 1u64 << (pn_len * 8);
    let half = win / 2;
    let mask = win - 1;
    let candidate = (expected & !mask) | truncated;
    if candidate.saturating_add(half) <= expected && candidate < (1u64 << 62) - win {
        candidate + win
    } else if candidate > expected.saturating_add(half) && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// Where an opened packet's plaintext is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The full packet number.
    pub pn: u64,
    /// Length of the header, packet number included: the plaintext starts here.
    pub header_len: usize,
    /// Length of the plaintext (the payload less the AEAD tag).
    pub plain_len: usize,
}

#[cfg(test)]
mod tests;
