//! Twins: reported properties (device side) and tags/desired properties (service side), with
//! JSON-merge-patch semantics (`null` deletes), `$version` counters and `$metadata`.

use super::{Hub, HubEvent};
use crate::DpsError;
use fleethub_api::Twin;
use fleethub_store::{DeviceRecord, Precondition, StoreError};
use serde_json::{Map, Value, json};

/// Twin documents larger than this (tags + desired + reported JSON) are refused (Azure: 32 KB
/// per section; we bound the whole document).
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

fn check_size(twin: &Twin) -> Result<(), DpsError> {
    let size = serde_json::to_vec(&(&twin.tags, &twin.properties))
        .map(|v| v.len())
        .unwrap_or(0);
    if size > MAX_TWIN_BYTES {
        return Err(DpsError::PayloadTooLarge(format!(
            "the twin would be {size} bytes; the limit is {MAX_TWIN_BYTES}"
        )));
    }
    Ok(())
}

impl Hub {
    async fn device_record(&self, device_id: &str) -> Result<DeviceRecord, DpsError> {
        self.store
            .get_device(device_id)
            .await?
            .ok_or_else(|| DpsError::NotFound(format!("device '{device_id}' not found")))
    }

    pub async fn get_twin(&self, device_id: &str) -> Result<Twin, DpsError> {
        Ok(self.device_record(device_id).await?.twin)
    }

    /// Device twin (`module_id` = `None`) or module twin.
    pub async fn get_twin_of(
        &self,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<Twin, DpsError> {
        match module_id {
            None => self.get_twin(device_id).await,
            Some(m) => Ok(self.module_record(device_id, m).await?.twin),
        }
    }

    /// Read-modify-write of a device's or module's twin with optimistic concurrency.
    async fn modify_twin_of(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        f: impl FnMut(&mut Twin) -> Result<(), DpsError>,
    ) -> Result<Twin, DpsError> {
        match module_id {
            None => self.modify_twin(device_id, f).await,
            Some(m) => self.modify_module_twin(device_id, m, f).await,
        }
    }

    pub(crate) async fn modify_module_twin(
        &self,
        device_id: &str,
        module_id: &str,
        mut f: impl FnMut(&mut Twin) -> Result<(), DpsError>,
    ) -> Result<Twin, DpsError> {
        for _ in 0..RETRIES {
            let mut rec = self.module_record(device_id, module_id).await?;
            let etag = rec.module.etag.clone().unwrap_or_default();
            f(&mut rec.twin)?;
            check_size(&rec.twin)?;
            rec.twin.version += 1;
            rec.twin.etag = Some(twin_etag(rec.twin.version));
            match self
                .store
                .put_module(rec, Precondition::IfMatch(etag))
                .await
            {
                Ok(saved) => return Ok(saved.twin),
                Err(StoreError::EtagMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DpsError::Conflict(format!(
            "the twin of '{device_id}/{module_id}' is being changed concurrently; retry"
        )))
    }

    /// Read-modify-write of a device's twin with optimistic concurrency on the device etag.
    pub(crate) async fn modify_twin(
        &self,
        device_id: &str,
        mut f: impl FnMut(&mut Twin) -> Result<(), DpsError>,
    ) -> Result<Twin, DpsError> {
        for _ in 0..RETRIES {
            let mut rec = self.device_record(device_id).await?;
            let etag = rec.device.etag.clone().unwrap_or_default();
            f(&mut rec.twin)?;
            check_size(&rec.twin)?;
            rec.twin.version += 1;
            rec.twin.etag = Some(twin_etag(rec.twin.version));
            match self
                .store
                .put_device(rec, Precondition::IfMatch(etag))
                .await
            {
                Ok(saved) => {
                    crate::metrics::inc(&self.auth_failures.metrics.twin_updates);
                    return Ok(saved.twin);
                }
                Err(StoreError::EtagMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DpsError::Conflict(format!(
            "the twin of '{device_id}' is being changed concurrently; retry"
        )))
    }

    /// Device reported-properties PATCH; returns the new reported `$version`.
    pub async fn patch_reported(&self, device_id: &str, patch: &Value) -> Result<u64, DpsError> {
        self.patch_reported_of(device_id, None, patch).await
    }

    /// Reported-properties PATCH of a device or module twin.
    pub async fn patch_reported_of(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        patch: &Value,
    ) -> Result<u64, DpsError> {
        let patch = patch.as_object().ok_or_else(|| {
            DpsError::bad_request("a reported-properties patch must be a JSON object")
        })?;
        let now = fleethub_api::time::now_utc();
        let mut version = 0;
        self.modify_twin_of(device_id, module_id, |t| {
            version = apply_section(&mut t.properties.reported, patch, &now, false);
            Ok(())
        })
        .await?;
        self.touch(device_id, module_id);
        if module_id.is_none() {
            // Target conditions may read reported properties.
            self.deployments_device_changed(device_id);
        }
        Ok(version)
    }

    /// Service twin PATCH (tags and desired properties merge) or replace (`replace = true`),
    /// honouring `If-Match` against the twin etag. Connected devices get the desired change.
    pub async fn update_twin(
        &self,
        device_id: &str,
        body: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, DpsError> {
        self.update_twin_of(device_id, None, body, if_match, replace)
            .await
    }

    /// Service-side update of a device or module twin (see [`Hub::update_twin`]).
    pub async fn update_twin_of(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        body: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, DpsError> {
        let tags = body.get("tags").cloned();
        let desired = body
            .get("properties")
            .and_then(|p| p.get("desired"))
            .cloned();
        for (name, v) in [("tags", &tags), ("properties.desired", &desired)] {
            if let Some(v) = v
                && !(v.is_object() || v.is_null())
            {
                return Err(DpsError::bad_request(format!(
                    "{name} must be a JSON object"
                )));
            }
        }
        let now = fleethub_api::time::now_utc();
        let mut pushed: Option<Value> = None;
        let twin = self
            .modify_twin_of(device_id, module_id, |t| {
                if let Some(want) = if_match.filter(|m| !m.trim().is_empty())
                    && !fleethub_store::etag_matches(want, t.etag.as_deref())
                {
                    return Err(DpsError::PreconditionFailed(format!(
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
            self.notify(device_id, module_id, HubEvent::DesiredPatch(p));
        }
        if module_id.is_none() && tags.is_some() {
            self.deployments_device_changed(device_id);
        }
        Ok(twin)
    }
}

/// Azure twin etags look like `AAAAAAAAAAE=` (base64 of the version).
fn twin_etag(version: u64) -> String {
    use base64_lite::encode8;
    encode8(version)
}

mod base64_lite {
    /// base64 of the 8 big-endian bytes of `v`.
    pub fn encode8(v: u64) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = v.to_be_bytes();
        let mut out = String::with_capacity(12);
        for chunk in b.chunks(3) {
            let n = (chunk[0] as u32) << 16
                | (*chunk.get(1).unwrap_or(&0) as u32) << 8
                | *chunk.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
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
}
