//! The `http` probe kind: one request or scripted steps.
pub mod spec;
pub mod transport;
