//! Validation of configurations and deployment manifests. Pure: every error says what to fix.

use crate::query::Query;
use fleethub_api::{Configuration, ConfigurationContent};
use serde_json::{Map, Value};

/// Longest configuration id (Azure: 128).
pub const MAX_ID_CHARS: usize = 128;
/// Custom metric queries per configuration (Azure: 5).
pub const MAX_CUSTOM_METRICS: usize = 5;
/// Largest desired-properties document one module gets (Azure's module twin limit).
pub const MAX_MODULE_DESIRED_BYTES: usize = 32 * 1024;
/// Whole desired properties of a module.
pub const DESIRED: &str = "properties.desired";
/// Characters Azure allows in a configuration id besides lowercase letters and digits.
const ID_SPECIALS: &str = "-:+%_#*?!(),=@;$'";

pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the configuration id is empty".into());
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(format!(
            "the configuration id is longer than {MAX_ID_CHARS} characters"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || ID_SPECIALS.contains(*c)))
    {
        return Err(format!(
            "the configuration id '{id}' contains '{c}'; use lowercase letters, digits and {ID_SPECIALS}"
        ));
    }
    Ok(())
}

/// Is this `modulesContent` a layered deployment? A base deployment gives `$edgeAgent` its
/// whole `properties.desired`; a layered one only `properties.desired.<path>` entries.
pub fn is_layered(modules: &Map<String, Value>) -> bool {
    !modules
        .get("$edgeAgent")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key(DESIRED))
}

/// Checks `modulesContent`. `require_base`: must be a base deployment (`set-modules`).
pub fn validate_modules_content(
    modules: &Map<String, Value>,
    require_base: bool,
) -> Result<(), String> {
    if modules.is_empty() {
        return Err("modulesContent is empty".into());
    }
    for (module, entry) in modules {
        let Some(entry) = entry.as_object() else {
            return Err(format!(
                "modulesContent.{module} must be an object such as {{\"properties.desired\": {{...}}}}"
            ));
        };
        if entry.is_empty() {
            return Err(format!("modulesContent.{module} is empty"));
        }
        for (key, value) in entry {
            let whole = key == DESIRED;
            let path = key.strip_prefix("properties.desired.");
            if !whole && path.is_none_or(|p| p.is_empty() || p.split('.').any(str::is_empty)) {
                return Err(format!(
                    "modulesContent.{module} has the key '{key}'; keys must be 'properties.desired' or 'properties.desired.<path>'"
                ));
            }
            if whole && !value.is_object() {
                return Err(format!(
                    "modulesContent.{module}.properties.desired must be a JSON object"
                ));
            }
            let size = serde_json::to_vec(value).map_or(0, |v| v.len());
            if size > MAX_MODULE_DESIRED_BYTES {
                return Err(format!(
                    "modulesContent.{module}.{key} is {size} bytes; a module's desired properties are limited to {MAX_MODULE_DESIRED_BYTES}"
                ));
            }
        }
    }
    if is_layered(modules) {
        if require_base {
            return Err("the content must be a full deployment manifest: modulesContent.$edgeAgent needs 'properties.desired' (layered entries such as 'properties.desired.modules.x' only work in layered deployments)".into());
        }
        if let Some(agent) = modules.get("$edgeAgent").and_then(Value::as_object)
            && let Some(k) = agent
                .keys()
                .find(|k| k.starts_with("properties.desired.systemModules"))
        {
            return Err(format!(
                "a layered deployment cannot change the system modules ($edgeAgent '{k}'); change them in the base deployment"
            ));
        }
        return Ok(());
    }
    validate_base(modules)
}

fn desired_of<'a>(modules: &'a Map<String, Value>, module: &str) -> Result<&'a Value, String> {
    modules
        .get(module)
        .and_then(|m| m.get(DESIRED))
        .ok_or_else(|| {
            format!("a base deployment needs modulesContent.{module}.properties.desired")
        })
}

fn require_str(v: &Value, path: &str, what: &str) -> Result<(), String> {
    let found = path.split('.').try_fold(v, |v, s| v.get(s));
    match found {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        _ => Err(format!("{what}.{path} must be a non-empty string")),
    }
}

