//! Module identities of this edge device: created in the hub through the device-scoped module
//! API (device SAS), cached locally (0600) so modules keep working offline. Keys never leave
//! the daemon: modules get HMAC signatures from the workload API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use fleethub_device::module_identity::module_keys;
use fleethub_device::{ModuleIdentityClient, ModuleIdentityError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::provisioning::DeviceIdentity;
use crate::state::{StateDir, create_private_dir, safe_name, write_private};

/// A module identity with its keys.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModuleIdentity {
    pub module_id: String,
    pub generation_id: String,
    pub primary_key: String,
    pub secondary_key: String,
}

impl std::fmt::Debug for ModuleIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleIdentity")
            .field("module_id", &self.module_id)
            .field("generation_id", &self.generation_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The hub rejected the device credentials (401).
    #[error("the hub rejected the device's credentials: {0}")]
    Unauthorized(ModuleIdentityError),
    #[error("the hub is unreachable and module '{module}' has no cached identity: {source}")]
    Offline {
        module: String,
        source: ModuleIdentityError,
    },
    #[error("module identity '{module}': {source}")]
    Hub {
        module: String,
        source: ModuleIdentityError,
    },
    #[error("module identity '{0}' has no symmetric keys in the hub")]
    NoKeys(String),
    #[error("cannot write the identity cache: {0}")]
    Cache(std::io::Error),
}

/// Module identities of one device (hub + device ID), cached under
/// `<homedir>/identities/<hub>__<device>/<module>.json`.
pub struct IdentityStore {
    dir: PathBuf,
    client: ModuleIdentityClient,
    cache: RwLock<HashMap<String, ModuleIdentity>>,
}

impl IdentityStore {
    /// Opens the cache for `device` and loads every cached identity.
    pub fn open(
        state: &StateDir,
        device: &DeviceIdentity,
        client: ModuleIdentityClient,
    ) -> std::io::Result<IdentityStore> {
        let dir = state.identities_dir().join(format!(
            "{}__{}",
            safe_name(&device.hub_hostname),
            safe_name(&device.device_id)
        ));
        create_private_dir(&dir)?;
        let mut cache = HashMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "json")
                && let Ok(bytes) = std::fs::read(entry.path())
                && let Ok(m) = serde_json::from_slice::<ModuleIdentity>(&bytes)
            {
                cache.insert(m.module_id.clone(), m);
            }
        }
        Ok(IdentityStore {
            dir,
            client,
            cache: RwLock::new(cache),
        })
    }

    fn file(&self, module_id: &str) -> PathBuf {
        self.dir.join(format!("{}.json", safe_name(module_id)))
    }

    /// The cached identity.
    pub fn get(&self, module_id: &str) -> Option<ModuleIdentity> {
        self.cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(module_id)
            .cloned()
    }

    /// Every cached module ID.
    pub fn cached_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    fn store(&self, m: &ModuleIdentity) -> Result<(), IdentityError> {
        let text = serde_json::to_vec_pretty(m).map_err(|e| IdentityError::Cache(e.into()))?;
        write_private(&self.file(&m.module_id), &text).map_err(IdentityError::Cache)?;
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(m.module_id.clone(), m.clone());
        Ok(())
    }

    /// Makes sure the module identity exists in the hub (created with hub-generated keys;
    /// keys generated here and set with `If-Match: *` when the hub has none) and is cached.
    /// When the hub is unreachable the cached identity is used.
    pub async fn ensure(&self, module_id: &str) -> Result<ModuleIdentity, IdentityError> {
        let result = match self.client.get_or_create(module_id).await {
            Ok(m) if module_keys(&m).is_some() => Ok(m),
            Ok(_) => {
                let keys = (
                    fleethub_core::keys::generate_key(),
                    fleethub_core::keys::generate_key(),
                );
                self.client.update(module_id, Some(keys)).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(m) => {
                let (primary_key, secondary_key) =
                    module_keys(&m).ok_or_else(|| IdentityError::NoKeys(module_id.into()))?;
                let identity = ModuleIdentity {
                    module_id: module_id.to_string(),
                    generation_id: m.generation_id.unwrap_or_default(),
                    primary_key,
                    secondary_key,
                };
                if self.get(module_id).as_ref() != Some(&identity) {
                    self.store(&identity)?;
                }
                Ok(identity)
            }
            Err(e) if e.is_unauthorized() => Err(IdentityError::Unauthorized(e)),
            Err(e) if e.is_network() => match self.get(module_id) {
                Some(m) => {
                    tracing::warn!(module_id, error = %e, "hub unreachable; using the cached module identity");
                    Ok(m)
                }
                None => Err(IdentityError::Offline {
                    module: module_id.into(),
                    source: e,
                }),
            },
            Err(e) => Err(IdentityError::Hub {
                module: module_id.into(),
                source: e,
            }),
        }
    }

    /// Deletes the identity in the hub (best effort when offline) and from the cache.
    pub async fn remove(&self, module_id: &str) -> Result<(), IdentityError> {
        match self.client.delete(module_id).await {
            Ok(()) => {}
            Err(e) if e.is_unauthorized() => return Err(IdentityError::Unauthorized(e)),
            Err(e) => {
                tracing::warn!(module_id, error = %e, "cannot delete the module identity in the hub");
            }
        }
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(module_id);
        let _ = std::fs::remove_file(self.file(module_id));
        Ok(())
    }

    /// A credential check: a real SAS-authenticated call to the hub.
    pub async fn verify_device_credentials(&self) -> Result<(), ModuleIdentityError> {
        self.client.get("$edgeAgent").await.map(|_| ())
    }
}

/// HMAC-SHA256 signature (base64) of `data` with the module's primary or secondary key.
pub fn sign(identity: &ModuleIdentity, key_id: &str, data: &[u8]) -> Result<String, String> {
    use base64::Engine;
    let key = match key_id {
        "primary" => &identity.primary_key,
        "secondary" => &identity.secondary_key,
        other => {
            return Err(format!(
                "unknown keyId '{other}': use \"primary\" or \"secondary\""
            ));
        }
    };
    let key = fleethub_core::keys::decode_key(key).map_err(|e| format!("module key: {e}"))?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(data);
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The daemon's module keys as the edge hub's credential source.
pub struct Credentials(pub Arc<IdentityStore>);

impl fleetedge_hub::CredentialSource for Credentials {
    fn module_keys(&self, module_id: &str) -> Option<fleetedge_hub::ModuleKeys> {
        self.0.get(module_id).map(|m| fleetedge_hub::ModuleKeys {
            primary: m.primary_key,
            secondary: m.secondary_key,
            generation_id: m.generation_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_sas_signing() {
        let key = fleethub_core::keys::generate_key();
        let id = ModuleIdentity {
            module_id: "m".into(),
            generation_id: "g".into(),
            primary_key: key.clone(),
            secondary_key: fleethub_core::keys::generate_key(),
        };
        let msg = "hub%2Fdevices%2Fd%2Fmodules%2Fm\n1700000000";
        let ours = sign(&id, "primary", msg.as_bytes()).unwrap();
        let sdk =
            fleethub_core::sas::sign(&key, "hub%2Fdevices%2Fd%2Fmodules%2Fm", 1700000000).unwrap();
        assert_eq!(ours, sdk);
        assert_ne!(sign(&id, "secondary", msg.as_bytes()).unwrap(), ours);
        assert!(sign(&id, "tertiary", b"x").unwrap_err().contains("keyId"));
        assert!(!format!("{id:?}").contains(&key));
    }
}
