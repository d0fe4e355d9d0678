//! Phase boundaries of one exchange, recorded as they happen.
//!
//! The marks live outside the future that performs the exchange, so that when the deadline
//! cancels that future the caller still knows which phase was in progress and how long each
//! finished phase took. They are atomics only so that the future borrowing them stays `Send`;
//! one task reads and writes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::probe::{Phase, Phases, Reason};

use super::TransportError;

/// Index of one phase boundary in [`Progress::marks`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mark {
    /// Name resolution finished (or was not needed).
    Resolved = 0,
    /// The TCP connection is established.
    Connected = 1,
    /// The TLS handshake finished.
    TlsDone = 2,
    /// The request was (most recently) written and flushed.
    Written = 3,
    /// The first response byte was read.
    FirstByte = 4,
}

/// Phase boundaries of one exchange, in nanoseconds since [`Progress::start`] plus one
/// (zero means "not reached").
#[derive(Debug)]
pub(crate) struct Progress {
    start: Instant,
    tls: bool,
    marks: [AtomicU64; 5],
}

impl Progress {
    /// Starts the clock. `tls` says whether a handshake phase follows the connect.
    pub(crate) fn new(tls: bool) -> Self {
        Progress {
            start: Instant::now(),
            tls,
            marks: Default::default(),
        }
    }

    /// Records that `mark` was reached now.
    #[inline]
    pub(crate) fn mark(&self, mark: Mark) {
        self.mark_at(mark, Instant::now());
    }

    /// Records that `mark` was reached at `at`.
    #[inline]
    pub(crate) fn mark_at(&self, mark: Mark, at: Instant) {
        let nanos = at.saturating_duration_since(self.start).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1);
        self.marks[mark as usize].store(nanos + 1, Ordering::Relaxed);
    }

    /// Records that name resolution took no time (IP literal).
    pub(crate) fn mark_resolved_instantly(&self) {
        self.marks[Mark::Resolved as usize].store(1, Ordering::Relaxed);
    }

    fn get(&self, mark: Mark) -> Option<u64> {
        match self.marks[mark as usize].load(Ordering::Relaxed) {
            0 => None,
            n => Some(n - 1),
        }
    }

    /// Phase durations as of `now`, and the phase in progress then (`None` when every
    /// phase up to `last` is finished). Phases after `last` are never reported in progress.
    pub(crate) fn phases_at(&self, now: Instant, last: Phase) -> (Phases, Option<Phase>) {
        let now =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let span = |from: u64, to: u64| Duration::from_nanos(to.saturating_sub(from));
        let mut phases = Phases::default();

        let Some(resolved) = self.get(Mark::Resolved) else {
            phases.resolve = span(0, now);
            return (phases, Some(Phase::Resolve));
        };
        phases.resolve = span(0, resolved);

        let Some(connected) = self.get(Mark::Connected) else {
            phases.connect = span(resolved, now);
            return (phases, Some(Phase::Connect));
        };
        phases.connect = span(resolved, connected);

        let mut ready = connected;
        if self.tls {
            let Some(tls_done) = self.get(Mark::TlsDone) else {
                phases.tls = span(connected, now);
                return (phases, Some(Phase::Tls));
            };
            phases.tls = span(connected, tls_done);
            ready = tls_done;
        }
        if last == Phase::Tls || last == Phase::Connect || last == Phase::Resolve {
            return (phases, None);
        }

        let written = self.get(Mark::Written).unwrap_or(ready);
        let Some(first_byte) = self.get(Mark::FirstByte) else {
            phases.processing = span(written, now);
            return (phases, Some(Phase::Processing));
        };
        phases.processing = span(written, first_byte);
        phases.transfer = span(first_byte, now);
        let in_progress = if last == Phase::Transfer {
            Some(Phase::Transfer)
        } else {
            None
        };
        (phases, in_progress)
    }

    /// A failure now, attributed to the phase in progress (`last` bounds the phases, as in
    /// [`Progress::phases_at`]).
    pub(crate) fn fail(
        &self,
        reason: Reason,
        message: impl Into<String>,
        last: Phase,
    ) -> TransportError {
        let (phases, phase) = self.phases_at(Instant::now(), last);
        TransportError {
            reason,
            phase,
            message: message.into(),
            phases,
        }
    }

    /// The error for a deadline that expired now.
    pub(crate) fn timeout(&self, last: Phase) -> TransportError {
        let now = Instant::now();
        let (phases, phase) = self.phases_at(now, last);
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        let message = match phase {
            Some(phase) => format!("timed out during {phase} after {elapsed:.2}s"),
            None => format!("timed out after {elapsed:.2}s"),
        };
        TransportError {
            reason: Reason::Timeout,
            phase,
            message,
            phases,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_marks() {
        let p = Progress::new(true);
        let t0 = p.start;
        let ms = Duration::from_millis;
        let (ph, cur) = p.phases_at(t0 + ms(5), Phase::Transfer);
        assert_eq!(cur, Some(Phase::Resolve));
        assert_eq!(ph.resolve, ms(5));

        p.mark_at(Mark::Resolved, t0 + ms(1));
        p.mark_at(Mark::Connected, t0 + ms(3));
        let (ph, cur) = p.phases_at(t0 + ms(10), Phase::Transfer);
        assert_eq!(cur, Some(Phase::Tls));
        assert_eq!((ph.resolve, ph.connect, ph.tls), (ms(1), ms(2), ms(7)));

        p.mark_at(Mark::TlsDone, t0 + ms(10));
        let (_, cur) = p.phases_at(t0 + ms(10), Phase::Tls);
        assert_eq!(cur, None);

        p.mark_at(Mark::Written, t0 + ms(11));
        let (ph, cur) = p.phases_at(t0 + ms(20), Phase::Transfer);
        assert_eq!(cur, Some(Phase::Processing));
        assert_eq!(ph.processing, ms(9));

        p.mark_at(Mark::FirstByte, t0 + ms(30));
        let (ph, cur) = p.phases_at(t0 + ms(45), Phase::Transfer);
        assert_eq!(cur, Some(Phase::Transfer));
        assert_eq!((ph.processing, ph.transfer), (ms(19), ms(15)));
    }

    #[test]
    fn plain_http_has_no_tls_phase() {
        let p = Progress::new(false);
        let t0 = p.start;
        p.mark_resolved_instantly();
        p.mark_at(Mark::Connected, t0 + Duration::from_millis(2));
        let (ph, cur) = p.phases_at(t0 + Duration::from_millis(4), Phase::Transfer);
        assert_eq!(cur, Some(Phase::Processing));
        assert_eq!(ph.resolve, Duration::ZERO);
        assert_eq!(ph.tls, Duration::ZERO);
        assert_eq!(ph.processing, Duration::from_millis(2));
    }
}
