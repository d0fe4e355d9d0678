//! The public status page: components made of checks, incidents (opened by alerts or by hand),
//! 90 days of daily history, served on a listener of its own.
//!
//! - [`model`]: the [`model::Snapshot`] every renderer reads (only public text).
//! - [`html`]: the pages (maud), [`feed`]: the Atom feed, [`summary`]: Statuspage-format JSON.
//! - [`web`]: the public listener's router (cached per snapshot version, security headers).

pub mod model;

pub mod feed;

pub mod html;

pub mod summary;

pub mod web;
