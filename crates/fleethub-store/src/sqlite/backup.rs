//! `BackupStore` for SQLite: `VACUUM INTO` on a reader connection, which writes a consistent
//! snapshot (one read transaction) into a new file while the writer goes on. The file is
//! created empty and owner-only first, so the keys are never world-readable, not even for a
//! moment.

use super::SqliteStore;
use crate::{BackupStore, Result, StoreError};
use async_trait::async_trait;
use std::path::Path;

#[async_trait]
impl BackupStore for SqliteStore {
    async fn backup_to(&self, dest: &Path) -> Result<()> {
        create_private(dest)?;
        let target = dest.to_path_buf();
        let done = self
            .pool
            .read(move |c| {
                c.execute("VACUUM INTO ?1", [target.to_string_lossy().as_ref()])?;
                Ok(())
            })
            .await;
        if done.is_err() {
            // Leave no partial copy behind.
            let _ = std::fs::remove_file(dest);
        }
        done
    }
}

/// Creates `path` empty with mode 0600; an existing non-empty file is refused.
fn create_private(path: &Path) -> Result<()> {
    let err =
        |e: std::io::Error| StoreError::Backend(format!("cannot create {}: {e}", path.display()));
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        return Err(StoreError::InvalidArgument(format!(
            "{} exists and is not empty: choose a new file",
            path.display()
        )));
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let file = o.open(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    drop(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RegistryStore, SettingsStore};

    #[tokio::test]
    async fn backup_is_a_private_consistent_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        store.init_setting("id_scope", "0ne000BACK1").await.unwrap();
        let dest = dir.path().join("backup.db");
        store.backup_to(&dest).await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Writes after the backup are not in it; the copy opens as a store.
        store.put_setting("id_scope", "changed").await.unwrap();
        let copy = SqliteStore::open(&dest).unwrap();
        assert_eq!(
            copy.get_setting("id_scope").await.unwrap().as_deref(),
            Some("0ne000BACK1")
        );
        assert!(
            copy.list_devices(crate::PageRequest::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
        // A second backup to the same (now non-empty) file is refused and leaves it alone.
        let e = store.backup_to(&dest).await.unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        assert!(SqliteStore::open(&dest).is_ok());
    }
}
