//! The `canary_job` kind: a real, harmless job enqueued in a job system's own format and timed
//! through enqueued → picked up → finished.

pub mod celery;
pub mod rq;
pub mod sidekiq;
pub mod system;
