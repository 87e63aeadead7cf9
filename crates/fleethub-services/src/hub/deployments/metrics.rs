//! Configuration metrics: the system metrics (`targetedCount`, `appliedCount`, and for IoT Edge
//! deployments `reportedSuccessfulCount` / `reportedFailedCount`) and the custom metric
//! queries, counted over the registry when a configuration is read.
//!
//! A device counts as reporting success when its `$edgeAgent` reports
//! `lastDesiredVersion` equal to the desired `$version` and `lastDesiredStatus.code` 200, and
//! as reporting failure when it reports that version with any other code (400, 406, 412, 417,
//! 500: the same rule as Azure's `code != 200` system query). Until the agent reports the
//! current version the device is in neither count.

use super::query_view;
use crate::hub::Error;
use crate::hub::Hub;
use crate::query::Query;
use fleethub_api::{Configuration, ConfigurationMetrics};
use fleethub_storage::PageRequest;
use serde_json::Value;
use std::collections::BTreeMap;

/// Outcome of the `$edgeAgent` for its current desired version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentReport {
    /// Not (yet) reported for the current desired `$version`.
    Pending,
    Success,
    Failure,
}

/// Reads the `$edgeAgent` module twin's desired `$version` and reported status.
pub fn agent_report(desired: &Value, reported: &Value) -> AgentReport {
    let want = desired.get("$version").and_then(Value::as_u64);
    let got = reported.get("lastDesiredVersion").and_then(Value::as_u64);
    let code = reported
        .get("lastDesiredStatus")
        .and_then(|s| s.get("code"))
        .and_then(Value::as_u64);
    match (want, got, code) {
        (Some(w), Some(g), Some(200)) if w == g => AgentReport::Success,
        (Some(w), Some(g), Some(_)) if w == g => AgentReport::Failure,
        _ => AgentReport::Pending,
    }
}

/// The system metric queries Azure shows (for reading; fleethub counts them directly).
fn system_queries(c: &Configuration) -> BTreeMap<String, String> {
    let id = &c.id;
    let target = c.target_condition.clone().unwrap_or_default();
    let mut q = BTreeMap::new();
    if c.is_edge() {
        let applied = format!(
            "select deviceId from devices.modules where moduleId = '$edgeAgent' and configurations.[[{id}]].status = 'Applied'"
        );
        let current = format!(
            "{applied} and properties.desired.$version = properties.reported.lastDesiredVersion"
        );
        q.insert(
            "targetedCount".into(),
            format!("select deviceId from devices where capabilities.iotEdge = true and {target}"),
        );
        q.insert(
            "reportedSuccessfulCount".into(),
            format!("{current} and properties.reported.lastDesiredStatus.code = 200"),
        );
        q.insert(
            "reportedFailedCount".into(),
            format!("{current} and properties.reported.lastDesiredStatus.code != 200"),
        );
        q.insert("appliedCount".into(), applied);
    } else {
        q.insert(
            "targetedCount".into(),
            format!("select deviceId from devices where {target}"),
        );
        q.insert(
            "appliedCount".into(),
            format!(
                "select deviceId from devices where configurations.[[{id}]].status = 'Applied'"
            ),
        );
    }
    q
}

impl Hub {
    /// Fills `systemMetrics` and `metrics.results` of each configuration, in one registry scan.
    pub async fn fill_configuration_metrics(
        &self,
        configs: &mut [Configuration],
    ) -> Result<(), Error> {
        let custom: Vec<Vec<(String, Option<Query>)>> = configs
            .iter()
            .map(|c| {
                c.metrics
                    .iter()
                    .flat_map(|m| m.queries.iter())
                    .map(|(name, q)| (name.clone(), Query::parse_metric(q).ok()))
                    .collect()
            })
            .collect();
        let mut system: Vec<BTreeMap<String, i64>> = configs
            .iter()
            .map(|c| {
                let mut m: BTreeMap<String, i64> =
                    system_queries(c).into_keys().map(|k| (k, 0)).collect();
                m.insert("targetedCount".into(), 0);
                m.insert("appliedCount".into(), 0);
                m
            })
            .collect();
        let mut results: Vec<BTreeMap<String, i64>> = custom
            .iter()
            .map(|qs| qs.iter().map(|(n, _)| (n.clone(), 0)).collect())
            .collect();
        let mut page = PageRequest {
            continuation: None,
            max_items: 500,
        };
        loop {
            let p = self.store.list_devices(page.clone()).await?;
            for rec in &p.items {
                let doc = query_view(rec);
                let statuses = rec.twin.configurations.as_ref();
                let mut agent: Option<Option<(Value, Value)>> = None;
                for (i, c) in configs.iter().enumerate() {
                    for (name, q) in &custom[i] {
                        if q.as_ref().is_some_and(|q| q.matches(&doc)) {
                            *results[i].entry(name.clone()).or_default() += 1;
                        }
                    }
                    let status = statuses
                        .and_then(|s| s.get(&c.id))
                        .and_then(|s| s.get("status"))
                        .and_then(Value::as_str);
                    let Some(status) = status else { continue };
                    *system[i].entry("targetedCount".into()).or_default() += 1;
                    if status != "Applied" {
                        continue;
                    }
                    *system[i].entry("appliedCount".into()).or_default() += 1;
                    if !c.is_edge() {
                        continue;
                    }
                    if agent.is_none() {
                        agent = Some(
                            self.store
                                .get_module(&rec.device.device_id, "$edgeAgent")
                                .await?
                                .map(|m| (m.twin.properties.desired, m.twin.properties.reported)),
                        );
                    }
                    let report = match agent.as_ref().and_then(Option::as_ref) {
                        Some((d, r)) => agent_report(d, r),
                        None => AgentReport::Pending,
                    };
                    let key = match report {
                        AgentReport::Success => "reportedSuccessfulCount",
                        AgentReport::Failure => "reportedFailedCount",
                        AgentReport::Pending => continue,
                    };
                    *system[i].entry(key.into()).or_default() += 1;
                }
            }
            match p.continuation {
                Some(c) => page.continuation = Some(c),
                None => break,
            }
        }
        for (i, c) in configs.iter_mut().enumerate() {
            c.system_metrics = Some(ConfigurationMetrics {
                results: std::mem::take(&mut system[i]),
                queries: system_queries(c),
            });
            let queries = c.metrics.take().map(|m| m.queries).unwrap_or_default();
            c.metrics = Some(ConfigurationMetrics {
                results: std::mem::take(&mut results[i]),
                queries,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_reports() {
        let d = json!({"$version": 4});
        let ok = json!({"lastDesiredVersion": 4, "lastDesiredStatus": {"code": 200}});
        let old = json!({"lastDesiredVersion": 3, "lastDesiredStatus": {"code": 200}});
        let bad = json!({"lastDesiredVersion": 4, "lastDesiredStatus": {"code": 417}});
        assert_eq!(agent_report(&d, &ok), AgentReport::Success);
        assert_eq!(agent_report(&d, &old), AgentReport::Pending);
        assert_eq!(agent_report(&d, &bad), AgentReport::Failure);
        assert_eq!(agent_report(&d, &json!({})), AgentReport::Pending);
    }
}
