//! `/api/v1/events`: the daemon's recent handshake events as JSON lines
//! (`application/x-ndjson`), with `?failed=true|false&limit=N`.
//!
//! A response copies the matching lines (at most the ring's bound,
//! [`crate::sinks::recent_events::MAX_BYTES`]); at most [`MAX_CONCURRENT_READS`]
//! responses are built or sent at once, and a request beyond that gets `503` with
//! `Retry-After: 1`, so that the endpoint's memory stays bounded.

use std::sync::Arc;

use http_body_util::Full;
use hyper::{
    body::Bytes,
    header::{HeaderValue, RETRY_AFTER},
    Response, StatusCode,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{plain, with_type};
use crate::sinks::recent_events::{EventsQuery, RecentEvents};

/// Responses of this route built or being sent at once, at most.
pub const MAX_CONCURRENT_READS: usize = 4;

/// Content type of the response: newline-delimited JSON.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// The ring the route serves and the permits that bound its responses.
#[derive(Clone)]
pub struct EventsEndpoint {
    ring: Arc<RecentEvents>,
    reads: Arc<Semaphore>,
}

/// Held by a response of this route until its body is dropped (sent or abandoned).
#[derive(Clone)]
pub(super) struct ReadPermit(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl EventsEndpoint {
    /// Serves `ring`.
    pub fn new(ring: Arc<RecentEvents>) -> EventsEndpoint {
        EventsEndpoint {
            ring,
            reads: Arc::new(Semaphore::new(MAX_CONCURRENT_READS)),
        }
    }

    /// The response to a GET or HEAD of the route with `query`; the permit goes with
    /// the response's extensions, for the body to hold.
    pub(super) fn respond(&self, query: Option<&str>) -> Response<Full<Bytes>> {
        let query = match EventsQuery::parse(query, self.ring.capacity()) {
            Ok(query) => query,
            Err(why) => return plain(StatusCode::BAD_REQUEST, format!("bad request: {why}\n")),
        };
        let Ok(permit) = self.reads.clone().try_acquire_owned() else {
            let mut resp = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("busy: {MAX_CONCURRENT_READS} event responses are being sent; retry\n"),
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        };
        let (body, _count) = self.ring.render(&query);
        let mut resp = with_type(StatusCode::OK, CONTENT_TYPE, body);
        resp.extensions_mut().insert(ReadPermit(Arc::new(permit)));
        resp
    }
}

#[cfg(test)]
mod tests;
