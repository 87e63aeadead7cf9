//! The services' one source of wall-clock time: the system clock in the server, a
//! [`TestClock`] that tests set and advance.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// Something that tells the time.
pub trait TimeSource: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl TimeSource for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn new(start: DateTime<Utc>) -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(start)))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = t;
    }

    pub fn advance(&self, d: chrono::Duration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t += d;
    }
}

impl TimeSource for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A cheap, shareable handle on a [`TimeSource`] with the formats the services need.
#[derive(Clone)]
pub struct Clock(Arc<dyn TimeSource>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(SystemClock))
    }

    pub fn from_source(source: Arc<dyn TimeSource>) -> Clock {
        Clock(source)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }

    /// Unix time in seconds (0 before 1970).
    pub fn unix(&self) -> u64 {
        u64::try_from(self.now().timestamp()).unwrap_or(0)
    }

    /// Unix time in milliseconds.
    pub fn unix_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Azure's UTC timestamp format (`2024-05-06T18:26:43.8429523Z`).
    pub fn now_utc(&self) -> String {
        fleethub_api::time::format_utc(self.now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2024-05-06T18:26:43Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = TestClock::new(start);
        let clock = Clock::from_source(t.clone());
        assert_eq!(clock.unix(), 1_715_020_003);
        assert_eq!(clock.now_utc(), "2024-05-06T18:26:43.0000000Z");
        t.advance(chrono::Duration::seconds(2));
        assert_eq!(clock.unix(), 1_715_020_005);
        assert_eq!(clock.unix_ms(), 1_715_020_005_000);
    }
}
