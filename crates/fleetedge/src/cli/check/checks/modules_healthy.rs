use crate::cli::check::{Check, CheckContext, CheckResult};

/// Every module is running (or stopped on purpose).
pub struct ModulesHealthy;

#[async_trait::async_trait]
impl Check for ModulesHealthy {
    fn id(&self) -> &'static str {
        "modules-healthy"
    }
    fn description(&self) -> &'static str {
        "modules are healthy"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(rows) = &ctx.modules else {
            return CheckResult::skipped("the daemon is not running");
        };
        let bad: Vec<String> = rows
            .iter()
            .filter(|r| matches!(r.runtime_status.as_str(), "failed" | "backoff"))
            .map(|r| {
                format!(
                    "{} ({}{})",
                    r.name,
                    r.runtime_status,
                    r.exit_code
                        .map(|c| format!(", exit code {c}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        if bad.is_empty() {
            CheckResult::ok(format!("{} module(s)", rows.len()))
        } else {
            CheckResult::error(
                format!("unhealthy: {}", bad.join(", ")),
                "see `fleetedge logs <module>` and fix the module's command or settings in the deployment",
            )
        }
    }
}
