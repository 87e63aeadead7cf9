use crate::agent::device_link::DeviceLinkStatus;
use crate::cli::check::{Check, CheckContext, CheckResult};

/// The daemon's device-level connection to the hub is up (the hub shows the device
/// `Connected`).
pub struct DeviceConnection;

#[async_trait::async_trait]
impl Check for DeviceConnection {
    fn id(&self) -> &'static str {
        "edge-device-connected"
    }
    fn description(&self) -> &'static str {
        "the device is connected to the hub"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        match &ctx.daemon {
            None => CheckResult::skipped("the daemon is not running"),
            Some(d) => judge(&d.device_connection),
        }
    }
}

fn judge(s: &DeviceLinkStatus) -> CheckResult {
    match super::edge_agent::link_problem(s, chrono::Utc::now()) {
        None => CheckResult::ok(s.summary()),
        Some(problem) => CheckResult::warn(
            format!("the device is {problem} (the daemon keeps retrying)"),
            "check connectivity and credentials (see the checks above)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::check::Outcome;

    #[test]
    fn connected_is_ok_and_down_is_a_warning_with_the_reason() {
        let up = DeviceLinkStatus {
            connected: true,
            connected_since_utc: Some("2026-01-01T00:00:00+00:00".into()),
            last_error: None,
            // the daemon proves the connection with a round trip every few seconds
            last_round_trip_utc: Some(chrono::Utc::now().to_rfc3339()),
            ..Default::default()
        };
        assert_eq!(judge(&up).result, Outcome::Ok);
        let down = DeviceLinkStatus {
            last_error: Some("connection refused".into()),
            ..Default::default()
        };
        let r = judge(&down);
        assert_eq!(r.result, Outcome::Warning);
        assert!(
            r.details
                .unwrap()
                .contains("not connected: connection refused")
        );
    }
}
