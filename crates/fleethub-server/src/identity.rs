//! The server's persistent identity: ID scope and service access policies, created on first
//! start and reused on every later start (kept in the store's settings).

use anyhow::{Context, Result};
use fleethub_services::{Policy, policies};
use fleethub_store::Store;
use rand::Rng;

pub struct ServerIdentity {
    pub id_scope: String,
    pub dps_policies: Vec<Policy>,
    pub hub_policies: Vec<Policy>,
}

/// Azure's form: `0ne` + 8 upper-case hex digits.
fn new_id_scope() -> String {
    let n: u32 = rand::thread_rng().r#gen();
    format!("0ne{n:08X}")
}

async fn init_json<T: serde::Serialize + serde::de::DeserializeOwned>(
    store: &dyn Store,
    key: &str,
    fresh: impl FnOnce() -> T,
) -> Result<T> {
    let stored = store
        .init_setting(key, &serde_json::to_string(&fresh())?)
        .await?;
    serde_json::from_str(&stored).with_context(|| format!("stored setting '{key}' is unreadable"))
}

pub async fn load_or_init(store: &dyn Store) -> Result<ServerIdentity> {
    let id_scope = store.init_setting("id_scope", &new_id_scope()).await?;
    let dps_policies = init_json(store, "dps_policies", policies::default_dps_policies).await?;
    let hub_policies = init_json(store, "hub_policies", policies::default_hub_policies).await?;
    Ok(ServerIdentity {
        id_scope,
        dps_policies,
        hub_policies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_scope_shape() {
        let s = new_id_scope();
        assert_eq!(s.len(), 11);
        assert!(s.starts_with("0ne"));
        assert!(s[3..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[tokio::test]
    async fn identity_is_stable_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let a = {
            let s = fleethub_store::sqlite::SqliteStore::open(&path).unwrap();
            load_or_init(&s).await.unwrap()
        };
        let s = fleethub_store::sqlite::SqliteStore::open(&path).unwrap();
        let b = load_or_init(&s).await.unwrap();
        assert_eq!(a.id_scope, b.id_scope);
        assert_eq!(a.dps_policies, b.dps_policies);
        assert_eq!(a.hub_policies[0].primary_key, b.hub_policies[0].primary_key);
    }
}
