//! Durable delivery. Every notification is written to the outbox table (with the alert state
//! that caused it, in one transaction) before anything is sent, and leaves it only when its
//! receiver accepted it or refused it for good. One worker per receiver sends the receiver's
//! rows strictly in order (a resolve never overtakes its trigger): it takes up to
//! `max_batch` rows from the head, sends them as one request, and on failure retries that same
//! head later, so nothing behind it moves first.
//!
//! Retries: network errors, 408, 429 and 5xx wait `Retry-After` when the receiver sent one,
//! else a capped exponential backoff with jitter (1 s, 2 s, 4 s … [`BACKOFF_CAP`], each drawn
//! from its upper half); other 4xx are final and counted as `rejected`.
//!
//! When the store cannot be written (disk full, read-only), a notification that was sent is
//! remembered in memory until its row can be deleted, so it is not sent twice; notifications the
//! store could not take at all are sent from memory by [`Outbox::send_unsaved`] (see
//! [`super::service`]).
//!
//! [`Outbox::deliver_once`] takes `now` from the caller, so tests drive a simulated outage
//! with a manual clock; the daemon's workers ([`super::service`]) call it in a loop.

use std::time::{Duration, SystemTime};

use super::persist::{self, OutboxRow};
use super::receiver::{Notifier, Verdict};
use super::{from_ms, to_ms, AlertEvent};
use crate::metrics::{Metrics, NotificationResult, StoreOp};
use crate::store::{Store, StoreError};

/// Longest wait between two attempts (without a `Retry-After`).
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Bound on one request, connect included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What a worker should do after [`Outbox::deliver_once`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing waits: sleep until woken.
    Idle,
    /// The head waits for a retry at this time (or a wake-up).
    At(SystemTime),
    /// Go again now (more rows may be waiting).
    Again,
}

/// What one delivery attempt did (for tests and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Events in the request.
    pub events: usize,
    /// The verdict.
    pub verdict: Verdict,
}

/// The sending side of the outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Store,
    client: reqwest::Client,
    metrics: std::sync::Arc<Metrics>,
    /// Rows a receiver has taken (accepted or refused for good) that the store could not delete
    /// yet (disk full, read-only): never sent again, deleted when the store takes writes again.
    finished: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
}

/// The delay before attempt `attempts + 1` (after `attempts` failures): exponential from 1 s,
/// capped, drawn uniformly from the upper half so that many canaryds do not retry in step.
pub fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(1)
        .checked_mul(1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP);
    let half = base / 2;
    half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
}

/// The HTTP client notifications go out through: rustls with the system's roots (verification
/// always on), no redirects (a redirect must not carry a routing key elsewhere), bounded time.
pub fn http_client() -> Result<reqwest::Client, String> {
    let tls = crate::probe::tls::TlsSettings::default().client_config()?;
    let mut tls = (*tls).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(SEND_TIMEOUT)
        .user_agent(concat!("canaryd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            format!(
                "cannot build the notification HTTP client: {}",
                e.without_url()
            )
        })
}

/// A transport error in words, without the URL (it may hold a secret) or anything the
/// receiver sent.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut out = what.to_string();
    let mut source = std::error::Error::source(e);
    // The innermost cause is the useful one (connection refused, DNS failure ...).
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(l) = last {
        out.push_str(": ");
        out.push_str(&l);
    }
    out
}

impl Outbox {
    /// An outbox over the store, sending through `client`.
    pub fn new(store: Store, client: reqwest::Client, metrics: std::sync::Arc<Metrics>) -> Self {
        Outbox {
            store,
            client,
            metrics,
            finished: Default::default(),
        }
    }

    /// How many finished notifications still wait to be deleted from the store (0 when the
    /// store is healthy): until then a restart would send them again.
    pub fn undeleted(&self) -> usize {
        self.finished_ids().len()
    }

