//! Which deployment a device gets, and what its module twins' desired properties become.
//! Pure: no I/O.
//!
//! Rules (Azure's): among the IoT Edge deployments whose target condition the device twin
//! satisfies, the base deployment with the highest priority wins (ties: the most recently
//! created). Matching layered deployments with a higher priority than that base are merged on
//! top of it in priority order (lowest first, so the highest wins a conflict). Without a
//! matching base deployment the device's own content (`applyConfigurationContent`) is the base,
//! and every matching layer applies. Without any base, nothing is written (the device keeps
//! what it has) and matching layers are only `Targeted`.

use crate::hub::configurations::validate::{DESIRED, is_layered};
use crate::query::Query;
use fleethub_api::{Configuration, ConfigurationContent};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An IoT Edge deployment ready to evaluate.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub cfg: Arc<Configuration>,
    /// `None` when the target condition is empty (targets nothing).
    pub target: Option<Query>,
    pub layered: bool,
}

impl Compiled {
    /// `None` for configurations that are not IoT Edge deployments, or whose stored target
    /// condition no longer parses (logged; it targets nothing).
    pub fn new(cfg: Arc<Configuration>) -> Option<Compiled> {
        let modules = cfg.content.as_ref()?.modules_content.as_ref()?;
        if modules.is_empty() {
            return None;
        }
        let layered = is_layered(modules);
        let target = match cfg.target_condition.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => match Query::parse_condition(t) {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::warn!(id = %cfg.id, "stored target condition is invalid: {e}");
                    None
                }
            },
        };
        Some(Compiled {
            cfg,
            target,
            layered,
        })
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    fn modules(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.cfg
            .content
            .as_ref()
            .and_then(|c| c.modules_content.as_ref())
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// Sort key: higher priority first, then more recently created, then id.
    fn rank(&self) -> (i64, &str, &str) {
        (
            self.cfg.priority,
            self.cfg.created_time_utc.as_deref().unwrap_or(""),
            &self.cfg.id,
        )
    }
}

/// What a device should get.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The winning base deployment (`None`: manual content or nothing).
    pub base: Option<String>,
    /// Layered deployments merged on top, in the order applied.
    pub layers: Vec<String>,
    /// Desired properties per module (empty: leave the module twins alone).
    pub modules: BTreeMap<String, Map<String, Value>>,
    /// The twin's `configurations` field: id -> `Targeted` | `Applied`.
    pub statuses: BTreeMap<String, &'static str>,
}

impl Plan {
    /// The `configurations` twin value (`{"id": {"status": "Applied"}}`).
    pub fn statuses_value(&self) -> Value {
        Value::Object(
            self.statuses
                .iter()
                .map(|(id, s)| (id.clone(), serde_json::json!({ "status": s })))
                .collect(),
        )
    }
}

/// Plans a device: `twin` is its twin document as queries see it.
pub fn plan(twin: &Value, deployments: &[Compiled], manual: Option<&ConfigurationContent>) -> Plan {
    let mut matching: Vec<&Compiled> = deployments
        .iter()
        .filter(|d| d.target.as_ref().is_some_and(|q| q.matches(twin)))
        .collect();
    matching.sort_by(|a, b| b.rank().cmp(&a.rank()));
    let mut out = Plan::default();
    for d in &matching {
        out.statuses.insert(d.id().to_string(), "Targeted");
    }
    let base = matching.iter().find(|d| !d.layered);
    let (mut modules, floor) = match (base, manual.and_then(|m| m.modules_content.as_ref())) {
        (Some(b), _) => {
            out.base = Some(b.id().to_string());
            out.statuses.insert(b.id().to_string(), "Applied");
            (base_modules(b.modules()), Some(b.rank()))
        }
        (None, Some(m)) if !m.is_empty() => (base_modules(m), None),
        _ => return out,
    };
    // Layers above the base, lowest rank first so the highest wins.
    for layer in matching.iter().rev().filter(|d| d.layered) {
        if floor.is_some_and(|f| layer.cfg.priority <= f.0) {
            continue;
        }
        merge_layer(&mut modules, layer.modules());
        out.layers.push(layer.id().to_string());
        out.statuses.insert(layer.id().to_string(), "Applied");
    }
    out.modules = modules;
    out
}

/// The desired properties of each module of a base manifest.
fn base_modules(content: &Map<String, Value>) -> BTreeMap<String, Map<String, Value>> {
    let mut out = BTreeMap::new();
    for (module, entry) in content {
        let mut desired = Map::new();
        if let Some(entry) = entry.as_object() {
            if let Some(Value::Object(d)) = entry.get(DESIRED) {
                desired.clone_from(d);
            }
            // A base manifest may also carry path entries; apply them after the whole document.
            for (k, v) in entry {
                if let Some(path) = k.strip_prefix("properties.desired.") {
                    set_path(&mut desired, path, v.clone());
                }
            }
        }
        out.insert(module.clone(), desired);
    }
    out
}

/// Merges a layered deployment's entries into the modules' desired properties:
/// `properties.desired` replaces a module's document, `properties.desired.a.b` sets `a.b`.
pub fn merge_layer(modules: &mut BTreeMap<String, Map<String, Value>>, layer: &Map<String, Value>) {
    for (module, entry) in layer {
        let Some(entry) = entry.as_object() else {
            continue;
        };
        let desired = modules.entry(module.clone()).or_default();
        if let Some(Value::Object(d)) = entry.get(DESIRED) {
            desired.clone_from(d);
        }
        for (k, v) in entry {
            if let Some(path) = k.strip_prefix("properties.desired.") {
                set_path(desired, path, v.clone());
            }
        }
    }
}

