//! The edge hub's message model: what a module sent, as routed, queued and forwarded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A message a module sent (telemetry, possibly to an output).
///
/// System properties are keyed by their short wire names without the `$.` prefix
/// (`mid`, `cid`, `uid`, `ct`, `ce`, `exp`, `on`, `ifid`, ...); application properties by
/// their names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeMessage {
    /// Device of the sending module (this edge device).
    pub source_device: String,
    /// Sending module.
    pub source_module: String,
    pub system: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl EdgeMessage {
    /// The output the module sent to (`$.on`), if any.
    pub fn output_name(&self) -> Option<&str> {
        self.system.get("on").map(String::as_str)
    }

    /// Size counted against the queue bound: body plus encoded properties.
    pub fn approx_size(&self) -> usize {
        self.body.len()
            + self
                .system
                .iter()
                .chain(self.properties.iter())
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
            + self.source_module.len()
            + self.source_device.len()
    }

    /// The message as the upstream device client sends it (same properties, content type
    /// and encoding, message id, correlation id, output name).
    pub fn to_upstream(&self) -> fleethub_device::Message {
        let get = |k: &str| self.system.get(k).cloned();
        fleethub_device::Message {
            body: self.body.clone(),
            content_type: get("ct"),
            content_encoding: get("ce"),
            message_id: get("mid"),
            correlation_id: get("cid"),
            user_id: get("uid"),
            expiry_time_utc: get("exp"),
            output_name: get("on"),
            properties: self.properties.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_conversion_keeps_properties() {
        let mut m = EdgeMessage {
            source_device: "d".into(),
            source_module: "A".into(),
            system: BTreeMap::new(),
            properties: BTreeMap::from([("k".to_string(), "v".to_string())]),
            body: b"hi".to_vec(),
        };
        for (k, v) in [
            ("mid", "m1"),
            ("cid", "c1"),
            ("ct", "application/json"),
            ("ce", "utf-8"),
            ("on", "output1"),
        ] {
            m.system.insert(k.into(), v.into());
        }
        let u = m.to_upstream();
        assert_eq!(u.message_id.as_deref(), Some("m1"));
        assert_eq!(u.correlation_id.as_deref(), Some("c1"));
        assert_eq!(u.content_type.as_deref(), Some("application/json"));
        assert_eq!(u.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(u.output_name.as_deref(), Some("output1"));
        assert_eq!(u.properties["k"], "v");
        assert_eq!(u.body, b"hi");
        assert_eq!(m.output_name(), Some("output1"));
        assert!(m.approx_size() > 2);
    }
}
