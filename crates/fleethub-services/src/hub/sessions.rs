//! Persistent MQTT sessions (CleanSession=0): the subscriptions of a client identity, kept in
//! the store so they survive reconnects and server restarts.

use super::{Error, Hub};
use std::collections::BTreeMap;

/// Topic filters of a persistent session and the QoS granted for each (0 or 1).
pub type SessionSubscriptions = BTreeMap<String, u8>;

/// Stored form: `{"filter": qos, ...}`.
fn encode(s: &SessionSubscriptions) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

/// Reads the stored form; anything but QoS 0 counts as 1, an unreadable document as empty.
fn decode(doc: &str) -> SessionSubscriptions {
    let v: serde_json::Value = serde_json::from_str(doc).unwrap_or_default();
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, q)| (k.clone(), u8::from(q.as_u64() != Some(0))))
                .collect()
        })
        .unwrap_or_default()
}

impl Hub {
    /// The subscriptions saved for a client identity (`device` or `device/module`), if any.
    pub async fn load_session(
        &self,
        identity: &str,
    ) -> Result<Option<SessionSubscriptions>, Error> {
        Ok(self
            .store
            .get_mqtt_session(identity)
            .await?
            .map(|doc| decode(&doc)))
    }

    /// Saves the subscriptions of a client identity.
    pub async fn save_session(
        &self,
        identity: &str,
        subscriptions: &SessionSubscriptions,
    ) -> Result<(), Error> {
        Ok(self
            .store
            .put_mqtt_session(identity, &encode(subscriptions))
            .await?)
    }

    /// Forgets a client identity's session (a CleanSession=1 connect).
    pub async fn clear_session(&self, identity: &str) -> Result<(), Error> {
        Ok(self.store.delete_mqtt_session(identity).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form() {
        let s = SessionSubscriptions::from([
            ("$iothub/methods/POST/#".to_string(), 0),
            ("devices/d/messages/devicebound/#".to_string(), 1),
        ]);
        let doc = encode(&s);
        assert_eq!(
            doc,
            r#"{"$iothub/methods/POST/#":0,"devices/d/messages/devicebound/#":1}"#
        );
        assert_eq!(decode(&doc), s);
        assert_eq!(decode(r#"{"a":2}"#)["a"], 1);
        assert!(decode("not json").is_empty());
    }
}
