use crate::cli::check::{Check, CheckContext, CheckResult};
use crate::config::Config;

/// The configuration file parses and validates.
pub struct ConfigWellFormed;

#[async_trait::async_trait]
impl Check for ConfigWellFormed {
    fn id(&self) -> &'static str {
        "config-well-formed"
    }
    fn description(&self) -> &'static str {
        "configuration file is readable and valid"
    }
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult {
        match Config::load(&ctx.config_path) {
            Ok(c) => {
                ctx.cache = crate::provisioning::ProvisioningCache::read(
                    &crate::state::StateDir::new(&c.homedir),
                )
                .filter(|cache| cache.config_digest == c.provisioning.digest());
                let details = if c.ignored.is_empty() {
                    format!(
                        "{} ({} provisioning)",
                        ctx.config_path.display(),
                        c.provisioning.source()
                    )
                } else {
                    format!(
                        "{}; ignored Azure-only keys: {}",
                        ctx.config_path.display(),
                        c.ignored.join(", ")
                    )
                };
                ctx.config = Some(c);
                CheckResult::ok(details)
            }
            Err(e) => {
                let text = e.to_string();
                let (details, fix) = text
                    .split_once("\n  fix: ")
                    .map(|(d, f)| (d.to_string(), f.to_string()))
                    .unwrap_or((text.clone(), "fix the configuration file".into()));
                CheckResult::error(details, fix)
            }
        }
    }
}
