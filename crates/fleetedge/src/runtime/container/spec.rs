//! What a `"type": "docker"` module asks for: the image, its `createOptions` (the Docker
//! Engine API's container create body, as a JSON string, possibly split into
//! `createOptions01`, `createOptions02`, ...), `imagePullPolicy` and registry credentials.

use bollard::models::ContainerCreateBody;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `imagePullPolicy` of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull the image when the container is created (IoT Edge's default).
    OnCreate,
    /// Never pull: the image must be on the engine already.
    Never,
}

/// Credentials of a private registry (`runtime.settings.registryCredentials.<name>`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryCredential {
    pub address: String,
    pub username: String,
    #[serde(skip_serializing, default)]
    pub password: String,
}

impl std::fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The container part of a module spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub image: String,
    /// The parsed `createOptions` (an object; validated against the create body).
    pub create_options: Map<String, Value>,
    pub pull_policy: PullPolicy,
    /// Credentials for the image's registry, when the deployment has some.
    pub credentials: Option<RegistryCredential>,
}

/// Joins `createOptions` and its chunks `createOptions01`, `createOptions02`, ... (IoT Edge
/// splits long options into 512-character chunks, at most 100; docs/protocol-notes.md, "IoT
/// Edge container modules") and parses the result.
pub fn create_options(settings: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut text = String::new();
    match settings.get("createOptions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => text.push_str(s),
        // A JSON object given directly (some tools write it unescaped) is accepted too.
        Some(Value::Object(o)) => return check_body(o.clone()),
        Some(other) => {
            return Err(format!(
                "settings.createOptions must be a JSON string, not {other}"
            ));
        }
    }
    for n in 1..100 {
        let key = format!("createOptions{n:02}");
        match settings.get(&key) {
            None => break,
            Some(Value::String(s)) => text.push_str(s),
            Some(other) => return Err(format!("settings.{key} must be a string, not {other}")),
        }
    }
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| format!("settings.createOptions is not valid JSON: {e}"))?;
    match value {
        Value::Object(o) => check_body(o),
        other => Err(format!(
            "settings.createOptions must be a JSON object, not {other}"
        )),
    }
}

/// The options must fit the Docker Engine API's create body (types of the known fields).
fn check_body(o: Map<String, Value>) -> Result<Map<String, Value>, String> {
    serde_json::from_value::<ContainerCreateBody>(Value::Object(o.clone())).map_err(|e| {
        format!("settings.createOptions does not fit the Docker Engine API create body: {e}")
    })?;
    Ok(o)
}

/// The registry host of an image reference (`docker.io` when it names none).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// Why a module may not run when `allow_privileged = false`: the first privileged request in
/// its create options, or `None`.
pub fn privileged_request(opts: &ContainerCreateBody) -> Option<String> {
    let hc = opts.host_config.as_ref()?;
    if hc.privileged == Some(true) {
        return Some("HostConfig.Privileged".into());
    }
    if hc.devices.as_ref().is_some_and(|d| !d.is_empty()) {
        return Some("HostConfig.Devices".into());
    }
    if hc.cap_add.as_ref().is_some_and(|c| !c.is_empty()) {
        return Some("HostConfig.CapAdd".into());
    }
    if let Some(bind) = hc
        .binds
        .iter()
        .flatten()
        .find(|b| b.split(':').next().is_some_and(|src| src.starts_with('/')))
    {
        return Some(format!("a host bind mount ({bind})"));
    }
    if let Some(m) = hc.mounts.iter().flatten().find(|m| {
        m.typ
            .as_ref()
            .is_some_and(|t| matches!(t, bollard::models::MountTypeEnum::BIND))
    }) {
        return Some(format!(
            "a host bind mount ({})",
            m.source.as_deref().unwrap_or("?")
        ));
    }
    for (field, v) in [
        ("NetworkMode", &hc.network_mode),
        ("PidMode", &hc.pid_mode),
        ("IpcMode", &hc.ipc_mode),
        ("UsernsMode", &hc.userns_mode),
    ] {
        if v.as_deref() == Some("host") {
            return Some(format!("HostConfig.{field} host"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(v: &Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn chunked_create_options_are_joined() {
        let full =
            r#"{"Env":["A=1"],"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8080"}]}}}"#;
        let (a, b) = full.split_at(20);
        let (b, c) = b.split_at(30);
        let o = create_options(&settings(&json!({
            "image": "x", "createOptions": a, "createOptions01": b, "createOptions02": c
        })))
        .unwrap();
        assert_eq!(o["Env"], json!(["A=1"]));
        assert_eq!(
            o["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
            "8080"
        );
        assert!(
            create_options(&settings(&json!({"image": "x"})))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_create_options_name_the_reason() {
        let e = create_options(&settings(&json!({"createOptions": "{\"Env\": [}"}))).unwrap_err();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = create_options(&settings(&json!({"createOptions": "[1]"}))).unwrap_err();
        assert!(e.contains("must be a JSON object"), "{e}");
        let e =
            create_options(&settings(&json!({"createOptions": "{\"Env\": \"A=1\"}"}))).unwrap_err();
        assert!(e.contains("create body"), "{e}");
        let e = create_options(&settings(&json!({"createOptions": 5}))).unwrap_err();
        assert!(e.contains("JSON string"), "{e}");
    }

    #[test]
    fn privileged_requests_are_found() {
        let body = |v: Value| serde_json::from_value::<ContainerCreateBody>(v).unwrap();
        assert_eq!(privileged_request(&body(json!({"Env": ["A=1"]}))), None);
        assert_eq!(
            privileged_request(&body(json!({"HostConfig": {"Binds": ["vol:/data"]}}))),
            None
        );
        for (v, what) in [
            (json!({"HostConfig": {"Privileged": true}}), "Privileged"),
            (
                json!({"HostConfig": {"Devices": [{"PathOnHost": "/dev/ttyS0", "PathInContainer": "/dev/ttyS0", "CgroupPermissions": "rwm"}]}}),
                "Devices",
            ),
            (
                json!({"HostConfig": {"Binds": ["/etc:/host-etc:ro"]}}),
                "/etc",
            ),
            (
                json!({"HostConfig": {"NetworkMode": "host"}}),
                "NetworkMode",
            ),
            (json!({"HostConfig": {"CapAdd": ["NET_ADMIN"]}}), "CapAdd"),
        ] {
            let r = privileged_request(&body(v)).unwrap();
            assert!(r.contains(what), "{r}");
        }
    }

    #[test]
    fn registries() {
        assert_eq!(registry_of("myacr.azurecr.io/app/m:1"), "myacr.azurecr.io");
        assert_eq!(registry_of("localhost:5000/m"), "localhost:5000");
        assert_eq!(registry_of("library/alpine"), "docker.io");
        assert_eq!(registry_of("alpine:3"), "docker.io");
    }
}
