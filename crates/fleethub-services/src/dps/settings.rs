//! Settings of the DPS instance kept in the store (docs/protocol-notes.md, "Allocation
//! policies"): the instance's allocation policy, which applies to enrollments and groups that
//! name none. Azure keeps it on the resource (`properties.allocationPolicy`, `Hashed`,
//! `GeoLatency` or `Static`; `custom` cannot be the instance's policy).

use super::Dps;
use crate::dps::Error;
use serde::{Deserialize, Serialize};

/// The store key of the instance's allocation policy.
const POLICY_KEY: &str = "dps.allocation_policy";

/// The policies an instance may have, as the data plane spells them.
const INSTANCE_POLICIES: [&str; 3] = ["hashed", "geoLatency", "static"];

/// The instance's settings (`GET|PUT /settings` on the DPS service API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DpsSettings {
    /// `hashed` (the default), `geoLatency` or `static` (the hub an enrollment names, else
    /// this server's own hub).
    #[serde(default)]
    pub allocation_policy: Option<String>,
}

impl Dps {
    /// The instance's settings, defaults filled in.
    pub async fn settings(&self) -> Result<DpsSettings, Error> {
        Ok(DpsSettings {
            allocation_policy: Some(self.instance_policy().await?),
        })
    }

    /// Changes the settings given (absent fields stay as they are).
    pub async fn put_settings(&self, s: DpsSettings) -> Result<DpsSettings, Error> {
        if let Some(p) = s.allocation_policy.as_deref() {
            let Some(known) = INSTANCE_POLICIES.iter().find(|k| k.eq_ignore_ascii_case(p)) else {
                return Err(Error::invalid(format!(
                    "allocationPolicy '{p}' cannot be the instance's policy; use one of {} (custom is set per enrollment or group)",
                    INSTANCE_POLICIES.join(", ")
                )));
            };
            self.store.put_setting(POLICY_KEY, known).await?;
            *self
                .policy
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((*known).to_string());
            tracing::info!(policy = known, "instance allocation policy changed");
        }
        self.settings().await
    }

    /// The instance's allocation policy (read from the store once, then kept).
    pub(super) async fn instance_policy(&self) -> Result<String, Error> {
        if let Some(p) = self
            .policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok(p);
        }
        let p = self
            .store
            .get_setting(POLICY_KEY)
            .await?
            .unwrap_or_else(|| "hashed".to_string());
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p.clone());
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dps, enrollment, register};
    use super::*;

    const CS2: &str = "HostName=hub2.fleethub.test;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=";

    #[tokio::test]
    async fn the_instance_policy_applies_where_an_enrollment_names_none() {
        let dir = tempfile::tempdir().unwrap();
        let d = dps(&dir);
        assert_eq!(
            d.settings().await.unwrap().allocation_policy.as_deref(),
            Some("hashed")
        );
        for bad in ["custom", "roundRobin"] {
            let err = d
                .put_settings(DpsSettings {
                    allocation_policy: Some(bad.into()),
                })
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::Invalid(m) if m.contains(bad)),
                "{err}"
            );
        }
        // A linked hub with all the weight: hashing sends everyone there (and fails, as no
        // client for linked hubs is set here) ...
        d.put_linked_hub(fleethub_api::LinkedHub {
            connection_string: CS2.into(),
            allocation_weight: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
        let key = fleethub_core::keys::generate_key();
        d.put_enrollment("inst-1", enrollment("inst-1", &key), None)
            .await
            .unwrap();
        assert!(matches!(
            register(&d, "inst-1", &key).await,
            Err(Error::HubUnavailable { .. })
        ));
        // ... while the instance's `static` keeps devices on the own hub, survives a restart
        // of the service (the store keeps it), and an enrollment's own policy still wins.
        let saved = d
            .put_settings(DpsSettings {
                allocation_policy: Some("STATIC".into()),
            })
            .await
            .unwrap();
        assert_eq!(saved.allocation_policy.as_deref(), Some("static"));
        let d = super::super::tests::dps_in(&dir);
        assert_eq!(
            d.settings().await.unwrap().allocation_policy.as_deref(),
            Some("static")
        );
        let rs = register(&d, "inst-1", &key).await.unwrap();
        assert_eq!(
            rs.registration_state.unwrap().assigned_hub.as_deref(),
            Some("hub.fleethub.test")
        );
        let mut e = d.get_enrollment("inst-1").await.unwrap();
        e.allocation_policy = Some("hashed".into());
        d.put_enrollment("inst-1", e, None).await.unwrap();
        assert!(register(&d, "inst-1", &key).await.is_err(), "hashed: hub2");
    }
}
