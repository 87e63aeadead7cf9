//! Reading deployment manifests, metrics and labels given on the command line (a file path or
//! inline JSON), in the shapes `az iot edge` accepts.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

/// A JSON argument: inline (starts with `{`) or the path of a file holding it.
pub(crate) fn load_json(arg: &str, what: &str) -> Result<Value> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg)
            .with_context(|| format!("cannot read the {what} file '{arg}'"))?
    };
    serde_json::from_str(&text)
        .with_context(|| format!("the {what} is not valid JSON (give a file path or inline JSON)"))
}

/// `modulesContent` of a manifest: `{"modulesContent": ...}` or `{"content":
/// {"modulesContent": ...}}`.
pub(crate) fn modules_content(doc: &Value) -> Result<Map<String, Value>> {
    let content = doc.get("content").unwrap_or(doc);
    match content.get("modulesContent") {
        Some(Value::Object(m)) if !m.is_empty() => Ok(m.clone()),
        Some(Value::Object(_)) => bail!("modulesContent in the manifest is empty"),
        Some(_) => bail!("modulesContent in the manifest must be a JSON object"),
        None if content.get("deviceContent").is_some()
            || content.get("moduleContent").is_some() =>
        {
            bail!(
                "this is a device/module configuration (deviceContent/moduleContent), not an IoT Edge deployment manifest (modulesContent)"
            )
        }
        None => bail!(
            "the manifest has no modulesContent: expected {{\"modulesContent\": {{\"$edgeAgent\": ..., \"$edgeHub\": ...}}}} or {{\"content\": {{\"modulesContent\": ...}}}}"
        ),
    }
}

pub(crate) fn load_modules_content(arg: &str) -> Result<Map<String, Value>> {
    modules_content(&load_json(arg, "manifest")?)
}

/// Is the manifest layered (no whole `properties.desired` for `$edgeAgent`)?
pub(crate) fn is_layered(modules: &Map<String, Value>) -> bool {
    !modules
        .get("$edgeAgent")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key("properties.desired"))
}

/// Checks that the manifest is what `--layered` says.
pub(crate) fn check_layering(modules: &Map<String, Value>, layered: bool) -> Result<()> {
    match (is_layered(modules), layered) {
        (true, false) => bail!(
            "the manifest has no \"$edgeAgent\": {{\"properties.desired\": ...}}: a full manifest needs $edgeAgent and $edgeHub; if this is a layered deployment (only 'properties.desired.<path>' entries), pass --layered"
        ),
        (false, true) => bail!(
            "--layered was given but the manifest sets the whole $edgeAgent 'properties.desired' (a base deployment); drop --layered, or use 'properties.desired.<path>' entries"
        ),
        _ => Ok(()),
    }
}

/// `--metrics`: `{"queries": {...}}` or `{"metrics": {"queries": {...}}}`.
pub(crate) fn metrics(arg: &str) -> Result<Value> {
    let doc = load_json(arg, "metrics")?;
    let m = doc.get("metrics").unwrap_or(&doc);
    match m.get("queries") {
        Some(Value::Object(q)) if q.values().all(Value::is_string) => {
            Ok(serde_json::json!({ "queries": q }))
        }
        _ => bail!(
            "--metrics must be {{\"queries\": {{\"name\": \"SELECT deviceId FROM devices WHERE ...\"}}}}"
        ),
    }
}

/// `--labels`: a JSON object of strings.
pub(crate) fn labels(arg: &str) -> Result<Value> {
    let doc = load_json(arg, "labels")?;
    match &doc {
        Value::Object(m) if m.values().all(Value::is_string) => Ok(doc),
        _ => bail!("--labels must be a JSON object of strings, e.g. '{{\"team\": \"ops\"}}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn manifests_in_both_shapes() {
        let m = json!({"$edgeAgent": {"properties.desired": {}}, "$edgeHub": {"properties.desired": {}}});
        let a = modules_content(&json!({"modulesContent": m})).unwrap();
        let b = modules_content(&json!({"content": {"modulesContent": m}})).unwrap();
        assert_eq!(a, b);
        assert!(!is_layered(&a));
        check_layering(&a, false).unwrap();
        assert!(
            check_layering(&a, true)
                .unwrap_err()
                .to_string()
                .contains("--layered")
        );
        let e = modules_content(&json!({"deviceContent": {}})).unwrap_err();
        assert!(e.to_string().contains("deviceContent"));
        assert!(
            modules_content(&json!({}))
                .unwrap_err()
                .to_string()
                .contains("modulesContent")
        );
        let layer = json!({"$edgeHub": {"properties.desired.routes.r": "FROM /* INTO $upstream"}});
        let layer = layer.as_object().unwrap();
        assert!(
            check_layering(layer, false)
                .unwrap_err()
                .to_string()
                .contains("--layered")
        );
        check_layering(layer, true).unwrap();
    }

    #[test]
    fn metrics_and_labels() {
        let q = json!({"queries": {"m": "SELECT deviceId FROM devices"}});
        assert_eq!(metrics(&json!({"metrics": q}).to_string()).unwrap(), q);
        assert_eq!(metrics(&q.to_string()).unwrap(), q);
        assert!(metrics("{\"queries\": {\"m\": 1}}").is_err());
        assert!(labels("{\"a\": \"b\"}").is_ok());
        assert!(labels("{\"a\": 1}").is_err());
        assert!(load_json("/nonexistent/x.json", "manifest").is_err());
    }
}
