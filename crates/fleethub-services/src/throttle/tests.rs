use super::*;
use crate::clock::TestClock;
use chrono::{DateTime, Utc};
use std::sync::Arc;

fn clock() -> (Arc<TestClock>, Clock) {
    let start = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let t = TestClock::new(start);
    (t.clone(), Clock::from_source(t))
}

fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

fn config(op: Operation, limit: Limit) -> ThrottleConfig {
    let mut c: ThrottleConfig = serde_json::from_str("{}").unwrap();
    *c.limit_mut(op) = limit;
    c
}

#[test]
fn a_device_over_its_quota_is_refused_until_its_bucket_refills() {
    let (t, clock) = clock();
    let th = Throttle::new(
        config(Operation::TwinRead, Limit::new(2.0, 1000.0, 1.0)),
        clock,
    );
    let op = Operation::TwinRead;
    assert_eq!(th.admit(op, Some("d1")), Ok(()));
    assert_eq!(th.admit(op, Some("d1")), Ok(()));
    let e = th.admit(op, Some("d1")).unwrap_err();
    assert_eq!(e.retry_after, Duration::from_millis(500));
    assert_eq!(e.retry_after_secs(), 1);
    // Another device has its own bucket.
    assert_eq!(th.admit(op, Some("d2")), Ok(()));
    t.advance(ms(499));
    assert!(th.admit(op, Some("d1")).is_err());
    t.advance(ms(1));
    assert_eq!(th.admit(op, Some("d1")), Ok(()));
    // Other classes are not affected.
    assert_eq!(th.admit(Operation::TwinUpdate, Some("d1")), Ok(()));
}

#[test]
fn the_global_limit_holds_across_devices_and_gives_back_the_device_token() {
    let (t, clock) = clock();
    let op = Operation::DpsRegistration;
    // One per second per device, three per second in all.
    let th = Throttle::new(config(op, Limit::new(1.0, 3.0, 1.0)), clock);
    for i in 0..3 {
        assert_eq!(th.admit(op, Some(&format!("r{i}"))), Ok(()));
    }
    let e = th.admit(op, Some("r9")).unwrap_err();
    assert_eq!(e.op, op);
    assert_eq!(e.retry_after, Duration::from_nanos(333_333_333));
    // r9's own bucket was not charged for the refused request: as soon as the global bucket
    // has a token again, r9 gets it.
    t.advance(ms(334));
    assert_eq!(th.admit(op, Some("r9")), Ok(()));
    // ... and now r9's own bucket is what holds it back.
    t.advance(ms(334));
    let e = th.admit(op, Some("r9")).unwrap_err();
    assert_eq!(e.retry_after, Duration::from_millis(666));
}

#[test]
fn a_zero_rate_is_no_limit() {
    let (_t, clock) = clock();
    let op = Operation::Registry;
    let th = Throttle::new(config(op, Limit::new(0.0, 0.0, 1.0)), clock);
    for _ in 0..10_000 {
        assert_eq!(th.admit(op, Some("d")), Ok(()));
    }
    assert_eq!(th.tracked_identities(op), 0);
}

#[test]
fn pacing_delays_instead_of_refusing_and_serves_at_the_rate() {
    let (t, clock) = clock();
    let op = Operation::DeviceToCloud;
    let th = Throttle::new(config(op, Limit::new(10.0, 1000.0, 1.0)), clock);
    // The burst passes at once, then each message waits its turn: 100 messages take 9 s
    // beyond the burst of 10 at 10 per second.
    let mut waited = Duration::ZERO;
    for _ in 0..100 {
        let w = th.pace_device(op, "d1", 1);
        waited = waited.max(w);
        assert_eq!(th.pace_global(op, 1), Duration::ZERO);
    }
    assert_eq!(waited, Duration::from_secs(9));
    // A device under its quota is not delayed by another one's debt.
    assert_eq!(th.pace_device(op, "d2", 1), Duration::ZERO);
    // Once the time has passed, d1 is back to its burst.
    t.advance(ms(10_000 + 1000));
    assert_eq!(th.pace_device(op, "d1", 10), Duration::ZERO);
}

#[test]
fn pacing_the_global_bucket_spreads_all_devices_over_the_global_rate() {
    let (_t, clock) = clock();
    let op = Operation::DeviceToCloud;
    let th = Throttle::new(config(op, Limit::new(0.0, 100.0, 1.0)), clock);
    let waits: Vec<Duration> = (0..300).map(|_| th.pace_global(op, 1)).collect();
    assert_eq!(waits[99], Duration::ZERO);
    assert_eq!(waits[100], Duration::from_millis(10));
    assert_eq!(waits[299], Duration::from_secs(2));
}

#[test]
fn file_tables_change_only_the_keys_they_give() {
    let c: ThrottleConfig = serde_json::from_str(
        r#"{"device_to_cloud": {"per_device": 5}, "max_tracked_identities": 9}"#,
    )
    .unwrap();
    let d = ThrottleConfig::default();
    let want = Limit::new(5.0, d.device_to_cloud.global, d.device_to_cloud.burst_secs);
    assert_eq!(c.device_to_cloud, want);
    assert_eq!(c.twin_reads, d.twin_reads);
    assert_eq!(c.max_tracked_identities, 9);
    let back: ThrottleConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn bad_values_are_refused_with_their_key() {
    let bad = |json: &str| {
        serde_json::from_str::<ThrottleConfig>(json)
            .unwrap_err()
            .to_string()
    };
    assert!(bad(r#"{"twin_reads": {"global": -1}}"#).contains("throttle.twin_reads.global"));
    assert!(
        bad(r#"{"dps_registrations": {"burst_secs": 0}}"#)
            .contains("throttle.dps_registrations.burst_secs")
    );
    assert!(bad(r#"{"twin_reads": {"per_devise": 1}}"#).contains("per_devise"));
    assert!(bad(r#"{"twin_read": {}}"#).contains("twin_read"));
    assert!(bad(r#"{"max_tracked_identities": 0}"#).contains("max_tracked_identities"));
    assert_eq!(ThrottleConfig::default().validate(), Ok(()));
}
