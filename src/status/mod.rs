//! The public status page: components made of checks, incidents (opened by alerts or by hand),
//! 90 days of daily history, served on a listener of its own.
//!
//! - [`model`]: the [`model::Snapshot`] every renderer reads (only public text).
//! - [`def`]: `status_page:` in `canaryd.yaml`, validated.
//! - [`page`]: the running page: statuses, incidents, daily history, snapshots.
//! - [`rows`]: its rows in the state store.
//! - [`api`]: the incident API's request bodies and JSON.
//! - [`html`]: the pages (maud), [`feed`]: the Atom feed, [`summary`]: Statuspage-format JSON.
//! - [`web`]: the public listener's router (cached per snapshot version, security headers).

pub mod api;
pub mod def;
pub mod feed;
pub mod html;
pub mod model;
pub mod page;
pub mod rows;
pub mod summary;
pub mod web;
