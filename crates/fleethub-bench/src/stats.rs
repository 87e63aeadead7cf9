//! Latency statistics.

/// Nearest-rank percentile (`p` in 0..=100) of an ascending-sorted slice; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `n / seconds`, 0 when no time elapsed.
pub fn rate(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// Latency histogram in microseconds, log-linear (exact below 128 µs, then 64 sub-buckets
/// per power of two: at most ~1.6 % error), cheap to record and to merge across tasks and
/// processes (serialized sparse).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

const LINEAR: u64 = 128;
const SUB_BITS: u32 = 6;

fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = us.ilog2(); // >= 7
    let sub = (us >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (LINEAR + u64::from(exp - 7) * (1 << SUB_BITS) + sub) as usize
}

/// Lowest value that falls in bucket `i`.
fn bucket_floor(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exp = (i - LINEAR) / (1 << SUB_BITS) + 7;
    let sub = (i - LINEAR) % (1 << SUB_BITS);
    (1 << exp) | (sub << (exp - u64::from(SUB_BITS)))
}

impl Histogram {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, d: std::time::Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn record_us(&mut self, us: u64) {
        let b = bucket_of(us);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1e3
    }

    /// Nearest-rank percentile (`p` in 0..=100) in milliseconds (the bucket's lower bound,
    /// capped by the maximum seen); 0 when empty.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0 * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_floor(i).min(self.max_us) as f64 / 1e3;
            }
        }
        self.max_ms()
    }

    /// Sparse form: `(bucket, count)` pairs of the non-empty buckets, plus the maximum.
    pub fn to_sparse(&self) -> SparseHistogram {
        SparseHistogram {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i as u32, *c))
                .collect(),
            max_us: self.max_us,
        }
    }

    pub fn from_sparse(s: &SparseHistogram) -> Self {
        let mut h = Histogram::new();
        for &(i, c) in &s.buckets {
            let i = (i as usize).min(4096);
            if h.counts.len() <= i {
                h.counts.resize(i + 1, 0);
            }
            h.counts[i] += c;
            h.total += c;
        }
        h.max_us = s.max_us;
        h
    }
}

/// Serializable [`Histogram`] (what worker processes report).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SparseHistogram {
    pub buckets: Vec<(u32, u64)>,
    pub max_us: u64,
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "the expected values are exact: nearest-rank picks an element, rates divide small integers"
)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut prev = 0;
        for us in [
            0u64, 1, 127, 128, 129, 200, 1000, 5_000, 123_456, 10_000_000,
        ] {
            let b = bucket_of(us);
            assert!(b >= prev, "{us}");
            prev = b;
            let floor = bucket_floor(b);
            assert!(floor <= us, "{us}: floor {floor}");
            assert!(us - floor <= us / 64 + 1, "{us}: floor {floor}");
        }
    }

    #[test]
    fn histogram_percentiles_and_merge() {
        let mut a = Histogram::new();
        for us in 1..=100u64 {
            a.record_us(us * 1000);
        }
        assert_eq!(a.count(), 100);
        let p50 = a.percentile_ms(50.0);
        assert!((49.0..=50.0).contains(&p50), "{p50}");
        let p99 = a.percentile_ms(99.0);
        assert!((97.5..=99.0).contains(&p99), "{p99}");
        assert_eq!(a.max_ms(), 100.0);
        let mut b = Histogram::from_sparse(&a.to_sparse());
        assert_eq!(b, {
            let mut c = a.clone();
            c.counts.truncate(b.counts.len());
            c
        });
        b.merge(&a);
        assert_eq!(b.count(), 200);
        assert!((49.0..=50.0).contains(&b.percentile_ms(50.0)));
        assert_eq!(Histogram::new().percentile_ms(50.0), 0.0);
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), 2.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn rates() {
        assert_eq!(rate(10, 2.0), 5.0);
        assert_eq!(rate(10, 0.0), 0.0);
    }
}
