//! `fleetedge check`: every check runs against the configured hub/DPS and never needs the
//! internet. Text output like `iotedge check` (`√`, `‼`, `×`), or `--output json`; exits
//! non-zero when a check fails.

mod checks;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::mgmt::{DaemonStatus, ModuleRow};
use crate::provisioning::ProvisioningCache;

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Warning,
    Error,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub result: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// One-line fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl CheckResult {
    pub fn ok(details: impl Into<String>) -> Self {
        CheckResult {
            result: Outcome::Ok,
            details: Some(details.into()).filter(|d: &String| !d.is_empty()),
            fix: None,
        }
    }
    pub fn warn(details: impl Into<String>, fix: impl Into<String>) -> Self {
        CheckResult {
            result: Outcome::Warning,
            details: Some(details.into()),
            fix: Some(fix.into()),
        }
    }
    pub fn error(details: impl Into<String>, fix: impl Into<String>) -> Self {
        CheckResult {
            result: Outcome::Error,
            details: Some(details.into()),
            fix: Some(fix.into()),
        }
    }
    pub fn skipped(why: impl Into<String>) -> Self {
        CheckResult {
            result: Outcome::Skipped,
            details: Some(why.into()),
            fix: None,
        }
    }
}

/// What the checks share (filled in as they run).
pub struct CheckContext {
    pub config_path: PathBuf,
    pub config: Option<Config>,
    pub cache: Option<ProvisioningCache>,
    pub daemon: Option<DaemonStatus>,
    pub modules: Option<Vec<ModuleRow>>,
}

impl CheckContext {
    /// The hub host name: the daemon's, the provisioning cache's, or a manual config's.
    pub fn hub_hostname(&self) -> Option<String> {
        if let Some(d) = &self.daemon {
            return Some(d.hub_hostname.clone());
        }
        if let Some(c) = &self.cache {
            return Some(c.assigned_hub.clone());
        }
        match &self.config.as_ref()?.provisioning {
            crate::config::Provisioning::Manual {
                iothub_hostname, ..
            } => Some(iothub_hostname.clone()),
            crate::config::Provisioning::Dps { .. } => None,
        }
    }

    pub fn device_id(&self) -> Option<String> {
        if let Some(d) = &self.daemon {
            return Some(d.device_id.clone());
        }
        if let Some(c) = &self.cache {
            return Some(c.device_id.clone());
        }
        match &self.config.as_ref()?.provisioning {
            crate::config::Provisioning::Manual { device_id, .. } => Some(device_id.clone()),
            crate::config::Provisioning::Dps { .. } => None,
        }
    }

    pub fn tls(&self) -> Option<fleethub_device::ClientTlsConfig> {
        let c = self.config.as_ref()?;
        crate::provisioning::tls_config(c)
            .ok()
            .map(|t| t.with_connect_timeout(std::time::Duration::from_secs(10)))
    }
}

/// One check.
#[async_trait::async_trait]
pub trait Check: Send + Sync {
    fn id(&self) -> &'static str;
    fn description(&self) -> &'static str;
    async fn run(&self, ctx: &mut CheckContext) -> CheckResult;
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub checks: Vec<ReportEntry>,
    pub summary: Summary,
}

#[derive(Debug, Serialize)]
pub struct ReportEntry {
    pub id: &'static str,
    pub description: &'static str,
    #[serde(flatten)]
    pub result: CheckResult,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warnings: usize,
    pub errors: usize,
    pub skipped: usize,
}

/// Runs every check in order (those in `skip` are reported as skipped).
pub async fn run_all(config_path: PathBuf, skip: &[String]) -> Report {
    let mut ctx = CheckContext {
        config_path,
        config: None,
        cache: None,
        daemon: None,
        modules: None,
    };
    let mut checks = Vec::new();
    let mut summary = Summary::default();
    for c in checks::all() {
        let result = if skip.iter().any(|s| s == c.id()) {
            CheckResult::skipped("skipped with --dont-run")
        } else {
            c.run(&mut ctx).await
        };
        match result.result {
            Outcome::Ok => summary.ok += 1,
            Outcome::Warning => summary.warnings += 1,
            Outcome::Error => summary.errors += 1,
            Outcome::Skipped => summary.skipped += 1,
        }
        checks.push(ReportEntry {
            id: c.id(),
            description: c.description(),
            result,
        });
    }
    Report { checks, summary }
}

/// Text rendering like `iotedge check`.
pub fn render_text(r: &Report, verbose: bool) -> String {
    let mut out = String::from(
        "Configuration and connectivity checks\n-------------------------------------\n",
    );
    for e in &r.checks {
        let (mark, word) = match e.result.result {
            Outcome::Ok => ("\u{221a}", "OK"),
            Outcome::Warning => ("\u{203c}", "Warning"),
            Outcome::Error => ("\u{d7}", "Error"),
            Outcome::Skipped => ("-", "Skipped"),
        };
        let _ = writeln!(out, "{mark} {} - {word}", e.description);
        let show = verbose || matches!(e.result.result, Outcome::Warning | Outcome::Error);
        if show && let Some(d) = &e.result.details {
            let _ = writeln!(out, "    {d}");
        }
        if let Some(f) = &e.result.fix {
            let _ = writeln!(out, "    fix: {f}");
        }
    }
    let s = &r.summary;
    let _ = write!(
        out,
        "\n{} check(s) succeeded.\n{} check(s) raised warnings.\n{} check(s) raised errors.\n{} check(s) were skipped.\n",
        s.ok, s.warnings, s.errors, s.skipped
    );
    out
}
