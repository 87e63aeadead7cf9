use crate::cli::check::{Check, CheckContext, CheckResult};
use crate::state::StateDir;

/// `config apply` ran after the last edit of the configuration.
pub struct ConfigApplied;

#[async_trait::async_trait]
impl Check for ConfigApplied {
    fn id(&self) -> &'static str {
        "config-up-to-date"
    }
    fn description(&self) -> &'static str {
        "configuration has been applied"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let applied = StateDir::new(&c.homedir).applied_config();
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (modified(&c.path), modified(&applied)) {
            (_, None) => CheckResult::warn(
                format!("{} does not exist", applied.display()),
                "run `fleetedge config apply`",
            ),
            (Some(cfg), Some(app)) if cfg > app => CheckResult::warn(
                format!("{} changed after the last `config apply`", c.path.display()),
                "run `fleetedge config apply`",
            ),
            _ => CheckResult::ok(""),
        }
    }
}
