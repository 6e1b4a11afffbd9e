//! Shared helpers for tlsmon end-to-end tests.
