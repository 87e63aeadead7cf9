//! Token buckets in their GCRA form (generic cell rate algorithm): a bucket is one number, the
//! "theoretical arrival time" (TAT) at which it would be full again. An operation costing `n`
//! tokens moves the TAT `n * interval` further; it conforms when the new TAT is at most one
//! bucket (`capacity`) ahead of now. A bucket whose TAT has passed is full, so forgetting it
//! changes nothing: idle per-device buckets are simply dropped.
//!
//! [`GlobalBucket`] keeps its TAT in an atomic (compare-and-swap, no lock);
//! [`DeviceBuckets`] keeps one TAT per identity in a sharded map (a short lock on one of
//! [`SHARDS`] shards per operation, never a global one), bounded in size.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Nanoseconds.
type Nanos = i64;

/// Shards of a [`DeviceBuckets`] map.
pub(crate) const SHARDS: usize = 32;

/// A bucket is never more than this far in debt (pacing), and a TAT further ahead (e.g. after
/// the wall clock stepped back) is pulled back to it.
const MAX_DEBT: Nanos = 60 * 1_000_000_000;

/// Rate and size of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Time one token takes to come back.
    interval: Nanos,
    /// Bucket size in time: `tokens * interval`.
    capacity: Nanos,
}

impl Shape {
    /// `None` for a rate of 0 (no limit).
    pub(crate) fn new(rate_per_sec: f64, burst_secs: f64) -> Option<Shape> {
        if rate_per_sec <= 0.0 || !rate_per_sec.is_finite() {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)] // bounded: at least 1 ns, at most 1e9 s
        let interval = (1e9 / rate_per_sec).clamp(1.0, 1e18) as Nanos;
        let tokens = (rate_per_sec * burst_secs).max(1.0);
        #[allow(clippy::cast_possible_truncation)]
        let capacity = (tokens * interval as f64).min(1e18) as Nanos;
        Some(Shape { interval, capacity })
    }

    /// What taking `n` tokens at `now` does to a bucket at `tat`: the new TAT, and how long
    /// the caller would have to wait for the operation to conform (0 = conforms now).
    fn take(self, tat: Nanos, now: Nanos, n: u32) -> (Nanos, Nanos) {
        let base = tat.clamp(now, now.saturating_add(self.capacity + MAX_DEBT));
        let new_tat = base.saturating_add(self.interval.saturating_mul(i64::from(n.max(1))));
        let wait = (new_tat - now - self.capacity).max(0);
        (new_tat, wait)
    }
}

/// The outcome of asking a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Taken; nothing to wait.
    Now,
    /// Taken in advance (pacing): the operation may proceed after this many nanoseconds.
    After(Nanos),
    /// Not taken: the bucket has room again after this many nanoseconds.
    Refused(Nanos),
}

/// Whether an over-limit operation is refused or taken in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Refuse,
    Pace,
}

fn decide(shape: Shape, tat: Nanos, now: Nanos, n: u32, mode: Mode) -> (Option<Nanos>, Take) {
    let (new_tat, wait) = shape.take(tat, now, n);
    match (wait, mode) {
        (0, _) => (Some(new_tat), Take::Now),
        (w, Mode::Pace) => (Some(new_tat), Take::After(w)),
        (w, Mode::Refuse) => (None, Take::Refused(w)),
    }
}

/// One bucket shared by all identities.
#[derive(Debug)]
pub(crate) struct GlobalBucket {
    shape: Shape,
    tat: AtomicI64,
}

impl GlobalBucket {
    pub(crate) fn new(shape: Shape) -> Self {
        GlobalBucket {
            shape,
            tat: AtomicI64::new(0),
        }
    }

    pub(crate) fn take(&self, now: Nanos, n: u32, mode: Mode) -> Take {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let (new_tat, take) = decide(self.shape, tat, now, n, mode);
            let Some(new_tat) = new_tat else { return take };
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return take,
                Err(current) => tat = current,
            }
        }
    }
}

/// One bucket per identity, at most `max` of them remembered.
#[derive(Debug)]
pub(crate) struct DeviceBuckets {
    shape: Shape,
    /// Most entries per shard.
    max_per_shard: usize,
    hasher: std::hash::RandomState,
    shards: Box<[Mutex<HashMap<Box<str>, Nanos>>]>,
}