/// A module needs a `type`; a `docker` module its `settings.image` (Azure's runtime), a
/// `process` module (fleetedge's runtime) its `settings.command`, except the system modules,
/// which fleetedge runs itself.
fn require_module_settings(m: &Value, what: &str, system: bool) -> Result<(), String> {
    require_str(m, "type", what)?;
    match m.get("type").and_then(Value::as_str) {
        Some("docker") => require_str(m, "settings.image", what),
        Some("process") if !system => require_str(m, "settings.command", what),
        _ => Ok(()),
    }
}

fn validate_base(modules: &Map<String, Value>) -> Result<(), String> {
    let agent = desired_of(modules, "$edgeAgent")?;
    let hub = desired_of(modules, "$edgeHub")?;
    let a = "$edgeAgent.properties.desired";
    require_str(agent, "schemaVersion", a)?;
    require_str(agent, "runtime.type", a)?;
    for m in ["edgeAgent", "edgeHub"] {
        let path = format!("systemModules.{m}");
        let module = agent.get("systemModules").and_then(|s| s.get(m));
        require_module_settings(module.unwrap_or(&Value::Null), &format!("{a}.{path}"), true)?;
    }
    if let Some(user) = agent.get("modules") {
        let Some(user) = user.as_object() else {
            return Err(format!("{a}.modules must be an object of modules by name"));
        };
        for (name, m) in user {
            require_module_settings(m, &format!("{a}.modules.{name}"), false)?;
            if let Some(s) = m.get("status").and_then(Value::as_str)
                && s != "running"
                && s != "stopped"
            {
                return Err(format!(
                    "{a}.modules.{name}.status is '{s}'; use \"running\" or \"stopped\""
                ));
            }
        }
    }
    let h = "$edgeHub.properties.desired";
    require_str(hub, "schemaVersion", h)?;
    if !hub.get("routes").is_some_and(Value::is_object) {
        return Err(format!("{h}.routes must be an object of routes by name"));
    }
    Ok(())
}

/// Checks a content document: exactly one kind (modules, device or module content).
pub fn validate_content(c: &ConfigurationContent) -> Result<(), String> {
    let kinds = [
        c.modules_content.as_ref().is_some_and(|m| !m.is_empty()),
        c.device_content.as_ref().is_some_and(|m| !m.is_empty()),
        c.module_content.as_ref().is_some_and(|m| !m.is_empty()),
    ];
    match kinds.iter().filter(|k| **k).count() {
        0 => {
            return Err("content is empty: give modulesContent (IoT Edge deployment), deviceContent or moduleContent".into());
        }
        1 => {}
        _ => {
            return Err(
                "content may hold only one of modulesContent, deviceContent and moduleContent"
                    .into(),
            );
        }
    }
    if let Some(m) = c.modules_content.as_ref().filter(|m| !m.is_empty()) {
        return validate_modules_content(m, false);
    }
    for (name, section) in [
        ("deviceContent", &c.device_content),
        ("moduleContent", &c.module_content),
    ] {
        for key in section.iter().flat_map(|s| s.keys()) {
            if key != DESIRED && !key.starts_with("properties.desired.") {
                return Err(format!(
                    "{name} has the key '{key}'; keys must be 'properties.desired.<path>'"
                ));
            }
        }
    }
    Ok(())
}

