//! The IoT Edge part of a device page: what the device's `$edgeAgent` reports (the runtime's
//! last deployment status, including the 417 "deployment not set" state, and every module's
//! runtime status, exit code and restarts) and which deployments are applied to it.

use fleethub_services::hub::TwinTarget;
use maud::{Markup, html};
use serde_json::Value;

use crate::UiState;
use crate::error::UiResult;

/// The edge section of device `id`'s page.
pub async fn section(
    state: &UiState,
    id: &str,
    device_twin_configurations: Option<&Value>,
) -> UiResult<Markup> {
    let agent = state
        .hub
        .service_twin(TwinTarget::Module(id, "$edgeAgent"))
        .await
        .ok();
    let reported = agent.as_ref().map(|t| &t.properties.reported);
    let status = reported.and_then(|r| r.get("lastDesiredStatus"));
    let code = status.and_then(|s| s.get("code")).and_then(Value::as_i64);
    let description = status
        .and_then(|s| s.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let modules = reported.map(module_rows).unwrap_or_default();
    let applied: Vec<(String, String)> = device_twin_configurations
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = v.get("status").and_then(Value::as_str).unwrap_or("-");
                    (k.clone(), s.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(html! {
        h2 { "IoT Edge runtime" }
        @if agent.is_none() || reported.is_some_and(|r| r.get("lastDesiredStatus").is_none()) {
            p.hint { "The edge runtime has not reported yet: start fleetedge on the device (docs/edge.md)." }
        }
        @match code {
            Some(417) => p.error role="status" {
                "417: no deployment is set for this device. Create a deployment whose target condition matches its tags, or set its modules directly (`fleethub edge set-modules`). " (description)
            },
            Some(200) => p.notice { "200: the runtime applied its deployment." },
            Some(c) => p.error { (c) ": " (description) },
            None => {},
        }
        @if !applied.is_empty() {
            p { "Deployments: "
                @for (i, (name, status)) in applied.iter().enumerate() {
                    @if i > 0 { ", " }
                    (name) " (" (status) ")"
                }
            }
        }
        @if !modules.is_empty() {
            table {
                thead { tr { th { "Module" } th { "Runtime status" } th { "Exit code" } th { "Restarts" } th { "Status" } } }
                tbody {
                    @for m in &modules {
                        tr { td { (m.name) } td { (m.runtime_status) } td { (m.exit_code) } td { (m.restarts) } td { (m.description) } }
                    }
                }
            }
        }
    })
}

struct ModuleRow {
    name: String,
    runtime_status: String,
    exit_code: String,
    restarts: String,
    description: String,
}

/// The rows of `systemModules` and `modules` in `$edgeAgent`'s reported properties.
fn module_rows(reported: &Value) -> Vec<ModuleRow> {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    };
    ["systemModules", "modules"]
        .into_iter()
        .filter_map(|section| reported.get(section).and_then(Value::as_object))
        .flat_map(|m| m.iter())
        .map(|(name, m)| ModuleRow {
            name: name.clone(),
            runtime_status: text(m.get("runtimeStatus")),
            exit_code: text(m.get("exitCode")),
            restarts: text(m.get("restartCount")),
            description: text(m.get("statusDescription")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_come_from_system_and_user_modules() {
        let reported = json!({
            "systemModules": {"edgeHub": {"runtimeStatus": "running", "exitCode": 0, "restartCount": 1}},
            "modules": {"sensor": {"runtimeStatus": "backoff", "exitCode": 1, "statusDescription": "exited"}},
            "$version": 4
        });
        let rows = module_rows(&reported);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].restarts.as_str()),
            ("edgeHub", "1")
        );
        assert_eq!(
            (rows[1].runtime_status.as_str(), rows[1].exit_code.as_str()),
            ("backoff", "1")
        );
        assert_eq!(rows[1].restarts, "-");
    }
}
