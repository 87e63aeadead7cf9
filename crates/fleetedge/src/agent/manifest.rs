//! The deployment manifest: `$edgeAgent` module twin desired properties
//! (azure-reference.md 1.6), validated for the process runtime.
//!
//! ```json
//! {"schemaVersion": "1.1",
//!  "runtime": {"type": "process", "settings": {}},
//!  "systemModules": {"edgeAgent": {...}, "edgeHub": {...}},
//!  "modules": {"sensor": {"version": "1.0", "type": "process", "status": "running",
//!      "restartPolicy": "always", "startupOrder": 1,
//!      "env": {"INTERVAL": {"value": "5"}},
//!      "settings": {"command": "/usr/bin/python3", "args": ["sensor.py"], "workingDir": "/opt/sensor"}}}}
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::manifest_docker::{self, registry_credentials};
use crate::runtime::container::{ContainerSpec, RegistryCredential};
use crate::runtime::{DesiredStatus, RestartPolicy};

/// Wording edgeAgent reports with code 417.
pub const EMPTY_DEPLOYMENT: &str =
    "This device has an empty configuration for the edge agent. Please set a deployment manifest.";

/// One module of the deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleDef {
    pub name: String,
    pub version: Option<String>,
    pub command: String,
    pub args: Vec<String>,
    pub working_dir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub restart_policy: RestartPolicy,
    pub status: DesiredStatus,
    pub startup_order: u32,
    /// `settings` as given (reported back).
    pub settings: Value,
    /// `"type": "docker"`: the container (`command` then holds the image).
    pub container: Option<ContainerSpec>,
}

/// A valid deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub schema_version: String,
    /// Desired `$version` it came from.
    pub desired_version: u64,
    /// Modules in start order (`startupOrder`, then name).
    pub modules: Vec<ModuleDef>,
}

/// Why a desired document is not applied (code and description for `lastDesiredStatus`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    #[error("{EMPTY_DEPLOYMENT}")]
    Empty,
    #[error("{0}")]
    SchemaVersion(String),
    #[error("{0}")]
    Invalid(String),
}

impl ManifestError {
    /// The `lastDesiredStatus.code` edgeAgent uses.
    pub fn code(&self) -> u16 {
        match self {
            ManifestError::Empty => 417,
            ManifestError::SchemaVersion(_) => 412,
            ManifestError::Invalid(_) => 400,
        }
    }
}

fn invalid(m: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(m.into())
}

fn check_schema(v: &str) -> Result<(), ManifestError> {
    let parts: Vec<&str> = v.split('.').collect();
    let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    let Some(nums) = nums.filter(|n| !n.is_empty() && n.len() <= 3) else {
        return Err(ManifestError::SchemaVersion(format!(
            "schemaVersion '{v}' is not a version number; use \"1.0\" or \"1.1\""
        )));
    };
    let minor = nums.get(1).copied().unwrap_or(0);
    let patch = nums.get(2).copied().unwrap_or(0);
    if nums[0] != 1 || minor > 1 || (minor == 1 && patch > 0) {
        return Err(ManifestError::SchemaVersion(format!(
            "schemaVersion '{v}' is not supported; this agent supports 1.0 to 1.1"
        )));
    }
    Ok(())
}

/// Validates the desired properties of `$edgeAgent`.
pub fn parse(desired: &Value) -> Result<Deployment, ManifestError> {
    let obj = desired
        .as_object()
        .ok_or_else(|| invalid("the desired properties are not a JSON object"))?;
    let desired_version = obj.get("$version").and_then(Value::as_u64).unwrap_or(0);
    let meaningful = obj.keys().any(|k| !k.starts_with('$'));
    if !meaningful {
        return Err(ManifestError::Empty);
    }
    let schema = match obj.get("schemaVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ManifestError::SchemaVersion(format!(
                "schemaVersion must be a string like \"1.1\", not {other}"
            )));
        }
        None => {
            return Err(ManifestError::SchemaVersion(
                "schemaVersion is missing; use \"1.1\"".into(),
            ));
        }
    };
    check_schema(&schema)?;
    if let Some(rt) = obj.get("runtime")
        && !rt.is_object()
    {
        return Err(invalid("runtime must be an object"));
    }
    let credentials = registry_credentials(obj.get("runtime")).map_err(invalid)?;
    if let Some(sm) = obj.get("systemModules")
        && !sm.is_object()
    {
        return Err(invalid("systemModules must be an object"));
    }
    let mut modules = Vec::new();
    match obj.get("modules") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, def) in map {
                if def.is_null() {
                    continue;
                }
                modules.push(parse_module(name, def, &credentials)?);
            }
        }
        Some(_) => return Err(invalid("modules must be an object of module definitions")),
    }
    modules.sort_by(|a, b| (a.startup_order, &a.name).cmp(&(b.startup_order, &b.name)));
    Ok(Deployment {
        schema_version: schema,
        desired_version,
        modules,
    })
}