/// Checks a whole configuration (id, priority, content, target condition, metric queries).
pub fn validate_configuration(c: &Configuration) -> Result<(), String> {
    validate_id(&c.id)?;
    if c.priority < 0 {
        return Err(format!(
            "priority is {}; it must be 0 or more (higher wins)",
            c.priority
        ));
    }
    let content = c
        .content
        .as_ref()
        .ok_or("content is missing: give {\"modulesContent\": {...}} for an IoT Edge deployment")?;
    validate_content(content)?;
    if let Some(tc) = c
        .target_condition
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        Query::parse_condition(tc).map_err(|e| format!("invalid targetCondition: {e}"))?;
    }
    if let Some(m) = &c.metrics {
        if m.queries.len() > MAX_CUSTOM_METRICS {
            return Err(format!(
                "{} custom metrics given; at most {MAX_CUSTOM_METRICS} are allowed",
                m.queries.len()
            ));
        }
        for (name, q) in &m.queries {
            Query::parse_metric(q).map_err(|e| format!("invalid metric query '{name}': {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal valid base manifest (the `modulesContent` object).
    pub(crate) fn base_manifest(image: &str) -> Map<String, Value> {
        json!({
            "$edgeAgent": {"properties.desired": {
                "schemaVersion": "1.1",
                "runtime": {"type": "docker", "settings": {}},
                "systemModules": {
                    "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
                    "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                                "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}
                },
                "modules": {"sensor": {"type": "docker", "status": "running", "restartPolicy": "always",
                                       "version": "1.0", "settings": {"image": image}}}
            }},
            "$edgeHub": {"properties.desired": {
                "schemaVersion": "1.1",
                "routes": {"up": "FROM /messages/* INTO $upstream"},
                "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
            }}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn ids() {
        assert!(validate_id("prod-east_1").is_ok());
        assert!(validate_id("Prod").unwrap_err().contains("'P'"));
        assert!(validate_id("a/b").is_err());
        assert!(validate_id(&"a".repeat(129)).is_err());
        assert!(validate_id("").is_err());
    }

    #[test]
    fn base_manifests() {
        let m = base_manifest("img:1");
        assert!(!is_layered(&m));
        validate_modules_content(&m, true).unwrap();
        let mut no_hub = m.clone();
        no_hub.remove("$edgeHub");
        assert!(
            validate_modules_content(&no_hub, true)
                .unwrap_err()
                .contains("$edgeHub")
        );
        let mut no_image = m.clone();
        no_image["$edgeAgent"]["properties.desired"]["modules"]["sensor"]["settings"] = json!({});
        assert!(
            validate_modules_content(&no_image, false)
                .unwrap_err()
                .contains("modules.sensor.settings.image")
        );
        // fleetedge's process runtime: a command instead of an image; system modules need neither.
        let mut process = m.clone();
        let agent = &mut process["$edgeAgent"]["properties.desired"];
        agent["systemModules"]["edgeAgent"] = json!({"type": "process", "settings": {}});
        agent["systemModules"]["edgeHub"] = json!({"type": "process"});
        agent["modules"]["sensor"] =
            json!({"type": "process", "settings": {"command": "/usr/bin/python3"}});
        validate_modules_content(&process, true).unwrap();
        process["$edgeAgent"]["properties.desired"]["modules"]["sensor"]["settings"] =
            json!({"image": "x"});
        assert!(
            validate_modules_content(&process, true)
                .unwrap_err()
                .contains("modules.sensor.settings.command")
        );
        let mut bad_key = m.clone();
        bad_key.insert("x".into(), json!({"properties.reported": {}}));
        assert!(
            validate_modules_content(&bad_key, false)
                .unwrap_err()
                .contains("properties.reported")
        );
    }

    #[test]
    fn layered_manifests() {
        let layer = json!({
            "$edgeAgent": {"properties.desired.modules.extra": {"type": "docker", "settings": {"image": "x"}}},
            "$edgeHub": {"properties.desired.routes.r2": "FROM /* INTO $upstream"}
        });
        let layer = layer.as_object().unwrap();
        assert!(is_layered(layer));
        validate_modules_content(layer, false).unwrap();
        assert!(validate_modules_content(layer, true).is_err());
        let sys = json!({"$edgeAgent": {"properties.desired.systemModules.edgeHub.env": {}}});
        assert!(
            validate_modules_content(sys.as_object().unwrap(), false)
                .unwrap_err()
                .contains("system modules")
        );
    }

    #[test]
    fn configurations() {
        let mut c = Configuration {
            id: "d1".into(),
            priority: 1,
            target_condition: Some("tags.env='test'".into()),
            content: Some(ConfigurationContent {
                modules_content: Some(base_manifest("i")),
                ..Default::default()
            }),
            ..Default::default()
        };
        validate_configuration(&c).unwrap();
        c.target_condition = Some("tags.env=".into());
        assert!(
            validate_configuration(&c)
                .unwrap_err()
                .contains("targetCondition")
        );
        c.target_condition = None;
        c.priority = -1;
        assert!(validate_configuration(&c).unwrap_err().contains("priority"));
        c.priority = 0;
        c.content = None;
        assert!(validate_configuration(&c).unwrap_err().contains("content"));
        c.content = Some(ConfigurationContent {
            device_content: Some(
                json!({"properties.desired.x": 1})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            ..Default::default()
        });
        validate_configuration(&c).unwrap();
    }
}
