//! Shared helpers for tlsmon end-to-end tests.

pub mod corpus;
pub mod tshark;
