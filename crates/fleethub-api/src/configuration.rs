//! Configurations (automatic device management) and IoT Edge deployments at scale: the
//! `Configuration` document of `PUT/GET /configurations/{id}` and the body of
//! `POST /devices/{id}/applyConfigurationContent`, field for field as the service SDKs model
//! them (api-version 2021-04-12).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What a configuration applies: `modulesContent` (IoT Edge deployment: module name ->
/// `{"properties.desired": {...}}` or, in a layered deployment, `{"properties.desired.<path>":
/// value}`), `deviceContent` / `moduleContent` (device and module configurations: twin path ->
/// value).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_content: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_content: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_content: Option<Map<String, Value>>,
}

impl ConfigurationContent {
    /// Is this an IoT Edge deployment (non-empty `modulesContent`)?
    pub fn is_edge(&self) -> bool {
        self.modules_content.as_ref().is_some_and(|m| !m.is_empty())
    }

    /// The answer shape: all three sections present (empty objects when unused), as Azure shows.
    pub fn for_wire(&self) -> ConfigurationContent {
        ConfigurationContent {
            device_content: Some(self.device_content.clone().unwrap_or_default()),
            modules_content: Some(self.modules_content.clone().unwrap_or_default()),
            module_content: Some(self.module_content.clone().unwrap_or_default()),
        }
    }
}

/// Metric results and the queries behind them (`ConfigurationMetrics`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationMetrics {
    #[serde(default)]
    pub results: BTreeMap<String, i64>,
    #[serde(default)]
    pub queries: BTreeMap<String, String>,
}

/// A configuration or IoT Edge deployment (`Configuration`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ConfigurationContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_time_utc: Option<String>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_metrics: Option<ConfigurationMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ConfigurationMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl Configuration {
    /// Is this an IoT Edge deployment?
    pub fn is_edge(&self) -> bool {
        self.content
            .as_ref()
            .is_some_and(ConfigurationContent::is_edge)
    }
}

/// `POST /configurations/testQueries` body (`ConfigurationQueriesTestInput`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationQueriesTestInput {
    #[serde(default)]
    pub target_condition: Option<String>,
    #[serde(default)]
    pub custom_metric_queries: BTreeMap<String, String>,
}

/// `POST /configurations/testQueries` answer (`ConfigurationQueriesTestResponse`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationQueriesTestResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_condition_error: Option<String>,
    #[serde(default)]
    pub custom_metric_query_errors: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_the_sdk_shape() {
        let doc = json!({
            "id": "d1", "schemaVersion": "1.0", "labels": {"a": "b"},
            "content": {"modulesContent": {"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1"}}}},
            "targetCondition": "tags.x='y'", "priority": 3, "etag": "MQ==",
            "metrics": {"results": {}, "queries": {"m": "SELECT deviceId FROM devices"}}
        });
        let c: Configuration = serde_json::from_value(doc.clone()).unwrap();
        assert!(c.is_edge());
        assert_eq!(c.priority, 3);
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["content"], doc["content"]);
        assert_eq!(
            back["metrics"]["queries"]["m"],
            "SELECT deviceId FROM devices"
        );
        let wire = c.content.unwrap().for_wire();
        assert_eq!(
            serde_json::to_value(wire).unwrap()["deviceContent"],
            json!({})
        );
    }
}
