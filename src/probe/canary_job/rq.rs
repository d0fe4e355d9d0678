//! The rq canary: see [`super::system::CanarySystem`].
