//! Restart decisions and exponential back-off (edgeAgent's cool-off: the wait doubles with
//! every consecutive restart up to a maximum; a run longer than `stable_after` resets it).

use std::time::Duration;

use super::RestartPolicy;

/// Back-off settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// A module that ran at least this long starts over at `initial`.
    pub stable_after: Duration,
}

impl Backoff {
    /// The wait before restart number `restart_count + 1`.
    pub fn delay(&self, restart_count: u32) -> Duration {
        let factor = 1u32 << restart_count.min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The restart count to continue from after a run of `ran_for`.
    pub fn count_after_run(&self, restart_count: u32, ran_for: Duration) -> u32 {
        if ran_for >= self.stable_after {
            0
        } else {
            restart_count
        }
    }
}

/// Whether a module that exited with `exit_code` (None: killed by a signal or could not
/// start) is restarted under `policy`.
pub fn should_restart(policy: RestartPolicy, exit_code: Option<i32>) -> bool {
    match policy {
        RestartPolicy::Never => false,
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure | RestartPolicy::OnUnhealthy => exit_code != Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_secs(10),
        max: Duration::from_mins(5),
        stable_after: Duration::from_mins(10),
    };

    #[test]
    fn doubles_up_to_the_maximum() {
        let delays: Vec<u64> = (0..8).map(|n| B.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(B.delay(u32::MAX), Duration::from_mins(5));
    }

    #[test]
    fn a_stable_run_resets_the_count() {
        assert_eq!(B.count_after_run(5, Duration::from_secs(3)), 5);
        assert_eq!(B.count_after_run(5, Duration::from_mins(10)), 0);
    }

    #[test]
    fn policies() {
        use RestartPolicy::*;
        assert!(!should_restart(Never, Some(1)));
        assert!(should_restart(Always, Some(0)));
        assert!(should_restart(OnFailure, Some(2)));
        assert!(should_restart(OnFailure, None));
        assert!(!should_restart(OnFailure, Some(0)));
        assert!(!should_restart(OnUnhealthy, Some(0)));
    }
}
