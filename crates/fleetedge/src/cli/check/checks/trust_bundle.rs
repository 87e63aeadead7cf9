use crate::cli::check::{Check, CheckContext, CheckResult};

/// `trust_bundle_cert` is readable PEM.
pub struct TrustBundle;

#[async_trait::async_trait]
impl Check for TrustBundle {
    fn id(&self) -> &'static str {
        "trust-bundle"
    }
    fn description(&self) -> &'static str {
        "trust bundle is readable and valid PEM"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        let Some(c) = &ctx.config else {
            return CheckResult::skipped("the configuration is invalid");
        };
        let Some(p) = &c.trust_bundle_cert else {
            return CheckResult::ok("no trust_bundle_cert: the system CA roots are used");
        };
        match fleethub_device::tls::load_ca_file(p) {
            Ok(roots) => {
                CheckResult::ok(format!("{}: {} certificate(s)", p.display(), roots.len()))
            }
            Err(e) => CheckResult::error(
                format!("{}: {e}", p.display()),
                "point trust_bundle_cert at the PEM CA certificate of your fleethub server (`fleethub info` shows caCertPath)",
            ),
        }
    }
}
