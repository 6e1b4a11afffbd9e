use super::*;
use crate::source::segment::{Device, PacketDirection, TcpFlags};
use std::time::Duration;

fn syn_with(payload: &[u8]) -> Segment {
    Segment {
        ts: Duration::ZERO,
        device: Device::new("eth0"),
        direction: PacketDirection::Unknown,
        src: "10.0.0.2:40000".parse().unwrap(),
        dst: "10.0.0.1:443".parse().unwrap(),
        seq: u32::MAX - 2,
        ack: 0,
        flags: TcpFlags(TcpFlags::SYN),
        payload: payload.to_vec(),
        cut: 0,
        cgroup_id: None,
    }
}

#[test]
fn the_latest_syn_ack_counts_until_one_is_acknowledged() {
    let mut n = Numbering::default();
    n.on_syn(100);
    n.on_syn(100);
    n.on_syn(5000);
    assert_eq!(n.clone().take(), Some(5000));
    // The peer acknowledged the first one after all.
    n.on_peer_ack(101);
    assert_eq!(n.clone().take(), Some(100));
    // Once acknowledged, a later SYN-ACK does not move it ...
    n.on_syn(9000);
    assert_eq!(n.clone().take(), Some(100));
    // ... unless the peer acknowledges that one.
    n.on_peer_ack(9001);
    assert_eq!(n.clone().take(), Some(9000));
    // An acknowledgment of nothing seen changes nothing.
    n.on_peer_ack(77);
    assert_eq!(n.take(), Some(9000));
    assert_eq!(n.take(), None);
}

#[test]
fn syn_data_is_accepted_refused_or_undecided_by_the_ack() {
    // ISN u32::MAX - 2: data starts at u32::MAX - 1 and its 4 bytes end at 2.
    let syn = syn_with(&[1, 2, 3, 4]);
    assert_eq!(judge_syn_data(&syn, 2), SynDataVerdict::Accepted);
    assert_eq!(judge_syn_data(&syn, 40), SynDataVerdict::Accepted);
    assert_eq!(judge_syn_data(&syn, u32::MAX - 1), SynDataVerdict::Refused);
    // Part of the data, or an old number.
    assert_eq!(judge_syn_data(&syn, 0), SynDataVerdict::Undecided);
    assert_eq!(
        judge_syn_data(&syn, 1000u32.wrapping_neg()),
        SynDataVerdict::Undecided
    );
}

#[test]
fn a_held_syn_keeps_at_most_the_bound_and_counts_the_rest_as_cut() {
    let held = held_syn(&syn_with(&[7; 100]), 60);
    assert_eq!(held.payload.len(), 60);
    assert_eq!(held.cut, 40);
    assert_eq!(held.end_seq(), syn_with(&[7; 100]).end_seq());
    let small = held_syn(&syn_with(&[7; 10]), 60);
    assert_eq!((small.payload.len(), small.cut), (10, 0));
}
