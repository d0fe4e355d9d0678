//! The `http` probe kind: one request or scripted steps.
pub mod transport;