fn parse_module(
    name: &str,
    def: &Value,
    credentials: &[RegistryCredential],
) -> Result<ModuleDef, ManifestError> {
    let m = |msg: String| invalid(format!("module '{name}': {msg}"));
    if name.starts_with('$') {
        return Err(m(
            "module names starting with '$' are reserved for system modules".into(),
        ));
    }
    fleethub_core::ids::validate_module_id(name).map_err(|e| m(format!("invalid name: {e}")))?;
    let obj = def
        .as_object()
        .ok_or_else(|| m("the definition must be an object".into()))?;
    let str_field = |key: &str| -> Result<Option<String>, ManifestError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(m(format!("{key} must be a string, not {other}"))),
        }
    };
    let docker = match str_field("type")?.as_deref() {
        Some("process") => false,
        Some("docker") => true,
        Some(other) => {
            return Err(m(format!(
                "type '{other}' is not supported by fleetedge; use \"docker\" (settings.image) or \"process\" (settings.command)"
            )));
        }
        None => {
            return Err(m(
                "type is missing; use \"type\": \"docker\" or \"process\"".into(),
            ));
        }
    };
    let status = match str_field("status")?.as_deref() {
        None | Some("running") => DesiredStatus::Running,
        Some("stopped") => DesiredStatus::Stopped,
        Some(other) => {
            return Err(m(format!(
                "status '{other}' is invalid; use \"running\" or \"stopped\""
            )));
        }
    };
    let restart_policy = match str_field("restartPolicy")? {
        None => RestartPolicy::Always,
        Some(p) => RestartPolicy::parse(&p).ok_or_else(|| {
            m(format!(
                "restartPolicy '{p}' is invalid; use never, on-failure, on-unhealthy or always"
            ))
        })?,
    };
    let startup_order = match obj.get("startupOrder") {
        None | Some(Value::Null) => u32::MAX,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| m(format!("startupOrder must be 0..4294967295, not {v}")))?,
    };
    let settings = obj.get("settings").cloned().unwrap_or(Value::Null);
    let container = if docker {
        let pull = str_field("imagePullPolicy")?;
        Some(manifest_docker::container_spec(&settings, pull.as_deref(), credentials).map_err(m)?)
    } else {
        None
    };
    let s = settings
        .as_object()
        .ok_or_else(|| m("settings with settings.command is required".into()))?;
    let command = match s.get("command") {
        _ if docker => container
            .as_ref()
            .map(|c| c.image.clone())
            .unwrap_or_default(),
        Some(Value::String(c)) if !c.trim().is_empty() => c.clone(),
        _ => return Err(m("settings.command must be a non-empty string".into())),
    };
    let args = match s.get("args") {
        _ if docker => Vec::new(),
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| m(format!("settings.args must hold strings, not {v}")))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(m(format!("settings.args must be an array, not {other}"))),
    };
    let working_dir = match s.get("workingDir") {
        _ if docker => None,
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.starts_with('/') => Some(PathBuf::from(d)),
        Some(other) => {
            return Err(m(format!(
                "settings.workingDir must be an absolute path, not {other}"
            )));
        }
    };
    let mut env = BTreeMap::new();
    match obj.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (k, v) in vars {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(m(format!("env name '{k}' is invalid")));
                }
                let value = match v.get("value") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => b.to_string(),
                    _ => {
                        return Err(m(format!("env.{k} must be {{\"value\": \"...\"}}")));
                    }
                };
                env.insert(k.clone(), value);
            }
        }
        Some(_) => {
            return Err(m(
                "env must be an object of {\"NAME\": {\"value\": \"...\"}}".into(),
            ));
        }
    }
    Ok(ModuleDef {
        name: name.to_string(),
        version: str_field("version")?,
        command,
        args,
        working_dir,
        env,
        restart_policy,
        status,
        startup_order,
        settings,
        container,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn module(cmd: &str) -> Value {
        json!({"type": "process", "settings": {"command": cmd}})
    }

    #[test]
    fn valid_deployment_in_startup_order() {
        let d = parse(&json!({
            "$version": 4,
            "schemaVersion": "1.1",
            "runtime": {"type": "process"},
            "systemModules": {"edgeAgent": {"type": "docker"}, "edgeHub": {"type": "docker"}},
            "modules": {
                "b": {"type": "process", "status": "running", "restartPolicy": "on-failure",
                      "startupOrder": 2, "version": "1.0",
                      "env": {"X": {"value": "1"}, "N": {"value": 5}},
                      "settings": {"command": "/bin/sh", "args": ["-c", "sleep 1"], "workingDir": "/tmp"}},
                "a": module("/bin/true"),
                "c": {"type": "process", "startupOrder": 0, "status": "stopped", "settings": {"command": "x"}},
                "gone": null
            }
        }))
        .unwrap();
        assert_eq!(d.desired_version, 4);
        let names: Vec<&str> = d.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["c", "b", "a"]);
        let b = &d.modules[1];
        assert_eq!(b.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(b.args, vec!["-c", "sleep 1"]);
        assert_eq!(b.env.get("N").unwrap(), "5");
        assert_eq!(b.working_dir, Some(PathBuf::from("/tmp")));
        assert_eq!(d.modules[0].status, DesiredStatus::Stopped);
        assert_eq!(d.modules[2].restart_policy, RestartPolicy::Always);
    }

    #[test]
    fn empty_and_bad_schema() {
        for empty in [json!({"$version": 1}), json!({})] {
            let e = parse(&empty).unwrap_err();
            assert_eq!(e.code(), 417);
            assert!(
                e.to_string()
                    .contains("empty configuration for the edge agent")
            );
        }
        for v in ["2.0", "1.2", "x", "1.1.1"] {
            let e = parse(&json!({"schemaVersion": v, "modules": {}})).unwrap_err();
            assert_eq!(e.code(), 412, "{v}: {e}");
        }
        assert!(parse(&json!({"schemaVersion": "1.0"})).is_ok());
        assert!(parse(&json!({"schemaVersion": "1.1.0"})).is_ok());
    }

    #[test]
    fn invalid_modules_are_400_with_the_reason() {
        let cases = [
            (
                json!({"type": "rkt", "settings": {"image": "x"}}),
                "type 'rkt'",
            ),
            (json!({"type": "docker", "settings": {}}), "settings.image"),
            (
                json!({"type": "docker", "settings": {"image": "x", "createOptions": "{bad"}}),
                "not valid JSON",
            ),
            (
                json!({"type": "docker", "imagePullPolicy": "always", "settings": {"image": "x"}}),
                "imagePullPolicy",
            ),
            (json!({"settings": {"command": "x"}}), "type is missing"),
            (json!({"type": "process"}), "settings.command"),
            (
                json!({"type": "process", "settings": {"command": ""}}),
                "settings.command",
            ),
            (
                json!({"type": "process", "settings": {"command": "x", "args": "y"}}),
                "settings.args",
            ),
            (
                json!({"type": "process", "restartPolicy": "sometimes", "settings": {"command": "x"}}),
                "restartPolicy",
            ),
            (
                json!({"type": "process", "status": "paused", "settings": {"command": "x"}}),
                "status",
            ),
            (
                json!({"type": "process", "startupOrder": -1, "settings": {"command": "x"}}),
                "startupOrder",
            ),
            (
                json!({"type": "process", "env": {"A": "b"}, "settings": {"command": "x"}}),
                "env.A",
            ),
            (
                json!({"type": "process", "settings": {"command": "x", "workingDir": "rel"}}),
                "workingDir",
            ),
        ];
        for (def, fragment) in cases {
            let e = parse(&json!({"schemaVersion": "1.1", "modules": {"m1": def}})).unwrap_err();
            assert_eq!(e.code(), 400, "{e}");
            assert!(e.to_string().contains("module 'm1'"), "{e}");
            assert!(e.to_string().contains(fragment), "{fragment}: {e}");
        }
        let e =
            parse(&json!({"schemaVersion": "1.1", "modules": {"$x": module("a")}})).unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
        let e = parse(&json!({"schemaVersion": "1.1", "modules": []})).unwrap_err();
        assert_eq!(e.code(), 400);
    }
}