    fn finished_ids(&self) -> std::sync::MutexGuard<'_, Vec<i64>> {
        self.finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tries again to delete the rows receivers took while the store could not delete them
    /// (each delivery attempt does it first; the ticker too, so that it happens without one).
    pub async fn delete_finished(&self) {
        let finished: Vec<i64> = self.finished_ids().clone();
        if finished.is_empty() {
            return;
        }
        let ids = finished.clone();
        if self
            .store
            .request(move |c| persist::outbox_delete(c, &ids))
            .wait()
            .await
            .is_ok()
        {
            self.finished_ids().retain(|id| !finished.contains(id));
            tracing::info!(
                notifications = finished.len(),
                "delivered notifications removed from the outbox"
            );
        }
    }

    /// Deletes finished rows; if the store cannot, they are remembered (see `finished`) so
    /// that they are not sent again.
    async fn finish(&self, receiver: &str, ids: Vec<i64>) {
        let ids2 = ids.clone();
        if let Err(e) = self
            .store
            .request(move |c| persist::outbox_delete(c, &ids2))
            .wait()
            .await
        {
            self.metrics.count_store_error(StoreOp::Outbox);
            tracing::error!(
                receiver,
                notifications = ids.len(),
                "delivered notifications cannot be removed from the outbox (they will not be sent again; removed when the store takes writes): {e}"
            );
            self.finished_ids().extend(ids);
        }
    }

    /// Sends `events` (kept in memory: the store could not take them) to `notifier` once, with
    /// the same judgement and metrics as [`Outbox::deliver_once`].
    pub async fn send_unsaved(
        &self,
        notifier: &dyn Notifier,
        events: &[AlertEvent],
        now: SystemTime,
    ) -> Verdict {
        let verdict = self.attempt(notifier, events, now).await;
        let receiver = notifier.name();
        let n = events.len() as u64;
        let now_ms = to_ms(now);
        match &verdict {
            Verdict::Accepted => {
                self.metrics
                    .count_notifications(receiver, NotificationResult::Sent, n);
                for e in events {
                    let waited = now_ms.saturating_sub(e.created_ms).max(0) as u64;
                    self.metrics
                        .observe_delivery(receiver, Duration::from_millis(waited));
                }
                tracing::info!(
                    receiver,
                    kind = notifier.kind(),
                    events = n,
                    "notification delivered from memory (not saved in the state store)"
                );
            }
            Verdict::Retry { reason, .. } => {
                self.metrics
                    .count_notifications(receiver, NotificationResult::Retried, n);
                tracing::warn!(
                    receiver,
                    kind = notifier.kind(),
                    events = n,
                    "notification (kept in memory) not delivered, will retry: {reason}"
                );
            }
            Verdict::Rejected { reason } => {
                self.metrics
                    .count_notifications(receiver, NotificationResult::Rejected, n);
                tracing::error!(
                    receiver,
                    kind = notifier.kind(),
                    events = n,
                    "notification refused by the receiver, dropped: {reason}"
                );
            }
        }
        verdict
    }

