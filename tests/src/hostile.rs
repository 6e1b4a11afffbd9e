//! Hostile input for the label-poisoning tests: ClientHellos full of code points
//! no IANA registry names, with GREASE mixed in, the frames of connections that
//! carry one and are never answered, and capture files that put them in front of
//! a genuine handshake from the corpus.

use std::{
    fs::File,
    io::{BufReader, BufWriter},
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use etherparse::PacketBuilder;
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter},
    DataLink,
};
use tlsmon::pipeline::tls::names;

/// A small deterministic generator (SplitMix64): the same seed gives the same
/// hellos, so a failure can be replayed. Not for anything secret.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high` (the modulo bias is irrelevant at these sizes).
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }
}

/// The RFC 8701 GREASE value number `i % 16` (0x0a0a, 0x1a1a, .. 0xfafa).
pub fn grease(i: usize) -> u16 {
    let n = (i % 16) as u16;
    (n << 12) | 0x0a00 | (n << 4) | 0x0a
}

/// A code point that `name` prints as hex, i.e. that no registry names and that
/// is not GREASE (tlsmon names those "GREASE").
fn unknown(rng: &mut SplitMix64, name: fn(u16) -> String) -> u16 {
    loop {
        let v = rng.next_u64() as u16;
        if name(v).starts_with("0x") {
            return v;
        }
    }
}

/// What one hostile ClientHello offers, in wire order (GREASE included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostileHello {
    /// Cipher suites.
    pub ciphers: Vec<u16>,
    /// The supported_versions extension.
    pub versions: Vec<u16>,
    /// The supported_groups extension.
    pub groups: Vec<u16>,
    /// The server_name extension's host name, raw bytes, if any.
    pub sni: Option<Vec<u8>>,
}

impl HostileHello {
    /// 1-64 cipher suites, 1-8 versions and 1-16 groups, each a code point no
    /// registry names, plus 1-3 GREASE values at random places in each list.
    pub fn random(rng: &mut SplitMix64) -> HostileHello {
        let mut list = |max: usize, name: fn(u16) -> String| {
            let mut values: Vec<u16> = (0..rng.between(1, max))
                .map(|_| unknown(rng, name))
                .collect();
            for _ in 0..rng.between(1, 3) {
                let at = rng.between(0, values.len());
                values.insert(at, grease(rng.next_u64() as usize));
            }
            values
        };
        let ciphers = list(64, names::cipher_name);
        let versions = list(8, names::version_name);
        let groups = list(16, names::group_name);
        HostileHello {
            ciphers,
            versions,
            groups,
            sni: None,
        }
    }

    /// The ClientHello as one TLS handshake record: legacy_version TLS 1.2, a
    /// 32-byte session id, null compression, and the extensions server_name (when
    /// set), supported_groups and supported_versions.
    pub fn record(&self) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend((0..32u8).map(|i| i.wrapping_mul(29) ^ 0x5c)); // random
        body.push(32);
        body.extend((0..32u8).map(|i| i.wrapping_mul(13))); // session id
        body.extend(len16(&u16s(&self.ciphers)));
        body.extend([1, 0]); // null compression

        let mut extensions = Vec::new();
        if let Some(name) = &self.sni {
            let mut entry = vec![0]; // host_name
            entry.extend(len16(name));
            extensions.extend(extension(0, &len16(&entry)));
        }
        extensions.extend(extension(10, &len16(&u16s(&self.groups))));
        let versions = u16s(&self.versions);
        let mut list = vec![versions.len() as u8];
        list.extend(versions);
        extensions.extend(extension(43, &list));
        body.extend(len16(&extensions));

        let mut handshake = vec![1];
        handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend(body);
        let mut record = vec![22, 3, 1];
        record.extend(len16(&handshake));
        record
    }
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// `bytes` behind a two-byte length.
fn len16(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend(bytes);
    out
}

fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend(len16(data));
    out
}

/// The Ethernet frames of one IPv4 connection that is never answered: SYN,
/// SYN-ACK, ACK, then `payload` from the client (PSH+ACK), with sequence and
/// acknowledgement numbers as a real stack would number them.
pub fn unanswered_connection(
    client: SocketAddr,
    server: SocketAddr,
    payload: &[u8],
) -> Result<Vec<Vec<u8>>> {
    let (client_isn, server_isn) = (0x1000_0000u32, 0x2000_0000u32);
    Ok(vec![
        segment(client, server, client_isn, None, Flags::Syn, &[])?,
        segment(
            server,
            client,
            server_isn,
            Some(client_isn + 1),
            Flags::Syn,
            &[],
        )?,
        segment(
            client,
            server,
            client_isn + 1,
            Some(server_isn + 1),
            Flags::None,
            &[],
        )?,
        segment(
            client,
            server,
            client_isn + 1,
            Some(server_isn + 1),
            Flags::Psh,
            payload,
        )?,
    ])
}

/// The flag besides ACK a segment carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flags {
    None,
    Syn,
    Psh,
}

fn segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: Option<u32>,
    flags: Flags,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        bail!("hostile connections are IPv4: {src} -> {dst}");
    };
    let mut tcp = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(s.octets(), d.octets(), 64)
        .tcp(src.port(), dst.port(), seq, 64240);
    if flags == Flags::Syn {
        tcp = tcp.syn();
    }
    if flags == Flags::Psh {
        tcp = tcp.psh();
    }
    if let Some(ack) = ack {
        tcp = tcp.ack(ack);
    }
    let mut frame = Vec::with_capacity(tcp.size(payload.len()));
    tcp.write(&mut frame, payload)
        .context("building a TCP frame")?;
    Ok(frame)
}

