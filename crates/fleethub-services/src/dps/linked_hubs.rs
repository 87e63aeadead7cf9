//! The hubs linked to the DPS instance (docs/protocol-notes.md, "Linked hubs"): the local hub
//! (the first of [`DpsConfig::linked_hubs`](super::DpsConfig), linked by default and not stored)
//! and the remote hubs an operator links, kept in the store.

use super::Dps;
use crate::dps::Error;
use fleethub_api::LinkedHub;
use fleethub_core::connection_string::ConnectionString;
use fleethub_core::redact::redact;

/// What a linked hub's connection string must hold to create device identities there.
fn check_connection_string(cs: &str) -> Result<ConnectionString, Error> {
    let parsed = ConnectionString::parse(cs)
        .map_err(|e| Error::invalid(format!("linked hub connectionString: {e}")))?;
    if parsed.device_id.is_some() {
        return Err(Error::invalid(
            "linked hub connectionString is a device connection string: give a shared access policy's (HostName, SharedAccessKeyName, SharedAccessKey) with registry write rights",
        ));
    }
    if parsed.shared_access_key_name.is_none() || parsed.shared_access_key.is_none() {
        return Err(Error::invalid(
            "linked hub connectionString needs SharedAccessKeyName and SharedAccessKey (a shared access policy with registry write rights)",
        ));
    }
    Ok(parsed)
}

impl Dps {
    fn local_hub(&self) -> Option<&str> {
        self.cfg.linked_hubs.first().map(String::as_str)
    }

    fn is_local_hub(&self, name: &str) -> bool {
        self.cfg
            .linked_hubs
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Every linked hub, the local one first; keys in connection strings are masked.
    pub async fn list_linked_hubs(&self) -> Result<Vec<LinkedHub>, Error> {
        let mut hubs: Vec<LinkedHub> = self
            .cfg
            .linked_hubs
            .iter()
            .map(|h| LinkedHub {
                name: h.clone(),
                connection_string: String::new(),
                allocation_weight: Some(1),
                apply_allocation_policy: Some(true),
                location: None,
            })
            .collect();
        for mut hub in self.store.list_linked_hubs().await? {
            hub.connection_string = redact(&hub.connection_string).into_owned();
            hubs.push(hub);
        }
        Ok(hubs)
    }

    /// Links a hub (or replaces the link of the same host name). The host name comes from the
    /// connection string; a `name` that differs from it, a negative weight, or the local hub
    /// (linked by default) are refused.
    pub async fn put_linked_hub(&self, mut hub: LinkedHub) -> Result<LinkedHub, Error> {
        let cs = check_connection_string(&hub.connection_string)?;
        if !hub.name.is_empty() && !hub.name.eq_ignore_ascii_case(&cs.host_name) {
            return Err(Error::invalid(format!(
                "linked hub name '{}' differs from the connection string's HostName '{}'",
                hub.name, cs.host_name
            )));
        }
        hub.name = cs.host_name;
        if let Some(w) = hub.allocation_weight
            && w < 0
        {
            return Err(Error::invalid(format!(
                "allocationWeight must be 0 or more, got {w}"
            )));
        }
        if self.is_local_hub(&hub.name) {
            return Err(Error::invalid(format!(
                "'{}' is this server's own hub, linked by default",
                hub.name
            )));
        }
        let mut stored = self.store.put_linked_hub(hub).await?;
        tracing::info!(hub = %stored.name, "linked hub saved");
        stored.connection_string = redact(&stored.connection_string).into_owned();
        Ok(stored)
    }

    /// Unlinks a hub; the local hub cannot be unlinked.
    pub async fn delete_linked_hub(&self, name: &str) -> Result<(), Error> {
        if self.is_local_hub(name) {
            return Err(Error::invalid(format!(
                "'{name}' is this server's own hub ({}); it cannot be unlinked",
                self.local_hub().unwrap_or_default()
            )));
        }
        self.store.delete_linked_hub(name).await?;
        tracing::info!(hub = %name, "linked hub deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::dps;
    use super::*;

    fn hub(cs: &str, weight: Option<i64>) -> LinkedHub {
        LinkedHub {
            connection_string: cs.into(),
            allocation_weight: weight,
            ..Default::default()
        }
    }

    const CS2: &str = "HostName=hub2.fleethub.test;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";

    #[tokio::test]
    async fn local_hub_is_linked_by_default_and_remote_hubs_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dps(&dir);
        let all = d.list_linked_hubs().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, "hub.fleethub.test");

        let saved = d.put_linked_hub(hub(CS2, Some(3))).await.unwrap();
        assert_eq!(saved.name, "hub2.fleethub.test", "name from HostName");
        assert!(
            !saved.connection_string.contains("c2VjcmV0"),
            "key masked: {}",
            saved.connection_string
        );
        let all = d.list_linked_hubs().await.unwrap();
        assert_eq!(
            all.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ["hub.fleethub.test", "hub2.fleethub.test"]
        );
        assert_eq!(all[1].allocation_weight, Some(3));
        assert!(!all[1].connection_string.contains("c2VjcmV0"));

        d.delete_linked_hub("HUB2.fleethub.test").await.unwrap();
        assert_eq!(d.list_linked_hubs().await.unwrap().len(), 1);
        assert!(matches!(
            d.delete_linked_hub("hub2.fleethub.test").await,
            Err(Error::LinkedHubNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn bad_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dps(&dir);
        for (h, want) in [
            (hub("HostName=x", None), "SharedAccessKeyName"),
            (hub("nonsense", None), "connectionString"),
            (
                hub("HostName=h.test;DeviceId=d;SharedAccessKey=a2V5", None),
                "device connection string",
            ),
            (hub(CS2, Some(-1)), "allocationWeight"),
            (
                LinkedHub {
                    name: "other.test".into(),
                    ..hub(CS2, None)
                },
                "differs",
            ),
            (
                hub(
                    "HostName=hub.fleethub.test;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5",
                    None,
                ),
                "own hub",
            ),
        ] {
            let e = d.put_linked_hub(h).await.unwrap_err();
            assert!(
                matches!(&e, Error::Invalid(m) if m.contains(want)),
                "{want}: {e}"
            );
        }
        // A weight of 0 is allowed (the hub is linked but hashing never picks it).
        d.put_linked_hub(hub(CS2, Some(0))).await.unwrap();
        assert!(matches!(
            d.delete_linked_hub("hub.fleethub.test").await,
            Err(Error::Invalid(_))
        ));
        assert_eq!(d.list_linked_hubs().await.unwrap().len(), 2);
    }
}