/// Sets `a.b.c` in `doc`, creating (or replacing non-object) intermediate objects.
fn set_path(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let mut segs: Vec<&str> = path.split('.').collect();
    let Some(last) = segs.pop() else { return };
    let mut cur = doc;
    for s in segs {
        let slot = cur
            .entry(s.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        cur = slot.as_object_mut().expect("object");
    }
    cur.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::configurations::validate::tests::base_manifest;
    use serde_json::json;

    fn dep(
        id: &str,
        priority: i64,
        created: &str,
        target: &str,
        modules: Map<String, Value>,
    ) -> Compiled {
        Compiled::new(Arc::new(Configuration {
            id: id.into(),
            priority,
            created_time_utc: Some(created.into()),
            target_condition: Some(target.into()),
            content: Some(ConfigurationContent {
                modules_content: Some(modules),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .unwrap()
    }

    fn image(p: &Plan) -> &str {
        p.modules["$edgeAgent"]["modules"]["sensor"]["settings"]["image"]
            .as_str()
            .unwrap()
    }

    fn twin(env: &str) -> Value {
        json!({"deviceId": "e1", "capabilities": {"iotEdge": true}, "tags": {"env": env}})
    }

    #[test]
    fn target_matching_and_priority() {
        let deps = vec![
            dep(
                "low",
                1,
                "2024-01-01T00:00:00.0000000Z",
                "tags.env='test'",
                base_manifest("low"),
            ),
            dep(
                "high",
                5,
                "2024-01-01T00:00:00.0000000Z",
                "tags.env='test'",
                base_manifest("high"),
            ),
            dep(
                "prod",
                9,
                "2024-01-01T00:00:00.0000000Z",
                "tags.env='prod'",
                base_manifest("prod"),
            ),
            dep(
                "none",
                99,
                "2024-01-01T00:00:00.0000000Z",
                "",
                base_manifest("none"),
            ),
        ];
        let p = plan(&twin("test"), &deps, None);
        assert_eq!(p.base.as_deref(), Some("high"));
        assert_eq!(image(&p), "high");
        assert_eq!(p.statuses["high"], "Applied");
        assert_eq!(p.statuses["low"], "Targeted");
        assert!(!p.statuses.contains_key("prod") && !p.statuses.contains_key("none"));
        assert_eq!(
            p.statuses_value(),
            json!({"high": {"status": "Applied"}, "low": {"status": "Targeted"}})
        );
        let p = plan(&twin("prod"), &deps, None);
        assert_eq!(image(&p), "prod");
        let p = plan(&twin("other"), &deps, None);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn ties_go_to_the_most_recently_created() {
        let deps = vec![
            dep(
                "older",
                3,
                "2024-01-01T00:00:00.0000000Z",
                "*",
                base_manifest("older"),
            ),
            dep(
                "newer",
                3,
                "2024-02-01T00:00:00.0000000Z",
                "*",
                base_manifest("newer"),
            ),
        ];
        assert_eq!(image(&plan(&twin("x"), &deps, None)), "newer");
    }

    #[test]
    fn layers_merge_above_the_base_in_priority_order() {
        let l = |img: &str, route: &str| {
            json!({
                "$edgeAgent": {"properties.desired.modules.extra": {"type": "docker", "settings": {"image": img}}},
                "$edgeHub": {"properties.desired.routes.r2": route},
                "custom": {"properties.desired": {"interval": 5}}
            })
            .as_object()
            .unwrap()
            .clone()
        };
        let t = "2024-01-01T00:00:00.0000000Z";
        let deps = vec![
            dep("base", 10, t, "*", base_manifest("b")),
            dep("layer-a", 20, t, "*", l("a", "ra")),
            dep("layer-b", 30, t, "*", l("b", "rb")),
            dep("below", 5, t, "*", l("below", "rbelow")),
        ];
        let p = plan(&twin("x"), &deps, None);
        assert_eq!(p.layers, vec!["layer-a", "layer-b"]);
        let agent = &p.modules["$edgeAgent"];
        assert_eq!(agent["modules"]["extra"]["settings"]["image"], "b");
        assert_eq!(agent["modules"]["sensor"]["settings"]["image"], "b");
        assert_eq!(p.modules["$edgeHub"]["routes"]["r2"], "rb");
        assert_eq!(
            p.modules["$edgeHub"]["routes"]["up"],
            "FROM /messages/* INTO $upstream"
        );
        assert_eq!(p.modules["custom"]["interval"], 5);
        assert_eq!(p.statuses["below"], "Targeted");
        assert_eq!(p.statuses["layer-b"], "Applied");
    }

    #[test]
    fn manual_content_is_the_fallback_base() {
        let t = "2024-01-01T00:00:00.0000000Z";
        let layer =
            json!({"$edgeHub": {"properties.desired.routes.extra": "FROM /* INTO $upstream"}});
        let deps = vec![
            dep("prod-only", 10, t, "tags.env='prod'", base_manifest("auto")),
            dep("layer", 1, t, "*", layer.as_object().unwrap().clone()),
        ];
        let manual = ConfigurationContent {
            modules_content: Some(base_manifest("manual")),
            ..Default::default()
        };
        let p = plan(&twin("test"), &deps, Some(&manual));
        assert_eq!(p.base, None);
        assert_eq!(image(&p), "manual");
        assert_eq!(p.layers, vec!["layer"]);
        assert!(p.modules["$edgeHub"]["routes"].get("extra").is_some());
        // an automatic deployment wins over the device's own content
        assert_eq!(image(&plan(&twin("prod"), &deps, Some(&manual))), "auto");
        // layers alone change nothing
        let p = plan(&twin("test"), &deps, None);
        assert!(p.modules.is_empty());
        assert_eq!(p.statuses["layer"], "Targeted");
    }
}
