//! QUIC datagrams into the QUIC table. The input is a little script: each step is
//! either a raw datagram (headers, lengths and connection IDs as the fuzzer wrote
//! them) or an Initial packet sealed here with the real v1 keys of a fuzzer-chosen
//! DCID around fuzzer-written frames, so that the frame reader, the CRYPTO
//! reassembly and the ClientHello/ServerHello parsing behind the decryption are
//! reached too. Besides never panicking, the table must stay within its bound.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
use tlsmon::pipeline::quic::QuicTable;
use tlsmon::source::segment::{Datagram, Device, PacketDirection};

const MAX_CONNECTIONS: usize = 8;

/// Seals `frames` as a v1 Initial from the client (or the server) of the
/// connection whose client chose `dcid`.
fn seal(dcid: &[u8], from_client: bool, pn: u16, frames: &[u8]) -> Vec<u8> {
    let rustls::SupportedCipherSuite::Tls13(suite) = TLS13_AES_128_GCM_SHA256 else {
        return Vec::new();
    };
    let Some(quic) = suite.quic else {
        return Vec::new();
    };
    let side = if from_client {
        rustls::Side::Client
    } else {
        rustls::Side::Server
    };
    let keys = rustls::quic::Keys::initial(rustls::quic::Version::V1, suite, quic, dcid, side);
    let mut payload = frames.to_vec();
    payload.resize(payload.len().max(20), 0);
    let (own, peer) = if from_client { (dcid, &[][..]) } else { (&[][..], &[7u8; 8][..]) };
    let mut header = vec![0xc1, 0, 0, 0, 1, own.len() as u8];
    header.extend_from_slice(own);
    header.push(peer.len() as u8);
    header.extend_from_slice(peer);
    header.push(0);
    let length = 2 + payload.len() + 16;
    header.extend([0x40 | ((length >> 8) & 0x3f) as u8, length as u8]);
    let pn_offset = header.len();
    header.extend(pn.to_be_bytes());
    let Ok(tag) = keys.local.packet.encrypt_in_place(u64::from(pn), &header, &mut payload) else {
        return Vec::new();
    };
    let mut packet = header;
    packet.extend(payload);
    packet.extend(tag.as_ref());
    let sample = packet[pn_offset + 4..pn_offset + 20].to_vec();
    let (head, rest) = packet.split_at_mut(pn_offset);
    let _ = keys.local.header.encrypt_in_place(&sample, &mut head[0], &mut rest[..2]);
    packet
}

fuzz_target!(|data: &[u8]| {
    let client: SocketAddr = "192.0.2.10:50000".parse().unwrap();
    let server: SocketAddr = "192.0.2.1:443".parse().unwrap();
    let mut table = QuicTable::new(MAX_CONNECTIONS, Duration::from_secs(10));
    let mut out = Vec::new();
    let mut rest = data;
    let mut ms = 0u64;
    while let [control, len_hi, len_lo, tail @ ..] = rest {
        let len = (usize::from(*len_hi) << 8 | usize::from(*len_lo)).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let from_client = control & 1 == 0;
        let port_shift = u16::from(control >> 5);
        ms += u64::from(control & 0x0e) * 100;
        let payload = if control & 0x10 != 0 {
            // Sealed: the first byte is the DCID length, then DCID, then frames.
            let (&dcid_len, body) = body.split_first().unwrap_or((&8, &[]));
            let dcid_len = usize::from(dcid_len % 21).min(body.len());
            let (dcid, frames) = body.split_at(dcid_len);
            seal(dcid, from_client, ms as u16, frames)
        } else {
            body.to_vec()
        };
        let client = SocketAddr::new(client.ip(), client.port() + port_shift);
        let (src, dst) = if from_client { (client, server) } else { (server, client) };
        let datagram = Datagram {
            ts: Duration::from_millis(1_000_000 + ms),
            device: Device::new("fuzz0"),
            direction: PacketDirection::Unknown,
            src,
            dst,
            payload,
            cut: 0,
            cgroup_id: None,
        };
        table.advance_clock(datagram.ts, &mut out);
        table.push(datagram, &mut out);
        assert!(table.tracked() <= MAX_CONNECTIONS);
        out.clear();
    }
    table.finish(&mut out);
    assert_eq!(table.tracked(), 0);
});
