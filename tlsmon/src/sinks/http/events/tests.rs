use super::*;
use crate::sinks::metrics::tests::{alert_failure, record};

#[test]
fn answers_lines_refuses_bad_parameters_and_bounds_concurrent_reads() {
    let ring = Arc::new(RecentEvents::new(10));
    ring.push(&record());
    ring.push(&alert_failure());
    let endpoint = EventsEndpoint::new(ring);

    let bad = endpoint.respond(Some("limit=11"));
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let mut held = Vec::new();
    for _ in 0..MAX_CONCURRENT_READS {
        let ok = endpoint.respond(Some("failed=true"));
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["content-type"], CONTENT_TYPE);
        assert!(ok.extensions().get::<ReadPermit>().is_some());
        held.push(ok);
    }
    let busy = endpoint.respond(None);
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.headers()[RETRY_AFTER], "1");
    // A response that is gone gives its permit back.
    held.pop();
    assert_eq!(endpoint.respond(None).status(), StatusCode::OK);
}
