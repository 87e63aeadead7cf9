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
        if a["connected"] != true {
            let err = a["lastError"].as_str().unwrap_or("not connected yet");
            return CheckResult::warn(
                format!(
                    "the agent is not connected to the hub: {err} (modules run from the cached deployment)"
                ),
                "check connectivity and credentials (see the checks above)",
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
