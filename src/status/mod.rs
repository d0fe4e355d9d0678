//! The public status page: components made of checks, incidents (opened by alerts or by hand),
//! 90 days of daily history, served on a listener of its own.
//!
//! - [`model`]: the [`model::Snapshot`] every renderer reads (only public text).
//! - [`def`]: `status_page:` in `canaryd.yaml`, validated.
//! - [`page`]: the running page: statuses, incidents, daily history, snapshots.
//! - [`rows`]: its rows in the state store.
//! - [`api`]: the incident API's request bodies and JSON.

pub mod api;
pub mod def;
pub mod model;
pub mod page;
pub mod rows;
