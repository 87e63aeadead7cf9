use crate::cli::check::{Check, CheckContext, CheckResult};
use crate::config::Provisioning;
use fleethub_device::{HttpsClient, HttpsRequest};

/// Compares the local clock with the server's `Date` header (SAS tokens need a sane clock).
pub struct ClockSkew;

/// Warn at 10 s (like `iotedge check`), fail at 5 minutes (SAS tolerance).
pub const WARN_SECS: i64 = 10;
pub const ERROR_SECS: i64 = 300;

#[async_trait::async_trait]
impl Check for ClockSkew {
    fn id(&self) -> &'static str {
        "host-local-time"
    }
    fn description(&self) -> &'static str {
        "host time is close to the server's time"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let target = match (ctx.hub_hostname(), &c.provisioning) {
            (Some(h), _) => (h, c.hub.https_port),
            (None, Provisioning::Dps { endpoint, .. }) => (endpoint.host.clone(), endpoint.port),
            _ => return CheckResult::skipped("no server to compare with"),
        };
        let Some(tls) = ctx.tls() else {
            return CheckResult::skipped("the trust bundle is unusable");
        };
        let client = HttpsClient::new(tls).with_timeout(std::time::Duration::from_secs(10));
        let req = HttpsRequest::from_parts(
            http::Method::GET,
            format!("{}:{}", target.0, target.1),
            "/devices/fleetedge-check/modules?api-version=2017-11-08-preview",
        );
        let resp = match client.send(req).await {
            Ok(r) => r,
            Err(e) => return CheckResult::skipped(format!("cannot reach {}: {e}", target.0)),
        };
        let Some(date) = resp
            .header("date")
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        else {
            return CheckResult::skipped("the server's answer has no Date header");
        };
        let skew = (chrono::Utc::now() - date.with_timezone(&chrono::Utc)).num_seconds();
        let details = format!("local clock is {skew:+} s off {}", target.0);
        if skew.abs() >= ERROR_SECS {
            CheckResult::error(
                details,
                "synchronise the clock (e.g. enable systemd-timesyncd or chrony); SAS tokens are rejected",
            )
        } else if skew.abs() >= WARN_SECS {
            CheckResult::warn(
                details,
                "synchronise the clock (e.g. enable systemd-timesyncd or chrony)",
            )
        } else {
            CheckResult::ok(details)
        }
    }
}
