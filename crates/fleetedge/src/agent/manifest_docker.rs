//! The container fields of a deployment manifest: a `"type": "docker"` module's
//! `settings.image`, `settings.createOptions` (and its chunks), `imagePullPolicy`, and the
//! deployment's `runtime.settings.registryCredentials`.
//!
//! ```json
//! {"runtime": {"type": "docker", "settings": {"registryCredentials": {
//!      "myacr": {"address": "myacr.azurecr.io", "username": "u", "password": "p"}}}},
//!  "modules": {"filter": {"type": "docker", "imagePullPolicy": "on-create",
//!      "settings": {"image": "myacr.azurecr.io/filter:1.0",
//!                   "createOptions": "{\"HostConfig\":{\"PortBindings\":{\"80/tcp\":[{\"HostPort\":\"8080\"}]}}}"}}}}
//! ```

use serde_json::Value;

use crate::runtime::container::spec::{create_options, registry_of};
use crate::runtime::container::{ContainerSpec, PullPolicy, RegistryCredential};

/// `runtime.settings.registryCredentials`, validated.
pub fn registry_credentials(runtime: Option<&Value>) -> Result<Vec<RegistryCredential>, String> {
    let Some(creds) = runtime
        .and_then(|r| r.get("settings"))
        .and_then(|s| s.get("registryCredentials"))
    else {
        return Ok(Vec::new());
    };
    let map = match creds {
        Value::Null => return Ok(Vec::new()),
        Value::Object(m) => m,
        _ => return Err("runtime.settings.registryCredentials must be an object".into()),
    };
    let mut out = Vec::new();
    for (name, c) in map {
        let field = |k: &str| -> Result<String, String> {
            match c.get(k) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(format!(
                    "runtime.settings.registryCredentials.{name}.{k} must be a non-empty string"
                )),
            }
        };
        out.push(RegistryCredential {
            address: field("address")?,
            username: field("username")?,
            password: field("password")?,
        });
    }
    Ok(out)
}

/// The container of a `"type": "docker"` module.
pub fn container_spec(
    settings: &Value,
    pull_policy: Option<&str>,
    credentials: &[RegistryCredential],
) -> Result<ContainerSpec, String> {
    let s = settings
        .as_object()
        .ok_or("settings with settings.image is required")?;
    let image = match s.get("image") {
        Some(Value::String(i)) if !i.trim().is_empty() && !i.contains(char::is_whitespace) => {
            i.clone()
        }
        _ => {
            return Err(
                "settings.image must be an image name like \"myacr.azurecr.io/filter:1.0\"".into(),
            );
        }
    };
    let pull_policy = match pull_policy {
        None | Some("on-create") => PullPolicy::OnCreate,
        Some("never") => PullPolicy::Never,
        Some(other) => {
            return Err(format!(
                "imagePullPolicy '{other}' is invalid; use \"on-create\" or \"never\""
            ));
        }
    };
    let registry = registry_of(&image);
    let credentials = credentials
        .iter()
        .find(|c| {
            let addr = c
                .address
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            addr == registry || (registry == "docker.io" && addr.ends_with("docker.io"))
        })
        .cloned();
    Ok(ContainerSpec {
        image,
        create_options: create_options(s)?,
        pull_policy,
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_are_matched_by_registry() {
        let creds = registry_credentials(Some(&json!({"type": "docker", "settings": {
        "registryCredentials": {
            "acr": {"address": "myacr.azurecr.io", "username": "u", "password": "p"},
            "hub": {"address": "https://index.docker.io/v1/", "username": "d", "password": "q"}
        }}})))
        .unwrap();
        let c = container_spec(&json!({"image": "myacr.azurecr.io/f:1"}), None, &creds).unwrap();
        assert_eq!(c.credentials.unwrap().username, "u");
        assert_eq!(c.pull_policy, PullPolicy::OnCreate);
        let c = container_spec(&json!({"image": "localhost/f:1"}), Some("never"), &creds).unwrap();
        assert!(c.credentials.is_none());
        assert_eq!(c.pull_policy, PullPolicy::Never);
        // secrets never reach Debug output
        let dbg = format!("{creds:?}");
        assert!(!dbg.contains("\"p\"") && dbg.contains("redacted"), "{dbg}");
        let e = registry_credentials(Some(
            &json!({"settings": {"registryCredentials": {"x": {"address": "a"}}}}),
        ))
        .unwrap_err();
        assert!(e.contains("registryCredentials.x.username"), "{e}");
    }
}
