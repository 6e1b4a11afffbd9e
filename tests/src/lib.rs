//! Shared helpers for tlsmon end-to-end tests: recorded corpus, tshark oracle,
//! synthetic frames and TLS payloads, polling with deadlines.

pub mod attached;
pub mod corpus;
pub mod frames;
pub mod netns;
pub mod poll;
pub mod tshark;
