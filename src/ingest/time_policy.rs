//! The time policy: which profile timestamps a backend accepts.
//!
//! A profile is accepted when `now − retention ≤ t ≤ now + max_future`,
//! where `now` is the daemon's wall clock ([`Clock`]), never a timestamp a
//! writer sent. Older profiles would be deleted by retention, so they are
//! refused ([`IngestError::TooOld`]) rather than acknowledged; later ones
//! come from a wrong clock and would hold the head open for everyone, so
//! they are refused too ([`IngestError::TooNew`]). Inside the window every
//! profile is accepted, in any order.

use super::IngestError;
use crate::model::time::{format_duration, format_time};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

/// Default margin for profiles stamped after the daemon's clock: 10 minutes.
pub const DEFAULT_MAX_FUTURE_MS: i64 = 10 * 60 * 1000;

/// The wall clock a backend reads (ms since the epoch). Tests set it.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that reads `now` (tests move it).
    pub fn manual(now: Arc<AtomicI64>) -> Clock {
        Clock(Some(now))
    }

    /// Now, in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(t) => t.load(Relaxed),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::system"),
            Some(t) => write!(f, "Clock::manual({})", t.load(Relaxed)),
        }
    }
}

/// Which profile timestamps are accepted (see the module docs).
#[derive(Debug, Clone)]
pub struct TimePolicy {
    /// How far after `now` a profile may be stamped, in ms.
    pub max_future_ms: i64,
    /// Profiles older than `now − retention` are refused; `None` accepts
    /// any past timestamp.
    pub retention_ms: Option<i64>,
    /// The clock `now` is read from.
    pub clock: Clock,
}

impl Default for TimePolicy {
    fn default() -> Self {
        TimePolicy {
            max_future_ms: DEFAULT_MAX_FUTURE_MS,
            retention_ms: None,
            clock: Clock::system(),
        }
    }
}

impl TimePolicy {
    /// Now, by the policy's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The oldest timestamp accepted now, if retention bounds it.
    pub fn oldest_ms(&self, now: i64) -> Option<i64> {
        self.retention_ms.map(|r| now.saturating_sub(r))
    }

    /// Checks a profile's timestamp (ms) against the window around now.
    pub fn check(&self, timestamp: i64) -> Result<(), IngestError> {
        self.check_at(timestamp, self.now_ms())
    }

    /// [`TimePolicy::check`] at a given `now`.
    pub fn check_at(&self, timestamp: i64, now: i64) -> Result<(), IngestError> {
        if timestamp > now.saturating_add(self.max_future_ms) {
            return Err(IngestError::TooNew(format!(
                "profile stamped {} is more than max_future ({}) after the daemon's clock ({}); \
                 fix the writer's clock or its timestamps",
                format_time(timestamp),
                format_duration(self.max_future_ms),
                format_time(now)
            )));
        }
        if let (Some(oldest), Some(retention)) = (self.oldest_ms(now), self.retention_ms) {
            if timestamp < oldest {
                return Err(IngestError::TooOld(format!(
                    "profile stamped {} is older than the retention ({}): profiles before {} \
                     are deleted, so it is not stored",
                    format_time(timestamp),
                    format_duration(retention),
                    format_time(oldest)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_retention_before_now_to_max_future_after() {
        let now = Arc::new(AtomicI64::new(1_000_000_000_000));
        let p = TimePolicy {
            max_future_ms: 600_000,
            retention_ms: Some(86_400_000),
            clock: Clock::manual(now.clone()),
        };
        let t = 1_000_000_000_000;
        assert!(p.check(t).is_ok());
        assert!(p.check(t + 600_000).is_ok());
        assert!(p.check(t - 86_400_000).is_ok());
        let e = p.check(t + 600_001).unwrap_err();
        assert!(matches!(e, IngestError::TooNew(_)));
        assert!(e.to_string().contains("max_future (10m)"), "{e}");
        let e = p.check(t - 86_400_001).unwrap_err();
        assert!(matches!(e, IngestError::TooOld(_)));
        assert!(e.to_string().contains("retention (1d)"), "{e}");
        now.fetch_add(1, Relaxed);
        assert!(p.check(t + 600_001).is_ok());
        let open = TimePolicy {
            retention_ms: None,
            ..p
        };
        assert!(open.check(i64::MIN).is_ok());
        assert!(open.check(i64::MAX).is_err());
    }
}
