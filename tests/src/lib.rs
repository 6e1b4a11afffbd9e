//! Shared helpers for tlsmon end-to-end tests.

pub mod corpus;
pub mod frames;
pub mod poll;
pub mod tshark;
