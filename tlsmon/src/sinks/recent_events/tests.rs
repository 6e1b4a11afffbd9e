use super::*;
use crate::sinks::metrics::tests::{alert_failure, record};

fn ports(body: &str) -> Vec<u64> {
    body.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["client_port"].as_u64().unwrap()
        })
        .collect()
}

fn with_port(mut event: HandshakeEvent, port: u16) -> HandshakeEvent {
    event.client_port = port;
    event
}

#[test]
fn keeps_the_newest_and_filters_and_limits() {
    let ring = RecentEvents::new(4);
    for port in 1..=6 {
        let event = if port % 2 == 0 {
            alert_failure()
        } else {
            record()
        };
        ring.push(&with_port(event, port));
    }
    let all = EventsQuery::parse(None, ring.capacity()).unwrap();
    assert_eq!(ports(&ring.render(&all).0), [3, 4, 5, 6]);
    let failed = EventsQuery::parse(Some("failed=true"), 4).unwrap();
    assert_eq!(ports(&ring.render(&failed).0), [4, 6]);
    let others = EventsQuery::parse(Some("failed=false&limit=1"), 4).unwrap();
    assert_eq!(ring.render(&others).1, 1);
    assert_eq!(ports(&ring.render(&others).0), [5]);
    let newest = EventsQuery::parse(Some("limit=2"), 4).unwrap();
    assert_eq!(ports(&ring.render(&newest).0), [5, 6]);
}

#[test]
fn the_ring_is_bounded_in_bytes_too() {
    let ring = RecentEvents::new(1_000_000);
    let mut big = record();
    big.offered_ciphers = vec!["x".repeat(1000); 1000];
    for port in 0..40 {
        ring.push(&with_port(big.clone(), port));
    }
    let inner = ring.ring.lock().unwrap();
    assert!(inner.bytes <= MAX_BYTES);
    assert!(inner.entries.len() < 40);
    assert_eq!(
        inner.bytes,
        inner
            .entries
            .iter()
            .map(|e| e.line.len() + 1)
            .sum::<usize>()
    );
}

#[test]
fn bad_parameters_are_refused_with_the_reason() {
    let err = |q: &str| EventsQuery::parse(Some(q), 100).unwrap_err();
    assert_eq!(
        err("failed=yes"),
        "failed must be true or false, not \"yes\""
    );
    assert_eq!(
        err("limit=0"),
        "limit must be a number from 1 to 100, not \"0\""
    );
    assert_eq!(
        err("limit=101"),
        "limit must be a number from 1 to 100, not \"101\""
    );
    assert_eq!(
        err("limit=-1"),
        "limit must be a number from 1 to 100, not \"-1\""
    );
    assert_eq!(err("limit=1&limit=2"), "limit is given twice");
    assert_eq!(
        err("device=eth0"),
        "unknown parameter \"device\" (known: failed, limit)"
    );
    assert_eq!(
        EventsQuery::parse(Some("limit=7&failed=true"), 100).unwrap(),
        EventsQuery {
            failed: Some(true),
            limit: 7
        }
    );
    assert_eq!(EventsQuery::parse(Some(""), 100).unwrap().limit, 100);
}
