//! Twins: reported properties (device side) and tags/desired properties (service side), with
//! JSON-merge-patch semantics (`null` deletes), `$version` counters and `$metadata`.

use super::{Hub, HubEvent};
use crate::hub::Error;
use crate::twin_limits::{self, Section};
use fleethub_api::Twin;
use fleethub_storage::{DeviceRecord, Precondition, StoreError};
use serde_json::{Map, Value, json};

/// Twin documents larger than this (tags + desired + reported JSON with their metadata) are
/// refused; each section also has Azure's own limits (`crate::twin_limits`).
pub const MAX_TWIN_BYTES: usize = 96 * 1024;
const RETRIES: usize = 16;

/// RFC 7386 merge of `patch` into `target`; keys starting with `$` in the patch are ignored.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => {
                let slot = target.entry(k.clone()).or_insert_with(|| json!({}));
                if !slot.is_object() {
                    *slot = json!({});
                }
                if let Value::Object(t) = slot {
                    merge_patch(t, p);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

fn version_of(section: &Value) -> u64 {
    section.get("$version").and_then(Value::as_u64).unwrap_or(1)
}

/// Applies `patch` to a twin section, bumps `$version`, stamps `$metadata.$lastUpdated`.
pub(crate) fn apply_section(
    section: &mut Value,
    patch: &Map<String, Value>,
    now: &str,
    desired: bool,
) -> u64 {
    if !section.is_object() {
        *section = json!({"$version": 1});
    }
    let version = version_of(section) + 1;
    let obj = section.as_object_mut().expect("object");
    merge_patch(obj, patch);
    obj.insert("$version".into(), json!(version));
    let mut meta = json!({"$lastUpdated": now});
    if desired {
        meta["$lastUpdatedVersion"] = json!(version);
    }
    obj.insert("$metadata".into(), meta);
    version
}

/// The device-facing twin document: `{"desired":{..,"$version"},"reported":{..,"$version"}}`
/// without `$metadata`.
pub fn device_view(twin: &Twin) -> Value {
    let strip = |v: &Value| {
        let mut v = if v.is_object() {
            v.clone()
        } else {
            json!({"$version": 1})
        };
        if let Some(o) = v.as_object_mut() {
            o.remove("$metadata");
            o.entry("$version").or_insert(json!(1));
        }
        v
    };
    json!({"desired": strip(&twin.properties.desired), "reported": strip(&twin.properties.reported)})
}

fn check_size(twin: &Twin) -> Result<(), Error> {
    let size = serde_json::to_vec(&(&twin.tags, &twin.properties)).map_or(0, |v| v.len());
    if size > MAX_TWIN_BYTES {
        return Err(Error::TooLarge(format!(
            "the twin would be {size} bytes; the limit is {MAX_TWIN_BYTES}"
        )));
    }
    Ok(())
}

/// The sections Azure limits one by one, with their current values.
fn sections(twin: &Twin) -> [(Section, &Value); 3] {
    const EMPTY: &Value = &Value::Null;
    [
        (Section::Tags, twin.tags.as_ref().unwrap_or(EMPTY)),
        (Section::Desired, &twin.properties.desired),
        (Section::Reported, &twin.properties.reported),
    ]
}

fn section_sizes(twin: &Twin) -> [usize; 3] {
    sections(twin).map(|(_, v)| twin_limits::size(v))
}

/// Azure's per-section depth and size limits on a changed twin (400 when exceeded).
fn check_sections(twin: &Twin, before: [usize; 3]) -> Result<(), Error> {
    for ((section, value), before) in sections(twin).into_iter().zip(before) {
        twin_limits::check(section, value, before).map_err(Error::Invalid)?;
    }
    Ok(())
}

/// Whose twin: a device's or one of its modules'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinTarget<'a> {
    Device(&'a str),
    /// Device ID, module ID.
    Module(&'a str, &'a str),
}

impl<'a> TwinTarget<'a> {
    pub fn new(device_id: &'a str, module_id: Option<&'a str>) -> Self {
        match module_id {
            Some(m) => TwinTarget::Module(device_id, m),
            None => TwinTarget::Device(device_id),
        }
    }

    pub fn device_id(self) -> &'a str {
        match self {
            TwinTarget::Device(d) | TwinTarget::Module(d, _) => d,
        }
    }

    pub fn module_id(self) -> Option<&'a str> {
        match self {
            TwinTarget::Device(_) => None,
            TwinTarget::Module(_, m) => Some(m),
        }
    }
}

impl std::fmt::Display for TwinTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TwinTarget::Device(d) => write!(f, "{d}"),
            TwinTarget::Module(d, m) => write!(f, "{d}/{m}"),
        }
    }
}

impl Hub {
    pub(crate) async fn device_record(&self, device_id: &str) -> Result<DeviceRecord, Error> {
        self.store
            .get_device(device_id)
            .await?
            .ok_or_else(|| Error::device_not_found(device_id))
    }

