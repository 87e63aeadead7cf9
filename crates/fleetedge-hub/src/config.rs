//! The `$edgeHub` module twin's desired properties: `schemaVersion`, `routes`,
//! `storeAndForwardConfiguration.timeToLiveSecs`.

use std::time::Duration;

use serde_json::Value;

use crate::routes::Route;

/// A desired configuration that cannot be applied (reported as `lastDesiredStatus` 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The applied configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeHubConfig {
    pub schema_version: String,
    pub routes: Vec<Route>,
    /// `storeAndForwardConfiguration.timeToLiveSecs`, when given.
    pub ttl: Option<Duration>,
}

/// Route used when no configuration was ever received.
pub const DEFAULT_ROUTE: (&str, &str) = ("default", "FROM /messages/* INTO $upstream");

impl EdgeHubConfig {
    /// The configuration before any twin was read and none is cached.
    pub fn default_routes() -> EdgeHubConfig {
        EdgeHubConfig {
            schema_version: "1.0".into(),
            routes: vec![Route::parse(DEFAULT_ROUTE.0, DEFAULT_ROUTE.1).expect("valid default")],
            ttl: None,
        }
    }

    /// Parses the desired properties (metadata keys such as `$version` are ignored). Desired
    /// properties with nothing but metadata (never configured) give the default route.
    pub fn from_desired(desired: &Value) -> Result<EdgeHubConfig, ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        let Some(obj) = desired.as_object() else {
            return bad("desired properties are not a JSON object".into());
        };
        // Never configured (a new `$edgeHub` twin): the default route.
        if obj.keys().all(|k| k.starts_with('$')) {
            return Ok(EdgeHubConfig::default_routes());
        }
        let schema_version = match obj.get("schemaVersion") {
            Some(Value::String(s)) => s.clone(),
            None => "1.0".to_string(),
            Some(other) => return bad(format!("schemaVersion must be a string, not {other}")),
        };
        let mut parts = schema_version.split('.');
        let major = parts.next().and_then(|m| m.parse::<u32>().ok());
        let minor = parts.next().map_or(Some(0), |m| m.parse::<u32>().ok());
        let (Some(1), Some(minor)) = (major, minor) else {
            return bad(format!(
                "unsupported schemaVersion '{schema_version}' (supported: 1.0 to 1.3)"
            ));
        };
        let routes_value = obj
            .get("routes")
            .cloned()
            .unwrap_or(Value::Object(serde_json::Map::default()));
        let Some(routes_obj) = routes_value.as_object() else {
            return bad("routes must be an object of name -> route".into());
        };
        let mut routes = Vec::new();
        for (name, v) in routes_obj {
            let route = match v {
                // A null desired value is a deleted route (patch semantics).
                Value::Null => continue,
                Value::String(text) => Route::parse(name, text).map_err(|e| ConfigError(e.0))?,
                Value::Object(o) => {
                    if minor < 1 {
                        return bad(format!(
                            "route '{name}' is an object: route objects need schemaVersion 1.1 or later (got {schema_version})"
                        ));
                    }
                    let Some(text) = o.get("route").and_then(Value::as_str) else {
                        return bad(format!("route '{name}' has no 'route' string"));
                    };
                    let mut r = Route::parse(name, text).map_err(|e| ConfigError(e.0))?;
                    if let Some(p) = o.get("priority") {
                        match p.as_u64() {
                            Some(p) if p <= 9 => r.priority = p as u8,
                            _ => {
                                return bad(format!(
                                    "route '{name}': priority must be 0-9, not {p}"
                                ));
                            }
                        }
                    }
                    if let Some(t) = o.get("timeToLiveSecs") {
                        match t.as_u64() {
                            Some(0) | None => {
                                return bad(format!(
                                    "route '{name}': timeToLiveSecs must be a positive integer, not {t}"
                                ));
                            }
                            Some(s) => r.ttl = Some(Duration::from_secs(s)),
                        }
                    }
                    r
                }
                other => {
                    return bad(format!(
                        "route '{name}' must be a string or an object, not {other}"
                    ));
                }
            };
            routes.push(route);
        }
        let ttl = match obj.get("storeAndForwardConfiguration") {
            None | Some(Value::Null) => None,
            Some(Value::Object(sf)) => match sf.get("timeToLiveSecs") {
                None | Some(Value::Null) => None,
                Some(t) => match t.as_u64() {
                    Some(s) if s > 0 => Some(Duration::from_secs(s)),
                    _ => {
                        return bad(format!(
                            "storeAndForwardConfiguration.timeToLiveSecs must be a positive integer, not {t}"
                        ));
                    }
                },
            },
            Some(other) => {
                return bad(format!(
                    "storeAndForwardConfiguration must be an object, not {other}"
                ));
            }
        };
        Ok(EdgeHubConfig {
            schema_version,
            routes,
            ttl,
        })
    }

    pub fn route_names(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_1_0_strings() {
        let c = EdgeHubConfig::from_desired(&json!({
            "schemaVersion": "1.0",
            "routes": {
                "up": "FROM /messages/* INTO $upstream",
                "ab": "FROM /messages/modules/A/outputs/output1 INTO BrokeredEndpoint(\"/modules/B/inputs/input1\")",
                "gone": null
            },
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
            "$version": 3
        }))
        .unwrap();
        assert_eq!(c.route_names(), vec!["ab", "up"]);
        assert_eq!(c.ttl, Some(Duration::from_hours(2)));
    }

    #[test]
    fn schema_1_1_objects() {
        let c = EdgeHubConfig::from_desired(&json!({
            "schemaVersion": "1.1",
            "routes": {"r": {"route": "FROM /messages/* INTO $upstream", "priority": 2, "timeToLiveSecs": 60}}
        }))
        .unwrap();
        assert_eq!(c.routes[0].priority, 2);
        assert_eq!(c.routes[0].ttl, Some(Duration::from_mins(1)));
        assert_eq!(c.ttl, None);
    }

    #[test]
    fn rejections() {
        let cases = [
            (json!({"schemaVersion": "2.0"}), "unsupported schemaVersion"),
            (
                json!({"schemaVersion": "1.0", "routes": {"r": {"route": "FROM /messages/* INTO $upstream"}}}),
                "need schemaVersion 1.1",
            ),
            (
                json!({"schemaVersion": "1.1", "routes": {"r": {"route": "FROM /messages/* INTO $upstream", "priority": 12}}}),
                "priority must be 0-9",
            ),
            (
                json!({"routes": {"r": "FROM /x INTO $upstream"}}),
                "unsupported source",
            ),
            (json!({"routes": {"r": 5}}), "must be a string or an object"),
            (json!({"routes": []}), "routes must be an object"),
            (
                json!({"storeAndForwardConfiguration": {"timeToLiveSecs": -1}}),
                "positive integer",
            ),
        ];
        for (v, want) in cases {
            let e = EdgeHubConfig::from_desired(&v).unwrap_err();
            assert!(e.0.contains(want), "{v}: {e}");
        }
        assert_eq!(
            EdgeHubConfig::default_routes().route_names(),
            vec!["default"]
        );
    }
}