    /// The HTTP client (shared with the watchdog).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the head of `notifier`'s queue if it is due at `now`.
    pub async fn deliver_once(
        &self,
        notifier: &dyn Notifier,
        now: SystemTime,
    ) -> Result<(Next, Option<Attempt>), StoreError> {
        let receiver = notifier.name().to_string();
        let limit = notifier.max_batch().max(1);
        self.delete_finished().await;
        let head = {
            let r = receiver.clone();
            let skip: Vec<i64> = self.finished_ids().clone();
            let mut head = self
                .store
                .request({
                    let n = limit + skip.len();
                    move |c| persist::outbox_head(c, &r, n)
                })
                .wait()
                .await?;
            head.retain(|row| !skip.contains(&row.id));
            head.truncate(limit);
            head
        };
        let Some(first) = head.first() else {
            return Ok((Next::Idle, None));
        };
        let now_ms = to_ms(now);
        if first.next_attempt_ms > now_ms {
            return Ok((Next::At(from_ms(first.next_attempt_ms)), None));
        }
        // Rows queued behind a retried head wait with it: take the due prefix only.
        let batch: Vec<OutboxRow> = head
            .into_iter()
            .take_while(|r| r.next_attempt_ms <= now_ms)
            .collect();
        let events: Vec<_> = batch.iter().map(|r| r.event.clone()).collect();
        let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
        let attempts = batch.iter().map(|r| r.attempts).max().unwrap_or(0);
        let verdict = self.attempt(notifier, &events, now).await;
        let n = ids.len() as u64;
        match &verdict {
            Verdict::Accepted => {
                self.finish(&receiver, ids).await;
                self.metrics
                    .count_notifications(&receiver, NotificationResult::Sent, n);
                for r in &batch {
                    let waited = now_ms.saturating_sub(r.created_ms).max(0) as u64;
                    self.metrics
                        .observe_delivery(&receiver, Duration::from_millis(waited));
                }
                tracing::info!(
                    receiver = %receiver,
                    kind = notifier.kind(),
                    events = n,
                    attempts = attempts + 1,
                    "notification delivered"
                );
            }
            Verdict::Retry { after, reason } => {
                let wait = after.unwrap_or_else(|| backoff(attempts));
                let next = to_ms(now + wait);
                let error = reason.clone();
                // If this cannot be recorded the worker tries the head again in a few seconds.
                self.store
                    .request(move |c| persist::outbox_retry(c, &ids, next, &error))
                    .wait()
                    .await
                    .inspect_err(|_| self.metrics.count_store_error(StoreOp::Outbox))?;
                self.metrics
                    .count_notifications(&receiver, NotificationResult::Retried, n);
                tracing::warn!(
                    receiver = %receiver,
                    kind = notifier.kind(),
                    events = n,
                    attempt = attempts + 1,
                    retry_in_ms = wait.as_millis() as u64,
                    "notification not delivered, will retry: {reason}"
                );
            }
            Verdict::Rejected { reason } => {
                self.finish(&receiver, ids).await;
                self.metrics
                    .count_notifications(&receiver, NotificationResult::Rejected, n);
                tracing::error!(
                    receiver = %receiver,
                    kind = notifier.kind(),
                    events = n,
                    "notification refused by the receiver, dropped: {reason}"
                );
            }
        }
        Ok((
            Next::Again,
            Some(Attempt {
                events: n as usize,
                verdict,
            }),
        ))
    }

    /// One attempt at a batch: the notifier's own delivery (email), else its HTTP request.
    async fn attempt(
        &self,
        notifier: &dyn Notifier,
        events: &[AlertEvent],
        now: SystemTime,
    ) -> Verdict {
        if let Some(delivery) = notifier.deliver(events, now, &self.client) {
            return delivery.await;
        }
        match notifier.request(events, now) {
            Err(e) => Verdict::Rejected {
                reason: format!("cannot build the request: {e}"),
            },
            Ok(req) => self.send(notifier, req).await,
        }
    }

    async fn send(&self, notifier: &dyn Notifier, req: super::receiver::Outgoing) -> Verdict {
        match exchange(&self.client, req).await {
            Err(reason) => Verdict::Retry {
                after: None,
                reason,
            },
            Ok(answer) => notifier.judge(answer.status, &answer.headers, &answer.body),
        }
    }
}

/// What a receiver answered to one request (the body capped: only its start is ever looked at).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The answer's headers (`Retry-After`).
    pub headers: http::HeaderMap,
    /// At most the first 4 KiB of the body.
    pub body: Vec<u8>,
}

/// Sends one request through `client`: the answer, or the transport error in words (without
/// the URL, which may hold a secret). Receivers that send more than one request per batch
/// (an Alertmanager cluster) use it from [`Notifier::deliver`].
pub async fn exchange(
    client: &reqwest::Client,
    req: super::receiver::Outgoing,
) -> Result<Answer, String> {
    let mut builder = client
        .request(req.method.clone(), req.url.as_str())
        .body(req.body);
    for (k, v) in req.headers {
        builder = builder.header(k, v);
    }
    let resp = builder.send().await.map_err(|e| describe(&e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = read_capped(resp, 4096).await;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() {
        for (attempts, full) in [(0u32, 1u64), (1, 2), (2, 4), (5, 32), (6, 60), (40, 60)] {
            for _ in 0..50 {
                let d = backoff(attempts);
                let full = Duration::from_secs(full);
                assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d:?}");
            }
        }
    }
}
