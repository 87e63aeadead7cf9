//! Telemetry messages per minute over the last hour, for the overview's chart: a background
//! task reads the server's stored-telemetry counter (`fleethub_telemetry_messages_total`) once
//! a second and counts the difference into 60 one-minute buckets. (It used to read the hub's
//! live feed, which cost a task wake-up per stored message.) It starts with the server, so
//! after a restart the chart fills up again from then on.

use fleethub_services::{Clock, Metrics};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the counter is read.
const SAMPLE: Duration = Duration::from_secs(1);

/// Minutes the chart covers.
pub const MINUTES: usize = 60;

/// Per-minute message counts.
#[derive(Debug)]
pub struct TelemetryRate {
    clock: Clock,
    /// (minute since the epoch, count), one slot per minute modulo [`MINUTES`].
    buckets: Mutex<[(u64, u64); MINUTES]>,
}

impl TelemetryRate {
    /// An empty counter (nothing feeds it: see [`TelemetryRate::start`]).
    pub fn new(clock: Clock) -> Arc<TelemetryRate> {
        Arc::new(TelemetryRate {
            clock,
            buckets: Mutex::new([(0, 0); MINUTES]),
        })
    }

    /// A counter fed from `metrics` (the stored-telemetry counter) for as long as it is in
    /// use. Needs a tokio runtime.
    pub fn start(metrics: Arc<Metrics>, clock: Clock) -> Arc<TelemetryRate> {
        let rate = TelemetryRate::new(clock);
        let weak = Arc::downgrade(&rate);
        tokio::spawn(async move {
            let stored = || metrics.telemetry_messages.load(Ordering::Relaxed);
            let mut seen = stored();
            let mut tick = tokio::time::interval(SAMPLE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(rate) = weak.upgrade() else { return };
                let now = stored();
                if now > seen {
                    rate.add(now - seen);
                }
                seen = now;
            }
        });
        rate
    }

    /// Counts `n` messages now.
    pub fn add(&self, n: u64) {
        let minute = self.clock.unix() / 60;
        let mut b = self.buckets.lock().expect("rate lock");
        let slot = &mut b[(minute % MINUTES as u64) as usize];
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += n;
    }

    /// The last [`MINUTES`] minutes, oldest first (the current minute last).
    pub fn per_minute(&self) -> Vec<u64> {
        let now = self.clock.unix() / 60;
        let b = self.buckets.lock().expect("rate lock");
        (0..MINUTES as u64)
            .rev()
            .map(|ago| {
                let minute = now.saturating_sub(ago);
                let slot = b[(minute % MINUTES as u64) as usize];
                if slot.0 == minute { slot.1 } else { 0 }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleethub_services::clock::TestClock;

    #[test]
    fn counts_per_minute_and_forgets_after_an_hour() {
        let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .to_utc();
        let clock = TestClock::new(start);
        let rate = TelemetryRate::new(Clock::from_source(clock.clone()));
        rate.add(3);
        clock.advance(chrono::Duration::seconds(61));
        rate.add(2);
        rate.add(1);
        let m = rate.per_minute();
        assert_eq!(m.len(), MINUTES);
        assert_eq!((m[MINUTES - 2], m[MINUTES - 1]), (3, 3));
        clock.advance(chrono::Duration::minutes(59));
        assert_eq!(
            rate.per_minute()[0],
            3,
            "59 minutes later the oldest slot is the second minute"
        );
        clock.advance(chrono::Duration::minutes(2));
        assert!(
            rate.per_minute().iter().all(|&n| n == 0),
            "older than an hour: gone"
        );
    }

    #[tokio::test]
    async fn started_it_counts_what_the_stored_telemetry_counter_adds() {
        let metrics = Arc::new(Metrics::default());
        metrics.telemetry_messages.store(40, Ordering::Relaxed);
        let rate = TelemetryRate::start(metrics.clone(), Clock::system());
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics.telemetry_messages.fetch_add(5, Ordering::Relaxed);
        metrics.telemetry_messages.fetch_add(2, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while rate.per_minute().iter().sum::<u64>() < 7 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            rate.per_minute().iter().sum::<u64>(),
            7,
            "what was stored before the start is not counted"
        );
    }
}
