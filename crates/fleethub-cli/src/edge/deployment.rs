//! `fleethub edge deployment create|list|show|update|delete` (`/configurations[/{id}]`).

use super::content;
use crate::client::{Condition, ServiceClient, Transport, seg};
use crate::output::{Column, Outcome, col};
use anyhow::{Result, bail};
use serde_json::{Value, json};

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum DeploymentCommand {
    /// Create a deployment: the manifest goes to every IoT Edge device whose twin matches the
    /// target condition, unless a higher-priority deployment also matches.
    Create {
        /// Lowercase letters, digits and -:+%_#*?!(),=@;$' (at most 128).
        #[arg(long)]
        deployment_id: String,
        /// Manifest: a file path or inline JSON, `{"modulesContent": {...}}` or
        /// `{"content": {"modulesContent": {...}}}`.
        #[arg(long, value_name = "FILE|JSON")]
        content: String,
        /// Which devices, e.g. "tags.environment='test'" (or "*": every edge device). Empty:
        /// none yet.
        #[arg(long, default_value = "")]
        target_condition: String,
        /// Higher wins among deployments that target the same device.
        #[arg(long, default_value_t = 0)]
        priority: i64,
        /// Labels: a JSON object of strings (file path or inline).
        #[arg(long, value_name = "FILE|JSON")]
        labels: Option<String>,
        /// Custom metrics: {"queries": {"name": "SELECT deviceId FROM devices WHERE ..."}}.
        #[arg(long, value_name = "FILE|JSON")]
        metrics: Option<String>,
        /// A layered deployment: only `properties.desired.<path>` entries, merged on top of
        /// the device's base deployment.
        #[arg(long)]
        layered: bool,
    },
    /// List deployments with their metrics.
    List {
        /// At most this many.
        #[arg(long)]
        top: Option<usize>,
    },
    /// Show one deployment with its current metrics.
    Show {
        #[arg(long)]
        deployment_id: String,
    },
    /// Change a deployment's target condition, priority, labels or metrics (its content
    /// cannot change: create a new deployment instead).
    Update {
        #[arg(long)]
        deployment_id: String,
        #[arg(long)]
        target_condition: Option<String>,
        #[arg(long)]
        priority: Option<i64>,
        #[arg(long, value_name = "FILE|JSON")]
        labels: Option<String>,
        #[arg(long, value_name = "FILE|JSON")]
        metrics: Option<String>,
    },
    /// Delete a deployment; its devices move to the next matching deployment.
    Delete {
        #[arg(long)]
        deployment_id: String,
        /// Only delete if the deployment still has this etag.
        #[arg(long)]
        etag: Option<String>,
    },
}

const LIST_COLUMNS: &[Column] = &[
    col("ID", "/id"),
    col("PRIORITY", "/priority"),
    col("TARGET CONDITION", "/targetCondition"),
    col("TARGETED", "/systemMetrics/results/targetedCount"),
    col("APPLIED", "/systemMetrics/results/appliedCount"),
    col("SUCCESS", "/systemMetrics/results/reportedSuccessfulCount"),
    col("FAILED", "/systemMetrics/results/reportedFailedCount"),
    col("CREATED", "/createdTimeUtc"),
];

fn path(id: &str) -> String {
    format!("/configurations/{}", seg(id))
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.chars().count() > 128 {
        bail!("--deployment-id must be 1 to 128 characters");
    }
    if let Some(c) = id.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-:+%_#*?!(),=@;$'".contains(*c))
    }) {
        bail!(
            "--deployment-id '{id}' contains '{c}'; use lowercase letters, digits and -:+%_#*?!(),=@;$'"
        );
    }
    Ok(())
}

pub(crate) async fn run<T: Transport>(
    cmd: DeploymentCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        DeploymentCommand::Create {
            deployment_id,
            content,
            target_condition,
            priority,
            labels,
            metrics,
            layered,
        } => {
            check_id(&deployment_id)?;
            if priority < 0 {
                bail!("--priority must be 0 or more (higher wins)");
            }
            let modules = content::load_modules_content(&content)?;
            content::check_layering(&modules, layered)?;
            let mut body = json!({
                "id": deployment_id,
                "schemaVersion": "1.0",
                "content": {"modulesContent": modules},
                "targetCondition": target_condition,
                "priority": priority,
            });
            if let Some(l) = labels {
                body["labels"] = content::labels(&l)?;
            }
            if let Some(m) = metrics {
                body["metrics"] = content::metrics(&m)?;
            }
            let created = client
                .put(&path(&deployment_id), &body, Condition::None)
                .await
                .map_err(|e| match e.downcast_ref::<crate::errors::ServiceError>() {
                    Some(se) if se.status == 409 => e.context(format!(
                        "deployment '{deployment_id}' already exists (its content cannot change: create one with a new id and a higher priority)"
                    )),
                    _ => e,
                })?;
            Ok(Outcome::Object(created))
        }
        DeploymentCommand::List { top } => {
            let query: Vec<(&str, String)> =
                top.map(|t| ("top", t.to_string())).into_iter().collect();
            match client.get("/configurations", &query).await? {
                Value::Array(items) => Ok(Outcome::List(items, LIST_COLUMNS)),
                other => bail!("GET /configurations: expected a JSON array, got {other}"),
            }
        }
        DeploymentCommand::Show { deployment_id } => Ok(Outcome::Object(
            client.get(&path(&deployment_id), &[]).await?,
        )),
        DeploymentCommand::Update {
            deployment_id,
            target_condition,
            priority,
            labels,
            metrics,
        } => {
            if target_condition.is_none()
                && priority.is_none()
                && labels.is_none()
                && metrics.is_none()
            {
                bail!(
                    "nothing to update: give --target-condition, --priority, --labels or --metrics"
                );
            }
            let mut cfg = client.get(&path(&deployment_id), &[]).await?;
            if let Some(t) = target_condition {
                cfg["targetCondition"] = json!(t);
            }
            if let Some(p) = priority {
                if p < 0 {
                    bail!("--priority must be 0 or more (higher wins)");
                }
                cfg["priority"] = json!(p);
            }
            if let Some(l) = labels {
                cfg["labels"] = content::labels(&l)?;
            }
            if let Some(m) = metrics {
                cfg["metrics"] = content::metrics(&m)?;
            }
            let etag = cfg["etag"].as_str().unwrap_or("*").to_string();
            let updated = client
                .put(&path(&deployment_id), &cfg, Condition::IfMatch(&etag))
                .await?;
            Ok(Outcome::Object(updated))
        }
        DeploymentCommand::Delete {
            deployment_id,
            etag,
        } => {
            client
                .delete(&path(&deployment_id), Some(etag.as_deref().unwrap_or("*")))
                .await?;
            Ok(Outcome::Done(format!(
                "deleted deployment '{deployment_id}'"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("prod-1").is_ok());
        assert!(check_id("Prod").unwrap_err().to_string().contains("'P'"));
        assert!(check_id("").is_err());
    }
}