/// Writes a pcap of Ethernet `frames`, the first at `start`, then one every 10 µs.
pub fn write_capture(path: &Path, frames: &[Vec<u8>], start: Duration) -> Result<()> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut writer = PcapWriter::with_header(BufWriter::new(file), PcapHeader::default())
        .with_context(|| format!("write {}", path.display()))?;
    write_frames(&mut writer, frames, start)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Writes `path`: `frames` (one every 10 µs, the last `gap` before the first
/// packet of `genuine`), then every packet of `genuine` unchanged. `genuine` must
/// be a pcap of Ethernet frames, as the corpus's OpenSSL captures are.
pub fn write_capture_before(
    path: &Path,
    frames: &[Vec<u8>],
    gap: Duration,
    genuine: &Path,
) -> Result<()> {
    let input = File::open(genuine).with_context(|| format!("open {}", genuine.display()))?;
    let mut reader = PcapReader::new(BufReader::new(input))
        .with_context(|| format!("read {}", genuine.display()))?;
    let header = reader.header();
    if header.datalink != DataLink::ETHERNET {
        bail!("{} is not an Ethernet capture", genuine.display());
    }
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.with_context(|| format!("read {}", genuine.display()))?;
        packets.push(packet.into_owned());
    }
    let Some(first) = packets.first() else {
        bail!("{} holds no packets", genuine.display());
    };
    let span = FRAME_SPACING * u32::try_from(frames.len()).context("too many frames")?;
    let start = first
        .timestamp
        .checked_sub(span + gap)
        .context("the genuine capture starts too early to put frames before it")?;

    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut writer = PcapWriter::with_header(BufWriter::new(file), header)
        .with_context(|| format!("write {}", path.display()))?;
    write_frames(&mut writer, frames, start)
        .with_context(|| format!("write {}", path.display()))?;
    for packet in &packets {
        writer
            .write_packet(packet)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// Time between two generated frames.
const FRAME_SPACING: Duration = Duration::from_micros(10);

fn write_frames(
    writer: &mut PcapWriter<BufWriter<File>>,
    frames: &[Vec<u8>],
    start: Duration,
) -> Result<()> {
    let mut ts = start;
    for frame in frames {
        let len = u32::try_from(frame.len()).context("frame too large")?;
        writer.write_packet(&PcapPacket::new(ts, len, frame))?;
        ts += FRAME_SPACING;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{SlicedPacket, TransportSlice};

    #[test]
    fn grease_values_are_the_sixteen_of_rfc8701() {
        let all: Vec<u16> = (0..16).map(grease).collect();
        assert_eq!(all[0], 0x0a0a);
        assert_eq!(all[15], 0xfafa);
        assert!(all.iter().all(|&v| names::is_grease(v)));
        assert_eq!(grease(16), 0x0a0a);
    }

    #[test]
    fn random_hellos_offer_only_unknown_code_points_and_grease() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..200 {
            let hello = HostileHello::random(&mut rng);
            for (list, name, max) in [
                (&hello.ciphers, names::cipher_name as fn(u16) -> String, 64),
                (&hello.versions, names::version_name, 8),
                (&hello.groups, names::group_name, 16),
            ] {
                let greased = list.iter().filter(|&&v| names::is_grease(v)).count();
                assert!((1..=3).contains(&greased), "{list:x?}");
                assert!((1..=max).contains(&(list.len() - greased)), "{list:x?}");
                for &v in list {
                    let n = name(v);
                    assert!(n == "GREASE" || n.starts_with("0x"), "{v:#06x} is {n}");
                }
            }
        }
    }

    #[test]
    fn the_record_is_a_client_hello_tlsmon_parses_back() {
        let hello = HostileHello {
            ciphers: vec![0x0a0a, 0xabcd, 0x2a2a],
            versions: vec![0x7f1c, 0x3a3a],
            groups: vec![0x1a2b],
            sni: Some(b"evil\x1b\0.test".to_vec()),
        };
        let record = hello.record();
        let mut messages = Vec::new();
        tlsmon::pipeline::tls::TlsStreamParser::new().feed(&record, &mut messages);
        let [message] = messages.as_slice() else {
            panic!("one message expected: {messages:?}")
        };
        let tlsmon::pipeline::tls::TlsMessage::ClientHello(parsed) = &message.message else {
            panic!("not a ClientHello: {message:?}")
        };
        assert_eq!(parsed.cipher_suites, [0xabcd]);
        assert_eq!(parsed.supported_versions, [0x7f1c]);
        assert_eq!(parsed.supported_groups, [0x1a2b]);
        assert_eq!(parsed.sni.as_deref(), Some("evil\x1b\0.test"));
        assert_eq!(parsed.message_len as usize, record.len() - 5);
    }

    #[test]
    fn connection_frames_carry_the_handshake_numbers_and_the_payload() {
        let client: SocketAddr = "198.18.1.1:40000".parse().unwrap();
        let server: SocketAddr = "198.18.0.2:443".parse().unwrap();
        let frames = unanswered_connection(client, server, b"hello").unwrap();
        let tcp: Vec<_> = frames
            .iter()
            .map(
                |f| match SlicedPacket::from_ethernet(f).unwrap().transport {
                    Some(TransportSlice::Tcp(t)) => (
                        t.syn(),
                        t.ack(),
                        t.sequence_number(),
                        t.acknowledgment_number(),
                        t.payload().to_vec(),
                    ),
                    _ => panic!("not TCP"),
                },
            )
            .collect();
        assert_eq!(
            tcp,
            [
                (true, false, 0x1000_0000, 0, vec![]),
                (true, true, 0x2000_0000, 0x1000_0001, vec![]),
                (false, true, 0x1000_0001, 0x2000_0001, vec![]),
                (false, true, 0x1000_0001, 0x2000_0001, b"hello".to_vec()),
            ]
        );
    }
}
