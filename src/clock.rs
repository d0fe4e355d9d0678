//! Where canaryd reads the time.
//!
//! Every part whose behaviour depends on the wall clock (heartbeat lateness, alert rules'
//! `for` and `window`, reminders, silences, the outbox's backoff) takes a [`Clock`] instead of
//! calling `SystemTime::now`, so that tests move time with a [`ManualClock`] rather than sleep.
//! It is the lowest layer: it imports no other canaryd module, and every layer above may use it.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A source of the current time (the wall clock in production, a settable one in tests).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: SystemTime) -> ManualClock {
        ManualClock(Mutex::new(t))
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: SystemTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = t;
    }

    /// Moves the clock forward (it stays where it is if that would overflow).
    pub fn advance(&self, d: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.checked_add(d).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_never_overflows() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = ManualClock::new(t);
        assert_eq!(clock.now(), t);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), t + Duration::from_secs(5));
        clock.set(t);
        assert_eq!(clock.now(), t);
        clock.advance(Duration::MAX);
        assert_eq!(
            clock.now(),
            t,
            "an overflowing advance leaves the clock where it was"
        );
    }
}
