use super::*;

fn record(h: EventHeader, payload: &[u8]) -> Vec<u8> {
    // SAFETY: EventHeader is plain data without padding.
    let bytes =
        unsafe { std::slice::from_raw_parts((&h as *const EventHeader).cast::<u8>(), HEADER_LEN) };
    let mut v = bytes.to_vec();
    v.extend_from_slice(payload);
    v
}

fn sample(kind: EventKind, payload_len: u32) -> EventHeader {
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[10, 0, 0, 1]);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&[10, 0, 0, 2]);
    EventHeader {
        ts_ns: 5,
        ifindex: 7,
        kind: kind as u16,
        direction: DIRECTION_EGRESS,
        family: FAMILY_IPV4,
        src_addr: src,
        dst_addr: dst,
        src_port: 40000,
        dst_port: 443,
        seq: 1000,
        tcp_flags: 0x18,
        event_flags: 0,
        _pad: [0; 2],
        payload_len,
        cut_len: 3,
        ack_seq: 0,
        cgroup_id: 0,
    }
}

#[test]
fn payload_record_becomes_a_segment() {
    let rec = record(sample(EventKind::Payload, 4), &[22, 3, 1, 0]);
    let s = segment(&rec, WallClock::now(), Device::new("eth0")).unwrap();
    assert_eq!(s.src, "10.0.0.1:40000".parse().unwrap());
    assert_eq!(s.dst, "10.0.0.2:443".parse().unwrap());
    assert_eq!(s.direction, PacketDirection::Egress);
    assert_eq!(s.payload, vec![22, 3, 1, 0]);
    assert_eq!((s.seq, s.cut, s.flags), (1000, 3, TcpFlags(0x18)));
    assert_eq!(s.device.name(), "eth0");
    assert_eq!(s.cgroup_id, None, "0 is the kernel's 'no local socket'");
}

#[test]
fn the_cgroup_id_travels_into_the_segment_and_its_syn() {
    let mut h = sample(EventKind::Payload, 4);
    h.cgroup_id = 4242;
    h.event_flags = EVENT_OPENS_CONNECTION;
    let s = segment(
        &record(h, &[22, 3, 1, 0]),
        WallClock::now(),
        Device::new("eth0"),
    )
    .unwrap();
    assert_eq!(s.cgroup_id, Some(4242));
    assert_eq!(client_syn(&s).cgroup_id, Some(4242));
}

#[test]
fn control_records_are_empty_segments_with_their_flag() {
    let rec = record(sample(EventKind::Rst, 0), &[]);
    let s = segment(&rec, WallClock::now(), Device::new("eth0")).unwrap();
    assert!(s.flags.rst() && s.payload.is_empty());
    let rec = record(sample(EventKind::Fin, 0), &[]);
    assert!(segment(&rec, WallClock::now(), Device::new("x"))
        .unwrap()
        .flags
        .fin());
}

#[test]
fn the_first_payload_of_an_opened_connection_stands_for_its_syn() {
    let mut h = sample(EventKind::Payload, 4);
    assert!(!opens_connection(&h));
    h.event_flags = EVENT_OPENS_CONNECTION;
    assert!(opens_connection(&h));
    let payload = segment(
        &record(h, &[22, 3, 1, 0]),
        WallClock::now(),
        Device::new("eth0"),
    )
    .unwrap();
    let syn = client_syn(&payload);
    assert_eq!((syn.seq, syn.flags), (999, TcpFlags(TCP_SYN)));
    assert!(syn.flags.syn() && !syn.flags.ack() && syn.payload.is_empty());
    assert_eq!(
        (syn.src, syn.dst, syn.ts),
        (payload.src, payload.dst, payload.ts)
    );
}

