//! `$edgeAgent` reported properties (azure-reference.md 1.6).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::runtime::{ModuleSpec, ModuleState, RuntimeStatus};

/// `lastDesiredStatus`.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredStatus {
    pub code: u16,
    pub description: String,
}

/// State of a system module (edgeAgent is this process; edgeHub runs in-process).
#[derive(Debug, Clone, PartialEq)]
pub struct SystemModule {
    pub runtime_status: RuntimeStatus,
    pub status_description: Option<String>,
    pub last_start_time_utc: Option<String>,
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}

fn module_doc(state: &ModuleState, spec: Option<&ModuleSpec>, settings: Option<&Value>) -> Value {
    let mut m = Map::new();
    let container = spec.is_some_and(|s| s.container.is_some()) || state.image.is_some();
    m.insert(
        "type".into(),
        json!(if container { "docker" } else { "process" }),
    );
    m.insert("runtimeStatus".into(), json!(state.runtime_status.as_str()));
    m.insert(
        "status".into(),
        json!(match state.desired_status {
            crate::runtime::DesiredStatus::Running => "running",
            crate::runtime::DesiredStatus::Stopped => "stopped",
        }),
    );
    m.insert(
        "exitCode".into(),
        state.exit_code.map_or(Value::Null, Value::from),
    );
    m.insert(
        "statusDescription".into(),
        json!(
            state
                .status_description
                .clone()
                .unwrap_or_else(|| state.runtime_status.as_str().to_string())
        ),
    );
    m.insert("lastStartTimeUtc".into(), time(state.last_start_time_utc));
    m.insert("lastExitTimeUtc".into(), time(state.last_exit_time_utc));
    m.insert("restartCount".into(), json!(state.restart_count));
    m.insert(
        "lastRestartTimeUtc".into(),
        time(state.last_restart_time_utc),
    );
    if let Some(v) = &state.version {
        m.insert("version".into(), json!(v));
    }
    if let Some(spec) = spec {
        m.insert(
            "restartPolicy".into(),
            serde_json::to_value(spec.restart_policy).unwrap_or(Value::Null),
        );
    }
    let mut settings = settings.cloned().unwrap_or_else(|| json!({}));
    // Containers, as edgeAgent reports them: the image and the engine's image ID.
    if let Some(obj) = settings.as_object_mut() {
        if let Some(image) = &state.image {
            obj.insert("image".into(), json!(image));
        }
        if let Some(hash) = &state.image_hash {
            obj.insert("imageHash".into(), json!(hash));
        }
    }
    m.insert("settings".into(), settings);
    Value::Object(m)
}

/// Inputs of one report.
pub struct ReportInput<'a> {
    pub schema_version: &'a str,
    pub last_desired_version: Option<u64>,
    pub last_desired_status: &'a DesiredStatus,
    pub edge_agent: &'a SystemModule,
    pub edge_hub: &'a SystemModule,
    /// (state, spec, settings from the manifest)
    pub modules: Vec<(ModuleState, Option<ModuleSpec>, Option<Value>)>,
    /// Module names reported last time (removed ones are reported as `null`).
    pub previously_reported: &'a BTreeSet<String>,
}

/// The full reported document.
pub fn build(input: &ReportInput<'_>) -> Value {
    let mut modules = Map::new();
    for (state, spec, settings) in &input.modules {
        modules.insert(
            state.name.clone(),
            module_doc(state, spec.as_ref(), settings.as_ref()),
        );
    }
    for gone in input.previously_reported {
        if !modules.contains_key(gone) {
            modules.insert(gone.clone(), Value::Null);
        }
    }
    let sys = |s: &SystemModule| {
        json!({
            "runtimeStatus": s.runtime_status.as_str(),
            "statusDescription": s.status_description.clone().unwrap_or_else(|| s.runtime_status.as_str().into()),
            "lastStartTimeUtc": s.last_start_time_utc,
            "type": "process",
            "settings": {"image": concat!("fleetedge:", env!("CARGO_PKG_VERSION"))},
        })
    };
    json!({
        "schemaVersion": input.schema_version,
        "version": {
            "version": env!("CARGO_PKG_VERSION"),
            "build": "fleetedge",
            "commit": "",
        },
        "lastDesiredVersion": input.last_desired_version,
        "lastDesiredStatus": {
            "code": input.last_desired_status.code,
            "description": input.last_desired_status.description,
        },
        "runtime": {
            "type": "process",
            "platform": {
                "os": std::env::consts::OS,
                "architecture": std::env::consts::ARCH,
                "version": concat!("fleetedge ", env!("CARGO_PKG_VERSION")),
            }
        },
        "systemModules": {
            "edgeAgent": sys(input.edge_agent),
            "edgeHub": sys(input.edge_hub),
        },
        "modules": Value::Object(modules),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{DesiredStatus as Ds, RestartPolicy};

    #[test]
    fn documents_modules_and_removals() {
        let spec = ModuleSpec {
            name: "a".into(),
            command: "/bin/true".into(),
            args: vec![],
            working_dir: None,
            env: std::collections::BTreeMap::default(),
            restart_policy: RestartPolicy::Always,
            desired_status: Ds::Running,
            version: Some("1".into()),
            container: None,
        };
        let mut st = ModuleState::new(&spec);
        st.runtime_status = RuntimeStatus::Backoff;
        st.exit_code = Some(2);
        st.restart_count = 3;
        let prev: BTreeSet<String> = ["a".to_string(), "old".to_string()].into();
        let sys = SystemModule {
            runtime_status: RuntimeStatus::Running,
            status_description: None,
            last_start_time_utc: None,
        };
        let doc = build(&ReportInput {
            schema_version: "1.1",
            last_desired_version: Some(7),
            last_desired_status: &DesiredStatus {
                code: 200,
                description: String::new(),
            },
            edge_agent: &sys,
            edge_hub: &sys,
            modules: vec![(st, Some(spec), Some(json!({"command": "/bin/true"})))],
            previously_reported: &prev,
        });
        assert_eq!(doc["lastDesiredVersion"], 7);
        assert_eq!(doc["lastDesiredStatus"]["code"], 200);
        assert_eq!(doc["modules"]["a"]["runtimeStatus"], "backoff");
        assert_eq!(doc["modules"]["a"]["exitCode"], 2);
        assert_eq!(doc["modules"]["a"]["restartCount"], 3);
        assert_eq!(doc["modules"]["a"]["status"], "running");
        assert_eq!(doc["modules"]["a"]["settings"]["command"], "/bin/true");
        assert!(doc["modules"]["old"].is_null());
        assert!(doc["modules"].as_object().unwrap().contains_key("old"));
        assert_eq!(doc["systemModules"]["edgeHub"]["runtimeStatus"], "running");
        assert!(doc["runtime"]["platform"]["os"].is_string());
    }
}
