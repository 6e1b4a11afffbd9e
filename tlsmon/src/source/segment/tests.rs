use super::*;

fn seg(src: &str, dst: &str) -> Segment {
    Segment {
        ts: Duration::ZERO,
        device: Device::new("eth0"),
        direction: PacketDirection::Unknown,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        seq: u32::MAX - 1,
        ack: 0,
        flags: TcpFlags::default(),
        payload: vec![1, 2, 3],
        cut: 2,
        cgroup_id: None,
    }
}

#[test]
fn both_directions_share_a_connection_key() {
    let a = seg("10.0.0.1:443", "10.0.0.2:50000");
    let b = seg("10.0.0.2:50000", "10.0.0.1:443");
    assert_eq!(ConnectionKey::of(&a), ConnectionKey::of(&b));
}

#[test]
fn end_seq_wraps_and_counts_cut_bytes() {
    assert_eq!(seg("[::1]:1", "[::1]:2").end_seq(), 3);
}
