use crate::cli::check::{Check, CheckContext, CheckResult};

/// TCP + TLS to the hub on its HTTPS or MQTT port.
pub enum HubConnect {
    Https,
    Mqtt,
}

#[async_trait::async_trait]
impl Check for HubConnect {
    fn id(&self) -> &'static str {
        match self {
            HubConnect::Https => "host-connect-iothub-https",
            HubConnect::Mqtt => "host-connect-iothub-mqtt",
        }
    }
    fn description(&self) -> &'static str {
        match self {
            HubConnect::Https => {
                "host can connect to and perform TLS handshake with the hub HTTPS port"
            }
            HubConnect::Mqtt => {
                "host can connect to and perform TLS handshake with the hub MQTT port"
            }
        }
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let Some(hub) = ctx.hub_hostname() else {
            return CheckResult::skipped(
                "the device has not been provisioned yet (no assigned hub)",
            );
        };
        let port = match self {
            HubConnect::Https => c.hub.https_port,
            HubConnect::Mqtt => c.hub.mqtt_port,
        };
        let Some(tls) = ctx.tls() else {
            return CheckResult::skipped("the trust bundle is unusable");
        };
        match tls.connect(&hub, port).await {
            Ok(_) => CheckResult::ok(format!("{hub}:{port}")),
            Err(e) => CheckResult::error(
                format!("{hub}:{port}: {e}"),
                "check the network/firewall, [hub] ports in the configuration, and that trust_bundle_cert holds the hub's CA",
            ),
        }
    }
}