    /// The stored twin document of a device or module.
    pub async fn get_twin(&self, target: TwinTarget<'_>) -> Result<Twin, Error> {
        match target {
            TwinTarget::Device(d) => Ok(self.device_record(d).await?.twin),
            TwinTarget::Module(d, m) => Ok(self.module_record(d, m).await?.twin),
        }
    }

    /// Read-modify-write of a device's or module's twin with optimistic concurrency on the
    /// identity's etag.
    pub(crate) async fn modify_twin(
        &self,
        target: TwinTarget<'_>,
        mut f: impl FnMut(&mut Twin) -> Result<(), Error>,
    ) -> Result<Twin, Error> {
        for _ in 0..RETRIES {
            let written = match target {
                TwinTarget::Device(d) => {
                    let mut rec = self.device_record(d).await?;
                    let etag = rec.device.etag.clone().unwrap_or_default();
                    let before = section_sizes(&rec.twin);
                    f(&mut rec.twin)?;
                    check_sections(&rec.twin, before)?;
                    bump(&mut rec.twin)?;
                    self.store
                        .put_device(rec, Precondition::IfMatch(etag))
                        .await
                        .map(|saved| saved.twin)
                }
                TwinTarget::Module(d, m) => {
                    let mut rec = self.module_record(d, m).await?;
                    let etag = rec.module.etag.clone().unwrap_or_default();
                    let before = section_sizes(&rec.twin);
                    f(&mut rec.twin)?;
                    check_sections(&rec.twin, before)?;
                    bump(&mut rec.twin)?;
                    self.store
                        .put_module(rec, Precondition::IfMatch(etag))
                        .await
                        .map(|saved| saved.twin)
                }
            };
            match written {
                Ok(twin) => {
                    if let TwinTarget::Device(_) = target {
                        crate::metrics::inc(&self.metrics.twin_updates);
                    }
                    return Ok(twin);
                }
                // Another writer was first: read the twin again and retry.
                Err(StoreError::EtagMismatch { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::TwinConflict {
            target: target.to_string(),
        })
    }

    /// Reported-properties PATCH (device side); returns the new reported `$version`.
    pub async fn patch_reported(
        &self,
        target: TwinTarget<'_>,
        patch: &Value,
    ) -> Result<u64, Error> {
        let patch = patch
            .as_object()
            .ok_or_else(|| Error::invalid("a reported-properties patch must be a JSON object"))?;
        let now = self.clock.now_utc();
        let mut version = 0;
        self.modify_twin(target, |t| {
            version = apply_section(&mut t.properties.reported, patch, &now, false);
            Ok(())
        })
        .await?;
        self.touch(target.device_id(), target.module_id());
        if let TwinTarget::Device(device_id) = target {
            // Target conditions may read reported properties.
            self.deployments_device_changed(device_id);
        }
        Ok(version)
    }

    /// Service twin PATCH (tags and desired properties merge) or replace (`replace = true`),
    /// honouring `If-Match` against the twin etag. Connected devices get the desired change.
    /// Returns the stored twin document.
    pub async fn update_twin(
        &self,
        target: TwinTarget<'_>,
        body: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, Error> {
        let tags = body.get("tags").cloned();
        let desired = body
            .get("properties")
            .and_then(|p| p.get("desired"))
            .cloned();
        for (name, v) in [("tags", &tags), ("properties.desired", &desired)] {
            if let Some(v) = v
                && !(v.is_object() || v.is_null())
            {
                return Err(Error::invalid(format!("{name} must be a JSON object")));
            }
        }
        let device_id = target.device_id();
        let now = self.clock.now_utc();
        let mut pushed: Option<Value> = None;
        let twin = self
            .modify_twin(target, |t| {
                if let Some(want) = if_match.filter(|m| !m.trim().is_empty())
                    && !fleethub_storage::etag_matches(want, Some(&shown_etag(t)))
                {
                    return Err(Error::PreconditionFailed(format!(
                        "twin of '{device_id}': If-Match {want} does not match the current etag"
                    )));
                }
                if let Some(Value::Object(tp)) = &tags {
                    let mut cur = match t.tags.take() {
                        Some(Value::Object(m)) if !replace => m,
                        _ => Map::new(),
                    };
                    merge_patch(&mut cur, tp);
                    t.tags = Some(Value::Object(cur));
                }
                if let Some(Value::Object(dp)) = &desired {
                    let mut patch = dp.clone();
                    if replace {
                        // Replace: delete every existing key not in the new document.
                        if let Some(cur) = t.properties.desired.as_object() {
                            for k in cur.keys().filter(|k| !k.starts_with('$')) {
                                patch.entry(k.clone()).or_insert(Value::Null);
                            }
                        }
                    }
                    let v = apply_section(&mut t.properties.desired, &patch, &now, true);
                    let mut notify = Value::Object(patch);
                    notify["$version"] = json!(v);
                    pushed = Some(notify);
                }
                Ok(())
            })
            .await?;
        if let Some(p) = pushed {
            self.deliver(device_id, target.module_id(), HubEvent::DesiredPatch(p))
                .await;
        }
        if matches!(target, TwinTarget::Device(_)) && tags.is_some() {
            self.deployments_device_changed(device_id);
        }
        Ok(twin)
    }
}

/// Checks the size of a changed twin and moves it to its next version.
fn bump(twin: &mut Twin) -> Result<(), Error> {
    check_size(twin)?;
    twin.version += 1;
    twin.etag = Some(twin_etag(twin.version));
    Ok(())
}

/// The etag a twin is shown with and matched against: its stored one, or for a twin not
/// changed since it was created, the etag of version 1 (what a GET shows for it).
pub(crate) fn shown_etag(twin: &Twin) -> String {
    twin.etag.clone().unwrap_or_else(|| twin_etag(1))
}

/// Azure twin etags look like `AAAAAAAAAAE=` (base64 of the 8 big-endian bytes of the version).
fn twin_etag(version: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(version.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_rules() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "$version": 4})
            .as_object()
            .unwrap()
            .clone();
        merge_patch(
            &mut t,
            json!({"a": null, "b": {"c": 5}, "e": [1], "$version": 99})
                .as_object()
                .unwrap(),
        );
        assert_eq!(
            Value::Object(t),
            json!({"b": {"c": 5, "d": 3}, "e": [1], "$version": 4})
        );
    }

    #[test]
    fn etag_shape() {
        assert_eq!(twin_etag(1), "AAAAAAAAAAE=");
        assert_eq!(twin_etag(0x0102_0304_0506_0708), "AQIDBAUGBwg=");
    }

    #[test]
    fn sections_version() {
        let mut s = json!({"$version": 1});
        let v = apply_section(&mut s, json!({"x": 1}).as_object().unwrap(), "t", true);
        assert_eq!(v, 2);
        assert_eq!(s["x"], 1);
        assert_eq!(s["$metadata"]["$lastUpdatedVersion"], 2);
        let view = device_view(&Twin {
            properties: fleethub_api::TwinProperties {
                desired: s,
                reported: Value::Null,
            },
            ..Default::default()
        });
        assert_eq!(view["reported"]["$version"], 1);
        assert!(view["desired"].get("$metadata").is_none());
    }

    /// Azure's limits per section (depth 10; tags 8 KB, desired and reported 32 KB each) on
    /// every write path of device and module twins: service PATCH/PUT and reported patches.
    #[tokio::test]
    async fn section_limits_on_every_write() {
        use fleethub_api::{Device, Module};
        use fleethub_store::sqlite::SqliteStore;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let hub = Hub::new(
            &crate::Shared::new(store),
            crate::hub::HubConfig {
                host: "hub.local".into(),
                token_skew_secs: 30,
            },
            vec![],
        );
        hub.put_device("d1", Device::default(), None).await.unwrap();
        hub.put_module("d1", "m1", Module::default(), None)
            .await
            .unwrap();
        let nest = |levels: usize| {
            let mut v = json!({"leaf": 1});
            for i in 0..levels {
                v = json!({ format!("l{i}"): v });
            }
            v
        };
        let big = |n: usize| json!({ "k": "x".repeat(n) });
        let invalid = |r: Result<Twin, Error>, expected: &str| match r {
            Err(Error::Invalid(m)) => assert!(m.contains(expected), "{m}"),
            other => panic!("{expected}: {other:?}"),
        };
        for target in [TwinTarget::Device("d1"), TwinTarget::Module("d1", "m1")] {
            for (body, expected) in [
                (json!({"tags": nest(11)}), "tags: objects are nested"),
                (json!({"tags": big(8 * 1024)}), "tags would be 8193 bytes"),
                (
                    json!({"properties": {"desired": nest(11)}}),
                    "properties.desired: objects",
                ),
                (
                    json!({"properties": {"desired": big(32 * 1024)}}),
                    "properties.desired would be",
                ),
            ] {
                for replace in [false, true] {
                    invalid(
                        hub.update_twin(target, &body, None, replace).await,
                        expected,
                    );
                }
            }
            // at the limits
            let ok = json!({"tags": nest(10), "properties": {"desired": big(32 * 1024 - 1)}});
            hub.update_twin(target, &ok, None, false).await.unwrap();
            // growing past the limit by a merge is refused too
            let more = json!({"properties": {"desired": {"x": "y"}}});
            invalid(
                hub.update_twin(target, &more, None, false).await,
                "desired would be",
            );

            // reported (MQTT and the edge hub go through patch_reported)
            for (patch, expected) in [
                (nest(11), "properties.reported: objects"),
                (big(32 * 1024), "properties.reported would be"),
            ] {
                match hub.patch_reported(target, &patch).await {
                    Err(Error::Invalid(m)) => assert!(m.contains(expected), "{m}"),
                    other => panic!("{expected}: {other:?}"),
                }
            }
            hub.patch_reported(target, &big(32 * 1024 - 1))
                .await
                .unwrap();
            let mut deep = nest(10);
            deep["k"] = Value::Null;
            hub.patch_reported(target, &deep).await.unwrap();
            let twin = hub.get_twin(target).await.unwrap();
            assert!(twin.properties.reported.get("l9").is_some());
        }
    }
}
