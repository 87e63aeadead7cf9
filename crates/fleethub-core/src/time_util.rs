//! Small time helpers.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current time in unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2023() {
        assert!(now_unix() > 1_700_000_000);
    }
}
