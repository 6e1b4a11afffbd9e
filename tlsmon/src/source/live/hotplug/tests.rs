use super::*;
use netlink_packet_core::{NetlinkHeader, NetlinkMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

fn datagram(messages: Vec<RouteNetlinkMessage>) -> Vec<u8> {
    let mut out = Vec::new();
    for inner in messages {
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(inner),
        );
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        out.extend_from_slice(&buf);
    }
    out
}

#[test]
fn new_and_deleted_links_become_events() {
    let mut up = LinkMessage::default();
    up.header.index = 7;
    up.header.flags = LinkFlags::Up;
    up.attributes.push(LinkAttribute::IfName("veth7".into()));
    let mut gone = LinkMessage::default();
    gone.header.index = 7;
    let mut nameless = LinkMessage::default();
    nameless.header.index = 8;
    let events = decode(&datagram(vec![
        RouteNetlinkMessage::NewLink(up),
        RouteNetlinkMessage::NewLink(nameless),
        RouteNetlinkMessage::DelLink(gone),
    ]));
    assert_eq!(
        events,
        vec![
            LinkEvent::Present(Interface {
                index: 7,
                name: "veth7".into(),
                up: true,
                loopback: false
            }),
            LinkEvent::Gone(7)
        ]
    );
    assert!(
        decode(&[1, 2, 3]).is_empty(),
        "garbage is ignored, not a panic"
    );
}
