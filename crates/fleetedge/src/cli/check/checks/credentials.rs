use crate::cli::check::{Check, CheckContext, CheckResult};
use fleethub_device::ModuleIdentityClient;

/// A real SAS-authenticated call with the device key.
pub struct Credentials;

#[async_trait::async_trait]
impl Check for Credentials {
    fn id(&self) -> &'static str {
        "device-credentials"
    }
    fn description(&self) -> &'static str {
        "hub accepts the device credentials"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let (Some(hub), Some(device)) = (ctx.hub_hostname(), ctx.device_id()) else {
            return CheckResult::skipped("the device has not been provisioned yet");
        };
        let key = match c.provisioning.key().load() {
            Ok(k) => k,
            Err(e) => return CheckResult::error(e, "fix the key in [provisioning]"),
        };
        let Some(tls) = ctx.tls() else {
            return CheckResult::skipped("the trust bundle is unusable");
        };
        let client = match ModuleIdentityClient::new(&hub, &device, key, tls) {
            Ok(cl) => cl.with_port(c.hub.https_port),
            Err(e) => return CheckResult::error(e.to_string(), "fix the key in [provisioning]"),
        };
        match client.get("$edgeAgent").await {
            Ok(_) => CheckResult::ok(format!("device '{device}' on {hub}")),
            Err(e) if e.is_unauthorized() => CheckResult::error(
                format!("device '{device}' on {hub}: {e}"),
                "the key or device is wrong or was deleted; fix [provisioning] (or `fleetedge system reprovision` for DPS)",
            ),
            Err(e) if e.is_network() => {
                CheckResult::warn(e.to_string(), "check connectivity to the hub")
            }
            Err(e) => CheckResult::error(
                e.to_string(),
                "make sure the device is an IoT Edge device (capabilities.iotEdge = true)",
            ),
        }
    }
}
