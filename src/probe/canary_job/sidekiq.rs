//! The sidekiq canary: see [`super::system::CanarySystem`].
