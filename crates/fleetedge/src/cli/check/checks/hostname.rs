use crate::cli::check::{Check, CheckContext, CheckResult};

/// The gateway host name modules dial resolves.
pub struct Hostname;

#[async_trait::async_trait]
impl Check for Hostname {
    fn id(&self) -> &'static str {
        "hostname"
    }
    fn description(&self) -> &'static str {
        "gateway hostname resolves"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let h = c.hostname.clone();
        let resolved = tokio::net::lookup_host((h.as_str(), 8883))
            .await
            .is_ok_and(|mut a| a.next().is_some());
        if resolved {
            CheckResult::ok(h)
        } else {
            CheckResult::warn(
                format!(
                    "'{h}' does not resolve on this machine; modules and downstream devices dial it"
                ),
                "add it to DNS or /etc/hosts, or set `hostname` in the configuration to a resolvable name",
            )
        }
    }
}
