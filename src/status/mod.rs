//! The public status page: components made of checks, incidents (opened by alerts or by hand),
//! 90 days of daily history, served on a listener of its own.
//!
//! - [`model`]: the [`model::Snapshot`] every renderer reads (only public text).

pub mod model;
