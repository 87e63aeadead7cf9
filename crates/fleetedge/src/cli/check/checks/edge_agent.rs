use chrono::{DateTime, Utc};

use crate::agent::link::{LinkStatus, PING_INTERVAL, PING_TIMEOUT};
use crate::cli::check::{Check, CheckContext, CheckResult};

/// The agent is connected and its last deployment applied.
pub struct EdgeAgent;

#[async_trait::async_trait]
impl Check for EdgeAgent {
    fn id(&self) -> &'static str {
        "edge-agent-deployment"
    }
    fn description(&self) -> &'static str {
        "agent is connected and the deployment is applied"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(d) = &ctx.daemon else {
            return CheckResult::skipped("the daemon is not running");
        };
        let a = &d.agent;
        let code = a["lastDesiredStatusCode"].as_u64();
        let desc = a["lastDesiredStatusDescription"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let link: LinkStatus = serde_json::from_value(a.clone()).unwrap_or_default();
        if let Some(problem) = link_problem(&link, chrono::Utc::now()) {
            return CheckResult::warn(
                format!(
                    "the agent's hub connection: {problem} (modules run from the cached deployment)"
                ),
                "check connectivity and credentials (see the checks above); `fleetedge system status` shows the connection",
            );
        }
        match code {
            Some(200) => CheckResult::ok(format!("deployment version {}", a["lastDesiredVersion"])),
            Some(417) => CheckResult::warn(
                desc,
                "set a deployment: patch the $edgeAgent module twin's desired properties (docs/edge.md)",
            ),
            Some(c) => CheckResult::error(
                format!("lastDesiredStatus {c}: {desc}"),
                "fix the deployment manifest in the $edgeAgent module twin",
            ),
            None => CheckResult::warn(
                "no deployment processed yet",
                "wait a few seconds and run the check again",
            ),
        }
    }
}

/// Why the connection cannot be trusted: it is down, or the hub answered nothing for longer
/// than the daemon's round-trip period allows.
pub(crate) fn link_problem(link: &LinkStatus, now: DateTime<Utc>) -> Option<String> {
    if !link.connected {
        return Some(link.summary_at(now));
    }
    let limit = 2 * (PING_INTERVAL + PING_TIMEOUT);
    let last = link
        .last_round_trip_utc
        .as_deref()
        .or(link.connected_since_utc.as_deref())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())?;
    let silent = (now - last.with_timezone(&Utc))
        .to_std()
        .unwrap_or_default();
    (silent > limit).then(|| {
        format!(
            "connected on paper, but the hub answered nothing for {} s ({})",
            silent.as_secs(),
            link.summary_at(now)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_down_or_silent_connection_is_a_problem() {
        let mut l = LinkStatus::default();
        l.set_up(t("2026-01-01T00:00:00Z"));
        l.round_trip(t("2026-01-01T00:00:01Z"));
        assert_eq!(link_problem(&l, t("2026-01-01T00:00:10Z")), None);
        let silent = link_problem(&l, t("2026-01-01T00:01:00Z")).unwrap();
        assert!(silent.contains("answered nothing for 59 s"), "{silent}");
        l.set_down(t("2026-01-01T00:00:20Z"), Some("connection refused".into()));
        let down = link_problem(&l, t("2026-01-01T00:00:25Z")).unwrap();
        assert!(
            down.starts_with(
                "disconnected since 2026-01-01T00:00:20+00:00 (5 seconds ago): connection refused"
            ),
            "{down}"
        );
    }
}