impl DeviceBuckets {
    pub(crate) fn new(shape: Shape, max: usize) -> Self {
        DeviceBuckets {
            shape,
            max_per_shard: max.div_ceil(SHARDS).max(1),
            hasher: std::hash::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, identity: &str) -> &Mutex<HashMap<Box<str>, Nanos>> {
        #[allow(clippy::cast_possible_truncation)] // only the low bits pick a shard
        let i = self.hasher.hash_one(identity) as usize % SHARDS;
        &self.shards[i]
    }

    pub(crate) fn take(&self, identity: &str, now: Nanos, n: u32, mode: Mode) -> Take {
        let mut map = self
            .shard(identity)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One lookup for a remembered identity (this runs for every telemetry burst).
        if let Some(t) = map.get_mut(identity) {
            let (new_tat, take) = decide(self.shape, *t, now, n, mode);
            if let Some(new_tat) = new_tat {
                *t = new_tat;
            }
            return take;
        }
        let (new_tat, take) = decide(self.shape, now, now, n, mode);
        if let Some(new_tat) = new_tat {
            if map.len() >= self.max_per_shard {
                evict(&mut map, now, self.max_per_shard);
            }
            map.insert(identity.into(), new_tat);
        }
        take
    }

    /// Gives back `n` tokens taken at `now` by `identity`.
    pub(crate) fn give_back(&self, identity: &str, now: Nanos, n: u32) {
        let cost = self.shape.interval.saturating_mul(i64::from(n.max(1)));
        let mut map = self
            .shard(identity)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = map.get_mut(identity) {
            *t = (*t - cost).max(now);
        }
    }

    /// Identities remembered now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

/// Makes room in a full shard: drops every full (idle) bucket; when all are still in use, the
/// one closest to full (the least information lost).
fn evict(map: &mut HashMap<Box<str>, Nanos>, now: Nanos, max: usize) {
    map.retain(|_, tat| *tat > now);
    if map.len() >= max
        && let Some(oldest) = map
            .iter()
            .min_by_key(|(_, tat)| **tat)
            .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;

    #[test]
    fn a_bucket_holds_rate_times_burst_tokens_and_refills_at_the_rate() {
        let shape = Shape::new(2.0, 1.0).unwrap();
        let b = GlobalBucket::new(shape);
        let t0 = 100 * S;
        assert_eq!(b.take(t0, 1, Mode::Refuse), Take::Now);
        assert_eq!(b.take(t0, 1, Mode::Refuse), Take::Now);
        assert_eq!(b.take(t0, 1, Mode::Refuse), Take::Refused(S / 2));
        // Refusing took nothing: half a second later one token is back.
        assert_eq!(b.take(t0 + S / 2, 1, Mode::Refuse), Take::Now);
        assert_eq!(b.take(t0 + S / 2, 1, Mode::Refuse), Take::Refused(S / 2));
        // Idle for long: full again, not more than full.
        assert_eq!(b.take(t0 + 60 * S, 2, Mode::Refuse), Take::Now);
        assert_eq!(b.take(t0 + 60 * S, 1, Mode::Refuse), Take::Refused(S / 2));
    }

    #[test]
    fn pacing_takes_in_advance_and_says_how_long_to_wait() {
        let b = GlobalBucket::new(Shape::new(10.0, 1.0).unwrap());
        let t0 = 5 * S;
        assert_eq!(b.take(t0, 10, Mode::Pace), Take::Now);
        assert_eq!(b.take(t0, 1, Mode::Pace), Take::After(S / 10));
        assert_eq!(b.take(t0, 5, Mode::Pace), Take::After(6 * S / 10));
        // The debt is what a refusing caller now sees too.
        assert_eq!(b.take(t0, 1, Mode::Refuse), Take::Refused(7 * S / 10));
    }

    #[test]
    fn debt_is_bounded_and_a_clock_step_back_does_not_lock_a_bucket() {
        let b = GlobalBucket::new(Shape::new(1.0, 1.0).unwrap());
        let t0 = 1000 * S;
        for _ in 0..500 {
            let _ = b.take(t0, 1, Mode::Pace);
        }
        let Take::After(w) = b.take(t0, 1, Mode::Pace) else {
            panic!()
        };
        assert!(w <= MAX_DEBT + S, "{w}");
        // The clock goes back an hour: the wait stays within the bound.
        let Take::Refused(w) = b.take(t0 - 3600 * S, 1, Mode::Refuse) else {
            panic!()
        };
        assert!(w <= MAX_DEBT + S, "{w}");
    }

    #[test]
    fn zero_rate_means_no_bucket() {
        assert_eq!(Shape::new(0.0, 1.0), None);
        // A rate below one per burst still lets one operation through.
        let b = GlobalBucket::new(Shape::new(0.1, 1.0).unwrap());
        assert_eq!(b.take(S, 1, Mode::Refuse), Take::Now);
        assert_eq!(b.take(S, 1, Mode::Refuse), Take::Refused(10 * S));
    }

    #[test]
    fn per_device_buckets_are_separate_and_bounded() {
        let d = DeviceBuckets::new(Shape::new(1.0, 1.0).unwrap(), SHARDS * 4);
        let t0 = 10 * S;
        assert_eq!(d.take("a", t0, 1, Mode::Refuse), Take::Now);
        assert_eq!(d.take("a", t0, 1, Mode::Refuse), Take::Refused(S));
        assert_eq!(d.take("b", t0, 1, Mode::Refuse), Take::Now);
        // Thousands of identities: memory stays at the bound.
        for i in 0..10_000 {
            let _ = d.take(&format!("dev-{i}"), t0, 1, Mode::Refuse);
        }
        assert!(d.len() <= SHARDS * 4, "{}", d.len());
        // Idle buckets are dropped first, and dropping one changes nothing.
        let later = t0 + 10 * S;
        for i in 0..10_000 {
            assert_eq!(d.take(&format!("x-{i}"), later, 1, Mode::Refuse), Take::Now);
        }
        assert!(d.len() <= SHARDS * 4);
    }

    #[test]
    fn a_device_over_its_quota_stays_refused_while_others_churn() {
        // Two identities per shard; when a shard is full of buckets in use, the one closest to
        // full goes, not the one deepest in debt.
        let d = DeviceBuckets::new(Shape::new(1.0, 1.0).unwrap(), SHARDS * 2);
        let t0 = 10 * S;
        assert_eq!(d.take("busy", t0, 1, Mode::Refuse), Take::Now);
        for i in 0..200 {
            let _ = d.take(&format!("other-{i}"), t0 - 5 * S, 1, Mode::Refuse);
        }
        assert!(d.len() <= SHARDS * 2);
        assert_eq!(
            d.take("busy", t0 + S / 2, 1, Mode::Refuse),
            Take::Refused(S / 2)
        );
    }
}
