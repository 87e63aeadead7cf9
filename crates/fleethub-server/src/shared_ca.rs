//! The development CA of nodes sharing one store (PostgreSQL, docs/scale-out.md): without an
//! operator CA or a ready certificate, every node would generate its own CA and devices would
//! have to trust each. Instead the first node puts its CA (certificate and key, one setting, so
//! the pair is written atomically) into the store, and every node uses the stored one, issuing its
//! own server certificate from it. The store already holds every device and policy key; the CA key
//! is as private as those.

use crate::certs;
use anyhow::{Context, Result};
use fleethub_store::Store;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The setting holding the shared development CA.
const SETTING: &str = "cluster_dev_ca";

#[derive(Serialize, Deserialize, PartialEq)]
struct CaPair {
    cert_pem: String,
    key_pem: String,
}

/// Makes `certs_dir/ca.pem` and `ca.key` the store's development CA: the local one (generated
/// when missing) becomes the stored one unless another node stored one first; then that one
/// replaces the local CA (kept as `ca.pem.replaced-UNIXTIME` and `ca.key.replaced-UNIXTIME`),
/// and the server certificate is re-issued from it.
pub async fn sync(store: &dyn Store, certs_dir: &Path) -> Result<()> {
    let (cert_path, key_path) = certs::ensure_dev_ca(certs_dir)?;
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let local = CaPair {
        cert_pem: read(&cert_path)?,
        key_pem: read(&key_path)?,
    };
    let stored = store
        .init_setting(SETTING, &serde_json::to_string(&local)?)
        .await
        .context("cannot share the development CA through the store")?;
    let stored: CaPair =
        serde_json::from_str(&stored).context("the stored development CA is not readable")?;
    if stored != local {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let keep = certs_dir.join(format!("ca.pem.replaced-{now}"));
        for (from, to) in [
            (&cert_path, keep.clone()),
            (&key_path, certs_dir.join(format!("ca.key.replaced-{now}"))),
        ] {
            std::fs::rename(from, &to)
                .with_context(|| format!("cannot move {} aside", from.display()))?;
        }
        certs::write_private(&key_path, stored.key_pem.as_bytes())?;
        std::fs::write(&cert_path, stored.cert_pem.as_bytes())
            .with_context(|| format!("cannot write {}", cert_path.display()))?;
        tracing::info!(
            path = %cert_path.display(),
            replaced = %keep.display(),
            "using the development CA shared by the nodes of this store"
        );
    }
    Ok(())
}
