use crate::cli::check::{Check, CheckContext, CheckResult};
use crate::mgmt::{self, DaemonStatus, ModuleRow};
use crate::state::StateDir;

/// The daemon answers on its management socket.
pub struct DaemonRunning;

#[async_trait::async_trait]
impl Check for DaemonRunning {
    fn id(&self) -> &'static str {
        "daemon-running"
    }
    fn description(&self) -> &'static str {
        "fleetedge daemon is running"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let sock = StateDir::new(&c.homedir).mgmt_socket();
        match mgmt::call(&sock, http::Method::GET, "/status").await {
            Ok(v) => {
                let st: DaemonStatus = serde_json::from_value(v).unwrap_or_default();
                let details = format!(
                    "pid {}, device '{}' on {}",
                    st.pid, st.device_id, st.hub_hostname
                );
                ctx.daemon = Some(st);
                if let Ok(rows) = mgmt::call(&sock, http::Method::GET, "/modules").await {
                    ctx.modules = serde_json::from_value::<Vec<ModuleRow>>(rows).ok();
                }
                CheckResult::ok(details)
            }
            Err(e) => CheckResult::error(
                e,
                "start it: `systemctl start fleetedge`; see `fleetedge system logs`",
            ),
        }
    }
}
