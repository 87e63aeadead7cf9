use crate::cli::check::{Check, CheckContext, CheckResult};
use crate::config::Provisioning;

/// TCP + TLS to the DPS endpoint, verified against the trust bundle.
pub struct DpsConnect;

#[async_trait::async_trait]
impl Check for DpsConnect {
    fn id(&self) -> &'static str {
        "host-connect-dps-endpoint"
    }
    fn description(&self) -> &'static str {
        "host can connect to and perform TLS handshake with the DPS endpoint"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let Provisioning::Dps { endpoint, .. } = &c.provisioning else {
            return CheckResult::skipped("manual provisioning: no DPS");
        };
        let Some(tls) = ctx.tls() else {
            return CheckResult::skipped("the trust bundle is unusable");
        };
        match tls.connect(&endpoint.host, endpoint.port).await {
            Ok(_) => CheckResult::ok(format!("{}:{}", endpoint.host, endpoint.port)),
            Err(e) => CheckResult::error(
                format!("{}:{}: {e}", endpoint.host, endpoint.port),
                "check global_endpoint, the network/firewall, and that trust_bundle_cert holds the CA of the DPS certificate",
            ),
        }
    }
}
