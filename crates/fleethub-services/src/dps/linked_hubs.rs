//! The hubs linked to the DPS instance (docs/protocol-notes.md, "Linked hubs"): the local hub
//! (the first of [`DpsConfig::linked_hubs`](super::DpsConfig), linked by default and not stored)
//! and the remote hubs an operator links, kept in the store.

use super::Dps;
use crate::dps::Error;
use fleethub_api::LinkedHub;
use fleethub_core::connection_string::ConnectionString;
use fleethub_core::redact::redact;
use std::sync::Arc;

/// Azure's largest `allocationWeight` (docs/protocol-notes.md, "Allocation policies").
const MAX_WEIGHT: i64 = 1000;

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

/// A hub an allocation policy may choose, with its weight in hashed allocation.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Candidate {
    pub(super) name: String,
    pub(super) weight: u64,
}

impl Dps {
    /// The stored linked hubs (read from the store once, then kept; refreshed when this
    /// instance changes them).
    pub(super) async fn stored_linked_hubs(&self) -> Result<Arc<Vec<LinkedHub>>, Error> {
        if let Some(hubs) = self
            .linked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok(hubs);
        }
        self.reload_linked_hubs().await
    }

    async fn reload_linked_hubs(&self) -> Result<Arc<Vec<LinkedHub>>, Error> {
        let hubs = Arc::new(self.store.list_linked_hubs().await?);
        *self
            .linked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hubs.clone());
        Ok(hubs)
    }

    /// Every linked hub an allocation policy may choose (`applyAllocationPolicy` not false):
    /// the local hub(s) with weight 1, then the stored ones with their `allocationWeight`
    /// (absent = 1).
    pub(super) fn candidates(&self, stored: &[LinkedHub]) -> Vec<Candidate> {
        let local = self.cfg.linked_hubs.iter().map(|h| Candidate {
            name: h.clone(),
            weight: 1,
        });
        let remote = stored
            .iter()
            .filter(|h| h.apply_allocation_policy != Some(false))
            .map(|h| Candidate {
                name: h.name.clone(),
                weight: h
                    .allocation_weight
                    .map_or(1, |w| u64::try_from(w).unwrap_or(0)),
            });
        local.chain(remote).collect()
    }

    pub(super) fn local_hub(&self) -> Option<&str> {
        self.cfg.linked_hubs.first().map(String::as_str)
    }

    pub(super) fn is_local_hub(&self, name: &str) -> bool {
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
                service_endpoint: None,
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
        if let Some(ep) = &hub.service_endpoint
            && (ep.trim().is_empty() || ep.contains(['/', ' ', ';']))
        {
            return Err(Error::invalid(format!(
                "serviceEndpoint '{ep}' is not host:port"
            )));
        }
        if let Some(w) = hub.allocation_weight
            && !(0..=MAX_WEIGHT).contains(&w)
        {
            return Err(Error::invalid(format!(
                "allocationWeight must be 0 to {MAX_WEIGHT}, got {w}"
            )));
        }
        if self.is_local_hub(&hub.name) {
            return Err(Error::invalid(format!(
                "'{}' is this server's own hub, linked by default",
                hub.name
            )));
        }
        let mut stored = self.store.put_linked_hub(hub).await?;
        self.reload_linked_hubs().await?;
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
        self.reload_linked_hubs().await?;
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
            (hub(CS2, Some(1001)), "allocationWeight"),
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

    fn candidate(name: &str, weight: u64) -> Candidate {
        Candidate {
            name: name.into(),
            weight,
        }
    }

    #[test]
    fn hashed_allocation_follows_the_weights_and_the_iot_hubs_list() {
        use super::super::allocation::{Allocation, choose_hub};
        fn hashed<'a>(hubs: Option<&'a Vec<String>>, fixed: Option<&'a String>) -> Allocation<'a> {
            Allocation {
                policy: None,
                fixed,
                hubs,
            }
        }
        let hubs = [
            candidate("a.test", 1),
            candidate("b.test", 3),
            candidate("z.test", 0),
        ];
        let mut counts = std::collections::HashMap::<String, u32>::new();
        for n in 0..4000 {
            let h = choose_hub(&hubs, &format!("device-{n}"), &hashed(None, None));
            *counts.entry(h).or_default() += 1;
        }
        let (a, b) = (counts["a.test"], counts["b.test"]);
        assert!(
            !counts.contains_key("z.test"),
            "weight 0 is never hashed to"
        );
        assert!(
            (800..1200).contains(&a) && (2800..3200).contains(&b),
            "{counts:?}"
        );
        // Stable, case-insensitive in the registration ID.
        assert_eq!(
            choose_hub(&hubs, "Sensor-7", &hashed(None, None)),
            choose_hub(&hubs, "sensor-7", &hashed(None, None))
        );
        // iotHubs restricts the candidates; a static hub wins when linked (even weight 0).
        let only_a = vec!["A.test".to_string(), "unknown.test".to_string()];
        for n in 0..50 {
            assert_eq!(
                choose_hub(&hubs, &format!("d{n}"), &hashed(Some(&only_a), None)),
                "a.test"
            );
        }
        assert_eq!(
            choose_hub(&hubs, "d", &hashed(None, Some(&"z.test".to_string()))),
            "z.test"
        );
        // All candidates at weight 0: evenly.
        let zero = [candidate("a.test", 0), candidate("b.test", 0)];
        let picked: std::collections::HashSet<String> = (0..50)
            .map(|n| choose_hub(&zero, &format!("d{n}"), &hashed(None, None)))
            .collect();
        assert_eq!(picked.len(), 2);
    }

    #[tokio::test]
    async fn a_linked_hub_that_cannot_be_reached_fails_the_registration_retryably() {
        use super::super::tests::{enrollment, register};
        let dir = tempfile::tempdir().unwrap();
        let d = dps(&dir);
        let mut e = enrollment("dev-remote", &fleethub_core::keys::generate_key());
        e.iot_hub_host_name = Some("hub2.fleethub.test".into());
        let key = e.attestation.keys().unwrap().0.to_string();
        d.put_enrollment("dev-remote", e, None).await.unwrap();
        d.put_linked_hub(hub(CS2, Some(1))).await.unwrap();
        // No client for linked hubs is set: the hub cannot take the identity.
        let err = register(&d, "dev-remote", &key).await.unwrap_err();
        assert!(
            matches!(&err, Error::HubUnavailable { hub } if hub == "hub2.fleethub.test"),
            "{err}"
        );
        let rec = d
            .store
            .get_registration("dev-remote")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.state.status.as_deref(), Some("failed"));
        assert!(
            rec.state
                .error_message
                .as_deref()
                .unwrap_or_default()
                .contains("hub2.fleethub.test"),
            "{:?}",
            rec.state
        );
        assert!(
            d.store.get_device("dev-remote").await.unwrap().is_none(),
            "nothing created here"
        );
    }
}
