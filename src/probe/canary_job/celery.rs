//! The celery canary: see [`super::system::CanarySystem`].