#[test]
fn malformed_records_are_errors_not_panics() {
    let dev = || Device::new("eth0");
    assert_eq!(
        segment(&[0u8; 10], WallClock::now(), dev()),
        Err(DecodeError::Short(10))
    );
    let rec = record(sample(EventKind::Payload, 9), &[1, 2]);
    assert_eq!(
        segment(&rec, WallClock::now(), dev()),
        Err(DecodeError::PayloadLength {
            announced: 9,
            held: 2
        })
    );
    let mut h = sample(EventKind::Payload, 0);
    h.kind = 99;
    assert_eq!(
        segment(&record(h, &[]), WallClock::now(), dev()),
        Err(DecodeError::Kind(99))
    );
    let mut h = sample(EventKind::Payload, 0);
    h.family = 5;
    assert_eq!(
        segment(&record(h, &[]), WallClock::now(), dev()),
        Err(DecodeError::Family(5))
    );
}

#[test]
fn syn_ack_records_are_empty_syn_acks_with_both_numbers() {
    let mut h = sample(EventKind::SynAck, 0);
    h.tcp_flags = 0x12;
    h.ack_seq = 77_001;
    let s = segment(&record(h, &[]), WallClock::now(), Device::new("eth0")).unwrap();
    assert!(s.flags.syn() && s.flags.ack() && !s.flags.fin() && !s.flags.rst());
    assert!(s.payload.is_empty());
    assert_eq!((s.seq, s.ack), (1000, 77_001));
}

#[test]
fn a_payload_carries_its_acknowledgment_number() {
    let mut h = sample(EventKind::Payload, 4);
    h.ack_seq = 4_000_000_000;
    let s = segment(
        &record(h, &[22, 3, 1, 0]),
        WallClock::now(),
        Device::new("eth0"),
    )
    .unwrap();
    assert_eq!(s.ack, 4_000_000_000);
}

#[test]
fn quic_records_become_datagrams_with_their_cut() {
    let mut h = sample(EventKind::QuicDatagram, 3);
    h.family = FAMILY_IPV6;
    h.src_addr = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
    h.dst_addr = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
    h.direction = DIRECTION_INGRESS;
    h.cgroup_id = 9;
    assert!(is_datagram(&h));
    let d = datagram(
        &record(h, &[0xc3, 0, 0]),
        WallClock::now(),
        Device::new("eth1"),
    )
    .unwrap();
    assert_eq!(d.src, "[fd00::1]:40000".parse().unwrap());
    assert_eq!(d.dst, "[fd00::2]:443".parse().unwrap());
    assert_eq!((d.payload.as_slice(), d.cut), (&[0xc3, 0, 0][..], 3));
    assert_eq!(d.direction, PacketDirection::Ingress);
    assert_eq!((d.device.name(), d.cgroup_id), ("eth1", Some(9)));
    // A short-header sighting: its first byte, the rest cut.
    let mut h = sample(EventKind::QuicShortHeader, 1);
    h.cut_len = 1199;
    let d = datagram(&record(h, &[0x41]), WallClock::now(), Device::new("eth1")).unwrap();
    assert_eq!((d.payload, d.cut), (vec![0x41], 1199));
}

#[test]
fn records_of_the_other_transport_are_refused_by_each_decoder() {
    let dev = || Device::new("eth0");
    let tcp = record(sample(EventKind::Payload, 0), &[]);
    assert!(!is_datagram(&header(&tcp).unwrap()));
    assert_eq!(
        datagram(&tcp, WallClock::now(), dev()),
        Err(DecodeError::Transport(EventKind::Payload as u16))
    );
    let quic = record(sample(EventKind::QuicDatagram, 0), &[]);
    assert_eq!(
        segment(&quic, WallClock::now(), dev()),
        Err(DecodeError::Transport(EventKind::QuicDatagram as u16))
    );
    let lying = record(sample(EventKind::QuicDatagram, 5), &[1]);
    assert_eq!(
        datagram(&lying, WallClock::now(), dev()),
        Err(DecodeError::PayloadLength {
            announced: 5,
            held: 1
        })
    );
}
